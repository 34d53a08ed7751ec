"""Simulated annealing: Metropolis perturb-and-accept, around any optimizer or on its own.

A proposal moves the weights; the Metropolis rule keeps it with probability
``min(1, exp(-(L_new - L_old) / T))``. Downhill moves are always kept; uphill moves are kept
often while the temperature ``T`` is high, which lets the search climb out of a basin, and
almost never once ``T`` has been lowered, which lets it settle. The temperature is a pure
schedule of the step (:mod:`optimlab.schedules`), so a resumed run anneals exactly as an
unbroken one.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .. import checks, schedules
from .base import OptimizerWrapper, check_generator_state, check_int_entries
from .noise import add_gaussian_noise_

__all__ = [
    "AcceptanceStats",
    "Annealing",
    "AnnealingResult",
    "Proposal",
    "metropolis_accept",
    "simulated_annealing",
]


def _as_float(loss: Any) -> float:
    return float(loss.detach()) if isinstance(loss, Tensor) else float(loss)


def metropolis_accept(delta: float, temperature: float, uniform: float) -> bool:
    """The Metropolis rule: keep a move that changes the loss by ``delta``?

    Kept when ``delta <= 0``, or when ``uniform < exp(-delta / temperature)`` with ``uniform``
    drawn from U[0, 1); at ``temperature == 0`` only moves that do not raise the loss are kept.
    A NaN ``delta`` (the proposal's loss is not a number) is refused.

    >>> metropolis_accept(-1.0, 0.0, 0.99), metropolis_accept(1.0, 0.0, 0.0)
    (True, False)
    >>> metropolis_accept(1.0, 1.0, 0.30), metropolis_accept(1.0, 1.0, 0.40)  # exp(-1) = 0.37
    (True, False)
    """
    if math.isnan(delta):
        return False
    if delta <= 0.0:
        return True
    if temperature <= 0.0:
        return False
    return uniform < math.exp(-delta / temperature)


@dataclasses.dataclass
class AcceptanceStats:
    """Counts of proposals and of accepted ones, overall and among uphill moves.

    >>> s = AcceptanceStats()
    >>> s.record(delta=-1.0, accepted=True); s.record(delta=2.0, accepted=False)
    >>> s.acceptance_rate, s.uphill_acceptance_rate
    (0.5, 0.0)
    """

    proposals: int = 0
    accepted: int = 0
    uphill_proposals: int = 0
    uphill_accepted: int = 0

    def record(self, delta: float, accepted: bool) -> None:
        self.proposals += 1
        self.accepted += int(accepted)
        if not delta <= 0.0:  # NaN counts as uphill: it was a move to somewhere worse
            self.uphill_proposals += 1
            self.uphill_accepted += int(accepted)

    @property
    def acceptance_rate(self) -> float:
        """Accepted proposals / proposals (NaN before the first proposal)."""
        return self.accepted / self.proposals if self.proposals else math.nan

    @property
    def uphill_acceptance_rate(self) -> float:
        """Accepted uphill proposals / uphill proposals: the share of climbs allowed."""
        return self.uphill_accepted / self.uphill_proposals if self.uphill_proposals else math.nan


class Proposal(NamedTuple):
    """What happened at one step of :class:`Annealing`."""

    step: int
    temperature: float
    perturbation_std: float
    loss: float
    proposed_loss: float
    accepted: bool


_STAT_NAMES = ("proposals", "accepted", "uphill_proposals", "uphill_accepted")


class Annealing(OptimizerWrapper):
    """Simulated annealing around any optimizer: a Metropolis move before each of its steps.

    At step ``t``, with ``T = temperature(t)`` and ``s = perturbation_std(t)``::

        L_old = closure()                      loss and gradients at w
        w'    = w + s * z,  z ~ N(0, I)        the proposal
        L_new = closure()                      loss and gradients at w'
        keep w' with probability min(1, exp(-(L_new - L_old) / T)), else return to w
        optimizer.step()                       from wherever we are, with the gradient there

    The descent step is always taken, so a rejected proposal costs no progress; what the
    Metropolis rule decides is whether a jump is kept. While ``T`` is high jumps uphill are often
    kept and the search can leave a basin; once ``T`` is low only jumps that lower the loss are,
    and the optimizer settles. ``temperature`` (in units of the loss) and ``perturbation_std``
    (in units of the weights) are schedules of the step: a number, an :mod:`optimlab.schedules`
    schedule, or a spec string such as
    ``"exponential_decay:lr=1.0,decay_rate=0.01,decay_steps=500"``, whose ``lr`` is then the
    starting temperature.

    ``closure`` is required and is called twice per step; to compare like with like under
    mini-batches it should evaluate the same batch both times (take the batch outside it). A
    rejected proposal restores the weights and their gradients exactly.

    Statistics: :attr:`stats` (:class:`AcceptanceStats`), :attr:`last` (the last
    :class:`Proposal`), :attr:`best_loss` (the lowest loss evaluated at a point that was kept).
    ``state_dict()`` holds them with the step count and the generator state, beside the inner
    optimizer's state; resuming from it continues bit for bit.

    Example::

        >>> import torch, optimlab
        >>> from optimlab.remedies import Annealing
        >>> w = torch.tensor([2.0], requires_grad=True)
        >>> opt = Annealing(optimlab.SGD([w], lr=0.1), temperature="exponential_decay:"
        ...                 "lr=1.0,decay_rate=0.01,decay_steps=100", perturbation_std=0.1)
        >>> def closure():
        ...     opt.zero_grad(); loss = (w ** 2).sum(); loss.backward(); return loss
        >>> for _ in range(100):
        ...     _ = opt.step(closure)
        >>> opt.stats.proposals, bool(opt.best_loss < 0.05)
        (100, True)
    """

    state_key = "annealing"

    def __init__(
        self, optimizer: Any, temperature: Any, perturbation_std: Any, seed: int = 0
    ) -> None:
        super().__init__(optimizer)
        owner = "Annealing"
        self.temperature = schedules.as_schedule(owner, "temperature", temperature)
        self.perturbation_std = schedules.as_schedule(owner, "perturbation_std", perturbation_std)
        self.seed = checks.seed(owner, seed)
        first = next(self.params(), None)
        device = first.device if first is not None else torch.device("cpu")
        self.generator = torch.Generator(device=device).manual_seed(self.seed)
        #: steps taken so far: the ``t`` of the next step's temperature
        self.step_count = 0
        self.stats = AcceptanceStats()
        self.best_loss = math.inf
        self.last: Proposal | None = None

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Propose a jump, keep it or not, then take the optimizer's step; returns the loss at
        the point the step started from."""
        owner = "Annealing"
        if closure is None:
            raise TypeError(
                f"{owner}: step(closure) needs a closure that computes the loss and its "
                "gradients: the loss before and after each proposal decides whether to keep it"
            )
        t = self.step_count
        temperature = schedules.scheduled_value(owner, "temperature", self.temperature, t)
        std = schedules.scheduled_value(owner, "perturbation_std", self.perturbation_std, t)
        with torch.enable_grad():
            loss = closure()
        current = _as_float(loss)
        params = list(self.params())
        with torch.no_grad():
            saved = [p.detach().clone() for p in params]
            saved_grads = [None if p.grad is None else p.grad.clone() for p in params]
        add_gaussian_noise_(params, std, self.generator)
        with torch.enable_grad():
            proposed = _as_float(closure())
        uniform = float(
            torch.rand(
                (), generator=self.generator, dtype=torch.float64, device=self.generator.device
            )
        )
        delta = proposed - current
        accepted = metropolis_accept(delta, temperature, uniform)
        if not accepted:
            with torch.no_grad():
                for p, old, old_grad in zip(params, saved, saved_grads):
                    p.copy_(old)
                    p.grad = old_grad
        self.stats.record(delta, accepted)
        self.best_loss = min(self.best_loss, current, proposed if accepted else math.inf)
        self.last = Proposal(t, temperature, std, current, proposed, accepted)
        self.optimizer.step()
        self.step_count += 1
        return loss

    def _own_state(self) -> dict[str, Any]:
        return {
            "step": self.step_count,
            "generator": self.generator.get_state(),
            **dataclasses.asdict(self.stats),
            "best_loss": self.best_loss,
        }

    def _check_own_state(self, state: Mapping[str, Any]) -> None:
        check_int_entries("Annealing", state, ("step", *_STAT_NAMES))
        check_generator_state("Annealing", state, self.generator)
        best = state.get("best_loss")
        if isinstance(best, bool) or not isinstance(best, numbers.Real):
            raise ValueError(f"Annealing: state['best_loss'] must be a float, got {best!r}")

    def _load_own_state(self, state: Mapping[str, Any]) -> None:
        self.step_count = int(state["step"])
        self.generator.set_state(state["generator"].clone())
        self.stats = AcceptanceStats(**{name: int(state[name]) for name in _STAT_NAMES})
        self.best_loss = float(state["best_loss"])
        self.last = None

    def _describe(self) -> str:
        return (
            f"temperature={self.temperature!r}, perturbation_std={self.perturbation_std!r}, "
            f"seed={self.seed}, step_count={self.step_count}, {self.stats}"
        )


@dataclasses.dataclass
class AnnealingResult:
    """What :func:`simulated_annealing` found and how it got there."""

    x: Tensor
    loss: float
    best_x: Tensor
    best_loss: float
    #: proposals made (the run stops early when ``target`` is reached)
    steps: int
    #: proposals made when ``best_loss <= target`` first held (0: the start); None if never
    steps_to_target: int | None
    seconds: float
    stats: AcceptanceStats
    #: the current loss after each step, starting with the loss at ``x0``
    losses: list[float]
    #: whether each step's proposal was kept
    accepted: list[bool]


def _target(owner: str, target: Any) -> float | None:
    """The loss at which the walk stops: a number (not NaN) or None."""
    if target is None:
        return None
    if isinstance(target, bool) or not isinstance(target, numbers.Real) or math.isnan(target):
        raise TypeError(f"{owner}: target must be a number or None, got {target!r}")
    return float(target)


def _start_point(x0: Any) -> Tensor:
    """A private floating-point copy of ``x0`` (integers take the default dtype)."""
    x = torch.as_tensor(x0).detach().clone()
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    return x


def _proposal(x: Tensor, std: float, generator: torch.Generator) -> Tensor:
    """``x + std * z``, ``z ~ N(0, I)`` drawn from ``generator``; ``x`` is left as it was."""
    proposal = x.clone()
    add_gaussian_noise_([proposal], std, generator)
    return proposal


def simulated_annealing(
    objective: Callable[[Tensor], Any],
    x0: Any,
    temperature: Any,
    perturbation_std: Any,
    steps: int,
    seed: int = 0,
    target: float | None = None,
) -> AnnealingResult:
    """Standalone simulated annealing: a Metropolis random walk on ``objective``, no gradients.

    Each step proposes ``x' = x + s * z`` with ``s = perturbation_std(t)``, ``z ~ N(0, I)``,
    and keeps it by :func:`metropolis_accept` at ``T = temperature(t)``. The best point seen is
    returned beside the last one. With ``target`` the run stops once ``best_loss <= target``.
    ``objective`` maps a tensor shaped like ``x0`` to a number; it is called once per step,
    without autograd.

    >>> import torch
    >>> from optimlab.remedies import simulated_annealing
    >>> r = simulated_annealing(lambda x: ((x - 3) ** 2).sum(), torch.zeros(2),
    ...                         temperature="exponential_decay:lr=1.0,decay_rate=0.001,"
    ...                         "decay_steps=2000", perturbation_std=0.3, steps=2000, seed=0)
    >>> [round(v) for v in r.best_x.tolist()], r.stats.proposals
    ([3, 3], 2000)
    """
    owner = "simulated_annealing"
    if not callable(objective):
        raise TypeError(f"{owner}: objective must be callable as objective(x), got {objective!r}")
    temperature = schedules.as_schedule(owner, "temperature", temperature)
    perturbation_std = schedules.as_schedule(owner, "perturbation_std", perturbation_std)
    steps = checks.integer(owner, "steps", steps, 0)
    seed = checks.seed(owner, seed)
    target = _target(owner, target)
    x = _start_point(x0)
    generator = torch.Generator(device=x.device).manual_seed(seed)

    def evaluate(point: Tensor) -> float:
        with torch.no_grad():
            return float(objective(point))

    start = time.perf_counter()
    current = evaluate(x)
    best_x, best = x.clone(), current
    stats = AcceptanceStats()
    losses, kept = [current], []
    reached = target is not None and best <= target
    steps_to_target = 0 if reached else None
    taken = 0
    while taken < steps and not reached:
        std = schedules.scheduled_value(owner, "perturbation_std", perturbation_std, taken)
        proposal = _proposal(x, std, generator)
        proposed = evaluate(proposal)
        uniform = float(torch.rand((), generator=generator, dtype=torch.float64, device=x.device))
        t_now = schedules.scheduled_value(owner, "temperature", temperature, taken)
        accepted = metropolis_accept(proposed - current, t_now, uniform)
        stats.record(proposed - current, accepted)
        taken += 1
        if accepted:
            x, current = proposal, proposed
            if current < best:
                best_x, best = x.clone(), current
        losses.append(current)
        kept.append(accepted)
        if target is not None and best <= target:
            reached, steps_to_target = True, taken
    return AnnealingResult(
        x=x,
        loss=current,
        best_x=best_x,
        best_loss=best,
        steps=taken,
        steps_to_target=steps_to_target,
        seconds=time.perf_counter() - start,
        stats=stats,
        losses=losses,
        accepted=kept,
    )
