"""The training loop: accumulation equals one big batch, exact resume across processes and
crashes, history, early stopping, non-finite losses, precision, and argument checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import optimlab
from optimlab.data import MiniBatches
from optimlab.schedules import exponential_decay
from optimlab.train import (
    Callback,
    EarlyStopping,
    NonFiniteLossError,
    evaluate,
    fit,
    read_history,
)

WORKER = Path(__file__).with_name("resume_worker.py")


def _data(m=100, features=6, seed=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(m, features, generator=g, dtype=dtype)
    y = (X[:, 0] - X[:, 2] > 0).long()
    return X, y


def _model(dtype=torch.float64, dropout=0.0):
    torch.manual_seed(0)
    layers = [torch.nn.Linear(6, 12), torch.nn.Tanh()]
    if dropout:
        layers.append(torch.nn.Dropout(dropout))
    layers.append(torch.nn.Linear(12, 2))
    return torch.nn.Sequential(*layers).to(dtype)


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: optimlab.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
        lambda p: optimlab.AdamW(p, lr=1e-2, weight_decay=0.1),
    ],
    ids=["sgd-weight_decay", "adamw"],
)
def test_accumulated_micro_batches_equal_one_big_batch(make_opt):
    # 100 samples: micro-batches of 8, three per step, make steps of 24 samples, and the
    # epoch's last step holds one micro-batch of 4. One batch of 24 per step must match it.
    X, y = _data()
    runs = {}
    for name, batch, accumulation in (("micro", 8, 3), ("big", 24, 1)):
        model = _model()
        opt = make_opt(model.parameters())
        schedule = exponential_decay(opt.param_groups[0]["lr"], decay_rate=0.5, decay_steps=10)
        result = fit(
            model,
            opt,
            MiniBatches(X, y, batch_size=batch, seed=5),
            epochs=3,
            accumulation=accumulation,
            schedule=schedule,
            clip_norm=0.5,
            progress=False,
        )
        runs[name] = (model, opt, result)
    (micro, micro_opt, micro_result), (big, big_opt, big_result) = runs["micro"], runs["big"]
    assert micro_result.steps == big_result.steps == 3 * 5  # ceil(100 / 24) steps per epoch
    assert [r["samples"] for r in micro_result.history] == [
        r["samples"] for r in big_result.history
    ]
    # The same sums in another order: each step's gradient sums 24 samples' terms as three
    # means of 8 or one of 24, at most a few ulp per term apart (the clip's norm and the
    # update change that by a factor of order one: AdamW's m / sqrt(v) is scale-free), carried
    # over 15 steps: 8 ulp * 24 * 15 = 6e-13 relative to the largest entry (measured: 2 ulp).
    tol = 8 * 24 * 15 * torch.finfo(torch.float64).eps
    for a, b in zip(micro.parameters(), big.parameters()):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * b.abs().max().item())
    for a, b in zip(micro_result.history, big_result.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=tol)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=tol)
    # The optimizer and the schedule advanced once per real step, not per micro-batch.
    p = next(micro.parameters())
    assert micro_opt.state[p]["step"] == big_opt.state[next(big.parameters())]["step"] == 15
    assert micro_result.history[-1]["lr"] == pytest.approx(
        micro_opt.param_groups[0]["lr"] / 0.5 ** (1 / 10)
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fit_is_bitwise_the_hand_written_loop(dtype):
    # fit's bookkeeping (weights of micro-batches, history, checks) must not change a bit of
    # what the loop every tutorial writes computes; `optimlab bench` times the two side by side.
    X, y = _data(dtype=dtype)
    losses, params = {}, {}
    for name in ("fit", "hand"):
        model = _model(dtype)
        opt = optimlab.Adam(model.parameters(), lr=1e-2)
        plan = MiniBatches(X, y, batch_size=32, seed=4)  # 100 samples: a last batch of 4
        if name == "fit":
            result = fit(model, opt, plan, epochs=2, progress=False)
            losses[name] = [row["loss"] for row in result.history]
        else:
            losses[name] = []
            for _ in range(2):
                for xb, yb in plan:
                    opt.zero_grad(set_to_none=True)
                    loss = torch.nn.functional.cross_entropy(model(xb), yb)
                    loss.backward()
                    opt.step()
                    losses[name].append(loss.item())
        params[name] = [p.detach().clone() for p in model.parameters()]
    assert len(losses["fit"]) == 8 and losses["fit"] == losses["hand"]
    for a, b in zip(params["fit"], params["hand"], strict=True):
        assert torch.equal(a, b)


def _run_worker(tmp_path, name, *args):
    out = tmp_path / f"{name}.pt"
    proc = subprocess.run(
        [sys.executable, str(WORKER), "--out", str(out), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,  # only catches a hang: a run takes seconds, more on a loaded machine
    )
    return proc, out


def test_resume_in_a_new_process_is_bitwise_exact(tmp_path):
    whole, whole_out = _run_worker(
        tmp_path, "whole", "--steps", 25, "--checkpoint-dir", tmp_path / "a"
    )
    assert whole.returncode == 0, whole.stderr
    first, _ = _run_worker(tmp_path, "first", "--steps", 11, "--checkpoint-dir", tmp_path / "b")
    assert first.returncode == 0, first.stderr
    second, second_out = _run_worker(
        tmp_path, "second", "--steps", 25, "--checkpoint-dir", tmp_path / "b", "--resume"
    )
    assert second.returncode == 0, second.stderr
    expected, actual = torch.load(whole_out), torch.load(second_out)
    for a, b in zip(expected, actual):
        assert torch.equal(a, b)
    # And the resumed run really did start in the middle (not from scratch): step 11 was saved.
    assert sorted(p.name for p in (tmp_path / "b").glob("ckpt-*.pt"))[-1] == "ckpt-00000025.pt"


def test_killed_while_writing_a_checkpoint_resumes_from_the_previous_one(tmp_path):
    whole, whole_out = _run_worker(
        tmp_path, "whole", "--steps", 25, "--checkpoint-dir", tmp_path / "a"
    )
    assert whole.returncode == 0, whole.stderr
    # The 4th checkpoint (step 12) is cut in half by a SIGKILL while it is being written.
    crashed, _ = _run_worker(
        tmp_path,
        "crashed",
        "--steps",
        25,
        "--checkpoint-dir",
        tmp_path / "b",
        "--kill-during-save",
        4,
    )
    assert crashed.returncode == -9
    names = sorted(p.name for p in (tmp_path / "b").glob("ckpt-*.pt"))
    assert names[-1] == "ckpt-00000009.pt"  # the half-written file never took the final name
    resumed, resumed_out = _run_worker(
        tmp_path, "resumed", "--steps", 25, "--checkpoint-dir", tmp_path / "b", "--resume"
    )
    assert resumed.returncode == 0, resumed.stderr
    for a, b in zip(torch.load(whole_out), torch.load(resumed_out)):
        assert torch.equal(a, b)


def test_corrupted_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    X, y = _data()
    model = _model()
    opt = optimlab.Adam(model.parameters(), lr=1e-2)
    fit(
        model,
        opt,
        MiniBatches(X, y, batch_size=10, seed=1),
        steps=6,
        checkpoint_dir=tmp_path,
        checkpoint_every=2,
        progress=False,
    )
    newest = tmp_path / "ckpt-00000006.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    model2 = _model()
    opt2 = optimlab.Adam(model2.parameters(), lr=1e-2)
    with pytest.warns(UserWarning, match=r"ckpt-00000006\.pt"):
        result = fit(
            model2,
            opt2,
            MiniBatches(X, y, batch_size=10, seed=1),
            steps=8,
            checkpoint_dir=tmp_path,
            checkpoint_every=2,
            resume=True,
            progress=False,
        )
    assert result.resumed_from.name == "ckpt-00000004.pt"
    assert [r["step"] for r in result.history] == list(range(1, 9))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_history_file_reads_back(tmp_path, suffix):
    X, y = _data()
    model = _model()
    opt = optimlab.SGD(model.parameters(), lr=0.1)
    path = tmp_path / f"history{suffix}"
    result = fit(
        model,
        opt,
        MiniBatches(X, y, batch_size=25, seed=0),
        epochs=2,
        eval_data=(X, y),
        history_path=path,
        clip_norm=10.0,
        progress=False,
    )
    rows = read_history(path)
    assert len(rows) == len(result.history) == 8
    for written, kept in zip(rows, result.history):
        assert written["step"] == kept["step"] and written["loss"] == pytest.approx(kept["loss"])
    assert "val_loss" in rows[3] and "val_accuracy" in rows[7] and "val_loss" not in rows[0]
    assert rows[-1]["samples"] == 200


def test_early_stopping_stops_and_callbacks_run():
    X, y = _data()
    model = _model()
    opt = optimlab.SGD(model.parameters(), lr=0.0)  # nothing improves
    seen = []

    class Recorder(Callback):
        def on_epoch_end(self, state):
            seen.append(state.epoch)

    result = fit(
        model,
        opt,
        MiniBatches(X, y, batch_size=50, seed=0),
        epochs=20,
        eval_data=(X, y),
        early_stopping=EarlyStopping("val_loss", patience=3),
        callbacks=[Recorder()],
        progress=False,
    )
    assert result.epochs == 4 and seen == [1, 2, 3, 4]
    assert result.stop_reason.startswith("early stopping: val_loss did not improve for 3")


def test_a_callback_can_stop_training():
    X, y = _data()
    model = _model()

    class StopAtFive(Callback):
        def on_step_end(self, state):
            if state.step == 5:
                state.stop_reason = "enough"

    result = fit(
        model,
        optimlab.SGD(model.parameters(), lr=0.1),
        MiniBatches(X, y, batch_size=10),
        epochs=5,
        callbacks=[StopAtFive()],
        progress=False,
    )
    assert result.steps == 5 and result.stop_reason == "enough"


def test_nan_loss_stops_naming_epoch_and_step_and_writes_no_checkpoint(tmp_path):
    X, y = _data()
    X[57] = float("nan")
    model = _model()
    opt = optimlab.SGD(model.parameters(), lr=0.1)
    with pytest.raises(
        NonFiniteLossError, match=r"The loss is nan at epoch 0, step \d+, micro-batch 1 of 1"
    ):
        fit(
            model,
            opt,
            MiniBatches(X, y, batch_size=10, shuffle=False),
            epochs=1,
            checkpoint_dir=tmp_path,
            checkpoint_every=1,
            progress=False,
        )
    # steps 1..5 (samples 0..49) were fine and checkpointed; step 6 holds sample 57
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.pt"))[-1] == "ckpt-00000005.pt"
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_nan_loss_skip_policy():
    X, y = _data()
    X[57] = float("nan")
    model = _model()
    result = fit(
        model,
        optimlab.SGD(model.parameters(), lr=0.1),
        MiniBatches(X, y, batch_size=10, shuffle=False),
        epochs=1,
        nonfinite_loss="skip",
        progress=False,
    )
    assert result.steps == 9
    assert [r.get("skipped", False) for r in result.history].count(True) == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_bfloat16_autocast_trains():
    X, y = _data(dtype=torch.float32)
    model = _model(torch.float32)
    result = fit(
        model,
        optimlab.Adam(model.parameters(), lr=1e-2),
        MiniBatches(X, y, batch_size=20),
        epochs=5,
        precision="bf16",
        eval_data=(X, y),
        progress=False,
    )
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.final_metrics["val_accuracy"] > 0.7


def test_progress_bar_is_quiet_when_output_is_not_a_terminal(capsys):
    X, y = _data()
    model = _model()
    fit(model, optimlab.SGD(model.parameters(), lr=0.1), MiniBatches(X, y, batch_size=10), epochs=1)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_tensorboard_event_files(tmp_path):
    X, y = _data()
    model = _model()
    fit(
        model,
        optimlab.SGD(model.parameters(), lr=0.1),
        MiniBatches(X, y, batch_size=10),
        epochs=1,
        eval_data=(X, y),
        tensorboard_dir=tmp_path / "tb",
        progress=False,
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert {"loss", "lr", "val_loss"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("loss")) == 10


def test_evaluate_regression_and_classification():
    X, y = _data()
    model = _model()
    metrics = evaluate(model, (X, y), torch.nn.functional.cross_entropy, batch_size=7)
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model(X), y).item()
        accuracy = (model(X).argmax(1) == y).double().mean().item()
    # rel=1e-12: the mean of 100 losses summed in batches of 7 instead of at once, within
    # 100 ulp of the (positive) terms' sum = 2e-14
    assert metrics["loss"] == pytest.approx(expected, rel=1e-12)
    assert metrics["accuracy"] == pytest.approx(accuracy)
    regression = evaluate(
        torch.nn.Linear(6, 1).double(), (X, X[:, :1]), torch.nn.functional.mse_loss
    )
    assert set(regression) == {"loss"}


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(), ValueError, r"Give epochs or steps"),
        (dict(epochs=0), ValueError, r"Invalid epochs: 0; expected an int >= 1"),
        (dict(steps=-3), ValueError, r"Invalid steps: -3"),
        (dict(epochs=1, accumulation=0), ValueError, r"Invalid accumulation: 0"),
        (dict(epochs=1, read_every=0), ValueError, r"Invalid read_every: 0; expected an int >= 1"),
        (
            dict(epochs=1, read_every=5, nonfinite_loss="skip"),
            ValueError,
            r"Invalid read_every: 5 with nonfinite_loss='skip'.*pass 1 or None",
        ),
        (dict(epochs=1, nonfinite_loss="warn"), ValueError, r"Invalid nonfinite_loss: 'warn'"),
        (dict(epochs=1, precision="fp8"), ValueError, r"Invalid precision: 'fp8'"),
        (dict(epochs=1, precision="fp16"), ValueError, r"'fp16' needs a CUDA model"),
        (dict(epochs=1, clip_norm=-1.0), ValueError, r"Invalid clip_norm: -1\.0"),
        (dict(epochs=1, resume=True), ValueError, r"resume=True needs checkpoint_dir"),
        (dict(epochs=1, history_path="h.txt"), ValueError, r"Invalid history_path: 'h\.txt'"),
        (
            dict(epochs=1, eval_data=(torch.zeros(0, 6), torch.zeros(0))),
            ValueError,
            r"Invalid eval_data: it holds no samples",
        ),
    ],
)
def test_bad_arguments(kwargs, error, message):
    X, y = _data()
    model = _model()
    with pytest.raises(error, match=message):
        fit(
            model,
            optimlab.SGD(model.parameters(), lr=0.1),
            MiniBatches(X, y, batch_size=10),
            progress=False,
            **kwargs,
        )


def test_plan_must_be_a_minibatch_plan():
    model = _model()
    with pytest.raises(TypeError, match=r"Invalid plan: list"):
        fit(model, optimlab.SGD(model.parameters(), lr=0.1), [], epochs=1)


@pytest.mark.parametrize("history", ["history.csv", "history.jsonl"])
@pytest.mark.parametrize("read_every", [1, 3])
def test_a_tensor_learning_rate_is_recorded_as_the_rate_each_step_used(
    tmp_path, history, read_every
):
    """lr=torch.tensor(...) (torch's form, which schedules write in place): each row holds the
    number its step used (the rows held the tensor itself: every row the last rate, a JSON
    history could not be written, a CSV one read 'tensor(0.0050)' a step late)."""
    from optimlab.schedules import step_decay

    X, y = _data()
    model = _model()
    opt = optimlab.SGD(model.parameters(), lr=torch.tensor(0.01))
    schedule = step_decay(0.01, gamma=0.5, step_size=1)
    result = fit(model, opt, MiniBatches(X, y, batch_size=20), epochs=2, schedule=schedule,
                 read_every=read_every, history_path=tmp_path / history, progress=False,
                 checkpoint_dir=tmp_path / "ckpt")  # fmt: skip
    # the schedule's value stored in a float32 tensor: rounded to float32, as torch would
    expected = [float(torch.tensor(schedule(k), dtype=torch.float32)) for k in range(10)]
    assert [row["lr"] for row in result.history] == expected
    assert [row["lr"] for row in read_history(tmp_path / history)] == expected


def test_reduce_on_plateau_follows_the_validation_loss():
    from optimlab.schedules import ReduceOnPlateau

    X, y = _data()
    model = _model()

    def flat_loss(out, target):  # constant value, zero gradient: the metric never improves
        return (out * 0).sum() + 1.0

    opt = optimlab.SGD(model.parameters(), lr=0.1)
    plateau = ReduceOnPlateau(1.0, factor=0.5, patience=0)
    result = fit(
        model,
        opt,
        MiniBatches(X, y, batch_size=50),
        epochs=3,
        loss_fn=flat_loss,
        schedule=plateau,
        eval_data=(X, y),
        progress=False,
    )
    # The first evaluation sets the best; each later flat one halves the rate (patience 0).
    assert [row["lr"] for row in result.history] == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5]
    assert opt.param_groups[0]["lr"] == plateau(0) == 0.25


def test_a_plateau_in_a_list_of_per_group_schedules_follows_the_metric_and_resumes(tmp_path):
    """schedule=[plateau, constant]: one schedule per parameter group. The plateau in the
    list is updated after every evaluation as the plateau alone is (it was never updated:
    its group's lr stayed put, silently), its state resumes, and it needs eval_data."""
    from optimlab.schedules import ReduceOnPlateau, constant

    X, y = _data()

    def flat_loss(out, target):  # constant value, zero gradient: the metric never improves
        return (out * 0).sum() + 1.0

    def run(epochs, folder=None, eval_data=(X, y)):
        torch.manual_seed(0)
        model = _model()
        weights = [p for p in model.parameters() if p.dim() > 1]
        biases = [p for p in model.parameters() if p.dim() == 1]
        opt = optimlab.SGD([{"params": weights}, {"params": biases}], lr=0.1)
        plateau = ReduceOnPlateau(1.0, factor=0.5, patience=0)
        fit(model, opt, MiniBatches(X, y, batch_size=50), epochs=epochs, loss_fn=flat_loss,
            schedule=[plateau, constant(0.1)], eval_data=eval_data, progress=False,
            checkpoint_dir=folder, resume=folder is not None)  # fmt: skip
        return [g["lr"] for g in opt.param_groups], plateau.state_dict()

    lrs, whole = run(4)
    # the first evaluation sets the best; each later flat one halves the rate (patience 0)
    assert lrs == [0.125, 0.1]
    run(2, tmp_path / "ckpt")
    assert run(4, tmp_path / "ckpt") == (lrs, whole)
    with pytest.raises(ValueError, match=r"ReduceOnPlateau schedule needs eval_data"):
        run(1, eval_data=None)


def test_reduce_on_plateau_needs_eval_data():
    from optimlab.schedules import ReduceOnPlateau

    X, y = _data()
    model = _model()
    with pytest.raises(ValueError, match=r"ReduceOnPlateau schedule needs eval_data"):
        fit(
            model,
            optimlab.SGD(model.parameters(), lr=0.1),
            MiniBatches(X, y, batch_size=10),
            epochs=1,
            schedule=ReduceOnPlateau(0.1),
            progress=False,
        )


# --- optimizers with evaluation weights (schedule-free, ASGD) ----------------------------------


def _hand_loop_schedule_free(X, y, epochs, batch_size=25):
    """The run fit must reproduce, written by hand: train at y, evaluate at x after each epoch."""
    model = _model()
    opt = optimlab.ScheduleFreeAdamW(model.parameters(), lr=0.05, warmup_steps=3)
    val_losses = []
    plan = MiniBatches(X, y, batch_size=batch_size, seed=0)
    for _ in range(epochs):
        for xb, yb in plan:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        opt.eval()
        with torch.no_grad():
            val_losses.append(float(torch.nn.functional.cross_entropy(model(X), y)))
        opt.train()
    opt.eval()
    return model, val_losses


def test_fit_evaluates_schedule_free_at_the_average_and_returns_it(tmp_path):
    X, y = _data()
    expected_model, expected_losses = _hand_loop_schedule_free(X, y, epochs=3)
    model = _model()
    opt = optimlab.ScheduleFreeAdamW(model.parameters(), lr=0.05, warmup_steps=3)
    result = fit(
        model, opt, MiniBatches(X, y, batch_size=25, seed=0), epochs=3, eval_data=(X, y),
        progress=False,
    )  # fmt: skip
    recorded = [row["val_loss"] for row in result.history if row.get("val_loss") is not None]
    # rel=1e-12: the same parameters (bitwise, below); fit's evaluation sums the 100 positive
    # losses in batches, the hand loop at once: within 100 ulp = 2e-14
    assert recorded == pytest.approx(expected_losses, rel=1e-12)
    # fit returns at the evaluation weights x, exactly where the hand-written loop ends
    for a, b in zip(model.parameters(), expected_model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert result.final_metrics["val_loss"] == pytest.approx(expected_losses[-1], rel=1e-12)
    # ...and they are not the training point y: the switch really happened
    opt.train()
    assert any(
        not torch.equal(a, b) for a, b in zip(model.parameters(), expected_model.parameters())
    )


def test_schedule_free_fit_resumes_exactly_from_its_checkpoints(tmp_path):
    X, y = _data()

    def run(epochs, folder, resume):
        model = _model()
        opt = optimlab.ScheduleFreeAdamW(model.parameters(), lr=0.05, warmup_steps=3)
        fit(
            model, opt, MiniBatches(X, y, batch_size=25, seed=0), epochs=epochs,
            eval_data=(X, y), checkpoint_dir=folder, resume=resume, progress=False,
        )  # fmt: skip
        return [p.detach().clone() for p in model.parameters()]

    straight = run(4, tmp_path / "straight", False)
    run(2, tmp_path / "split", False)  # ends in eval mode, its checkpoints at the training point
    resumed = run(4, tmp_path / "split", True)
    for a, b in zip(straight, resumed, strict=True):
        assert torch.equal(a, b)


def _tiny_run(tmp_path, optimizer_class, steps, resume=False, overrides=(), **hyper):
    torch.manual_seed(0)
    X, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    model = torch.nn.Linear(4, 2)
    optimizer = optimizer_class(model.parameters(), lr=0.01, **hyper)
    plan = MiniBatches(X, y, batch_size=8, shuffle=True, seed=0)
    return fit(
        model,
        optimizer,
        plan,
        steps=steps,
        checkpoint_dir=tmp_path / "checkpoints",
        resume=resume,
        resume_overrides=overrides,
        progress=False,
    )


def test_resuming_with_another_optimizer_is_refused_naming_both(tmp_path):
    _tiny_run(tmp_path, optimlab.Adam, 4)
    with pytest.raises(ValueError, match=r"written by optimlab\.optim\.adaptive\.Adam, this run "):
        _tiny_run(tmp_path, optimlab.AdamW, 8, resume=True)


def test_resuming_with_other_hyperparameters_is_refused_unless_named(tmp_path):
    _tiny_run(tmp_path, optimlab.AdamW, 4, weight_decay=0.1)
    with pytest.raises(ValueError, match=r"weight_decay: 0\.1 there, 0\.5 here.*resume_overrides"):
        _tiny_run(tmp_path, optimlab.AdamW, 8, resume=True, weight_decay=0.5)
    result = _tiny_run(
        tmp_path, optimlab.AdamW, 8, resume=True, overrides=("weight_decay",), weight_decay=0.5
    )
    assert result.resumed_from is not None and result.steps == 8


# --- one run state; history appended, never rewritten (issue 15) ---------------------------


def _history_run(tmp_path, steps, history_path=None, callbacks=(), resume=True):
    X, y = _data()
    model = _model()
    result = fit(
        model,
        optimlab.Adam(model.parameters(), lr=1e-2),
        MiniBatches(X, y, batch_size=25, seed=0),
        steps=steps,
        eval_data=(X, y),
        eval_every=2,
        checkpoint_dir=tmp_path / "ckpt",
        checkpoint_every=2,
        history_path=history_path,
        callbacks=callbacks,
        resume=resume,
        progress=False,
    )
    return model, result


def _without_seconds(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.mark.parametrize("suffix", [None, ".csv", ".jsonl"])
def test_history_is_appended_and_a_checkpoint_holds_its_position(tmp_path, suffix):
    from optimlab.train.checkpoint import load_checkpoint

    path = tmp_path / f"history{suffix}" if suffix else None
    _, whole = _history_run(tmp_path / "whole", 7, path and tmp_path / "whole" / path.name)
    # a run killed after step 5 wrote rows 5 (and its file line) after its last checkpoint
    _history_run(tmp_path / "cut", 5, path and tmp_path / "cut" / path.name)
    (tmp_path / "cut" / "ckpt" / "ckpt-00000005.pt").unlink()
    model, resumed = _history_run(tmp_path / "cut", 7, path and tmp_path / "cut" / path.name)
    assert resumed.resumed_from.name == "ckpt-00000004.pt"
    assert _without_seconds(resumed.history) == _without_seconds(whole.history)
    file = tmp_path / "cut" / (path.name if path else "ckpt/history.jsonl")
    assert _without_seconds(read_history(file)) == _without_seconds(whole.history)
    lines = [line for line in file.read_text().splitlines() if line.strip()]
    assert len(lines) == 7 + 3 + (suffix == ".csv")  # a row a step, a row an evaluation
    saved = load_checkpoint(tmp_path / "cut" / "ckpt" / "ckpt-00000006.pt")["history"]
    assert saved["rows"] == 6 and isinstance(saved["bytes"], int)
    assert [r["step"] for r in resumed.history if "val_loss" in r] == [2, 4, 6]


def test_a_checkpoint_that_holds_the_history_rows_still_resumes(tmp_path):
    # checkpoints written before issue 15 carried the rows themselves
    from optimlab.train.checkpoint import load_checkpoint, save_checkpoint

    _, whole = _history_run(tmp_path / "whole", 6)
    _, first = _history_run(tmp_path / "old", 4)
    newest = tmp_path / "old" / "ckpt" / "ckpt-00000004.pt"
    payload = load_checkpoint(newest)
    payload["history"] = [dict(r) for r in first.history]
    del payload["callbacks"]
    save_checkpoint(newest, payload)
    (tmp_path / "old" / "ckpt" / "history.jsonl").unlink()
    _, resumed = _history_run(tmp_path / "old", 6)
    assert resumed.resumed_from == newest
    assert _without_seconds(resumed.history) == _without_seconds(whole.history)


class _CountingCallback(Callback):
    def __init__(self):
        self.steps_seen = 0

    def on_step_end(self, state):
        self.steps_seen += 1

    def state_dict(self):
        return {"steps_seen": self.steps_seen}

    def load_state_dict(self, state):
        self.steps_seen = state["steps_seen"]


def test_callbacks_state_is_saved_and_restored(tmp_path):
    _history_run(tmp_path, 4, callbacks=[_CountingCallback()])
    counter = _CountingCallback()
    _history_run(tmp_path, 6, callbacks=[counter])
    assert counter.steps_seen == 6
