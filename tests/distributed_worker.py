"""A training job for the distributed tests: run it with torchrun, or as one plain process.

    torchrun --standalone --nproc_per_node=2 distributed_worker.py --out DIR [options]
    python distributed_worker.py --out DIR [options]

It trains the same float64 MLP on the same data with fit(); the plan's batch size is the
global batch, so 1 and 2 processes see the same batches. Rank 0 saves the final parameters of
each optimizer to DIR/<optimizer>.pt.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import torch

import optimlab
from optimlab.data import MiniBatches
from optimlab.train import Callback, fit

OPTIMIZERS = {
    "sgd": lambda params: optimlab.SGD(params, lr=0.05),
    "momentum": lambda params: optimlab.Momentum(params, lr=0.1, beta=0.9),
    "adam": lambda params: optimlab.Adam(params, lr=1e-2, weight_decay=1e-3),
}


def build():
    generator = torch.Generator().manual_seed(42)
    X = torch.randn(96, 8, generator=generator, dtype=torch.float64)
    y = (X[:, 0] * X[:, 1] > 0).long()
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)
    ).double()
    return model, X, y


class KillAt(Callback):
    """Send this process `number` (SIGKILL) after step `step` (on the first attempt only)."""

    def __init__(self, step: int, number: int = signal.SIGKILL) -> None:
        self.step, self.number = step, number

    def on_step_end(self, state):
        if state.step == self.step and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0":
            os.kill(os.getpid(), self.number)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--optimizers", default="sgd,momentum,adam")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=16, help="the global batch")
    parser.add_argument("--zero", action="store_true", help="shard optimizer state (ZeRO)")
    parser.add_argument("--fsdp", action="store_true", help="shard parameters (FSDP2)")
    parser.add_argument("--checkpoint-dir")
    parser.add_argument("--checkpoint-every", type=int)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-rank", type=int, default=-1)
    parser.add_argument("--kill-at-step", type=int, default=0)
    parser.add_argument("--kill-signal", default="SIGKILL", help="what --kill-rank receives")
    parser.add_argument("--read-every", type=int, help="fit's read_every")
    parser.add_argument(
        "--preempt-lag", type=int, help="steps until the ranks read their summed signal flags"
    )
    args = parser.parse_args()

    if args.zero:
        # Before the group exists: zero_redundancy_optimizer's `_broadcast_object(...,
        # group=dist.group.WORLD)` evaluates its default at import, and imported later it would
        # hold the group past destroy_process_group (see optimlab.distributed.init).
        from torch.distributed.optim import ZeroRedundancyOptimizer  # noqa: F401
    if args.preempt_lag is not None:  # as on GPUs, where the sums are read late
        from optimlab.train import loop

        loop._Preemption.lag = args.preempt_lag
    ranks = optimlab.distributed.init()
    try:
        train(args, ranks)  # returns holding nothing that holds the process group
    except SystemExit as preempted:  # fit's Preempted: every rank stopped at the same step
        if ranks.active:
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
        sys.stdout.flush()
        print(f"rank {ranks.rank} preempted with code {preempted.code}", flush=True)
        os._exit(preempted.code)
    if ranks.active:
        # No rank tears gloo down while another still works (rank 0 saving).
        torch.distributed.barrier()
        # With nothing else holding it, this frees the group and joins its gloo threads now,
        # while the interpreter is whole. A gloo thread that outlives it into the interpreter's
        # teardown can release there the last reference to a finished collective that still
        # refers to Python objects (tensors, the contextvars.Context autograd stashes in the
        # thread-local state a collective issued in backward copies): it waits for the GIL,
        # Python ends it with pthread_exit, and the unwind through a noexcept destructor aborts
        # ("terminate called without an active exception").
        torch.distributed.destroy_process_group()
        if args.fsdp:
            # FSDP2 only: DTensor's module-level caches (sharding propagation, the
            # redistribute planner, MeshTopoInfo) keep the DeviceMesh, hence the group and its
            # threads, alive until the interpreter's teardown, which torch 2.13 gives no way
            # to prevent (pytorch/pytorch#190489, #179291): leave without it.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        leftover = _gloo_work_threads()
        if leftover:
            sys.exit(f"the process group outlived destroy_process_group: {leftover} threads")


def train(args: argparse.Namespace, ranks: optimlab.distributed.Context) -> None:
    out = Path(args.out)
    for name in args.optimizers.split(","):
        model, X, y = build()
        if args.fsdp:
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import fully_shard

            mesh = init_device_mesh("cpu", (ranks.world_size,))
            for layer in model:
                if isinstance(layer, torch.nn.Linear):
                    fully_shard(layer, mesh=mesh)
            fully_shard(model, mesh=mesh)
        if args.zero:
            from torch.distributed.optim import ZeroRedundancyOptimizer

            reference = OPTIMIZERS[name]([torch.zeros(1, requires_grad=True)])
            defaults = {k: v for k, v in reference.defaults.items()}
            optimizer = ZeroRedundancyOptimizer(
                model.parameters(), optimizer_class=type(reference), **defaults
            )
        else:
            optimizer = OPTIMIZERS[name](model.parameters())
        callbacks = []
        if ranks.rank == args.kill_rank:
            callbacks.append(KillAt(args.kill_at_step, getattr(signal, args.kill_signal)))
        plan = MiniBatches(X, y, batch_size=args.batch, seed=3)
        checkpoint_dir = Path(args.checkpoint_dir) / name if args.checkpoint_dir else None
        result = fit(
            model,
            optimizer,
            plan,
            steps=args.steps,
            read_every=args.read_every,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
            callbacks=callbacks,
            progress=False,
        )
        state = optimlab.distributed.model_state(model)
        if ranks.is_main:
            out.mkdir(parents=True, exist_ok=True)
            torch.save(state, out / f"{name}.pt")
            torch.save([row["loss"] for row in result.history], out / f"{name}-losses.pt")


def _gloo_work_threads() -> int:
    """How many of gloo's work threads ("pt_gloo_runloop", the threads that run and release
    collectives) this process has: 0 once its groups are destroyed (Linux; 0 elsewhere)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 0
    count = 0
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm") as comm:
                count += comm.read().startswith("pt_gloo_runloop")
        except OSError:  # the thread ended meanwhile
            continue
    return count


if __name__ == "__main__":
    main()
