"""One seeded run of an optimizer on a :class:`~optimlab.lab.escape.problems.Problem`.

:func:`descend` is the unit the escape study repeats, and a job for :func:`random_restarts`:
everything random in it (the start, the batches, the noise, the proposals) comes from its seed,
each from its own derived stream, so a run is a pure function of its arguments.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from ... import checks
from ...data import MiniBatches
from ...optim import NonFiniteGradientError
from ...remedies.annealing import AcceptanceStats, Annealing
from ...remedies.base import derive_seed
from ...remedies.noise import GradientNoise
from .problems import Problem

__all__ = ["DescentResult", "descend"]

# The purposes a run draws random numbers for; each gets its own seed (see derive_seed).
_START, _BATCHES, _NOISE, _ANNEALING = 1, 2, 3, 4


@dataclasses.dataclass
class DescentResult:
    """What one run of :func:`descend` did."""

    problem: str
    seed: int
    #: the full loss at the last point
    loss: float
    best_loss: float
    x: Tensor
    #: optimizer steps taken
    steps: int
    #: steps taken when ``f(x) <= problem.target`` first held (0: at the start); None if never
    steps_to_target: int | None
    seconds: float
    seconds_to_target: float | None
    #: the loss or the weights stopped being finite (or a gradient did)
    diverged: bool
    #: the full loss at every point visited, starting with the start
    losses: list[float]
    #: the points visited, when asked for with ``record_path=True``
    path: list[list[float]] | None = None
    #: with annealing: the acceptance counts, and whether each step's proposal was kept
    acceptance: AcceptanceStats | None = None
    accepted: list[bool] | None = None

    @property
    def succeeded(self) -> bool:
        return self.steps_to_target is not None


def _as_float(loss: Any) -> float:
    return float(loss.detach()) if isinstance(loss, Tensor) else float(loss)


def _endless(plan: MiniBatches) -> Iterator[tuple[Tensor, ...]]:
    while True:
        yield from plan


def _resolve_optimizer(optimizer: Any) -> Any:
    if isinstance(optimizer, str):
        from ... import OPTIMIZERS  # here, not at import time: optimlab imports its parts first

        try:
            return OPTIMIZERS[optimizer]
        except KeyError:
            valid = ", ".join(sorted(OPTIMIZERS))
            raise ValueError(
                f"descend: unknown optimizer {optimizer!r}; valid names: {valid}"
            ) from None
    if not callable(optimizer):
        raise TypeError(
            f"descend: optimizer must be an optimizer class, a callable params -> optimizer, or "
            f"a name, got {optimizer!r}"
        )
    return optimizer


def _options(owner: str, arg: str, value: Any, first: str) -> dict[str, Any] | None:
    # noise=0.1 means noise={"eta": 0.1}; annealing needs both of its schedules, so a dict.
    if value is None:
        return None
    if isinstance(value, Mapping):
        return dict(value)
    if first and not isinstance(value, bool) and isinstance(value, (int, float)):
        return {first: value}
    raise TypeError(f"{owner}: {arg} must be None or a dict of keyword arguments, got {value!r}")


def _start(problem: Problem, seed: int, random_start: bool, dtype: torch.dtype) -> Tensor:
    # The problem's fixed start, or a point of its box drawn from the seed's own stream.
    if problem.start is not None and not random_start:
        return torch.tensor(problem.start, dtype=dtype)
    generator = torch.Generator().manual_seed(derive_seed(seed, _START))
    return problem.random_start(generator, dtype)


def _wrapped(
    opt: Any,
    seed: int,
    noise_options: dict[str, Any] | None,
    annealing_options: dict[str, Any] | None,
) -> Any:
    # The remedies around the optimizer: noise inside, annealing outside, each with its stream.
    if noise_options is not None:
        opt = GradientNoise(opt, seed=derive_seed(seed, _NOISE), **noise_options)
    if annealing_options is not None:
        opt = Annealing(opt, seed=derive_seed(seed, _ANNEALING), **annealing_options)
    return opt


def _batches(
    problem: Problem, batch_size: int | None, seed: int, dtype: torch.dtype
) -> Iterator[tuple[Tensor, ...]] | None:
    # None on the full batch; else an endless stream of mini-batches of the problem's samples.
    if batch_size is None:
        return None
    plan = MiniBatches(problem.data(dtype), batch_size=batch_size, seed=derive_seed(seed, _BATCHES))
    return _endless(plan)


class _Walk:
    """One run of :func:`descend` while it goes: where it is and what it has seen so far."""

    def __init__(
        self,
        problem: Problem,
        x: Tensor,
        opt: Any,
        batches: Iterator[tuple[Tensor, ...]] | None,
        record_path: bool,
        annealed: bool,
    ) -> None:
        self.problem, self.x, self.opt, self.batches = problem, x, opt, batches
        self.batch: tuple[Tensor, ...] | None = None
        self.exact = batches is None
        self.annealed = annealed
        self.losses: list[float] = []
        self.path: list[list[float]] | None = [] if record_path else None
        self.accepted: list[bool] | None = [] if annealed else None
        self.hit: int | None = None
        self.hit_seconds: float | None = None
        self.diverged = False
        self.t = 0
        self.started = time.perf_counter()

    def closure(self) -> Tensor:
        self.opt.zero_grad()
        loss = self.problem.loss(self.x, self.batch)
        loss.backward()
        return loss

    def full_loss(self) -> float:
        with torch.no_grad():
            return float(self.problem.objective(self.x))

    def stepped(self) -> None:
        self.t += 1
        if self.accepted is not None:
            self.accepted.append(self.opt.last.accepted)

    def see(self, value: float, at: int) -> None:
        """Record ``value``, the full loss at the point of step ``at``."""
        self.losses.append(value)
        if not math.isfinite(value):
            self.diverged = True
        elif self.hit is None and self.problem.succeeded(value):
            self.hit, self.hit_seconds = at, time.perf_counter() - self.started

    def run(self, steps: int, stop_at_target: bool) -> float:
        """Step until the budget, the target or divergence; returns the last full loss.

        ``x`` holds ``x_t`` at the top of the loop. On the full batch the step's closure computes
        the exact ``f(x_t)`` anyway, so it is not evaluated twice: ``x_t``'s success is seen
        after the step to ``x_(t+1)``, which is then taken back: the run ends at ``x_t``, the
        point that reached the target, after ``t`` steps.
        """
        while True:
            if self.path is not None:
                self.path.append(self.x.detach().tolist())
            last = self.t == steps or (stop_at_target and self.hit is not None)
            if self.exact and not last:
                before = self.x.detach().clone() if stop_at_target else None
                try:
                    value = _as_float(self.opt.step(self.closure))
                except NonFiniteGradientError:
                    value, self.diverged = self.full_loss(), True
                else:
                    self.stepped()
            else:
                value = self.full_loss()
            # the step whose point value belongs to
            at = self.t - 1 if self.exact and not last and not self.diverged else self.t
            self.see(value, at)
            if last or self.diverged:
                return value
            if stop_at_target and self.hit is not None:  # x_t reached the target: end at x_t
                if self.exact:  # (the step to x_(t+1) was taken to compute f(x_t): back)
                    with torch.no_grad():
                        self.x.copy_(before)
                    self.t -= 1
                    if self.accepted is not None:
                        self.accepted.pop()
                return value
            if not self.exact:
                self.batch = next(self.batches)
                try:
                    self.opt.step(self.closure)
                except NonFiniteGradientError:
                    self.diverged = True
                    return value
                self.stepped()

    def result(self, seed: int, value: float) -> DescentResult:
        finite = [v for v in self.losses if not math.isnan(v)]
        return DescentResult(
            problem=self.problem.name,
            seed=seed,
            loss=value,
            best_loss=min(finite) if finite else math.nan,
            x=self.x.detach(),
            steps=self.t,
            steps_to_target=self.hit,
            seconds=time.perf_counter() - self.started,
            seconds_to_target=self.hit_seconds,
            diverged=self.diverged,
            losses=self.losses,
            path=self.path,
            acceptance=self.opt.stats if self.annealed else None,
            accepted=self.accepted,
        )


def descend(
    problem: Problem,
    optimizer: Any = "sgd",
    seed: int = 0,
    *,
    lr: float,
    steps: int,
    batch_size: int | None = None,
    noise: float | Mapping[str, Any] | None = None,
    annealing: Mapping[str, Any] | None = None,
    random_start: bool = False,
    stop_at_target: bool = True,
    record_path: bool = False,
    dtype: torch.dtype = torch.float64,
    **optimizer_kwargs: Any,
) -> DescentResult:
    """Run ``optimizer`` on ``problem`` for up to ``steps`` steps from a start drawn from ``seed``.

    ``seed`` is the third positional argument, so ``functools.partial(descend, problem,
    optimizer, lr=..., steps=...)`` is a job ``run(seed)`` for :func:`random_restarts`.

    * ``optimizer``: a class such as ``optimlab.Adam`` or ``torch.optim.SGD`` (called as
      ``optimizer([x], lr=lr, **optimizer_kwargs)``), or a name of ``optimlab.OPTIMIZERS``.
    * ``batch_size``: None is full-batch gradient descent on the exact loss; a number draws
      mini-batches of the problem's samples with :class:`optimlab.data.MiniBatches`.
    * ``noise``: wrap the optimizer in :class:`GradientNoise` (a number is ``eta``; a dict holds
      its keyword arguments). ``annealing``: wrap it in :class:`Annealing` (a dict with
      ``temperature`` and ``perturbation_std``). Both together: annealing around the noise.
    * ``random_start``: start from a random point of the problem's box even when the problem
      has a fixed start (restarts do this). A problem without a fixed start always starts at
      random.

    The run stops when ``f(x) <= problem.target`` (unless ``stop_at_target=False``) or when the
    loss or a gradient stops being finite (``diverged``). The full loss of every point visited is
    recorded (with mini-batches it is evaluated apart, without autograd), so success is judged on
    the true objective even when the steps only see mini-batches.

    Example::

        >>> import optimlab
        >>> from optimlab.lab.escape import descend, problems
        >>> plain = descend(problems.SADDLE, optimlab.SGD, lr=0.1, steps=200)
        >>> noisy = descend(problems.SADDLE, optimlab.SGD, lr=0.1, steps=200, noise=0.1)
        >>> plain.succeeded, plain.x.tolist()[1], noisy.succeeded
        (False, 0.0, True)
    """
    owner = "descend"
    if not isinstance(problem, Problem):
        raise TypeError(f"{owner}: problem must be an escape Problem, got {problem!r}")
    make_optimizer = _resolve_optimizer(optimizer)
    steps = checks.integer(owner, "steps", steps, 0)
    seed = checks.seed(owner, seed)
    if batch_size is not None:
        batch_size = checks.integer(owner, "batch_size", batch_size, 1)
    noise_options = _options(owner, "noise", noise, "eta")
    annealing_options = _options(owner, "annealing", annealing, "")

    x = _start(problem, seed, random_start, dtype).clone().requires_grad_(True)
    opt = make_optimizer([x], lr=lr, **optimizer_kwargs)
    opt = _wrapped(opt, seed, noise_options, annealing_options)
    batches = _batches(problem, batch_size, seed, dtype)
    walk = _Walk(problem, x, opt, batches, record_path, annealing_options is not None)
    return walk.result(seed, walk.run(steps, stop_at_target))
