"""Mini-batch plans for batch, stochastic and mini-batch gradient descent.

An *epoch* is one pass over the ``m`` training samples: shuffle them, then split the shuffled
order into batches of ``d`` samples and take one optimizer step per batch.

* ``batch_size=None``: batch gradient descent, one batch of all ``m`` samples per epoch.
* ``batch_size=1``: stochastic gradient descent, ``m`` batches of one sample.
* ``batch_size=d``: mini-batch gradient descent, ``ceil(m / d)`` batches; the last one holds the
  remaining ``m - (ceil(m / d) - 1) * d`` samples, or is dropped with ``drop_last=True``
  (``floor(m / d)`` batches, so ``m mod d`` samples are left out of that epoch).

The shuffle of epoch ``e`` is a pure function of ``(seed, e)``, so a plan can be stopped in the
middle of an epoch and resumed exactly (:meth:`MiniBatches.state_dict`), and several processes
(ranks) can agree on one shuffle without communicating.

Example::

    >>> import torch
    >>> from optimlab.data import MiniBatches
    >>> X, y = torch.randn(10, 3), torch.arange(10)
    >>> plan = MiniBatches(X, y, batch_size=4, seed=0)
    >>> len(plan)  # ceil(10 / 4)
    3
    >>> [len(yb) for _, yb in plan]  # one epoch; the last batch is smaller
    [4, 4, 2]
    >>> plan.epoch  # iterating to the end advances the epoch
    1
"""

from __future__ import annotations

import copy
import hashlib
import math
import operator
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, TensorDataset, default_collate

from . import checks

__all__ = ["MiniBatches"]

_STATE_VERSION = 1
#: bytes of samples gathered at once when shuffling in-memory tensors: narrow samples are
#: gathered several batches at a time (one call and one tensor per chunk, not per batch), but
#: only up to what stays in a core's L2 cache, where a freed chunk's memory is reused at once
_CHUNK_BYTES = 256 << 10
#: gathers smaller than this are NumPy's serial take, untimed: torch's threads cannot pay off
_THREADED_MIN_BYTES = 32 << 10


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # Hash (seed, epoch) instead of seeding with seed + epoch: neighbouring seeds must not give
    # the same shuffles shifted by one epoch.
    digest = hashlib.blake2b(f"optimlab.MiniBatches:{seed}:{epoch}".encode(), digest_size=8)
    gen = torch.Generator()
    gen.manual_seed(int.from_bytes(digest.digest(), "little") >> 1)
    return gen


class _TensorColumn:
    """A tensor whose batches are gathered in memory."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor
        self.row_bytes = math.prod(tensor.shape[1:]) * tensor.element_size()
        self.array: np.ndarray | None = None
        if tensor.device.type == "cpu" and not tensor.requires_grad:
            try:
                self.array = tensor.numpy()  # a view, no copy
            except (TypeError, RuntimeError):  # bfloat16, conjugate views, ...
                self.array = None
        self.chooser = _GatherChooser()

    def take(self, idx: np.ndarray) -> torch.Tensor:
        if self.array is None:
            return self.tensor.index_select(0, torch.from_numpy(idx).to(self.tensor.device))
        if len(idx) * self.row_bytes < _THREADED_MIN_BYTES or torch.get_num_threads() == 1:
            return torch.from_numpy(self.array.take(idx, axis=0))
        # Two CPU gathers give the same values: NumPy's serial take and index_select on torch's
        # threads. On an idle machine the threads gather wide rows about 1.3x faster; when other
        # processes keep the cores busy, their OpenMP barrier makes index_select several to a
        # hundred times slower. So each gather is timed and the faster one kept (see
        # optimlab/benchmarks/bench_plans.py, whose strategy rows time both).
        chooser = self.chooser
        threaded = chooser.choose()
        timed = chooser.timed
        if timed:
            start = time.perf_counter()
        if threaded:
            out = self.tensor.index_select(0, torch.from_numpy(idx))
        else:
            out = torch.from_numpy(self.array.take(idx, axis=0))
        if timed:
            chooser.record(threaded, (time.perf_counter() - start) / len(idx))
        return out

    def slice(self, start: int, stop: int) -> torch.Tensor:
        return self.tensor[start:stop]


class _GatherChooser:
    """Picks the faster of two equivalent gathers by timing them as they run.

    A gather's cost is the lowest cost per row of its last 4 timed calls (a recent, robust
    figure: a call now and then pays for waking threads or for an interruption). Each is first
    tried 4 calls in a row; then the cheaper one is used (every 4th call timed), and the other
    is tried again (4 calls, or 1 that costs ten times as much) now and then, since load on the
    machine changes which one wins:
    after 8 calls, then after twice as many each time it loses (at most 1024 calls, so a gather
    that has become very slow costs little), and after 8 again when it wins.
    """

    TRIAL = 4
    __slots__ = (
        "recent",
        "calls",
        "next_trial",
        "interval",
        "trying",
        "trial_left",
        "best",
        "timed",
    )

    def __init__(self) -> None:
        # seconds per row of the last timed calls of the serial [0] and the threaded [1] gather
        self.recent: tuple[deque[float], deque[float]] = (
            deque(maxlen=self.TRIAL),
            deque(maxlen=self.TRIAL),
        )
        self.calls = 0
        self.next_trial = 0
        self.interval = 8
        self.trying: bool | None = None  # the gather on trial, if any
        self.trial_left = 0
        self.best: bool | None = None  # whether the threaded gather is the cheaper, once known
        self.timed = True  # whether the call just chosen is to be timed (and recorded)

    def choose(self) -> bool:
        """Whether to take the threaded gather this time (and set :attr:`timed`)."""
        self.calls += 1
        if self.trying is None:
            if self.best is None:
                self._try(bool(self.recent[0]))  # measure each: serial first
            elif self.calls < self.next_trial:
                self.timed = not self.calls & 3
                return self.best
            else:
                self._try(not self.best)
        self.timed = True
        return self.trying  # type: ignore[return-value]

    def _try(self, threaded: bool) -> None:
        self.trying, self.trial_left = threaded, self.TRIAL
        self.recent[threaded].clear()

    def record(self, threaded: bool, seconds_per_row: float) -> None:
        serial, parallel = self.recent
        (parallel if threaded else serial).append(seconds_per_row)
        if self.trying is not None:
            self.trial_left -= 1
            rival = serial if threaded else parallel
            # A trial ends early when a call costs ten times the rival's: on a busy machine a
            # threaded gather can take a hundred times as long, and one call says enough.
            if self.trial_left and not (rival and seconds_per_row > 10 * min(rival)):
                return
            if serial and parallel:
                won = (min(parallel) < min(serial)) == self.trying
                self.interval = 8 if won else min(2 * self.interval, 1024)
            self.trying = None
            self.next_trial = self.calls + self.interval
        if serial and parallel:
            self.best = min(parallel) < min(serial)


class _NumpyColumn:
    """A NumPy array read row by row (memory maps, read-only arrays): never loaded whole."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def take(self, idx: np.ndarray) -> torch.Tensor:
        # Sorted reads walk a memory map forward instead of seeking back and forth.
        order = np.argsort(idx, kind="stable")
        rows = self.array[idx[order]]
        out = np.empty_like(rows)
        out[order] = rows
        return torch.from_numpy(out)

    def slice(self, start: int, stop: int) -> torch.Tensor:
        # Copy: a read-only or file-backed buffer must not leak out as a writable tensor.
        return torch.from_numpy(np.array(self.array[start:stop]))


class _DatasetSource:
    """A map-style Dataset: samples are fetched one by one and collated."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def take(self, idx: np.ndarray) -> tuple:
        indices = idx.tolist()
        getitems = getattr(self.dataset, "__getitems__", None)
        samples = getitems(indices) if getitems is not None else [self.dataset[i] for i in indices]
        batch = default_collate(samples)
        if isinstance(batch, torch.Tensor):
            return (batch,)
        if isinstance(batch, (list, tuple)):
            return tuple(batch)
        return (batch,)


def _as_column(name: str, value: Any) -> _TensorColumn | _NumpyColumn:
    if isinstance(value, torch.Tensor):
        column: _TensorColumn | _NumpyColumn = _TensorColumn(value)
        ndim = value.dim()
    elif isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"{name} must hold numbers, got a NumPy array of dtype object")
        if isinstance(value, np.memmap) or not value.flags.writeable:
            column = _NumpyColumn(value)
        else:
            try:
                column = _TensorColumn(torch.from_numpy(value))  # shares memory, no copy
            except (TypeError, ValueError):  # negative strides, dtypes torch lacks
                column = _NumpyColumn(value)
        ndim = value.ndim
    else:
        try:
            column = _TensorColumn(torch.as_tensor(value))
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"{name} must be a tensor, a NumPy array or a Dataset, got {type(value).__name__}"
            ) from err
        ndim = column.tensor.dim()
    if ndim == 0:
        raise ValueError(f"{name} must have a sample dimension, got a 0-dimensional {name}")
    return column


def _length(column: _TensorColumn | _NumpyColumn) -> int:
    return len(column.tensor) if isinstance(column, _TensorColumn) else len(column.array)


def _open(X: Any, y: Any) -> tuple[_DatasetSource | None, list[_TensorColumn | _NumpyColumn], int]:
    """The source of a plan: a Dataset, or the aligned columns of ``X`` (and ``y``); and ``m``."""
    if isinstance(X, IterableDataset):
        raise TypeError("X must be a map-style Dataset (indexable), got an IterableDataset")
    if isinstance(X, TensorDataset) and y is None:
        X = tuple(X.tensors)
    if isinstance(X, Dataset):
        if y is not None:
            raise TypeError("y must be None when X is a Dataset (its samples hold the targets)")
        try:
            m = len(X)  # type: ignore[arg-type]
        except TypeError as err:
            raise TypeError("X must be a Dataset with __len__") from err
        source: _DatasetSource | None = _DatasetSource(X)
        columns: list[_TensorColumn | _NumpyColumn] = []
    else:
        if (
            isinstance(X, (tuple, list))
            and X
            and all(isinstance(t, (torch.Tensor, np.ndarray)) for t in X)
        ):
            if y is not None:
                raise TypeError("y must be None when X is a sequence of tensors")
            named: Sequence[tuple[str, Any]] = [(f"X[{i}]", t) for i, t in enumerate(X)]
        else:
            named = [("X", X)] if y is None else [("X", X), ("y", y)]
        source, columns = None, [_as_column(name, value) for name, value in named]
        lengths = [_length(c) for c in columns]
        if len(set(lengths)) > 1:
            names = " and ".join(name for name, _ in named)
            got = ", ".join(str(n) for n in lengths)
            raise ValueError(
                f"{names} must have the same number of samples (first dimension), got {got}"
            )
        m = lengths[0]
    if m == 0:
        raise ValueError("X is empty: need at least one sample, got m=0")
    return source, columns, m


class MiniBatches:
    """A seeded, resumable, shardable plan of mini-batches over ``m`` samples.

    Rules
    -----
    Every epoch the ``m`` samples are shuffled (``shuffle=True``) with a permutation that depends
    only on ``(seed, epoch)`` and the shuffled order is split into consecutive batches:

    * ``batch_size=None`` -> batch gradient descent: 1 batch of all ``m`` samples;
    * ``batch_size=1`` -> stochastic gradient descent: ``m`` batches of 1 sample;
    * ``batch_size=d`` -> mini-batch gradient descent: ``ceil(m / d)`` batches, the last one
      smaller when ``d`` does not divide ``m``; with ``drop_last=True`` ``floor(m / d)`` batches
      of exactly ``d`` and the ``m mod d`` left-over samples are skipped for that epoch (a
      different set every epoch, since the shuffle changes).

    ``len(plan)`` is the number of batches per epoch. Iterating the plan yields the batches of the
    current epoch (from :attr:`position` on), each a tuple of tensors ``(X_batch, y_batch)`` (or
    ``(X_batch,)`` without ``y``), and then advances :attr:`epoch`; a ``for`` loop per epoch is
    all a training loop needs. Only one iteration over a plan may be in progress at a time.

    Sources
    -------
    * Tensors or NumPy arrays ``X`` (and ``y``), or a tuple/list of aligned tensors as ``X``.
      Writable NumPy arrays are wrapped without a copy. No per-sample collation: each batch is
      one gather per tensor (on CPU ``np.take`` or ``index_select`` on torch's threads, timed
      as they run and the faster kept; ``index_select`` elsewhere). Narrow samples are gathered
      several batches at a time (up to 256 KiB) and each batch is a view of that chunk, so such
      a batch kept after the loop keeps its chunk's memory alive. With ``shuffle=False``
      batches are views of the input (no copy at all).
    * ``np.memmap`` (e.g. ``np.load(path, mmap_mode="r")``) and other read-only arrays: only the
      rows of each batch are read, in sorted order, so arrays larger than memory work.
    * Any map-style ``torch.utils.data.Dataset`` (``y`` must be ``None``): samples are indexed and
      collated with ``default_collate``. A ``TensorDataset`` is unwrapped to its tensors.

    Several processes (``rank``, ``world_size``)
    --------------------------------------------
    All ranks use the same permutation of each epoch. ``batch_size`` is the per-rank batch: global
    step ``k`` takes the next ``world_size * batch_size`` samples of the permutation and rank ``r``
    gets the ``r``-th slice. A short last global batch of ``R`` samples is split as evenly as
    possible (slice sizes differ by at most one; the first ``R mod world_size`` ranks get one more).
    If ``0 < R < world_size`` it could not give every rank a sample, so it is merged into the
    previous global batch instead, whose slices then hold ``batch_size`` or ``batch_size + 1``
    samples. Thus all ranks take the same number of steps, no sample is dropped or repeated, and
    the union over ranks of one epoch is every sample exactly once (unless ``drop_last=True``,
    which drops the ``R`` samples of the short last global batch). With ``batch_size=None`` each
    rank gets an even share of all ``m`` samples as its one batch. ``m >= world_size`` is required.

    Example
    -------
    >>> import torch
    >>> X, y = torch.randn(100, 5), torch.randint(0, 2, (100,))
    >>> plan = MiniBatches(X, y, batch_size=32, seed=1)
    >>> len(plan), [len(xb) for xb, _ in plan]
    (4, [32, 32, 32, 4])
    >>> it = iter(plan); _ = next(it)  # stop after one batch of epoch 1...
    >>> state = plan.state_dict()
    >>> resumed = MiniBatches(X, y, batch_size=32)
    >>> resumed.load_state_dict(state)
    >>> len(list(resumed))  # ...and resume with the 3 remaining batches
    3
    """

    def __init__(
        self,
        X: Any,
        y: Any = None,
        batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        batch_size = checks.index("", "batch_size", batch_size, 1, optional=True)
        seed = checks.index("", "seed", seed)
        world_size = checks.index("", "world_size", world_size, 1)
        rank = checks.below("", "rank", checks.index("", "rank", rank), "world_size", world_size)
        shuffle = checks.flag("", "shuffle", shuffle)
        drop_last = checks.flag("", "drop_last", drop_last)
        self._source, self._columns, m = _open(X, y)
        if m < world_size:
            raise ValueError(
                f"need at least world_size={world_size} samples so every rank gets one, got m={m}"
            )

        self._m = m
        self._batch_size = batch_size
        self._shuffle = shuffle
        self._drop_last = drop_last
        self._seed = seed
        self._rank = rank
        self._world_size = world_size
        self._layout()
        self._epoch = 0
        self._position = 0

    def _layout(self) -> None:
        m, batch_size, world_size = self._m, self._batch_size, self._world_size
        self._global = m if batch_size is None else batch_size * world_size
        full, rest = divmod(m, self._global)
        if self._drop_last or rest == 0 or (0 < rest < world_size and full >= 1):
            self._steps = full  # a 0 < rest < world_size tail is merged into the last full step
        else:
            self._steps = full + 1
        if self._steps == 0:
            raise ValueError(
                f"drop_last=True with batch_size={batch_size} and world_size={world_size} "
                f"leaves no batch of m={m} samples"
            )
        # Shuffled batches of in-memory tensors are gathered `_chunk_steps` at a time (about
        # _CHUNK_BYTES per gather) and handed out as views of the chunk: one gather call and
        # one allocation per tensor per chunk instead of per batch.
        self._chunk_steps = 1
        if self._shuffle and self._columns and batch_size is not None:
            if all(isinstance(c, _TensorColumn) for c in self._columns):
                sample_bytes = max(1, sum(c.row_bytes for c in self._columns))  # type: ignore[union-attr]
                rows = _CHUNK_BYTES // sample_bytes
                self._chunk_steps = max(1, min(rows // batch_size, self._steps))

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    def shard(self, rank: int, world_size: int) -> MiniBatches:
        """This plan's share for process ``rank`` of ``world_size``, keeping the global batch.

        The plan's ``batch_size`` is read as the global batch, so each rank gets
        ``batch_size / world_size`` samples per step (it must divide evenly) and the model sees
        the same batches as one process would. The source, seed, epoch and position carry over.

        >>> import torch
        >>> plan = MiniBatches(torch.arange(12.0), batch_size=4, shuffle=False)
        >>> [xb.tolist() for (xb,) in plan.shard(1, 2)][:2]
        [[2.0, 3.0], [6.0, 7.0]]
        """
        if self._world_size != 1:
            raise ValueError(f"this plan is already a share (world_size={self._world_size})")
        if not (
            checks.is_index(world_size)
            and world_size >= 1
            and checks.is_index(rank)
            and 0 <= rank < world_size
        ):
            raise ValueError(f"Invalid rank, world_size: {rank!r}, {world_size!r}")
        if self._m < world_size:
            raise ValueError(f"need at least world_size={world_size} samples, got m={self._m}")
        per_rank = None
        if self._batch_size is not None:
            if self._batch_size % world_size:
                raise ValueError(
                    f"Invalid batch_size: {self._batch_size} (the global batch) does not divide "
                    f"evenly among world_size={world_size} processes"
                )
            per_rank = self._batch_size // world_size
        share = copy.copy(self)
        share._batch_size, share._rank, share._world_size = per_rank, rank, world_size
        share._layout()
        return share

    @property
    def num_samples(self) -> int:
        """The number ``m`` of samples in the source."""
        return self._m

    @property
    def batch_size(self) -> int | None:
        return self._batch_size

    @property
    def epoch(self) -> int:
        """The epoch that the next batch belongs to (0-based)."""
        self._roll_over()
        return self._epoch

    @property
    def position(self) -> int:
        """How many batches of the current epoch have already been yielded."""
        self._roll_over()
        return self._position

    def __len__(self) -> int:
        return self._steps

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch (like ``DistributedSampler.set_epoch``)."""
        self._epoch = checks.index("", "epoch", epoch, 0, not_int=ValueError)
        self._position = 0

    def permutation(self, epoch: int) -> torch.Tensor:
        """The order of all ``m`` samples in ``epoch`` (shared by every rank)."""
        if not self._shuffle:
            return torch.arange(self._m)
        return torch.randperm(self._m, generator=_epoch_generator(self._seed, epoch))

    def global_batch_size(self, step: int) -> int:
        """The samples of batch ``step`` of an epoch over all ranks (this rank's share of it
        is what the plan yields): ``batch_size`` times the world size, but for an uneven last
        batch.

        >>> MiniBatches(torch.arange(10.0), batch_size=4).global_batch_size(2)
        2
        """
        start = step * self._global
        last = step == self._steps - 1
        return (self._m if last and not self._drop_last else start + self._global) - start

    def _bounds(self, step: int) -> tuple[int, int]:
        """Where this rank's batch of global step ``step`` lies in the epoch's permutation."""
        start = step * self._global
        q, r = divmod(self.global_batch_size(step), self._world_size)
        lo = start + self._rank * q + min(self._rank, r)
        return lo, lo + q + (self._rank < r)

    def _take(self, perm: np.ndarray, lo: int, hi: int) -> tuple:
        if self._source is not None:
            return self._source.take(perm[lo:hi])
        if not self._shuffle:
            return tuple([c.slice(lo, hi) for c in self._columns])
        idx = perm[lo:hi]
        return tuple([c.take(idx) for c in self._columns])

    def _batches_from(self, perm: np.ndarray, step: int) -> list[tuple]:
        """The batches of steps ``step, step + 1, ...`` (at most ``_chunk_steps`` of them).

        Several batches are one gather per tensor, split into views: the same values, in the
        same order, as gathering each batch by itself.
        """
        stop = min(step + self._chunk_steps, self._steps)
        if stop - step == 1:
            return [self._take(perm, *self._bounds(step))]
        bounds = [self._bounds(s) for s in range(step, stop)]
        if self._world_size == 1:  # consecutive batches are consecutive runs of the permutation
            idx = perm[bounds[0][0] : bounds[-1][1]]
        else:
            idx = np.concatenate([perm[lo:hi] for lo, hi in bounds])
        sizes = [hi - lo for lo, hi in bounds]
        return list(zip(*[c.take(idx).split(sizes) for c in self._columns]))

    def _roll_over(self) -> None:
        # Taking the last batch finishes the epoch even if the loop breaks before the iterator is
        # exhausted, so state_dict() never points past the end of an epoch.
        if self._position >= self._steps:
            self._epoch += 1
            self._position = 0

    def __iter__(self) -> Iterator[tuple]:
        self._roll_over()
        epoch = self._epoch
        perm = self.permutation(epoch).numpy()  # NumPy slices cost less per batch than torch's
        if self._chunk_steps == 1:
            take, bounds = self._take, self._bounds
            while self._position < self._steps and self._epoch == epoch:
                lo, hi = bounds(self._position)
                batch = take(perm, lo, hi)
                self._position += 1  # counted before the yield: state_dict() sees it as taken
                yield batch
        else:
            first, chunk = 0, []  # the batches of steps first, first + 1, ... already gathered
            while self._position < self._steps and self._epoch == epoch:
                step = self._position  # re-read: load_state_dict() may have moved it
                if not 0 <= step - first < len(chunk):
                    first, chunk = step, self._batches_from(perm, step)
                batch = chunk[step - first]
                self._position += 1
                yield batch
        self._roll_over()

    def state_dict(self) -> dict[str, int]:
        """Where the plan stands, as plain ints (loads with ``torch.load(weights_only=True)``)."""
        self._roll_over()
        return {
            "version": _STATE_VERSION,
            "epoch": self._epoch,
            "position": self._position,
            "seed": self._seed,
            "num_samples": self._m,
            "batch_size": 0 if self._batch_size is None else self._batch_size,
            "world_size": self._world_size,
            "shuffle": int(self._shuffle),
            "drop_last": int(self._drop_last),
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume from :meth:`state_dict`: the next batches are those an unbroken run would give.

        The seed is taken from ``state``; the shape of the plan (``m``, ``batch_size``,
        ``world_size``, ``shuffle``, ``drop_last``) must match this object's.
        """
        mine = self.state_dict()
        missing = sorted(set(mine) - set(state))
        if missing:
            raise ValueError(f"state is missing keys {missing}")
        for key in mine:
            checks.index("", f"state[{key!r}]", state[key])
        if state["version"] != _STATE_VERSION:
            raise ValueError(f"state version must be {_STATE_VERSION}, got {state['version']!r}")
        for key in ("num_samples", "batch_size", "world_size", "shuffle", "drop_last"):
            if state[key] != mine[key]:
                raise ValueError(
                    f"state[{key!r}]={state[key]!r} does not match this plan's {mine[key]!r}"
                )
        epoch, position = operator.index(state["epoch"]), operator.index(state["position"])
        if epoch < 0:
            raise ValueError(f"state['epoch'] must be non-negative, got {epoch}")
        if not 0 <= position <= self._steps:
            raise ValueError(f"state['position'] must be in [0, {self._steps}], got {position}")
        self._seed = operator.index(state["seed"])
        self._epoch, self._position = epoch, position

    def __repr__(self) -> str:
        return (
            f"MiniBatches(m={self._m}, batch_size={self._batch_size}, shuffle={self._shuffle}, "
            f"seed={self._seed}, drop_last={self._drop_last}, rank={self._rank}, "
            f"world_size={self._world_size}, epoch={self._epoch}, position={self._position})"
        )
