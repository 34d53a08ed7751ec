"""What an optimizer is run on: a 2-D test function or a data set with a small network.

Both kinds of problem answer the same questions, so one runner (:mod:`optimlab.lab.runner`)
serves both:

* ``trial(seed, device)`` starts a fresh attempt: parameters to optimize, ``loss()`` for the next
  step (the function's value, or the loss of the next mini-batch), ``evaluate()`` for the curves
  (the function's value, gap and position, or training loss, validation loss and accuracy) and
  ``finish()`` for what is measured once at the end (test loss and accuracy);
* ``selection_metric`` is what the learning-rate sweep minimizes (the function's value, or the
  *validation* loss, never a test number);
* ``target`` says when a run has "reached" the goal (gap <= 1e-3, validation accuracy >= 95%);
* ``columns`` are the per-run outcomes the tables show, each with the direction that is better.

    >>> problem = make_problem("rosenbrock")
    >>> trial = problem.trial(seed=0)
    >>> round(trial.evaluate()["gap"], 6), problem.target.label
    (24.2, 'gap <= 0.001')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .datasets import DATASETS, DataSet, load_split
from .functions import FUNCTIONS, Point, TestFunction

__all__ = [
    "DEFAULT_DATASETS",
    "DEFAULT_FUNCTIONS",
    "Column",
    "DatasetProblem",
    "FunctionProblem",
    "Target",
    "make_problem",
    "problem_names",
]

#: The test functions ``optimlab compare`` runs by default: the notes' elongated bowl (where
#: plain gradient descent zig-zags), a diagonal ravine a thousand times steeper across than
#: along (where momentum pulls ahead), a curved valley, and a field of local minima.
DEFAULT_FUNCTIONS = ("quadratic_bowl", "ravine", "rosenbrock", "rastrigin")
#: The data sets ``optimlab compare`` runs by default.
DEFAULT_DATASETS = ("digits",)


@dataclass(frozen=True)
class Target:
    """When a run counts as having reached its goal: ``metric`` at or past ``threshold``."""

    metric: str
    threshold: float
    higher_is_better: bool
    label: str

    def reached(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return value >= self.threshold if self.higher_is_better else value <= self.threshold


@dataclass(frozen=True)
class Column:
    """One per-run outcome in the tables: its key, its heading, and which way is better."""

    key: str
    label: str
    higher_is_better: bool
    percent: bool = False


def _to_target_columns(target: Target | None) -> tuple[Column, ...]:
    if target is None:
        return ()
    return (
        Column("steps_to_target", f"steps to {target.label}", False),
        Column("seconds_to_target", f"seconds to {target.label}", False),
    )


# --- 2-D test functions ----------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionProblem:
    """Minimize a :class:`TestFunction` from its start point, full gradient, float64.

    ``jitter`` moves each seed's start by a normal draw with standard deviation
    ``jitter * (width of the plot)``, so several seeds measure how much the outcome depends on
    where the run begins; ``jitter=0`` starts every seed at the same point.
    """

    function: TestFunction
    jitter: float = 0.0
    start: Point | None = None
    target_gap: float = 1e-3

    kind = "function"
    # A run is stopped as diverged once it is this many plot widths from the plot's centre.
    far = 10.0

    @property
    def name(self) -> str:
        return self.function.name

    @property
    def title(self) -> str:
        return self.function.title

    @property
    def has_minimum(self) -> bool:
        return bool(self.function.minima)

    @property
    def selection_metric(self) -> str:
        return "loss"

    @property
    def curve_metric(self) -> str:
        return "gap" if self.has_minimum else "loss"

    @property
    def best_metrics(self) -> dict[str, bool]:
        """The curves whose best value is reported, each with ``higher_is_better``."""
        return {"loss": False, "gap": False} if self.has_minimum else {"loss": False}

    @property
    def target(self) -> Target | None:
        if not self.has_minimum:
            return None
        return Target("gap", self.target_gap, False, f"gap <= {self.target_gap:g}")

    @property
    def score(self) -> Column:
        """The outcome that ranks the contenders."""
        if self.has_minimum:
            return Column("gap", "final gap f - f*", False)
        return Column("loss", "final f", False)

    @property
    def columns(self) -> tuple[Column, ...]:
        if not self.has_minimum:
            return (Column("loss", "final f", False), Column("best_loss", "best f", False))
        return (
            Column("gap", "final gap f - f*", False),
            Column("best_gap", "best gap", False),
            Column("distance", "distance to nearest minimum", False),
            *_to_target_columns(self.target),
        )

    def steps(self, budget: Any) -> int:
        return int(budget.steps)

    def start_point(self, seed: int) -> Point:
        x, y = self.start if self.start is not None else self.function.start
        if self.jitter > 0:
            generator = torch.Generator().manual_seed(seed)
            (x_lo, x_hi), (y_lo, y_hi) = self.function.bounds
            noise = torch.randn(2, generator=generator, dtype=torch.float64) * self.jitter
            x, y = x + float(noise[0]) * (x_hi - x_lo), y + float(noise[1]) * (y_hi - y_lo)
        return (x, y)

    def trial(self, seed: int, device: str = "cpu") -> FunctionTrial:
        return FunctionTrial(self, seed, device)


class FunctionTrial:
    """One descent on a test function; evaluate() reports the value, gap and position."""

    def __init__(self, problem: FunctionProblem, seed: int, device: str) -> None:
        self.function = problem.function
        start = problem.start_point(seed)
        self.point = torch.tensor(start, dtype=torch.float64, device=device, requires_grad=True)
        self.params = [self.point]
        self.minimum_value = self.function.minimum_value
        (x_lo, x_hi), (y_lo, y_hi) = self.function.bounds
        self.centre = ((x_lo + x_hi) / 2, (y_lo + y_hi) / 2)
        self.reach = problem.far * max(x_hi - x_lo, y_hi - y_lo)

    def loss(self) -> torch.Tensor:
        return self.function.f(self.point)

    def evaluate(self) -> dict[str, float]:
        with torch.no_grad():
            value = float(self.function.f(self.point))
        x, y = (float(v) for v in self.point.detach().cpu())
        far_away = max(abs(x - self.centre[0]), abs(y - self.centre[1])) > self.reach
        if far_away or not math.isfinite(value):
            value = math.inf
        gap = value - self.minimum_value if self.minimum_value is not None else math.nan
        distance = self.function.distance_to_minimum((x, y))
        return {"loss": value, "gap": gap, "distance": distance, "x": x, "y": y}

    def finish(self) -> dict[str, float]:
        return {}


# --- data sets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetProblem:
    """Train an MLP (``depth`` layers of ``hidden`` ReLU units; ``hidden=0`` is logistic
    regression) on a data set.

    The split is fixed by ``split_seed``; each trial's seed sets the initial weights and the
    order of the mini-batches. ``batch_size=None`` is batch gradient descent.
    """

    dataset: DataSet
    split_seed: int = 0
    batch_size: int | None = 32
    hidden: int = 64
    target_accuracy: float | None = None
    depth: int = 1

    kind = "dataset"

    @property
    def name(self) -> str:
        return self.dataset.name

    @property
    def title(self) -> str:
        return self.dataset.title

    @property
    def selection_metric(self) -> str:
        return "val_loss"

    @property
    def curve_metric(self) -> str:
        return "val_accuracy"

    @property
    def best_metrics(self) -> dict[str, bool]:
        """The curves whose best value is reported, each with ``higher_is_better``."""
        return {"train_loss": False, "val_loss": False, "val_accuracy": True}

    @property
    def target(self) -> Target:
        threshold = self.target_accuracy or self.dataset.target_accuracy
        return Target("val_accuracy", threshold, True, f"{threshold:.0%} val. accuracy")

    @property
    def score(self) -> Column:
        return Column("test_accuracy", "test accuracy", True, percent=True)

    @property
    def columns(self) -> tuple[Column, ...]:
        return (
            Column("test_accuracy", "test accuracy", True, percent=True),
            Column("test_loss", "test loss", False),
            Column("val_accuracy", "final val. accuracy", True, percent=True),
            Column("best_val_accuracy", "best val. accuracy", True, percent=True),
            Column("val_loss", "final val. loss", False),
            Column("best_val_loss", "best val. loss", False),
            Column("train_loss", "final train loss", False),
            *_to_target_columns(self.target),
        )

    def split(self):
        return load_split(self.dataset.name, self.split_seed)

    def steps_per_epoch(self) -> int:
        m = len(self.split().y_train)
        return 1 if self.batch_size is None else math.ceil(m / self.batch_size)

    def steps(self, budget: Any) -> int:
        return int(budget.epochs) * self.steps_per_epoch()

    def trial(self, seed: int, device: str = "cpu") -> DatasetTrial:
        return DatasetTrial(self, seed, device)


def make_network(features: int, hidden: int, classes: int, depth: int = 1) -> torch.nn.Module:
    """``features -> hidden -> ReLU`` (``depth`` times, PyTorch's default initialisation)
    ``-> classes``, or a linear layer when ``hidden`` is 0."""
    if hidden == 0:
        return torch.nn.Linear(features, classes)
    layers: list[torch.nn.Module] = []
    for i in range(depth):
        layers += [torch.nn.Linear(hidden if i else features, hidden), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(hidden, classes))


class DatasetTrial:
    """One training run of the network; evaluate() reports train/validation loss and accuracy.

    :class:`optimlab.lab.user.UserTrial` (the user's own model, classification or
    regression) changes only the network and the loss."""

    #: whether the targets are classes (cross-entropy and accuracy) or values
    classification = True

    def __init__(self, problem: Any, seed: int, device: str) -> None:
        from ..data import MiniBatches

        split = problem.split()
        self.data = {
            part: (getattr(split, f"X_{part}").to(device), getattr(split, f"y_{part}").to(device))
            for part in ("train", "val", "test")
        }
        torch.manual_seed(seed)
        self.model = self._network(problem, split).to(device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.plan = MiniBatches(*self.data["train"], batch_size=problem.batch_size, seed=seed)
        self._batches = iter(())

    def _network(self, problem: Any, split: Any) -> torch.nn.Module:
        return make_network(split.features, problem.hidden, split.classes, problem.depth)

    def _loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(output, y)

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            return next(self._batches)
        except StopIteration:  # the epoch is over: the plan reshuffles for the next one
            self._batches = iter(self.plan)
            return next(self._batches)

    def loss(self) -> torch.Tensor:
        X, y = self._next_batch()
        return self._loss(self.model(X), y)

    def _measure(self, part: str) -> tuple[float, float]:
        X, y = self.data[part]
        with torch.no_grad():
            output = self.model(X)
            loss = self._loss(output, y).item()
            accuracy = (
                (output.argmax(1) == y).double().mean().item() if self.classification else math.nan
            )
        return (loss if math.isfinite(loss) else math.inf), accuracy

    def evaluate(self) -> dict[str, float]:
        train_loss, _ = self._measure("train")
        val_loss, val_accuracy = self._measure("val")
        found = {"train_loss": train_loss, "val_loss": val_loss}
        return {**found, "val_accuracy": val_accuracy} if self.classification else found

    def finish(self) -> dict[str, float]:
        test_loss, test_accuracy = self._measure("test")
        found = {"test_loss": test_loss}
        return {**found, "test_accuracy": test_accuracy} if self.classification else found


# --- by name ---------------------------------------------------------------------------------


def problem_names() -> list[str]:
    """Every name :func:`make_problem` accepts: the test functions, then the data sets."""
    return list(FUNCTIONS) + list(DATASETS)


def make_problem(name: str, **options: Any) -> FunctionProblem | DatasetProblem:
    """The problem called ``name`` with the options its kind takes; the error lists the names."""
    if name in FUNCTIONS:
        keys = {"jitter", "start", "target_gap"}
        return FunctionProblem(FUNCTIONS[name], **{k: v for k, v in options.items() if k in keys})
    if name in DATASETS:
        keys = {"split_seed", "batch_size", "hidden", "depth", "target_accuracy"}
        return DatasetProblem(DATASETS[name], **{k: v for k, v in options.items() if k in keys})
    raise KeyError(f"unknown problem {name!r}; valid names: {', '.join(problem_names())}")
