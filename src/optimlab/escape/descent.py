"""One seeded run of an optimizer on a :class:`~optimlab.escape.problems.Problem`.

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

from ..data import MiniBatches
from ..optim import NonFiniteGradientError
from . import _checks
from .annealing import AcceptanceStats, Annealing
from .noise import GradientNoise
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
        from .. import OPTIMIZERS  # here, not at import time: optimlab imports its parts first

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
        >>> from optimlab.escape import descend, problems
        >>> plain = descend(problems.SADDLE, optimlab.SGD, lr=0.1, steps=200)
        >>> noisy = descend(problems.SADDLE, optimlab.SGD, lr=0.1, steps=200, noise=0.1)
        >>> plain.succeeded, plain.x.tolist()[1], noisy.succeeded
        (False, 0.0, True)
    """
    owner = "descend"
    if not isinstance(problem, Problem):
        raise TypeError(f"{owner}: problem must be an escape Problem, got {problem!r}")
    make_optimizer = _resolve_optimizer(optimizer)
    steps = _checks.integer(owner, "steps", steps, 0)
    seed = _checks.seed(owner, seed)
    if batch_size is not None:
        batch_size = _checks.integer(owner, "batch_size", batch_size, 1)
    noise_options = _options(owner, "noise", noise, "eta")
    annealing_options = _options(owner, "annealing", annealing, "")

    if problem.start is not None and not random_start:
        start = torch.tensor(problem.start, dtype=dtype)
    else:
        generator = torch.Generator().manual_seed(_checks.derive_seed(seed, _START))
        start = problem.random_start(generator, dtype)
    x = start.clone().requires_grad_(True)
    opt: Any = make_optimizer([x], lr=lr, **optimizer_kwargs)
    if noise_options is not None:
        opt = GradientNoise(opt, seed=_checks.derive_seed(seed, _NOISE), **noise_options)
    if annealing_options is not None:
        opt = Annealing(opt, seed=_checks.derive_seed(seed, _ANNEALING), **annealing_options)
    batches = None
    if batch_size is not None:
        plan = MiniBatches(
            problem.data(dtype), batch_size=batch_size, seed=_checks.derive_seed(seed, _BATCHES)
        )
        batches = _endless(plan)
    batch: tuple[Tensor, ...] | None = None

    def closure() -> Tensor:
        opt.zero_grad()
        loss = problem.loss(x, batch)
        loss.backward()
        return loss

    def full_loss() -> float:
        with torch.no_grad():
            return float(problem.objective(x))

    # x holds x_t at the top of the loop. On the full batch the step's closure computes the exact
    # f(x_t) anyway, so it is not evaluated twice: x_t's success is seen after the step to
    # x_(t+1), the run ends there, and steps_to_target is t all the same.
    exact = batches is None
    started = time.perf_counter()
    losses: list[float] = []
    path: list[list[float]] | None = [] if record_path else None
    accepted: list[bool] | None = [] if annealing_options is not None else None
    hit: int | None = None
    hit_seconds: float | None = None
    diverged = False
    t = 0

    def stepped() -> None:
        nonlocal t
        t += 1
        if accepted is not None:
            accepted.append(opt.last.accepted)

    while True:
        if path is not None:
            path.append(x.detach().tolist())
        last = t == steps or (stop_at_target and hit is not None)
        if exact and not last:
            try:
                value = _as_float(opt.step(closure))
            except NonFiniteGradientError:
                value, diverged = full_loss(), True
            else:
                stepped()
        else:
            value = full_loss()
        losses.append(value)
        at = t - 1 if exact and not last and not diverged else t  # the point value belongs to
        if not math.isfinite(value):
            diverged = True
        elif hit is None and problem.succeeded(value):
            hit, hit_seconds = at, time.perf_counter() - started
        if last or diverged:
            break
        if not exact:
            batch = next(batches)
            try:
                opt.step(closure)
            except NonFiniteGradientError:
                diverged = True
                break
            stepped()
    finite = [v for v in losses if not math.isnan(v)]
    return DescentResult(
        problem=problem.name,
        seed=seed,
        loss=value,
        best_loss=min(finite) if finite else math.nan,
        x=x.detach(),
        steps=t,
        steps_to_target=hit,
        seconds=time.perf_counter() - started,
        seconds_to_target=hit_seconds,
        diverged=diverged,
        losses=losses,
        path=path,
        acceptance=opt.stats if annealing_options is not None else None,
        accepted=accepted,
    )
