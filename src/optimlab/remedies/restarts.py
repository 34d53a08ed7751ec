"""Random restarts: run the same job from k seeded random starts, keep the best, report all.

The notes' plainest remedy for a poor local minimum: start again somewhere else. A *job* is any
function ``run(seed) -> result`` that draws its random start (and any other randomness) from
``seed``; :func:`random_restarts` calls it with ``k`` seeds, in sequence or in parallel
processes, and ranks the results by their loss. :func:`optimlab.lab.escape.descend` is such a
job for an objective; a training function of your own is another.
"""

from __future__ import annotations

import math
import numbers
import pickle
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from .. import checks, workers
from .base import derive_seed

__all__ = [
    "RestartReport",
    "RestartRun",
    "loss_of",
    "map_in_processes",
    "random_restarts",
    "restart_seeds",
]

T = TypeVar("T")
R = TypeVar("R")


def restart_seeds(seed: int, restarts: int) -> list[int]:
    """The seeds of ``restarts`` runs: ``seed`` itself first, then independent derived seeds.

    The first run is ``run(seed)``, so one restart is exactly the single run, and restarts can
    be compared with it seed for seed. The others come from a ``SeedSequence`` of ``seed``, so
    the restarts of seed 0 and of seed 1 share no run.

    >>> restart_seeds(7, 3)[0], len(set(restart_seeds(7, 50)))
    (7, 50)
    """
    seed = checks.seed("restart_seeds", seed)
    restarts = checks.integer("restart_seeds", "restarts", restarts, 1)
    return [seed] + [derive_seed(seed, i) for i in range(1, restarts)]


def loss_of(result: Any) -> float:
    """The loss a job reported: the result itself if it is a number (or a 0-d tensor), else its
    ``loss`` attribute or ``"loss"`` key."""
    if isinstance(result, Mapping) and "loss" in result:
        value = result["loss"]
    elif hasattr(result, "loss"):
        value = result.loss
    else:
        value = result
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            "random_restarts: run(seed) must return a number, or an object with a 'loss' "
            f"attribute or key holding one; got {type(result).__name__} {result!r:.200}"
        )
    return float(value)


def _quiet_worker() -> None:
    # One thread per process: the processes already use every core, and torch's default of one
    # thread per core in each of them would oversubscribe the machine.
    torch.set_num_threads(1)


def map_in_processes(fn: Callable[[T], R], items: Iterable[T], processes: int = 1) -> list[R]:
    """``[fn(item) for item in items]``, in order, in up to ``processes`` spawned processes.

    ``processes=1`` runs in this process. Otherwise ``fn`` and the items are pickled to fresh
    ``spawn`` processes (each with one torch thread), so ``fn`` must be a module-level function
    or a ``functools.partial`` of one, and a script that calls this needs the usual
    ``if __name__ == "__main__":`` guard.
    """
    processes = checks.integer("map_in_processes", "processes", processes, 1)
    items = list(items)
    if processes == 1 or len(items) <= 1:
        return [fn(item) for item in items]
    try:
        pickle.dumps(fn)
    except Exception as err:  # pickling raises many types (PicklingError, AttributeError, ...)
        raise TypeError(
            f"processes={processes} needs a function that can be sent to another process "
            "(a module-level function or a functools.partial of one, not a lambda or a local "
            f"function); got {fn!r}: {err}"
        ) from None
    with workers.worker_pool(min(processes, len(items)), initializer=_quiet_worker) as pool:
        futures = workers.submit_all(pool, fn, items)
        for future in workers.completed(futures):
            future.result()  # a failure raises now, not once every earlier item is done
        return [future.result() for future in futures]


@dataclass(frozen=True)
class RestartRun:
    """One run of a restart: its place, its seed, the loss it reported and its full result."""

    index: int
    seed: int
    loss: float
    seconds: float
    result: Any


@dataclass(frozen=True)
class RestartReport:
    """Every run of :func:`random_restarts`, in order, and the best of them."""

    seed: int
    runs: tuple[RestartRun, ...]

    @property
    def best(self) -> RestartRun:
        """The run with the lowest loss (the first of equals; NaN never wins)."""
        return min(self.runs, key=lambda r: math.inf if math.isnan(r.loss) else r.loss)

    @property
    def losses(self) -> list[float]:
        return [r.loss for r in self.runs]

    @property
    def seconds(self) -> float:
        """Seconds of all runs together (wall time is less when they ran in parallel)."""
        return sum(r.seconds for r in self.runs)

    def table(self) -> str:
        """A plain-text table of the runs, the best marked with ``*``."""
        best = self.best.index
        lines = [f"{'run':>4} {'seed':>20} {'loss':>14} {'seconds':>9}"]
        for r in self.runs:
            mark = " *" if r.index == best else ""
            lines.append(f"{r.index:>4} {r.seed:>20} {r.loss:>14.6g} {r.seconds:>9.3f}{mark}")
        return "\n".join(lines)


def _timed(run: Callable[[int], Any], seed: int) -> tuple[Any, float]:
    start = time.perf_counter()
    result = run(seed)
    return result, time.perf_counter() - start


class _TimedRun:
    # A picklable "time run(seed)" for the worker processes (a closure would not pickle).
    def __init__(self, run: Callable[[int], Any]) -> None:
        self.run = run

    def __call__(self, seed: int) -> tuple[Any, float]:
        return _timed(self.run, seed)


def random_restarts(
    run: Callable[[int], Any],
    restarts: int,
    seed: int = 0,
    processes: int = 1,
) -> RestartReport:
    """Run ``run(s)`` for the ``restarts`` seeds of :func:`restart_seeds`; report every run.

    ``run(seed)`` draws its starting point from ``seed`` and returns its loss, or any result
    with a ``loss`` attribute or key (see :func:`loss_of`). ``report.best`` is the run with the
    lowest loss, ``report.runs`` all of them in seed order. With ``processes > 1`` the runs go to
    that many spawned processes (see :func:`map_in_processes`); the results are the same as in
    sequence, since every run depends only on its seed.

    Example::

        >>> import functools, optimlab
        >>> from optimlab.lab.escape import descend, problems
        >>> from optimlab.remedies import random_restarts
        >>> job = functools.partial(descend, problems.RASTRIGIN, optimlab.SGD, lr=2e-3,
        ...                         steps=50, random_start=True)
        >>> report = random_restarts(job, restarts=20, seed=0)
        >>> len(report.runs), report.best.loss == min(report.losses)
        (20, True)
    """
    owner = "random_restarts"
    if not callable(run):
        raise TypeError(f"{owner}: run must be callable as run(seed), got {run!r}")
    restarts = checks.integer(owner, "restarts", restarts, 1)
    seed = checks.seed(owner, seed)
    processes = checks.integer(owner, "processes", processes, 1)
    seeds = restart_seeds(seed, restarts)
    outcomes = map_in_processes(_TimedRun(run), seeds, processes)
    runs = tuple(
        RestartRun(index=i, seed=s, loss=loss_of(result), seconds=seconds, result=result)
        for i, (s, (result, seconds)) in enumerate(zip(seeds, outcomes))
    )
    return RestartReport(seed=seed, runs=runs)
