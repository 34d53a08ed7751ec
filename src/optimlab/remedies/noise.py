"""Annealed Gaussian gradient noise (Neelakantan et al., 2015), around any optimizer.

The notes: noise helps gradient descent leave saddle points and poor minima, and the mini-batch
gradient already carries some. Neelakantan et al. add more, on purpose, and let it fade::

    g_t <- g_t + N(0, sigma_t**2),      sigma_t**2 = eta / (1 + t) ** gamma

with ``t`` the number of steps taken so far and ``gamma = 0.55``. Early on the noise can carry
the weights off a ridge or out of a shallow basin; later it is too small to undo convergence.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from .. import checks, schedules
from .base import OptimizerWrapper, check_generator_state, check_int_entries

__all__ = ["AnnealedNoise", "GradientNoise", "add_gaussian_noise_", "annealed_noise"]


@dataclasses.dataclass(frozen=True)
class AnnealedNoise(schedules.Schedule):
    """The noise variance of Neelakantan et al.: ``eta / (1 + t) ** gamma``.

    A pure schedule of the step like those of :mod:`optimlab.schedules`, with ``eta >= 0`` (the
    variance at step 0) and ``gamma >= 0`` (how fast it fades; the paper uses 0.55).

    >>> v = annealed_noise(eta=1.0, gamma=0.5)
    >>> v(0), v(3), v(99)
    (1.0, 0.5, 0.1)
    """

    name: ClassVar[str] = "annealed_noise"
    eta: float
    gamma: float = 0.55

    def __post_init__(self) -> None:
        object.__setattr__(self, "eta", checks.real(self.name, "eta", self.eta))
        object.__setattr__(self, "gamma", checks.real(self.name, "gamma", self.gamma))

    def _lr(self, t: int) -> float:
        return self.eta / (1.0 + t) ** self.gamma


def annealed_noise(eta: float, gamma: float = 0.55) -> AnnealedNoise:
    """The variance schedule ``eta / (1 + t) ** gamma``; see :class:`AnnealedNoise`."""
    return AnnealedNoise(eta, gamma)


@torch.no_grad()
def add_gaussian_noise_(tensors: Iterable[Tensor], std: float, generator: torch.Generator) -> None:
    """Add ``std * N(0, 1)`` to every tensor in place, drawn from ``generator`` in order.

    The noise is drawn on the generator's device in each tensor's dtype (complex tensors as pairs
    of reals) and copied where a tensor lives elsewhere. ``std == 0`` draws nothing.

    >>> g = torch.Generator().manual_seed(0)
    >>> t = torch.zeros(3)
    >>> add_gaussian_noise_([t], 0.0, g); t.tolist()
    [0.0, 0.0, 0.0]
    """
    if std == 0.0:
        return
    for tensor in tensors:
        real = torch.view_as_real(tensor) if tensor.is_complex() else tensor
        noise = torch.randn(
            real.shape, generator=generator, dtype=real.dtype, device=generator.device
        )
        real.add_(noise.to(real.device), alpha=std)


class GradientNoise(OptimizerWrapper):
    """Add annealed Gaussian noise to every gradient, then take the wrapped optimizer's step.

    Update, with ``t`` the number of steps this wrapper has taken (``step_count``)::

        g <- g + sigma_t * z,   z ~ N(0, I) from the wrapper's own generator
        sigma_t**2 = eta / (1 + t) ** gamma            (Neelakantan et al., 2015)
        then optimizer.step()

    Works around any ``torch.optim.Optimizer`` (every optimlab optimizer, torch's own) and around
    the other remedy wrappers. Instead of ``eta`` and ``gamma`` you may give ``variance``: any
    schedule of the step (a number, an :mod:`optimlab.schedules` schedule, a spec string such as
    ``"cosine_decay:lr=0.1,decay_steps=1000"``). The noise comes from a ``torch.Generator``
    seeded with ``seed`` on the device of the first parameter, so it never touches torch's global
    random state; ``state_dict()`` holds the step count and the generator state beside the inner
    optimizer's state, and resuming from it continues bit for bit.

    Noise is added once per step, after ``closure`` (if given) has computed the gradients; an
    optimizer that calls the closure again itself (``torch.optim.LBFGS``) would overwrite it.

    Example::

        >>> import torch, optimlab
        >>> from optimlab.remedies import GradientNoise
        >>> w = torch.tensor([1.0, 0.0], requires_grad=True)   # on the ridge of x^2 - y^2
        >>> opt = GradientNoise(optimlab.SGD([w], lr=0.1), eta=0.1, seed=0)
        >>> for _ in range(40):
        ...     opt.zero_grad()
        ...     (w[0] ** 2 - w[1] ** 2).backward()
        ...     _ = opt.step()
        >>> bool(abs(w[1]) > 1.0)   # plain gradient descent would still have w[1] == 0
        True
    """

    state_key = "gradient_noise"

    def __init__(
        self,
        optimizer: Any,
        eta: float | None = None,
        gamma: float = 0.55,
        seed: int = 0,
        *,
        variance: Any = None,
    ) -> None:
        super().__init__(optimizer)
        owner = "GradientNoise"
        if variance is None:
            if eta is None:
                raise TypeError(
                    f"{owner}: give eta (the noise variance at step 0, with gamma) or variance "
                    "(a schedule of the step); got neither"
                )
            self.variance: Callable[[int], float] = AnnealedNoise(
                checks.real(owner, "eta", eta), checks.real(owner, "gamma", gamma)
            )
        else:
            if eta is not None:
                raise TypeError(
                    f"{owner}: give eta (with gamma) or variance, not both; got eta={eta!r} and "
                    f"variance={variance!r}"
                )
            self.variance = schedules.as_schedule(owner, "variance", variance)
        self.seed = checks.seed(owner, seed)
        first = next(self.params(), None)
        device = first.device if first is not None else torch.device("cpu")
        self.generator = torch.Generator(device=device).manual_seed(self.seed)
        #: steps taken so far: the ``t`` of the next step's variance
        self.step_count = 0

    def noise_std(self, step: int | None = None) -> float:
        """``sigma_t``, the standard deviation of the noise at ``step`` (default: the next)."""
        t = self.step_count if step is None else step
        return math.sqrt(schedules.scheduled_value("GradientNoise", "variance", self.variance, t))

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Compute the gradients with ``closure`` (if given), add noise, take the inner step."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = []
        for p in self.params():
            if p.grad is not None:
                if p.grad.layout != torch.strided:
                    raise TypeError(
                        f"GradientNoise: sparse gradients are not supported (a {p.grad.layout} "
                        f"gradient of shape {tuple(p.grad.shape)})"
                    )
                grads.append(p.grad)
        add_gaussian_noise_(grads, self.noise_std(), self.generator)
        self.optimizer.step()
        self.step_count += 1
        return loss

    def _own_state(self) -> dict[str, Any]:
        return {"step": self.step_count, "generator": self.generator.get_state()}

    def _check_own_state(self, state: Mapping[str, Any]) -> None:
        check_int_entries("GradientNoise", state, ("step",))
        check_generator_state("GradientNoise", state, self.generator)

    def _load_own_state(self, state: Mapping[str, Any]) -> None:
        self.step_count = int(state["step"])
        self.generator.set_state(state["generator"].clone())

    def _describe(self) -> str:
        return f"variance={self.variance!r}, seed={self.seed}, step_count={self.step_count}"
