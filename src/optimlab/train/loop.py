"""The training loop: epochs of mini-batches, gradient accumulation, a schedule, clipping,
evaluation, early stopping, history, checkpoints and exact resume, readable top to bottom.

One optimizer step takes ``accumulation`` micro-batches from the plan and gives the same update
as one step on their concatenation: each micro-batch's mean loss is weighted by its share of the
effective batch, ``n_i / sum(n)``, so an uneven last micro-batch counts right (seed 004, 1.4).
The optimizer, the schedule and weight decay advance once per real step.

A checkpoint holds everything the next step depends on (:class:`RunState`, the one schema):
model, optimizer, schedule step, plan position, random generators (torch, NumPy, Python),
plateau, early stopping, callbacks' own state and where the history file stood. It is
written atomically (see :mod:`optimlab.train.checkpoint`), so a run killed at any moment, even
in the middle of writing, resumes from the newest good checkpoint and ends with bitwise the same
parameters as a run that was never interrupted.

Example::

    import torch, optimlab
    from optimlab.data import MiniBatches
    from optimlab.train import fit

    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    optimizer = optimlab.Adam(model.parameters(), lr=1e-3)
    plan = MiniBatches(X_train, y_train, batch_size=32, seed=0)
    result = fit(model, optimizer, plan, epochs=10,
                 schedule=optimlab.schedules.cosine_decay(1e-3, decay_steps=420),
                 eval_data=(X_val, y_val), checkpoint_dir="runs/digits", resume=True)
    print(result.history[-1])
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import checks, distributed
from ..data import MiniBatches
from ..optim.base import evaluation_weights
from ..schedules import ReduceOnPlateau, drive
from .checkpoint import CheckpointManager, capture_rng_state, restore_rng_state
from .clip import clip_grad_value, grad_norm_clipped

LOSS_POLICIES = ("raise", "skip")
PRECISIONS = ("fp32", "bf16", "fp16")
HISTORY_COLUMNS = (
    "step", "epoch", "loss", "lr", "samples", "seconds", "grad_norm", "val_loss", "val_accuracy",
    "skipped",
)  # fmt: skip


class NonFiniteLossError(FloatingPointError):
    """The loss was NaN or Inf; training stopped and wrote no checkpoint after it (before the
    step, where each step's loss is read before it is applied: see ``fit``'s ``read_every``)."""


#: how often ``fit`` reads the step losses from a device other than the CPU (see read_every)
DEVICE_READ_EVERY = 50


#: the signals that ask fit to save and stop (clusters send SIGTERM before they kill)
PREEMPT_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")


@dataclass
class EarlyStopping:
    """Stop when ``metric`` has not improved by ``min_delta`` for ``patience`` evaluations.

    ``mode="min"`` for losses, ``"max"`` for accuracies. Its state (best value, evaluations
    without improvement) is saved in checkpoints.
    """

    metric: str = "val_loss"
    patience: int = 5
    mode: str = "min"
    min_delta: float = 0.0
    best: float | None = None
    bad_evaluations: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"Invalid mode: {self.mode!r}; expected 'min' or 'max'")
        if (
            isinstance(self.patience, bool)
            or not isinstance(self.patience, int)
            or self.patience < 1
        ):
            raise ValueError(f"Invalid patience: {self.patience!r}; expected an int >= 1")
        if not (isinstance(self.min_delta, (int, float)) and self.min_delta >= 0):
            raise ValueError(f"Invalid min_delta: {self.min_delta!r}; expected a number >= 0")

    def update(self, value: float) -> bool:
        """Record one evaluation; return True when training should stop."""
        sign = 1.0 if self.mode == "min" else -1.0
        if self.best is None or sign * (self.best - value) > self.min_delta:
            self.best, self.bad_evaluations = value, 0
        else:
            self.bad_evaluations += 1
        return self.fired

    @property
    def fired(self) -> bool:
        """Whether the evaluations so far say stop (kept in checkpoints, so a resumed run
        that had stopped stays stopped)."""
        return self.bad_evaluations >= self.patience

    @property
    def reason(self) -> str:
        return f"early stopping: {self.metric} did not improve for {self.patience} evaluations"

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_evaluations": self.bad_evaluations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_evaluations = state["best"], int(state["bad_evaluations"])


@dataclass
class TrainState:
    """What callbacks see: the objects being trained and where training stands."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step: int = 0
    epoch: int = 0
    samples: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None  # a callback sets it to stop training


@dataclass
class TrainResult:
    """The outcome of :func:`fit`: the history of every step and why training ended."""

    history: list[dict[str, Any]]
    steps: int
    epochs: int
    stop_reason: str
    resumed_from: Path | None
    final_metrics: dict[str, float]


class Callback:
    """Override any of these; each gets the :class:`TrainState`.

    A callback with state of its own that decides what it does next (a counter, a best value)
    may also define ``state_dict()`` and ``load_state_dict(state)``: the state then goes into
    every checkpoint and comes back on resume (matched by position in ``callbacks``).

    ``state.history`` holds the steps whose values were read: on a GPU, ``on_step_end`` may
    run a few steps ahead of it (see ``fit``'s ``read_every``); ``on_epoch_end`` and
    ``on_train_end`` see every step.
    """

    def on_step_end(self, state: TrainState) -> None: ...

    def on_epoch_end(self, state: TrainState) -> None: ...

    def on_train_end(self, state: TrainState) -> None: ...


def evaluate(
    model: torch.nn.Module,
    data: Any,
    loss_fn: Callable[..., torch.Tensor],
    *,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Mean loss (and accuracy, for integer class targets) of ``model`` on ``data``.

    ``data`` is ``(X, y)`` tensors or an iterable of ``(X, y)`` batches. The model is put in
    eval mode for the pass and back in its previous mode after it.
    """
    batches: Iterable[Any]
    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
        X, y = data
        batches = (
            (X[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(X), batch_size)
        )
    else:
        batches = data
    device = _model_device(model)
    was_training = model.training
    model.eval()
    # Sums kept on the device and read once at the end: no batch waits for the one before
    total_loss = correct = torch.zeros((), dtype=_sum_dtype(device), device=device)
    count, classification = 0, True
    with torch.no_grad():
        for xb, yb in batches:
            xb, yb = xb.to(device), yb.to(device)
            out = model(xb)
            n = len(xb)
            total_loss = total_loss + loss_fn(out, yb).detach().to(total_loss.dtype) * n
            count += n
            classification = classification and not yb.is_floating_point() and out.dim() == 2
            if classification:
                correct = correct + (out.argmax(1) == yb).sum()
    model.train(was_training)
    if count == 0:
        raise ValueError("Invalid eval_data: it holds no samples")
    loss_sum, right = torch.stack([total_loss, correct.to(total_loss.dtype)]).tolist()
    metrics = {"loss": loss_sum / count}
    if classification:
        metrics["accuracy"] = int(right) / count
    return metrics


def _read_every(device: torch.device, nonfinite_loss: str) -> int:
    """``fit``'s default ``read_every``: every step on the CPU or where a step depends on its
    loss (``nonfinite_loss="skip"``), else :data:`DEVICE_READ_EVERY`."""
    return 1 if device.type == "cpu" or nonfinite_loss == "skip" else DEVICE_READ_EVERY


def _floats(values: list[Any]) -> list[Any]:
    """``values`` with each tensor read as a number: one transfer per device, the only wait for
    it (others as they are)."""
    found = list(values)
    places: dict[torch.device, list[int]] = {}
    for i, value in enumerate(found):
        if torch.is_tensor(value):
            places.setdefault(value.device, []).append(i)
    for device, where in places.items():
        read = torch.stack([found[i].reshape(()).to(_sum_dtype(device)) for i in where]).tolist()
        for i, value in zip(where, read):
            found[i] = value
    return found


def _sum_dtype(device: torch.device) -> torch.dtype:
    """The dtype of sums of losses on ``device``: float64, as Python's floats (the CPU path
    adds ``loss.item() * n`` in them), except where the device has none (Apple's MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class _History:
    """The rows of the history: kept in memory (for :class:`TrainResult`) and appended to a
    file, never rewritten. A step is one row; an evaluation is a row of its own (step, epoch
    and the ``val_*`` values, no loss) that readers merge into the step row it follows, as the
    in-memory rows have it. A checkpoint stores where the file stood (:meth:`position`); a
    resumed run cuts the file back there and reads its rows back (:meth:`start`)."""

    def __init__(self, path: Path | None, *, write: bool, live: bool) -> None:
        self.rows: list[dict[str, Any]] = []
        self.path = path
        self.write = write and path is not None  # under torchrun rank 0 writes, others read
        self.live = live  # the user's file: each row reaches it at once (tail -f)
        self._file: Any = None
        self._csv: Any = None

    def start(self, saved: Any = None) -> None:
        """Open the file: anew, or where a checkpoint's history ``saved`` left it."""
        if isinstance(saved, list):  # a checkpoint of before issue 15: it holds the rows
            self.rows = [dict(r) for r in saved]
        elif saved is not None and saved.get("bytes") is not None:
            self.rows = self._read_back(saved)
        if not self.write:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cut = isinstance(saved, dict) and saved.get("bytes") is not None
        if cut:
            with open(self.path, "r+b") as f:  # rows written after that checkpoint go
                f.truncate(saved["bytes"])
        self._file = open(self.path, "a" if cut else "w", newline="", encoding="utf-8")
        if self.path.suffix == ".csv":
            self._csv = csv.DictWriter(self._file, HISTORY_COLUMNS, extrasaction="ignore")
            if not cut:
                self._csv.writeheader()
        if not cut:
            for row in self.rows:  # (an old checkpoint's rows, written once)
                self._write(row)
            self._file.flush()

    def _read_back(self, saved: dict[str, Any]) -> list[dict[str, Any]]:
        size = self.path.stat().st_size if self.path is not None and self.path.exists() else -1
        if size < saved["bytes"]:
            raise ValueError(
                f"Cannot resume the history: the checkpoint's history is the first "
                f"{saved['bytes']} bytes of {saved.get('file')}, but {self.path} holds "
                f"{max(size, 0)}. Put that file back, or start a new run in another folder."
            )
        with open(self.path, "rb") as f:
            text = f.read(saved["bytes"]).decode("utf-8")
        rows = _parse_history(text, self.path.suffix)
        if len(rows) != saved["rows"]:
            raise ValueError(
                f"Cannot resume the history: {self.path} holds {len(rows)} rows where the "
                f"checkpoint counted {saved['rows']}"
            )
        return rows

    def _write(self, row: dict[str, Any]) -> None:
        if self._csv is not None:
            self._csv.writerow(row)
        else:
            self._file.write(json.dumps(row) + "\n")
        if self.live:
            self._file.flush()

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self._file is not None:
            self._write(row)

    def append_evaluation(self, step: int, epoch: int, values: dict[str, Any]) -> None:
        """An evaluation after ``step``: merged into that row in memory, a row in the file."""
        if not self.rows:
            return
        self.rows[-1].update(values)
        if self._file is not None:
            self._write({"step": step, "epoch": epoch, **values})

    def position(self) -> dict[str, Any]:
        """Where the history stands, for a checkpoint: rows in memory, bytes in the file."""
        if self._file is None:
            return {"rows": len(self.rows), "bytes": None, "file": None}
        self._file.flush()
        size = os.fstat(self._file.fileno()).st_size
        return {"rows": len(self.rows), "bytes": size, "file": str(self.path)}

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _history_file(
    history_path: str | os.PathLike[str] | None, checkpoint_dir: str | os.PathLike[str] | None
) -> Path | None:
    """Where the history is written: ``history_path``, else beside the checkpoints (whose
    positions in it let a resumed run give the whole history), else nowhere."""
    if history_path is not None:
        path = Path(history_path)
        if path.suffix not in (".csv", ".jsonl"):
            raise ValueError(
                f"Invalid history_path: {str(history_path)!r}; expected a .csv or .jsonl file"
            )
        return path
    return Path(checkpoint_dir) / "history.jsonl" if checkpoint_dir is not None else None


def read_history(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a history written by :func:`fit` (``.csv`` or ``.jsonl``) back into rows: one a
    step, with the evaluation that followed the step (``val_loss``, ...) merged into its row."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        return _parse_history(f.read(), path.suffix)


def _parse_history(text: str, suffix: str) -> list[dict[str, Any]]:
    if suffix == ".jsonl":
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        lines = []
        for raw in csv.DictReader(io.StringIO(text, newline="")):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if value in ("", None) or key is None:
                    continue
                if key == "skipped":
                    row[key] = value == "True"
                else:
                    row[key] = int(value) if key in ("step", "epoch", "samples") else float(value)
            lines.append(row)
    rows: list[dict[str, Any]] = []
    for line in lines:
        if "loss" not in line and rows:  # an evaluation: it belongs to the step before it
            rows[-1].update({k: v for k, v in line.items() if k not in ("step", "epoch")})
        else:
            rows.append(line)
    return rows


@dataclass(eq=False)
class RunState(TrainState):
    """Everything that decides what a run does next, and the one checkpoint schema.

    Besides what callbacks see (:class:`TrainState`): the plan's position, the schedule's
    driver, the plateau, early stopping, the gradient scaler, the callbacks' own state (those
    with ``state_dict``/``load_state_dict``), the random generators and where the history
    stands. :meth:`state_dict` is collective under torchrun (sharded state is gathered; rank 0
    writes what it returns); ``fit`` calls it only where the state is complete (after a step,
    or after an epoch's end for an epoch's last step).
    """

    plan: Any = None
    driver: Any = None
    #: the ReduceOnPlateau schedules among the schedule's (one, or one per group)
    plateaus: tuple[ReduceOnPlateau, ...] = ()
    early_stopping: EarlyStopping | None = None
    scaler: Any = None
    callbacks: Sequence[Callback] = ()
    log: Any = None  # the _History
    net: Any = None  # the model as trained (DDP, FSDP) or the model itself
    ranks: Any = None
    run_id: str | None = None  # which run wrote a checkpoint (fit's ``run_id``)

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer_class": _qualified_name(self.optimizer),
            "optimizer_defaults": _hyperparameters(self.optimizer),
            "model": distributed.model_state(self.net),
            "optimizer": distributed.optimizer_state(self.optimizer, self.net),
            "plan": self.plan.state_dict(),
            "schedule": _state_of(self.driver),
            "plateau": [p.state_dict() for p in self.plateaus],
            "early_stopping": _state_of(self.early_stopping),
            "grad_scaler": _state_of(self.scaler),
            "step": self.step,
            "epoch": self.epoch,
            "samples": self.samples,
            "history": self.log.position(),  # where the history file stood, not its rows
            "callbacks": [_state_of(c) for c in self.callbacks],
            "rng": self.ranks.gather(capture_rng_state()),
            "run_id": self.run_id,
        }  # fmt: skip

    def load_state_dict(self, payload: dict[str, Any], keep: Sequence[dict] = ()) -> None:
        """Continue from ``payload`` (the optimizer's hyperparameters checked by the caller);
        ``keep``: per group, the hyperparameters this run changes on purpose."""
        distributed.load_model_state(self.net, payload["model"])
        distributed.load_optimizer_state(self.optimizer, self.net, payload["optimizer"])
        for group, values in zip(self.optimizer.param_groups, keep):
            group.update(values)
        self.plan.load_state_dict(_plan_state_for(self.plan, payload["plan"]))
        if self.driver is not None:
            self.driver.load_state_dict(payload["schedule"])
        if self.plateaus:
            saved = payload["plateau"]
            saved = [saved] if isinstance(saved, dict) else saved  # (one, as written before)
            for plateau, state in zip(self.plateaus, saved, strict=True):
                plateau.load_state_dict(state)
            self.driver.apply()
        if self.early_stopping is not None and payload["early_stopping"] is not None:
            self.early_stopping.load_state_dict(payload["early_stopping"])
            if self.early_stopping.fired:  # it had stopped the run: it stays stopped
                self.stop_reason = self.early_stopping.reason
        if self.scaler is not None and payload.get("grad_scaler"):
            self.scaler.load_state_dict(payload["grad_scaler"])
        saved_callbacks = payload.get("callbacks") or []
        for callback, saved in zip(self.callbacks, saved_callbacks):
            if saved is not None and hasattr(callback, "load_state_dict"):
                callback.load_state_dict(saved)
        self.step, self.epoch, self.samples = payload["step"], payload["epoch"], payload["samples"]
        self.log.start(payload["history"])
        self.history = self.log.rows
        # Each rank continues with its own generators; on another number of processes every
        # rank takes rank 0's.
        rng = payload["rng"]
        restore_rng_state(rng[self.ranks.rank] if len(rng) == self.ranks.world_size else rng[0])


def _state_of(thing: Any) -> Any:
    """``thing.state_dict()`` where it has one (None for what a run does not use)."""
    method = getattr(thing, "state_dict", None)
    return method() if callable(method) else None


@dataclass(eq=False)
class _Trainer:
    """A step, an evaluation and a checkpoint of one run: the settings that stay fixed for the
    run, so the per-step code does no work for features not in use (its cost per step is
    measured against a hand-written loop by ``optimlab bench``)."""

    run: RunState
    loss_fn: Callable[..., torch.Tensor]
    device: torch.device
    accumulation: int
    clip_norm: float | None
    clip_value: float | None
    nonfinite_loss: str
    autocast_dtype: torch.dtype | None
    eval_data: Any
    plateau_metric: str
    checkpoints: CheckpointManager | None
    writer: Any
    epochs: int | None
    steps: int | None
    read_every: int = 1
    started: float = 0.0
    last_saved: int | None = None

    def __post_init__(self) -> None:
        self.data_parallel = distributed.is_data_parallel(self.run.net)
        self.world_size, self.active = self.run.ranks.world_size, self.run.ranks.active
        #: the rows of the steps whose values are not read yet, each with its global batch
        #: size (the loss is this rank's sum until then)
        self.pending: list[tuple[dict[str, Any], float]] = []

    def batches(self) -> Iterable[tuple[list[tuple[torch.Tensor, ...]], float]]:
        """The micro-batches of each step of the epoch (``accumulation`` of them, or what is
        left of the epoch) and the step's global effective batch: their samples over all
        ranks, which every rank knows from the plan (no collective, no wait)."""
        plan = self.run.plan
        epoch, group, total = plan.epoch, [], 0
        index = plan.position  # the next batch's place in the epoch
        for batch in plan:
            group.append(batch)
            total += plan.global_batch_size(index)
            index += 1
            if len(group) < self.accumulation and plan.position < len(plan) and plan.epoch == epoch:
                continue
            yield group, float(total)
            group, total = [], 0

    def step(self, micro_batches: list[tuple[torch.Tensor, ...]], total: float) -> bool:
        """One optimizer step on ``micro_batches``, ``total`` samples over all ranks; False
        where a non-finite loss made it skip (``"skip"``)."""
        run, optimizer = self.run, self.run.optimizer
        sizes = [mb[0].shape[0] for mb in micro_batches]
        optimizer.zero_grad(set_to_none=True)
        loss_sum = self._backward(micro_batches, sizes, total)
        if loss_sum is None:
            return False
        if run.scaler is not None:
            run.scaler.unscale_(optimizer)
        grad_norm = None
        if self.clip_norm is not None:
            grad_norm = grad_norm_clipped(run.model.parameters(), self.clip_norm)
        if self.clip_value is not None:
            clip_grad_value(run.model.parameters(), self.clip_value)
        lr = optimizer.param_groups[0]["lr"]
        if torch.is_tensor(lr):  # the rate of this step: the tensor is changed in place later
            lr = lr.detach().clone()  # (on its device, read with the losses)
        if run.scaler is not None:
            run.scaler.step(optimizer)
            run.scaler.update()
        else:
            optimizer.step()
        run.step += 1
        run.samples += int(total)
        if run.driver is not None:
            run.driver.step()
        # The row holds this rank's loss sum (on the device, where it is read later) until
        # read() makes it the mean loss over the global effective batch
        row = {"step": run.step, "epoch": run.epoch, "loss": loss_sum, "lr": lr,
               "samples": run.samples, "seconds": time.perf_counter() - self.started}  # fmt: skip
        if grad_norm is not None:
            row["grad_norm"] = grad_norm
        self.pending.append((row, total))
        if run.step % self.read_every == 0:
            self.read()
        return True

    def read(self) -> None:
        """Read the values of the steps since the last read (one transfer from the device, the
        only wait for it) and record them: the history, TensorBoard.

        Called after every ``read_every`` steps, before every evaluation, checkpoint and
        epoch's end, and at the end. A non-finite loss found here raises
        :class:`NonFiniteLossError` (rows before it are recorded)."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        run = self.run
        count = len(pending)
        values = _floats(
            [row.get(key) for key in ("loss", "grad_norm", "lr") for row, _ in pending]
        )
        sums, norms, lrs = values[:count], values[count : 2 * count], values[2 * count :]
        if self.active and self.read_every > 1:  # (read every step: summed in _backward)
            sums = run.ranks.sum(sums, self.device)
        for (row, total), loss_sum, norm, lr in zip(pending, sums, norms, lrs):
            loss = loss_sum / total  # the mean over the global effective batch
            if not math.isfinite(loss):
                raise NonFiniteLossError(
                    f"The loss is {loss} at epoch {row['epoch']}, step {row['step']}, read at "
                    f"step {run.step} (on {self.device.type}, fit reads the losses every "
                    f"{self.read_every} steps so that no step waits for the device): steps "
                    f"{row['step']} to {run.step} were applied, and no checkpoint holds them. "
                    "Lower the learning rate, clip gradients, or pass read_every=1 to check "
                    "each step's loss before it is applied (nonfinite_loss='skip' does, and "
                    "drops such steps)."
                )
            row["loss"], row["lr"] = loss, lr
            if norm is not None:
                row["grad_norm"] = norm
            run.log.append(row)
            if self.writer is not None:
                self.writer.add_scalar("loss", loss, row["step"])
                self.writer.add_scalar("lr", row["lr"], row["step"])

    def _backward(
        self, micro_batches: list, sizes: list[int], total: float
    ) -> float | torch.Tensor | None:
        """Forward and backward over the micro-batches; the summed loss (this rank's, times
        the micro-batch sizes), or None (skipped). Read at once when every step is read
        (``read_every=1``; under torchrun, summed over the ranks), else left on the device.

        Each micro-batch's mean loss is weighted by its share of the global effective batch,
        times world_size because DDP averages gradients over the ranks."""
        net, device, last = self.run.net, self.device, len(micro_batches) - 1
        deferred = self.read_every > 1
        loss_sum: float | torch.Tensor = 0.0
        for i, (xb, yb) in enumerate(micro_batches):
            if xb.device != device:
                xb = xb.to(device, non_blocking=True)
            if yb.device != device:
                yb = yb.to(device, non_blocking=True)
            n = sizes[i]
            weight = n * self.world_size / total
            if self.autocast_dtype is None:
                loss = self.loss_fn(net(xb), yb)
            else:
                with torch.autocast(device.type, dtype=self.autocast_dtype):
                    loss = self.loss_fn(net(xb), yb)
            if deferred:  # (in float64, as the Python floats of the other branch)
                loss_sum = loss_sum + loss.detach().to(_sum_dtype(device)) * n
            else:
                value = loss.item()
                finite = math.isfinite(value)
                if self.active:  # every rank must take the same decision, or collectives hang
                    finite = self.run.ranks.sum([float(not finite)], device)[0] == 0
                if not finite:
                    self._nonfinite(value, f"micro-batch {i + 1} of {len(micro_batches)}")
                    return None
                loss_sum += value * n
            # A weight of exactly 1 (one micro-batch on one process) changes no bit of the loss
            # or of any gradient, so the multiplication (and its backward node) is skipped.
            scaled = loss if weight == 1.0 else loss * weight
            if self.run.scaler is not None:
                scaled = self.run.scaler.scale(scaled)
            # Only the last micro-batch of a step all-reduces gradients (DDP's no_sync).
            if i == last or not self.data_parallel:
                scaled.backward()
            else:
                with net.no_sync():
                    scaled.backward()
        if not deferred and self.active:
            (loss_sum,) = self.run.ranks.sum([loss_sum], device)
        return loss_sum

    def _nonfinite(self, value: float, where: str) -> None:
        run = self.run
        if self.nonfinite_loss == "raise":
            raise NonFiniteLossError(
                f"The loss is {value} at epoch {run.epoch}, step {run.step + 1}, {where}; "
                "training stopped and no checkpoint was written. Lower the learning rate, "
                "clip gradients, or pass nonfinite_loss='skip' to drop such steps."
            )
        run.optimizer.zero_grad(set_to_none=True)
        run.log.append({"step": run.step, "epoch": run.epoch, "loss": value, "skipped": True})

    def evaluation(self) -> bool:
        """Evaluate, record, update the plateau and early stopping; True when it says stop."""
        run = self.run
        if self.eval_data is None:
            return False
        self.read()  # (the evaluation's values join the row of the step before it)
        with evaluation_weights(run.optimizer):  # schedule-free methods evaluate their average
            metrics = evaluate(run.model, self.eval_data, self.loss_fn)
        values = {f"val_{k}": v for k, v in metrics.items()}
        run.log.append_evaluation(run.step, run.epoch, values)
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, run.step)
        if run.plateaus:
            metric = _metric(values, self.plateau_metric, "plateau_metric")
            for plateau in run.plateaus:
                plateau.update(metric)
            run.driver.apply()
        stopping = run.early_stopping
        if stopping is not None:
            if stopping.update(_metric(values, stopping.metric, "early_stopping.metric")):
                run.stop_reason = stopping.reason
                return True
        return False

    def save(self) -> None:
        """Write a checkpoint of the run state (once a step); read the steps' values first (a
        checkpoint holds the history as far as its step, and no non-finite loss)."""
        self.read()
        run = self.run
        if self.checkpoints is None or self.last_saved == run.step:
            return
        self.last_saved = run.step
        payload = run.state_dict()  # gathering sharded state is collective: every rank
        if run.ranks.is_main:
            self.checkpoints.save(run.step, payload)
        run.ranks.barrier()  # no rank runs ahead of a checkpoint that is not yet on disk

    def finished(self) -> bool:
        run = self.run
        if run.stop_reason is not None:
            return True
        if self.steps is not None and run.step >= self.steps:
            run.stop_reason = f"reached {self.steps} steps"
            return True
        if self.epochs is not None and run.epoch >= self.epochs:
            run.stop_reason = f"reached {self.epochs} epochs"
            return True
        return False

    def due(self, every: int | None) -> bool:
        return every is not None and self.run.step % every == 0


def _metric(values: dict[str, float], name: str, argument: str) -> float:
    if name not in values:
        raise ValueError(f"Invalid {argument}: {name!r}; evaluation gives {sorted(values)}")
    return values[name]


def _check_arguments(
    *,
    plan: Any,
    epochs: int | None,
    steps: int | None,
    nonfinite_loss: str,
    precision: str,
    resume: bool,
    checkpoint_dir: Any,
    device: torch.device,
    schedule: Any,
    eval_data: Any,
    **numbers: float | None,
) -> None:
    """Check fit's arguments before touching anything."""
    if epochs is None and steps is None:
        raise ValueError("Give epochs or steps (or both): fit needs to know when to stop")
    for name in ("epochs", "steps", "accumulation", "eval_every", "checkpoint_every", "read_every"):
        value = {"epochs": epochs, "steps": steps, **numbers}[name]
        checks.positive_count(name, value, optional=name != "accumulation")
    if nonfinite_loss not in LOSS_POLICIES:
        raise ValueError(f"Invalid nonfinite_loss: {nonfinite_loss!r}; expected 'raise' or 'skip'")
    if nonfinite_loss == "skip" and numbers["read_every"] not in (None, 1):
        raise ValueError(
            f"Invalid read_every: {numbers['read_every']!r} with nonfinite_loss='skip'; whether "
            "a step is applied depends on its loss, so it is read every step: pass 1 or None"
        )
    if precision not in PRECISIONS:
        raise ValueError(f"Invalid precision: {precision!r}; expected one of {PRECISIONS}")
    if not isinstance(plan, MiniBatches):
        raise TypeError(f"Invalid plan: {type(plan).__name__}; expected optimlab.data.MiniBatches")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir: the folder to resume from")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("Invalid precision: 'fp16' needs a CUDA model; use 'bf16' on the CPU")
    for name in ("clip_norm", "clip_value"):
        value = numbers[name]
        if value is not None and not (
            isinstance(value, (int, float)) and value > 0 and math.isfinite(value)
        ):
            raise ValueError(f"Invalid {name}: {value!r}; expected a finite number > 0")
    if _plateaus(schedule) and eval_data is None:
        raise ValueError("A ReduceOnPlateau schedule needs eval_data: it follows a metric")


def _plateaus(schedule: Any) -> tuple[ReduceOnPlateau, ...]:
    """The ReduceOnPlateau schedules of ``schedule``: itself, or those of its per-group list."""
    schedules = schedule if isinstance(schedule, (list, tuple)) else [schedule]
    return tuple(s for s in schedules if isinstance(s, ReduceOnPlateau))


def _resume(
    run: RunState, checkpoints: CheckpointManager | None, overrides: Sequence[str]
) -> Path | None:
    """Load the newest good checkpoint into ``run``; its path, or None (a new run)."""
    found = None
    if checkpoints is not None:
        device = _model_device(run.model)

        def validate(payload: Any) -> None:
            _complete_payload(payload)
            _same_run(payload, run.run_id)

        found = checkpoints.load_latest(map_location=device, validate=validate)
    if found is None:
        run.log.start()
        return None
    path, payload = found
    kept = _check_same_optimizer(run.optimizer, payload, overrides, path)
    run.load_state_dict(payload, keep=kept)
    return path


def fit(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    plan: MiniBatches,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    loss_fn: Callable[..., torch.Tensor] = torch.nn.functional.cross_entropy,
    schedule: Callable[[int], float] | Sequence[Callable[[int], float]] | None = None,
    plateau_metric: str = "val_loss",
    accumulation: int = 1,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    eval_data: Any = None,
    eval_every: int | None = None,
    early_stopping: EarlyStopping | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int | None = None,
    keep_last: int = 3,
    resume: bool = False,
    history_path: str | os.PathLike[str] | None = None,
    tensorboard_dir: str | os.PathLike[str] | None = None,
    precision: str = "fp32",
    nonfinite_loss: str = "raise",
    read_every: int | None = None,
    progress: bool | None = None,
    resume_overrides: Sequence[str] = (),
    preempt_signals: Sequence[str] = PREEMPT_SIGNALS,
    run_id: str | None = None,
) -> TrainResult:
    """Train ``model`` with ``optimizer`` on the batches of ``plan``.

    Training ends after ``epochs`` epochs or ``steps`` optimizer steps, whichever comes first
    (give at least one), when early stopping fires, or when a callback sets
    ``state.stop_reason``. ``eval_data`` (``(X, y)`` or an iterable of batches) is evaluated at
    the end of every epoch, or every ``eval_every`` steps. ``schedule`` (a pure
    ``lr(step)``, see :mod:`optimlab.schedules`) sets the learning rate before every step;
    a :class:`~optimlab.schedules.ReduceOnPlateau` (alone, or in a list of one schedule per
    parameter group) is instead updated with ``plateau_metric`` after every evaluation.

    With ``checkpoint_dir``, a checkpoint is written every ``checkpoint_every`` steps (default:
    at the end of every epoch) and at the end; ``keep_last`` are kept. With ``resume=True``
    training continues from the newest good checkpoint there, if any, exactly where it stopped.

    Optimizers that take gradients at one point and are evaluated at another
    (:class:`~optimlab.ScheduleFreeAdamW`, :class:`~optimlab.ScheduleFreeSGD`, the averages of
    :class:`~optimlab.ASGD`) are evaluated at their evaluation weights
    (:func:`~optimlab.evaluation_weights`), and ``fit`` returns with ``optimizer.eval()``
    called: the model then holds the weights to evaluate and save (call ``optimizer.train()``
    before stepping on by hand; ``fit`` does it itself). Checkpoints hold the training point.

    ``precision="bf16"`` runs the forward pass under ``torch.autocast`` in bfloat16 (CPU or
    CUDA); ``"fp16"`` (CUDA only) adds gradient scaling. ``nonfinite_loss="raise"`` stops with
    :class:`NonFiniteLossError` naming the epoch and step; ``"skip"`` drops that step (no
    update, no schedule advance) and records it in the history.

    ``read_every``: how often the host reads the step losses (and clipped gradient norms) from
    the model's device, in one transfer: every step on the CPU, where reading costs nothing;
    on a GPU every :data:`DEVICE_READ_EVERY` (50) steps, and before every evaluation,
    checkpoint and epoch's end, so that the host never waits for the device within a step
    and keeps queueing work. Until then the history (``state.history`` for callbacks, the
    file, TensorBoard, the progress bar) holds the steps read so far, and a non-finite loss
    raises when it is read, after the steps up to the read were applied (no checkpoint holds
    them: one is written only after a read; optimlab's optimizers refuse a step whose
    gradients are not finite themselves, on the device, see ``nonfinite_grads``).
    ``read_every=1`` reads each loss before its step is applied, as ``nonfinite_loss="skip"``
    must (it then defaults to 1 everywhere).

    A progress bar (tqdm) shows
    epoch, step, loss, lr and samples per second when the output is a terminal (``progress``
    forces it on or off).

    A resumed run must be the run that was saved: a checkpoint of another optimizer class, or
    with other optimizer hyperparameters (its constructor's arguments), is refused, naming
    both; ``resume_overrides`` names the hyperparameters this run may change on purpose (a
    planned change of learning rate: ``("lr",)``), whose values then come from ``optimizer``.
    A checkpoint that loads but lacks what a run needs is reported by name and the previous one
    is used; so is one written by another run, where ``run_id`` (any string naming this run,
    kept across resumes; it goes into every checkpoint) says which run is resumed.

    Preemption: the first of ``preempt_signals`` (``SIGTERM``, ``SIGINT``, ``SIGUSR1`` by
    default) to arrive makes ``fit`` finish the current step, write a checkpoint (with
    ``checkpoint_dir``), say on one line where it is and how to resume, and stop: with
    :class:`Preempted`, a ``SystemExit`` whose code is the shell's ``128 + signal`` (143 for
    SIGTERM), or ``KeyboardInterrupt`` for SIGINT (130 from the command line). A second signal
    stops at once. Handlers are installed only in the main thread and only for the call.
    """
    # -- check the arguments before touching anything --------------------------------------
    device = _model_device(model)
    _check_arguments(
        plan=plan, epochs=epochs, steps=steps, accumulation=accumulation, eval_every=eval_every,
        checkpoint_every=checkpoint_every, nonfinite_loss=nonfinite_loss, precision=precision,
        read_every=read_every,
        clip_norm=clip_norm, clip_value=clip_value, resume=resume, checkpoint_dir=checkpoint_dir,
        device=device, schedule=schedule, eval_data=eval_data,
    )  # fmt: skip
    distributed.check_zero(optimizer)

    # -- set up: under torchrun, DDP (unless already wrapped or sharded) and this rank's share
    # of every global batch; on one process both are the model and the plan themselves
    ranks = distributed.context()
    net = ranks.wrap(model)
    plan = ranks.share(plan)
    model = distributed.unwrap(net)
    history = _History(
        _history_file(history_path, checkpoint_dir),
        write=ranks.is_main,
        live=history_path is not None,
    )
    run = RunState(
        model=model, optimizer=optimizer, epoch=plan.epoch, plan=plan, net=net, ranks=ranks,
        driver=drive(optimizer, schedule) if schedule is not None else None,
        plateaus=_plateaus(schedule),
        early_stopping=early_stopping, callbacks=tuple(callbacks), log=history,
        scaler=torch.amp.GradScaler("cuda") if precision == "fp16" else None, run_id=run_id,
    )  # fmt: skip
    checkpoints = CheckpointManager(checkpoint_dir, keep_last=keep_last) if checkpoint_dir else None
    trainer = _Trainer(
        run, loss_fn, device, accumulation, clip_norm, clip_value, nonfinite_loss,
        {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision), eval_data,
        plateau_metric, checkpoints, None, epochs, steps,
        read_every or _read_every(device, nonfinite_loss),
    )  # fmt: skip

    # -- resume ------------------------------------------------------------------------------
    resumed_from = _resume(run, checkpoints if resume else None, resume_overrides)
    run.history = history.rows
    trainer.last_saved = run.step if resumed_from is not None else None

    # -- the loop: epochs of steps; evaluation and checkpoints where due ----------------------
    trainer.writer = _tensorboard_writer(tensorboard_dir) if ranks.is_main else None
    trainer.started = time.perf_counter()
    total_steps = steps if steps is not None else epochs * math.ceil(len(plan) / accumulation)
    bar = _progress_bar(progress, total=total_steps, initial=run.step) if ranks.is_main else None
    model.train()
    _switch(optimizer, "train")  # a checkpoint saved at evaluation weights resumes training
    preemption = _Preemption(preempt_signals)
    try:
        while not trainer.finished():
            epoch_before = plan.epoch
            preempted = False
            for micro_batches, total in trainer.batches():
                if not trainer.step(micro_batches, total):
                    continue  # a non-finite loss, skipped
                for callback in callbacks:
                    callback.on_step_end(run)
                _update_bar(bar, run, history, trainer.started)
                stop = trainer.due(eval_every) and trainer.evaluation()
                # A checkpoint holds a complete state: the last step of an epoch is saved
                # after the epoch's end (its counter, evaluation, plateau, callbacks).
                within_epoch = plan.epoch == epoch_before
                if within_epoch and trainer.due(checkpoint_every):
                    trainer.save()
                preempted = preemption.requested(ranks, device)
                if preempted and within_epoch:
                    trainer.save()
                    preemption.stop(run.step, checkpoints)
                if stop or trainer.finished() or preempted:  # (at an epoch's end: below)
                    break
            if plan.epoch != epoch_before:  # the epoch ran to its end
                trainer.read()
                run.epoch = plan.epoch
                stop = eval_every is None and trainer.evaluation()
                for callback in callbacks:
                    callback.on_epoch_end(run)
                if not stop and (checkpoint_every is None or trainer.due(checkpoint_every)):
                    trainer.save()
                if preempted:  # at the epoch's last step: saved after the epoch's end
                    trainer.save()
                    preemption.stop(run.step, checkpoints)
        if preemption.drain():  # a signal the ranks had not all read yet: as if read now
            trainer.save()
            preemption.stop(run.step, checkpoints)
        trainer.save()
    finally:
        preemption.restore()
        if trainer.pending:  # an error is on its way: record what can still be read
            with contextlib.suppress(Exception):
                trainer.read()
        history.close()
        if bar is not None:
            bar.close()
        if trainer.writer is not None:
            trainer.writer.close()

    # -- the end: optimizers that evaluate at another point than they train at (schedule-free,
    # ASGD) leave the model at the weights to evaluate and keep; the checkpoints hold the
    # training point, from which a resumed run continues exactly.
    _switch(optimizer, "eval")
    for callback in callbacks:
        callback.on_train_end(run)
    final = {}
    if eval_data is not None:
        final = {f"val_{k}": v for k, v in evaluate(model, eval_data, loss_fn).items()}
    return TrainResult(
        history=history.rows,
        steps=run.step,
        epochs=run.epoch,
        stop_reason=run.stop_reason or "finished",
        resumed_from=resumed_from,
        final_metrics=final,
    )


def _switch(optimizer: Any, mode: str) -> None:
    """``optimizer.train()`` or ``.eval()`` where the optimizer has them (schedule-free, ASGD)."""
    method = getattr(optimizer, mode, None)
    if callable(method):
        method()


def _plan_state_for(plan: MiniBatches, saved: dict[str, int]) -> dict[str, int]:
    """The saved plan position, for a plan on the same or another number of processes.

    Positions count global steps, so they carry over when the global batch is the same.
    """
    mine = plan.state_dict()
    if saved["world_size"] == mine["world_size"]:
        return saved
    global_batch = lambda s: s["batch_size"] * s["world_size"]  # noqa: E731
    if global_batch(saved) != global_batch(mine):
        raise ValueError(
            f"The checkpoint's plan took global batches of {global_batch(saved)} samples "
            f"({saved['world_size']} processes); this one takes {global_batch(mine)}"
        )
    return {**saved, "world_size": mine["world_size"], "batch_size": mine["batch_size"]}


def _tensorboard_writer(folder: str | os.PathLike[str] | None) -> Any:
    if folder is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # tensorboard is an optional extra
        raise ImportError(
            "tensorboard_dir needs the tensorboard package: pip install 'optimlab[tensorboard]'"
        ) from e
    return SummaryWriter(log_dir=str(folder))


def _progress_bar(progress: bool | None, total: int, initial: int) -> Any:
    if progress is False:
        return None
    from tqdm.auto import tqdm

    # disable=None lets tqdm stay quiet when the output is not a terminal.
    return tqdm(
        total=total, initial=initial, unit="step", disable=None if progress is None else False
    )


def _update_bar(bar: Any, state: TrainState, history: _History, started: float) -> None:
    """Advance the bar by a step, showing the newest row read (see fit's ``read_every``)."""
    if bar is None:
        return
    if history.rows:
        row = history.rows[-1]
        seconds = max(time.perf_counter() - started, 1e-9)
        bar.set_postfix(
            epoch=state.epoch,
            loss=f"{row['loss']:.4f}",
            lr=f"{row['lr']:.3g}",
            samples_per_s=f"{state.samples / seconds:.0f}",
            refresh=False,
        )
    bar.update(1)


# --- resuming the run that was saved --------------------------------------------------------

#: what every checkpoint of fit holds
_PAYLOAD_KEYS = ("model", "optimizer", "plan", "step", "epoch", "samples", "history", "rng")


def _complete_payload(payload: Any) -> None:
    """Raise if a checkpoint that loaded lacks what fit needs (load_latest then tries the
    previous one, naming this one)."""
    if not isinstance(payload, dict):
        raise TypeError(f"a checkpoint of fit is a dict, this one is a {type(payload).__name__}")
    missing = [key for key in _PAYLOAD_KEYS if key not in payload]
    if missing:
        raise KeyError(f"it has no {', '.join(missing)}")
    for key in ("step", "epoch", "samples"):
        if not isinstance(payload[key], int) or isinstance(payload[key], bool):
            raise TypeError(f"its {key} is {payload[key]!r}, not an int")
    history = payload["history"]  # where the history file stood (a list: before issue 15)
    if not isinstance(history, list) and not (
        isinstance(history, dict) and isinstance(history.get("rows"), int) and "bytes" in history
    ):
        raise TypeError(f"its history is {type(history).__name__}, not a position in the file")


def _same_run(payload: dict, run_id: str | None) -> None:
    """Raise if the checkpoint was written by another run than ``run_id`` (load_latest then
    skips it, naming it): a folder can hold another run's checkpoints (one killed in place
    before an ``--overwrite`` run replaced it), and continuing one of them would mix two runs.
    Checkpoints without an id (written before ids, or by a run without one) pass."""
    saved = payload.get("run_id")
    if run_id is not None and saved is not None and saved != run_id:
        raise ValueError(f"it was written by run {saved}, and this is run {run_id}")


def _qualified_name(optimizer: torch.optim.Optimizer) -> str:
    local = type(distributed.local_optimizer(optimizer))  # the class inside ZeRO's wrapper
    return f"{local.__module__}.{local.__qualname__}"


def _hyperparameters(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's constructor arguments, without the choices of how a step is computed."""
    dispatch = ("foreach", "fused", "differentiable", "capturable")
    defaults = distributed.local_optimizer(optimizer).defaults
    return {k: v for k, v in defaults.items() if k not in dispatch}


class ResumeRefused(ValueError):
    """A checkpoint of another run: another optimizer class, or other hyperparameters.

    ``reason`` says what differs; the message adds ``advice`` for whoever called ``fit``
    (a command line, which has other ways out, shows ``reason`` with its own)."""

    def __init__(self, reason: str, advice: str = "") -> None:
        self.reason, self.advice = reason, advice
        super().__init__(f"{reason} {advice}".strip())


def _check_same_optimizer(
    optimizer: torch.optim.Optimizer, payload: dict, overrides: Sequence[str], path: Path
) -> list[dict[str, Any]]:
    """Refuse a checkpoint of another optimizer or other hyperparameters (but ``overrides``);
    return, per group, the values of ``overrides`` this run keeps."""
    saved_class = payload.get("optimizer_class")  # absent in checkpoints of before issue 15
    if saved_class is not None and saved_class != _qualified_name(optimizer):
        raise ResumeRefused(
            f"Cannot resume from {path}: it was written by {saved_class}, this run uses "
            f"{_qualified_name(optimizer)}.",
            "Resume with the optimizer that wrote it, or start a new run in another folder.",
        )
    saved = payload.get("optimizer_defaults") or {}
    mine = _hyperparameters(optimizer)
    changed = [k for k in sorted(set(saved) | set(mine)) if saved.get(k) != mine.get(k)]
    refused = [k for k in changed if k not in overrides]
    if refused:
        differences = "; ".join(
            f"{k}: {saved.get(k)!r} there, {mine.get(k)!r} here" for k in refused
        )
        raise ResumeRefused(
            f"Cannot resume from {path}: its optimizer's hyperparameters differ from this "
            f"run's ({differences}).",
            "Resume with the same ones, or name those you change on purpose: "
            f"resume_overrides={tuple(refused)!r}.",
        )
    return [{k: group[k] for k in overrides if k in group} for group in optimizer.param_groups]


# --- preemption -------------------------------------------------------------------------------


class Preempted(SystemExit):
    """``fit`` stopped on a signal after saving; ``code`` is the shell's ``128 + signal``."""


class _Preemption:
    """The signal handlers of one ``fit`` call: the first signal is noted (the step finishes,
    a checkpoint is written, fit stops); a second stops at once.

    Under torchrun every rank stops at the same step, whichever received the signal: the
    ranks sum their flags after each step. On GPUs (NCCL) a sum is read :attr:`lag` steps
    after it started, so that no step waits for the device; every rank then stops that many
    steps after the signal's."""

    #: steps between a sum of the ranks' flags and its reading: None, 2 where the ranks
    #: reduce on GPUs (NCCL) and 0 on CPUs (gloo, where reading costs no wait); tests set it
    lag: int | None = None

    def __init__(self, names: Sequence[str]) -> None:
        self.received: int | None = None
        self.previous: dict[int, Any] = {}
        self.sums: deque[Callable[[], float]] = deque()  # started, not read yet
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set in the main thread
        for name in names:
            number = getattr(signal, name, None)
            if number is None:
                raise ValueError(
                    f"Invalid preempt_signals: {name!r} is not a signal here; expected names "
                    "such as 'SIGTERM', 'SIGINT', 'SIGUSR1'"
                )
            self.previous[number] = signal.signal(number, self._note)

    def _note(self, number: int, frame: Any) -> None:
        if self.received is not None:  # the second signal: stop now
            self.restore()
            signal.raise_signal(number)
            return
        self.received = number

    def requested(self, ranks: Any, device: torch.device) -> bool:
        """Whether to stop after this step (on every rank alike)."""
        if not ranks.active:
            return self.received is not None
        flag = float(self.received is not None)
        lag = self.lag
        if lag is None:
            lag = 2 if distributed.collective_device(device).type == "cuda" else 0
        if lag == 0:
            return ranks.sum([flag], device)[0] > 0
        self.sums.append(ranks.sum_later(flag, device))
        return len(self.sums) > lag and self.sums.popleft()() > 0

    def drain(self) -> bool:
        """At the end of training: read the sums still unread; whether one asks to stop."""
        found = False
        while self.sums:
            found = self.sums.popleft()() > 0 or found
        return found

    def stop(self, step: int, checkpoints: Any) -> None:
        number = self.received or signal.SIGTERM
        name = signal.Signals(number).name
        if checkpoints is None:
            where = "no checkpoint_dir was given, so nothing was saved"
        else:
            latest = checkpoints.latest()
            where = f"checkpoint {latest}; resume with resume=True (optimlab train --resume)"
        print(f"optimlab: {name} received: stopped after step {step}; {where}", file=sys.stderr)
        self.restore()
        if number == signal.SIGINT:
            raise KeyboardInterrupt
        raise Preempted(128 + number)

    def restore(self) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous = {}
