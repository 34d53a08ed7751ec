"""The traps of the escape study: saddle points and functions with many minima, in torch.

Each :class:`Problem` is an objective over a flat weight vector ``x`` (autograd works), where to
start, and when a run counts as a success:

* saddles (``kind="saddle"``) are unbounded below; a run *escapes* once ``f(x) <= target``,
  a value the saddle itself does not reach;
* functions with many minima (``kind="minima"``) succeed once ``f(x) <= minimum + tolerance``,
  with the tolerance well below the gap to the next-best minimum.

Mini-batches: a problem is also a finite sum ``f(x) = mean_i f_i(x)`` over ``samples`` data
points, so mini-batch SGD has real data to sample. For the formulas ``f_i(x) = f(x) + a_i . x``
with zero-mean vectors ``a_i`` of standard deviation ``sample_noise``: the full batch gives the
exact gradient and a mini-batch an unbiased, noisy one, as for a network. The network problem
has ordinary data.

The 2-D formulas take ``x`` of shape ``(..., 2)`` and return shape ``(...)``, so a grid can be
evaluated at once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import torch
from torch import Tensor

from .. import functions

__all__ = [
    "HIMMELBLAU",
    "MONKEY_SADDLE",
    "PROBLEMS",
    "QUADRATIC_SADDLE",
    "RASTRIGIN",
    "SADDLE",
    "SIX_HUMP_CAMEL",
    "TINY_NETWORK",
    "Problem",
    "quadratic_saddle",
    "tiny_network",
]


# --- the formulas ------------------------------------------------------------------------------
# The 2-D traps are the lab's test functions (optimlab.lab.functions); the problems below add
# where to start, when a run succeeds, and the data mini-batches are drawn from.


def _rastrigin(x: Tensor) -> Tensor:
    # The lab's Rastrigin in the form summed over the last dimension (see its ``summed``).
    return functions.rastrigin(x, summed=True)


QUADRATIC_SADDLE_DIM = 50
QUADRATIC_SADDLE_NEGATIVE = (-0.5, -0.25)


@functools.lru_cache(maxsize=4)
def _quadratic_saddle_basis(dim: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    # A fixed random rotation, so the negative directions are not coordinate axes (which
    # per-coordinate methods such as Adam would treat specially).
    generator = torch.Generator().manual_seed(20150101)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    k = len(QUADRATIC_SADDLE_NEGATIVE)
    curvatures = torch.cat(
        [torch.tensor(QUADRATIC_SADDLE_NEGATIVE), torch.linspace(0.5, 2.0, dim - k)]
    ).to(torch.float64)
    return q.to(dtype), curvatures.to(dtype)


def quadratic_saddle(x: Tensor) -> Tensor:
    """``0.5 * sum_i c_i (q_i . x)^2`` in 50 dimensions: curvatures ``c`` of -0.5 and -0.25
    along two directions and 0.5 ... 2 along the 48 others, in a fixed random basis ``q``. From
    a start in the positive subspace gradient descent goes to the saddle; only the rounding
    error of the rotation (about 1e-16) points down the two negative directions."""
    q, curvatures = _quadratic_saddle_basis(x.shape[-1], x.dtype)
    coordinates = x @ q
    return 0.5 * (curvatures * coordinates**2).sum(-1)


def _quadratic_saddle_start() -> tuple[float, ...]:
    q, _ = _quadratic_saddle_basis(QUADRATIC_SADDLE_DIM, torch.float64)
    k = len(QUADRATIC_SADDLE_NEGATIVE)
    return tuple(q[:, k:].sum(1).tolist())  # one unit along every positive direction


def rastrigin(x: Tensor) -> Tensor:
    """``10 n + sum(x_i^2 - 10 cos(2 pi x_i))``: a bowl covered in a grid of local minima, one
    near every integer point; the global minimum is 0 at the origin, the next ones about 1."""
    return 10 * x.shape[-1] + (x**2 - 10 * torch.cos(2 * math.pi * x)).sum(-1)


def six_hump_camel(x: Tensor) -> Tensor:
    """``(4 - 2.1 x^2 + x^4 / 3) x^2 + x y + (4 y^2 - 4) y^2``: six minima; the two global ones
    at ``+-(0.0898, -0.7126)`` with value -1.0316, the others at -0.2155 and 2.1043."""
    a, b = x[..., 0], x[..., 1]
    return (4 - 2.1 * a**2 + a**4 / 3) * a**2 + a * b + (4 * b**2 - 4) * b**2


def himmelblau(x: Tensor) -> Tensor:
    """``(x^2 + y - 11)^2 + (x + y^2 - 7)^2``: four minima, all global (value 0), a local
    maximum and four saddles; the control of the study, with no bad minimum to be caught in."""
    a, b = x[..., 0], x[..., 1]
    return (a**2 + b - 11) ** 2 + (a + b**2 - 7) ** 2


# The small non-convex network: a 1-2-1 tanh student fitting a teacher of the same shape, a well
# tanh(3x - 3) - tanh(3x + 3), so the global minimum is 0 (the teacher, or its mirror image). A
# student whose two units do not split the two walls between them sits on a plateau or in a
# poor minimum, fitting one wall or the mean.
NETWORK_HIDDEN = 2
NETWORK_SAMPLES = 64
NETWORK_DIM = 3 * NETWORK_HIDDEN + 1
_TEACHER = (
    (3.0, 3.0),  # input weights
    (-3.0, 3.0),  # biases
    (1.0, -1.0),  # output weights
    0.0,  # output bias
)


def _network_output(x: Tensor, inputs: Tensor) -> Tensor:
    h = NETWORK_HIDDEN
    w_in, b_in, w_out, b_out = x[:h], x[h : 2 * h], x[2 * h : 3 * h], x[3 * h]
    return torch.tanh(inputs * w_in + b_in) @ w_out + b_out


@functools.lru_cache(maxsize=4)
def _network_data(dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    inputs = torch.linspace(-2.0, 2.0, NETWORK_SAMPLES, dtype=torch.float64).unsqueeze(1)
    teacher = torch.tensor(
        [*_TEACHER[0], *_TEACHER[1], *_TEACHER[2], _TEACHER[3]], dtype=torch.float64
    )
    with torch.no_grad():
        targets = _network_output(teacher, inputs)
    return inputs.to(dtype), targets.to(dtype)


def network_batch_loss(x: Tensor, inputs: Tensor, targets: Tensor) -> Tensor:
    """Mean squared error of the student with weights ``x`` on one batch."""
    return ((_network_output(x, inputs) - targets) ** 2).mean()


def tiny_network(x: Tensor) -> Tensor:
    """The loss of a 1-2-1 tanh student fitting a same-shaped teacher on 64 points of
    ``[-2, 2]``: 7 weights, global minimum 0 (the targets' variance is 0.68)."""
    inputs, targets = _network_data(x.dtype)
    return network_batch_loss(x, inputs, targets)


# --- the problem record --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Problem:
    """An objective, where to start, and when a run counts as a success.

    ``objective(x)`` maps the flat weights (shape ``(dim,)``) to the full loss. Random starts are
    uniform in the box ``[low, high]`` (numbers, or one per dimension). ``start`` is the fixed
    start of the trap (None: a random start from the seed). A run succeeds once
    ``objective(x) <= target``. ``minimum`` is the global minimum's value (None when unbounded
    below). ``samples``, ``sample_noise`` and ``batch_loss`` describe the finite sum that
    mini-batches are drawn from (see the module docstring).
    """

    name: str
    objective: Callable[[Tensor], Tensor]
    dim: int
    low: float | tuple[float, ...]
    high: float | tuple[float, ...]
    target: float
    kind: str
    start: tuple[float, ...] | None = None
    minimum: float | None = None
    samples: int = 64
    sample_noise: float = 1.0
    #: ``batch_loss(x, *batch)`` and ``sample_data(dtype)``; None: the linear shifts
    batch_loss: Callable[..., Tensor] | None = None
    sample_data: Callable[[torch.dtype], tuple[Tensor, ...]] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("saddle", "minima"):
            raise ValueError(f"Problem: kind must be 'saddle' or 'minima', got {self.kind!r}")
        if self.start is not None and len(self.start) != self.dim:
            raise ValueError(
                f"Problem {self.name!r}: start has {len(self.start)} entries but dim={self.dim}"
            )

    def loss(self, x: Tensor, batch: tuple[Tensor, ...] | None = None) -> Tensor:
        """The full loss (``batch=None``) or the loss on one mini-batch of :meth:`data`."""
        if batch is None:
            return self.objective(x)
        if self.batch_loss is not None:
            return self.batch_loss(x, *batch)
        (shifts,) = batch
        return self.objective(x) + (shifts.mean(0) * x).sum()

    def data(self, dtype: torch.dtype = torch.float64) -> tuple[Tensor, ...]:
        """The samples mini-batches are drawn from (a tuple of tensors with ``samples`` rows)."""
        if self.sample_data is not None:
            return self.sample_data(dtype)
        generator = torch.Generator().manual_seed(1234)
        shifts = torch.randn(self.samples, self.dim, generator=generator, dtype=torch.float64)
        shifts = (shifts - shifts.mean(0)) * self.sample_noise
        return (shifts.to(dtype),)

    def random_start(self, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
        """A point drawn uniformly from the box ``[low, high]``."""
        low = torch.as_tensor(self.low, dtype=dtype).expand(self.dim)
        high = torch.as_tensor(self.high, dtype=dtype).expand(self.dim)
        return low + (high - low) * torch.rand(self.dim, generator=generator, dtype=dtype)

    def succeeded(self, value: float) -> bool:
        return value <= self.target

    def success_text(self) -> str:
        """How success is judged, in words for the report."""
        if self.kind == "saddle":
            return f"escaped: f <= {self.target:g}"
        return f"f <= {self.target:g} (global min {self.minimum:g})"


# The textbook saddle: the gradient vanishes at the origin, and on the ridge y = 0 it points
# along the ridge, so gradient descent from (1, 0) goes to the saddle and stays.
SADDLE = Problem(
    "saddle",
    functions.saddle,
    dim=2,
    low=-1.0,
    high=1.0,
    target=-1.0,
    kind="saddle",
    start=(1.0, 0.0),
    description="x^2 - y^2 from (1, 0), on the ridge",
)
# A degenerate saddle (zero Hessian) with three valleys: on y = 0 gradient descent from x > 0
# creeps toward the origin as 1 / t and never crosses.
MONKEY_SADDLE = Problem(
    "monkey_saddle",
    functions.monkey_saddle,
    dim=2,
    low=-1.0,
    high=1.0,
    target=-1.0,
    kind="saddle",
    start=(1.0, 0.0),
    description="x^3 - 3xy^2 from (1, 0): a saddle with zero curvature",
)
QUADRATIC_SADDLE = Problem(
    "quadratic_saddle",
    quadratic_saddle,
    dim=QUADRATIC_SADDLE_DIM,
    low=-1.0,
    high=1.0,
    target=-1.0,
    kind="saddle",
    start=_quadratic_saddle_start(),
    sample_noise=0.5,
    description="50-d quadratic, 2 of 50 curvatures negative, from the positive subspace",
)
# A bowl covered in a grid of local minima, one near every integer point; the global minimum
# is 0 at the origin, the next ones about 1.
RASTRIGIN = Problem(
    "rastrigin",
    _rastrigin,
    dim=2,
    low=-3.0,
    high=3.0,
    target=0.1,
    kind="minima",
    minimum=0.0,
    sample_noise=5.0,
    description="2-d Rastrigin, starts in [-3, 3]^2: 36 basins, 1 global",
)
# Six minima: the two global ones at +-(0.0898, -0.7126) with value -1.0316, the others at
# -0.2155 and 2.1043.
SIX_HUMP_CAMEL = Problem(
    "six_hump_camel",
    functions.six_hump_camel,
    dim=2,
    low=(-3.0, -2.0),
    high=(3.0, 2.0),
    target=-1.0316 + 0.1,
    kind="minima",
    minimum=-1.0316,
    sample_noise=2.0,
    description="six-hump camel on [-3, 3] x [-2, 2]: 6 minima, 2 of them global",
)
# Four minima, all global (value 0), a local maximum and four saddles: the control of the
# study, with no bad minimum to be caught in.
HIMMELBLAU = Problem(
    "himmelblau",
    functions.himmelblau,
    dim=2,
    low=-5.0,
    high=5.0,
    target=0.1,
    kind="minima",
    minimum=0.0,
    sample_noise=10.0,
    description="Himmelblau on [-5, 5]^2: 4 minima, all global (the control)",
)
TINY_NETWORK = Problem(
    "tiny_network",
    tiny_network,
    dim=NETWORK_DIM,
    low=-2.0,
    high=2.0,
    target=0.01,
    kind="minima",
    minimum=0.0,
    samples=NETWORK_SAMPLES,
    batch_loss=network_batch_loss,
    sample_data=_network_data,
    description="1-2-1 tanh student fitting a same-shaped teacher (7 weights), 64 points",
)

#: Every problem of the study, by name.
PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in (
        SADDLE,
        MONKEY_SADDLE,
        QUADRATIC_SADDLE,
        RASTRIGIN,
        SIX_HUMP_CAMEL,
        HIMMELBLAU,
        TINY_NETWORK,
    )
}
