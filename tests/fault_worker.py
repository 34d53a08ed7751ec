"""A small training run that the fault tests kill at a chosen point (issue 15).

    python fault_worker.py --setup plateau|schedule --checkpoint-dir D --out result.pt
                           [--resume] [--kill EVENT:N]
    python fault_worker.py --serve     (the same runs, asked for on stdin; see serve())

EVENT:N arms one injection point; the process sends itself SIGKILL the N-th time the event
happens (numbered from 1 in this process):

* ``step``: after an optimizer step, before anything else that step does (evaluation,
  checkpoint): a callback's ``on_step_end``;
* ``epoch``: at an epoch's end, after its evaluation, before its checkpoint (``on_epoch_end``);
* ``eval``: just after an evaluation returns;
* ``saved``: just after a checkpoint is on disk (renamed into place);
* ``write``: halfway through writing a checkpoint's file;
* ``rename``: after a checkpoint's temporary file is written, before it is renamed into place;
* ``term``, ``int``: SIGTERM or SIGINT (instead of SIGKILL) at the N-th step's end;
  ``term2``: two SIGTERMs there;
* ``enospc``, ``erofs``: the disk is full, or the file system read-only, while the N-th
  checkpoint is written (an OSError, not a kill).

A run that finishes writes its result: parameters, optimizer state, the lr, the history
(without wall times) and the TrainResult's fields.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import traceback

import torch

import optimlab
from optimlab.data import MiniBatches
from optimlab.schedules import ReduceOnPlateau, cosine_decay, join, linear_warmup
from optimlab.train import Callback, EarlyStopping, fit
from optimlab.train import checkpoint as checkpoint_module
from optimlab.train import loop as loop_module


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Counter:
    """Counts one event; dies at the armed count."""

    def __init__(self, armed: dict[str, int], event: str) -> None:
        self.at = armed.get(event)
        self.seen = 0
        self.action = die

    def __call__(self) -> None:
        self.seen += 1
        if self.seen == self.at:
            self.action()


def arm(event: str | None) -> dict[str, Counter]:
    armed = {}
    if event:
        name, _, n = event.partition(":")
        armed[name] = int(n)
    events = ("step", "epoch", "eval", "saved", "write", "rename", "enospc", "erofs")
    counters = {e: Counter(armed, e) for e in events}
    # preemption: the signal arrives during the step's work; fit must finish it and save
    for name, number in (("term", signal.SIGTERM), ("int", signal.SIGINT)):
        if name in armed:
            counters["step"].at = armed[name]
            counters["step"].action = lambda number=number: os.kill(os.getpid(), number)
    if "term2" in armed:  # a second signal before the step is done: stop at once

        def twice() -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)

        counters["step"].at, counters["step"].action = armed["term2"], twice

    real_evaluate = loop_module.evaluate

    def evaluate(*args, **kwargs):
        result = real_evaluate(*args, **kwargs)
        counters["eval"]()
        return result

    loop_module.evaluate = evaluate

    real_save = checkpoint_module.CheckpointManager.save

    def save(self, step, payload):
        path = real_save(self, step, payload)
        counters["saved"]()
        return path

    checkpoint_module.CheckpointManager.save = save

    real_torch_save = checkpoint_module.torch.save

    def torch_save(obj, f, *args, **kwargs):
        for name, code in (("enospc", errno.ENOSPC), ("erofs", errno.EROFS)):
            if name in armed:  # the disk fills up (turns read-only) at the N-th checkpoint
                counters[name].seen += 1
                if counters[name].seen == counters[name].at:
                    real_torch_save(obj, f, *args, **kwargs)
                    raise OSError(code, os.strerror(code))
        counters["write"].seen += 1
        if counters["write"].seen == counters["write"].at:
            real_torch_save(obj, f, *args, **kwargs)
            f.flush()
            f.truncate(f.tell() // 2)  # half of the file is on disk when the process dies
            die()
        return real_torch_save(obj, f, *args, **kwargs)

    checkpoint_module.torch.save = torch_save

    real_replace = checkpoint_module.os.replace

    def replace(src, dst, *args, **kwargs):
        counters["rename"]()
        return real_replace(src, dst, *args, **kwargs)

    checkpoint_module.os.replace = replace
    return counters


class KillAt(Callback):
    def __init__(self, counters: dict[str, Counter]) -> None:
        self.counters = counters

    def on_step_end(self, state) -> None:
        self.counters["step"]()

    def on_epoch_end(self, state) -> None:
        self.counters["epoch"]()


def build(setup: str):
    generator = torch.Generator().manual_seed(1234)
    X = torch.randn(60, 5, generator=generator)
    y = (X[:, 0] - X[:, 2] > 0).long()
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 12), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(12, 2)
    )
    optimizer = optimlab.Adam(model.parameters(), lr=0.05)
    # 60 samples in batches of 8: 8 batches a epoch, the last of 4; steps of 2 micro-batches
    plan = MiniBatches(X, y, batch_size=8, shuffle=True, seed=7)
    if setup == "plateau":
        # patience 0 and a large lr: the plateau halves the lr twice, early stopping fires at
        # the end of epoch 7 of 8 (a resumed run must stay stopped)
        options = dict(
            epochs=8,
            schedule=ReduceOnPlateau(0.05, factor=0.5, patience=0),
            early_stopping=EarlyStopping(patience=2, min_delta=0.05),
            checkpoint_every=3,
        )
    else:
        schedule = join([linear_warmup(0.05, 4), cosine_decay(0.05, decay_steps=20)], [4])
        options = dict(epochs=4, schedule=schedule, eval_every=3)  # checkpoints at epoch ends
    return model, optimizer, plan, (X, y), options


def train(setup: str, checkpoint_dir: str, out: str, resume: bool, kill: str | None) -> None:
    counters = arm(kill)
    model, optimizer, plan, data, options = build(setup)
    result = fit(
        model,
        optimizer,
        plan,
        accumulation=2,
        eval_data=data,
        callbacks=[KillAt(counters)],
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        progress=False,
        **options,
    )
    torch.save(
        {
            "params": [p.detach().clone() for p in model.parameters()],
            "optimizer": optimizer.state_dict(),
            "lr": optimizer.param_groups[0]["lr"],
            "history": [{k: v for k, v in row.items() if k != "seconds"} for row in result.history],
            "result": (result.steps, result.epochs, result.stop_reason, result.final_metrics),
            "events": {event: counter.seen for event, counter in counters.items()},
        },
        out,
    )


def serve() -> None:
    """Run the trainings asked for on stdin (one JSON object a line), each in a forked child,
    and answer each with the child's exit status: importing torch and building its first
    optimizer take seconds a process, a fork milliseconds. This process never trains, so the
    children start with no threads of PyTorch's or OpenMP's to lose in the fork."""
    build("plateau")  # import what a run needs (torch.optim imports torch._dynamo lazily)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                train(**request)
            except SystemExit as stopped:  # fit's Preempted: the shell's 128 + signal
                os._exit(stopped.code)
            except KeyboardInterrupt:
                os._exit(130)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(code, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--setup", choices=("plateau", "schedule"))
    parser.add_argument("--checkpoint-dir")
    parser.add_argument("--out")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill", default=None)
    args = parser.parse_args()
    if args.serve:
        serve()
    else:
        train(args.setup, args.checkpoint_dir, args.out, args.resume, args.kill)


if __name__ == "__main__":
    main()
