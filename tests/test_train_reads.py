"""fit without waiting for the device: the step losses are read every ``read_every`` steps
(on a GPU by default), in one transfer, and nothing else in a step reads a value back.

Proven on machines without a GPU two ways: on the ``meta`` device, where any read of a value
raises, every step of the loop runs (so no step reads anything back); on the CPU, a run that
reads every few steps records bitwise the history, checkpoints and weights of the run that
reads every step (whose numbers tests/test_train.py checks against a hand-written loop).
"""

from __future__ import annotations

import json

import pytest
import torch

import optimlab
from optimlab.data import MiniBatches
from optimlab.schedules import exponential_decay
from optimlab.train import Callback, NonFiniteLossError, fit, read_history
from optimlab.train.loop import DEVICE_READ_EVERY, _read_every


def _data(m=100, seed=3):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(m, 6, generator=g, dtype=torch.float64)
    return X, (X[:, 0] - X[:, 2] > 0).long()


def _model(device="cpu"):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 2))
    return net.to(torch.float64).to(device)


class _Steps(Callback):
    def __init__(self):
        self.steps, self.read = [], []

    def on_step_end(self, state):
        self.steps.append(state.step)
        self.read.append(len(state.history))


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        lambda p: optimlab.Adam(p, lr=1e-2, nonfinite_grads="ignore"),
    ],
    ids=["torch-sgd", "optimlab-adam"],
)
def test_no_step_reads_a_value_back(make_opt):
    # On the meta device a tensor has no data: .item(), .tolist() and copies to the host
    # raise. Every one of the 20 steps (accumulation, clipping, the schedule, the optimizer)
    # runs before the first read, at the end of the epoch.
    X, y = _data(m=160)
    model = _model("meta")
    opt = make_opt(model.parameters())
    seen = _Steps()
    plan = MiniBatches(X, y, batch_size=4, seed=0)
    with pytest.raises(NotImplementedError, match="meta"):
        fit(
            model, opt, plan, epochs=1, accumulation=2, clip_norm=1.0, callbacks=[seen],
            schedule=exponential_decay(0.1, decay_rate=0.5, decay_steps=10), progress=False,
        )  # fmt: skip
    assert seen.steps == list(range(1, 21)) and set(seen.read) == {0}


def test_defaults():
    assert _read_every(torch.device("cpu"), "raise") == 1
    assert _read_every(torch.device("cuda", 0), "raise") == DEVICE_READ_EVERY == 50
    assert _read_every(torch.device("cuda", 0), "skip") == 1  # a step depends on its loss
    assert _read_every(torch.device("meta"), "raise") == 50


def _untimed(rows):
    """The rows without their wall-clock seconds (the one value two runs differ in)."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def _train(tmp_path, name, read_every, **kwargs):
    X, y = _data()
    model = _model()
    opt = optimlab.Adam(model.parameters(), lr=1e-2)
    seen = _Steps()
    result = fit(
        model, opt, MiniBatches(X, y, batch_size=8, seed=4), epochs=3, accumulation=3,
        clip_norm=0.5, eval_data=(X[:40], y[:40]), eval_every=5, read_every=read_every,
        history_path=tmp_path / f"{name}.jsonl", checkpoint_dir=tmp_path / name,
        checkpoint_every=4, keep_last=100, tensorboard_dir=tmp_path / f"{name}-tb",
        callbacks=[seen], progress=False, **kwargs,
    )  # fmt: skip
    return result, model, seen


def test_reading_every_few_steps_records_what_reading_every_step_does(tmp_path):
    # 100 samples in micro-batches of 8, 3 a step: 5 steps an epoch (the last of 1 micro-
    # batch of 4), clipped, evaluated every 5 steps, checkpoints every 4: reads every 3
    # steps fall between them all.
    each, each_model, each_seen = _train(tmp_path, "each", 1)
    few, few_model, few_seen = _train(tmp_path, "few", 3)
    assert _untimed(few.history) == _untimed(each.history) and len(few.history) == 15
    assert all(isinstance(row["loss"], float) for row in few.history)
    assert all(isinstance(row["grad_norm"], float) for row in few.history)
    files = [read_history(tmp_path / f"{name}.jsonl") for name in ("few", "each")]
    assert _untimed(files[0]) == _untimed(files[1]) == _untimed(each.history)
    for a, b in zip(few_model.parameters(), each_model.parameters(), strict=True):
        assert torch.equal(a, b)
    checkpoints = sorted(p.name for p in (tmp_path / "each").glob("ckpt-*.pt"))
    assert checkpoints == sorted(p.name for p in (tmp_path / "few").glob("ckpt-*.pt"))
    for name in checkpoints:  # each checkpoint holds the history up to its step
        saved = [torch.load(tmp_path / d / name, weights_only=True) for d in ("each", "few")]
        assert saved[0]["history"]["rows"] == saved[1]["history"]["rows"] == saved[0]["step"]
    # callbacks see the rows read so far: every step at once, or up to the last read (every
    # 3 steps, and at the checkpoints after steps 4, 8, 12 and the evaluations and epoch
    # ends after steps 5, 10, 15, which come after the step's callbacks)
    assert each_seen.read == each_seen.steps
    assert few_seen.read == [0, 0, 3, 3, 4, 6, 6, 6, 9, 9, 10, 12, 12, 12, 15]


def test_a_resumed_run_that_reads_every_few_steps_is_exact(tmp_path):
    whole, whole_model, _ = _train(tmp_path, "whole", 4)
    X, y = _data()
    for steps in (7, None):  # stop after step 7 (checkpoint at 4), resume to the end
        model = _model()
        opt = optimlab.Adam(model.parameters(), lr=1e-2)
        result = fit(
            model, opt, MiniBatches(X, y, batch_size=8, seed=4), epochs=3, steps=steps,
            accumulation=3, clip_norm=0.5, eval_data=(X[:40], y[:40]), eval_every=5,
            read_every=4, history_path=tmp_path / "part.jsonl",
            checkpoint_dir=tmp_path / "part", checkpoint_every=4, resume=True, progress=False,
        )  # fmt: skip
    assert result.resumed_from is not None
    assert _untimed(result.history) == _untimed(whole.history)
    for a, b in zip(model.parameters(), whole_model.parameters(), strict=True):
        assert torch.equal(a, b)
    part, whole_file = (read_history(tmp_path / f"{n}.jsonl") for n in ("part", "whole"))
    assert _untimed(part) == _untimed(whole_file) == _untimed(whole.history)


def test_a_nonfinite_loss_read_late_says_which_steps_were_applied(tmp_path):
    X, y = _data()
    X[57] = float("nan")  # in step 6 (batches of 10, not shuffled)
    model = _model()
    # (optimlab's optimizers refuse a step with non-finite gradients themselves, before fit
    # reads the loss: nonfinite_grads; torch's apply it)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteLossError) as caught:
        fit(
            model, opt, MiniBatches(X, y, batch_size=10, shuffle=False), epochs=1,
            read_every=4, checkpoint_dir=tmp_path, checkpoint_every=3,
            history_path=tmp_path / "h.jsonl", progress=False,
        )  # fmt: skip
    message = str(caught.value)
    assert message.startswith("The loss is nan at epoch 0, step 6, read at step 6 ")
    # read at step 6: a checkpoint was due; none holds the bad step
    assert "steps 6 to 6 were applied, and no checkpoint holds them" in message
    assert "read_every=1" in message
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.pt")) == ["ckpt-00000003.pt"]
    rows = [json.loads(line) for line in (tmp_path / "h.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5]  # the rows before it, recorded


def test_a_nonfinite_loss_between_reads_is_found_at_the_next_read(tmp_path):
    X, y = _data()
    X[57] = float("nan")
    model = _model()
    # (optimlab's optimizers refuse a step with non-finite gradients themselves, before fit
    # reads the loss: nonfinite_grads; torch's apply it)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteLossError, match=r"step 6, read at step 8 .* steps 6 to 8 "):
        fit(
            model, opt, MiniBatches(X, y, batch_size=10, shuffle=False), epochs=1,
            read_every=4, progress=False,
        )  # fmt: skip
