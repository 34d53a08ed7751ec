"""Run optimizers on problems: one run, many runs (in parallel), and the learning-rate sweep.

A :class:`RunSpec` fixes everything a run depends on (problem, contender, learning rate, seed,
number of steps, how often to evaluate, device), so equal specs give equal runs and a
:class:`Runner` never runs the same spec twice: the tuning run of the first seed is reused as
that seed's final run. A run is::

    evaluate at step 0
    repeat steps times:  zero_grad; loss = trial.loss(); loss.backward(); optimizer.step()
                         evaluate every eval_every steps (not counted in the seconds)

and stops early, marked diverged, when the gradient or the selection metric stops being
finite (or a test function's point runs far off the plot).

The sweep (:func:`tune`) is the fairness rule of ``optimlab compare``: each contender gets the
learning rate from a log grid whose *final selection metric* (the validation loss, or the
function's value) averaged over the tuning seeds is lowest; with ``refine`` the grid is then
filled in halfway (in log scale) on both sides of the winner, and the best of all is kept.

**Timing.** Only the optimization steps are timed (``train_seconds``), never the evaluations;
before each run a throw-away copy takes :data:`WARMUP_STEPS` untimed steps, so first-use costs
(kernels compiled or loaded, PyTorch's lazy initialisation) are not charged to whichever
optimizer runs first; ``step_seconds`` is the median step, the steady-state cost, and
``seconds_to_target`` is the steps to the target times it: wall-clock sums of a few
milliseconds change severalfold between two identical runs when the machine pauses (another
process, the garbage collector), medians do not.

    >>> from optimlab.lab.contenders import CONTENDERS
    >>> from optimlab.lab.problems import make_problem
    >>> bowl = make_problem("quadratic_bowl")
    >>> result = run_one(RunSpec(bowl, CONTENDERS["sgd"], lr=0.3, seed=0, steps=200))
    >>> result.diverged, result.history["gap"][-1] < 1e-9, outcome(result)["steps_to_target"]
    (False, True, 73.0)
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import workers
from ..optim.base import NonFiniteGradientError, evaluation_weights
from .contenders import Contender

__all__ = [
    "DEFAULT_LR_GRID",
    "Budget",
    "RunResult",
    "RunSpec",
    "Runner",
    "Tuning",
    "outcome",
    "run_one",
    "tune",
]

Problem = Any  # a FunctionProblem or a DatasetProblem (see problems.py)

#: The learning rates every sweep starts from: one per decade, where the notes' optimizers
#: work (refinement reaches beyond the ends when the best rate sits on one).
DEFAULT_LR_GRID = (1e-3, 1e-2, 1e-1, 1.0)


@dataclass(frozen=True)
class Budget:
    """How long each run is: ``steps`` on a test function, ``epochs`` on a data set."""

    steps: int = 300
    epochs: int = 10


@dataclass(frozen=True)
class RunSpec:
    """Everything one run depends on; equal specs give equal runs."""

    problem: Problem
    contender: Contender
    lr: float
    seed: int
    steps: int
    eval_every: int = 1
    device: str = "cpu"


@dataclass
class RunResult:
    """A finished run: its curves (``history``), its end-of-run measurements, its cost."""

    spec: RunSpec
    history: dict[str, list[float]]
    final: dict[str, float]
    diverged: bool
    train_seconds: float
    #: the median seconds of one step (steady state: after an untimed warm-up)
    step_seconds: float = math.nan

    def last(self, metric: str) -> float:
        return self.history[metric][-1]


#: untimed steps of a throw-away copy of each run before it starts: first-use costs (kernels
#: compiled or loaded, PyTorch's lazy initialisation, the allocator) are not the optimizer's
WARMUP_STEPS = 3


def _warm_up(spec: RunSpec) -> None:
    trial = spec.problem.trial(spec.seed, spec.device)
    optimizer = spec.contender.build(trial.params, lr=spec.lr)
    for _ in range(min(WARMUP_STEPS, spec.steps)):
        optimizer.zero_grad(set_to_none=True)
        trial.loss().backward()
        try:
            optimizer.step()
        except NonFiniteGradientError:
            return


def run_one(spec: RunSpec) -> RunResult:
    """Run ``spec`` in this process (see the module docstring for the loop)."""
    _warm_up(spec)
    trial = spec.problem.trial(spec.seed, spec.device)
    optimizer = spec.contender.build(trial.params, lr=spec.lr)
    selection = spec.problem.selection_metric
    history: dict[str, list[float]] = {"step": [], "seconds": []}

    def record(step: int, seconds: float) -> bool:
        with evaluation_weights(optimizer):  # schedule-free methods evaluate their average
            metrics = trial.evaluate()
        history["step"].append(step)
        history["seconds"].append(seconds)
        for key, value in metrics.items():
            history.setdefault(key, []).append(value)
        return math.isfinite(metrics[selection])

    finite = record(0, 0.0)
    seconds, step = 0.0, 0
    durations = []
    while finite and step < spec.steps:
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        trial.loss().backward()
        try:
            optimizer.step()
        except NonFiniteGradientError:
            finite = False
            break
        durations.append(time.perf_counter() - started)
        seconds += durations[-1]
        step += 1
        if step % spec.eval_every == 0 or step == spec.steps:
            finite = record(step, seconds)
    with evaluation_weights(optimizer):
        final = trial.finish()
    median = float(np.median(durations)) if durations else math.nan
    return RunResult(spec, history, final, not finite, seconds, median)


def outcome(result: RunResult) -> dict[str, float]:
    """The run's numbers for the tables: final and best values, test numbers, time to target.

    ``best_<metric>`` is the best value along the curve for each metric the problem ranks
    (``higher_is_better`` in its ``best_metrics``); ``steps_to_target`` is the step of the
    first evaluation that reached the problem's target, ``seconds_to_target`` those steps at the
    run's median step time (NaN when none did).
    """
    problem = result.spec.problem
    history = result.history
    row = {key: values[-1] for key, values in history.items() if key not in ("step", "seconds")}
    for metric, higher_is_better in problem.best_metrics.items():
        values = [v for v in history[metric] if not math.isnan(v)]
        row[f"best_{metric}"] = (max if higher_is_better else min)(values) if values else math.nan
    row.update(result.final)
    row["steps_to_target"] = row["seconds_to_target"] = math.nan
    target = problem.target
    if target is not None:
        for i, value in enumerate(history[target.metric]):
            if target.reached(value):
                row["steps_to_target"] = float(history["step"][i])
                steps = history["step"][i]
                row["seconds_to_target"] = steps * result.step_seconds if steps else 0.0
                break
    row["steps"] = float(history["step"][-1])
    row["train_seconds"] = result.train_seconds
    row["step_seconds"] = result.step_seconds
    row["diverged"] = float(result.diverged)
    return row


# --- many runs -------------------------------------------------------------------------------


def _start_worker() -> None:
    # One thread per process: the runs are small, and two processes each asking for every core
    # would slow each other down.
    torch.set_num_threads(1)


class Runner:
    """Runs specs, each once, in this process (``jobs=1``) or in ``jobs`` worker processes.

    ``progress(label, total)`` is called at the start of each batch of runs and returns a
    function called once per finished run; use it to drive a progress bar.
    """

    def __init__(
        self,
        jobs: int = 1,
        progress: Callable[[str, int], Callable[[], None]] | None = None,
    ) -> None:
        self.jobs = max(1, int(jobs))
        self.progress = progress
        self.results: dict[RunSpec, RunResult] = {}
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, error: type[BaseException] | None, *exc: object) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:  # (interrupted or failed: the runs in flight are stopped)
            workers.close(pool, stop=error is not None)

    def run(self, specs: Sequence[RunSpec], label: str = "runs") -> list[RunResult]:
        """Run every spec not run before; return the results in the order of ``specs``."""
        todo = list(dict.fromkeys(s for s in specs if s not in self.results))
        self.results.update(zip(todo, self.map(run_one, todo, label)))
        return [self.results[s] for s in specs]

    def map(self, function: Callable[[Any], Any], items: Sequence[Any], label: str) -> list[Any]:
        """``[function(item) for item in items]``, in the worker processes when there are
        several (``function`` and the items must pickle); one progress step per item."""
        advance = self.progress(label, len(items)) if self.progress else (lambda: None)
        if self.jobs == 1 or len(items) <= 1:
            torch.set_num_threads(1)
            found = []
            for item in items:
                found.append(function(item))
                advance()
            return found
        if self._pool is None:
            processes = min(self.jobs, os.cpu_count() or 1)
            self._pool = workers.spawn_pool(processes, initializer=_start_worker)
        futures = workers.submit_all(self._pool, function, items)
        for future in workers.completed(futures):
            future.result()  # a failure raises now, not once every other item is done
            advance()
        return [future.result() for future in futures]


# --- the learning-rate sweep -----------------------------------------------------------------


@dataclass
class Tuning:
    """The learning rate chosen for one contender on one problem, and the sweep behind it.

    ``scores`` maps each learning rate tried to the mean final selection metric over the
    tuning seeds (``inf`` when a run diverged); ``fixed`` is True when the spec set ``lr`` and
    nothing was tried.
    """

    problem: Problem
    contender: Contender
    lr: float
    scores: dict[float, float] = field(default_factory=dict)
    fixed: bool = False


def _score(results: list[RunResult]) -> float:
    values = [math.inf if r.diverged else r.last(r.spec.problem.selection_metric) for r in results]
    return math.fsum(values) / len(values) if all(map(math.isfinite, values)) else math.inf


def _halfway(grid: Sequence[float], best: float) -> list[float]:
    """The log-midpoints between ``best`` and its neighbours in ``grid`` (mirrored at the ends)."""
    i = grid.index(best)
    lower = grid[i - 1] if i > 0 else (best * best / grid[i + 1] if len(grid) > 1 else best / 10)
    upper = grid[i + 1] if i + 1 < len(grid) else (best * best / grid[i - 1] if i else best * 10)
    return [math.sqrt(lower * best), math.sqrt(best * upper)]


def tune(
    runner: Runner,
    pairs: Sequence[tuple[Problem, Contender]],
    *,
    grid: Sequence[float],
    seeds: Sequence[int],
    budget: Budget,
    eval_every: Callable[[Problem], int],
    refine: bool = True,
    device: str = "cpu",
) -> dict[tuple[Problem, Contender], Tuning]:
    """Choose each contender's learning rate on each problem by the sweep (module docstring).

    Returns ``{(problem, contender): Tuning}``. Every learning rate of every pair is
    run before any refinement, so the runs of a stage can go to the workers together.
    """
    grid = sorted(set(float(lr) for lr in grid))

    def specs(problem: Problem, contender: Contender, lrs: Sequence[float]) -> list[RunSpec]:
        steps = problem.steps(budget)
        every = eval_every(problem)
        return [
            RunSpec(problem, contender, lr, seed, steps, every, device)
            for lr in lrs
            for seed in seeds
        ]

    tunings: dict[tuple[Problem, Contender], Tuning] = {}
    for problem, contender in pairs:
        lr = contender.lr
        tunings[(problem, contender)] = Tuning(
            problem, contender, float(lr if lr is not None else grid[0]), fixed=lr is not None
        )
    open_tunings = [t for t in tunings.values() if not t.fixed]

    def sweep(lrs_of: Callable[[Tuning], list[float]], label: str) -> None:
        batch = [(t, specs(t.problem, t.contender, lrs_of(t))) for t in open_tunings]
        flat = [s for _, group in batch for s in group]
        by_spec = dict(zip(flat, runner.run(flat, label)))
        for tuning, group in batch:
            for lr in dict.fromkeys(s.lr for s in group):
                tuning.scores[lr] = _score([by_spec[s] for s in group if s.lr == lr])
            tuning.scores = dict(sorted(tuning.scores.items()))
            # Ties (all diverged, or equal values) go to the smaller, safer learning rate.
            tuning.lr = min(tuning.scores, key=lambda lr: (tuning.scores[lr], lr))

    sweep(lambda tuning: list(grid), "tuning learning rates")
    if refine:
        sweep(
            lambda t: [lr for lr in _halfway(grid, t.lr) if lr not in t.scores],
            "refining learning rates",
        )
    return tunings
