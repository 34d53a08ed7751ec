"""Two-dimensional test functions with known minima, written in torch so autograd gives gradients.

Each :class:`TestFunction` is a frozen record: ``name``, ``title``, the formula as text, the
function ``f`` itself, its known ``minima`` (none for the saddles), a ``start`` point where the
lab begins every optimizer, and the ``bounds`` of the plot. ``f`` takes a tensor whose last
dimension holds ``(x, y)`` and returns a tensor of the leading shape, so the same function
evaluates one point (shape ``(2,)`` -> ``()``) and a whole plotting grid (``(n, n, 2)`` ->
``(n, n)``). ``gradient(x, y)`` is its gradient in closed form over Python floats: the
playground steps an optimizer a few thousand times per answer, and autograd's graph for two
numbers would cost ten times the step (the tests check each closed form against autograd).

=====================  =========================================================  =============
name                   f(x, y)                                                    minima
=====================  =========================================================  =============
``quadratic_bowl``     ``x**2 / 10 + 2 * y**2`` (elongated: curvatures 0.2, 4)    (0, 0)
``ravine``             ``(x + y)**2 / 200 + 5 * (x - y)**2`` (curvatures 0.02, 20) (0, 0)
``rosenbrock``         ``(1 - x)**2 + 100 * (y - x**2)**2``                       (1, 1)
``beale``              ``(1.5 - x + xy)**2 + (2.25 - x + xy**2)**2 + ...``        (3, 0.5)
``himmelblau``         ``(x**2 + y - 11)**2 + (x + y**2 - 7)**2``                 four, f = 0
``saddle``             ``x**2 - y**2``                                            none
``monkey_saddle``      ``x**3 - 3 * x * y**2``                                    none
``rastrigin``          ``20 + sum(t**2 - 10 * cos(2 * pi * t))``                  (0, 0)
``six_hump_camel``     ``(4 - 2.1x**2 + x**4/3) x**2 + xy + (-4 + 4y**2) y**2``   two, -1.0316
=====================  =========================================================  =============

Example::

    >>> import torch
    >>> from optimlab.lab.functions import FUNCTIONS
    >>> rosenbrock = FUNCTIONS["rosenbrock"]
    >>> rosenbrock.f(torch.tensor([1.0, 1.0])).item(), rosenbrock.minimum_value
    (0.0, 0.0)
    >>> xy = torch.tensor(rosenbrock.start, dtype=torch.float64, requires_grad=True)
    >>> rosenbrock.f(xy).backward(); [round(g, 6) for g in xy.grad.tolist()]
    [-215.6, -88.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["FUNCTIONS", "TestFunction", "get_function"]

Point = tuple[float, float]


@dataclass(frozen=True)
class TestFunction:
    """A 2-D function with known minima, a start point and plot bounds.

    ``minima`` lists every global minimum (several for Himmelblau and the six-hump camel, none
    for the saddles, which are unbounded below); ``critical_points`` lists the other points
    the notes talk about (the saddle points). ``bounds`` is ``((x_min, x_max), (y_min, y_max))``.
    """

    __test__ = False  # a library class, not a pytest test class, despite its name

    name: str
    title: str
    formula: str
    f: Callable[[Tensor], Tensor]
    minima: tuple[Point, ...]
    start: Point
    bounds: tuple[Point, Point]
    critical_points: tuple[Point, ...] = ()
    about: str = ""
    gradient: Callable[[float, float], Point] | None = None

    @property
    def minimum_value(self) -> float | None:
        """``f`` at its minima, or None when it has none."""
        if not self.minima:
            return None
        return float(self.f(torch.tensor(self.minima[0], dtype=torch.float64)))

    def distance_to_minimum(self, point: Point) -> float:
        """Euclidean distance from ``point`` to the nearest minimum (``nan`` without minima)."""
        if not self.minima:
            return math.nan
        return min(math.dist(point, m) for m in self.minima)

    def __call__(self, xy: Tensor) -> Tensor:
        return self.f(xy)


def _split(xy: Tensor) -> tuple[Tensor, Tensor]:
    return xy[..., 0], xy[..., 1]


def quadratic_bowl(xy: Tensor) -> Tensor:
    x, y = _split(xy)
    return x**2 / 10 + 2 * y**2


def ravine(xy: Tensor) -> Tensor:
    x, y = _split(xy)
    return (x + y) ** 2 / 200 + 5 * (x - y) ** 2


def rosenbrock(xy: Tensor) -> Tensor:
    x, y = _split(xy)
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def beale(xy: Tensor) -> Tensor:
    x, y = _split(xy)
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def himmelblau(xy: Tensor) -> Tensor:
    x, y = _split(xy)
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


def saddle(xy: Tensor) -> Tensor:
    x, y = _split(xy)
    return x**2 - y**2


def monkey_saddle(xy: Tensor) -> Tensor:
    x, y = _split(xy)
    return x**3 - 3 * x * y**2


def rastrigin(xy: Tensor, *, summed: bool = False) -> Tensor:
    """``20 + x^2 - 10 cos(2 pi x) + y^2 - 10 cos(2 pi y)``, term by term.

    ``summed=True`` computes ``10 n + sum_i (x_i^2 - 10 cos(2 pi x_i))`` over the last dimension
    instead: the same function, for any number ``n`` of coordinates, added in another order, so
    its value may differ in the last bit (its gradient does not). The escape study
    (:mod:`optimlab.lab.escape.problems`) uses this form, and its recorded losses depend on it.
    """
    if summed:
        return 10 * xy.shape[-1] + (xy**2 - 10 * torch.cos(2 * math.pi * xy)).sum(-1)
    x, y = _split(xy)
    two_pi = 2 * math.pi
    return 20 + x**2 - 10 * torch.cos(two_pi * x) + y**2 - 10 * torch.cos(two_pi * y)


def six_hump_camel(xy: Tensor) -> Tensor:
    x, y = _split(xy)
    return (4 - 2.1 * x**2 + x**4 / 3) * x**2 + x * y + (-4 + 4 * y**2) * y**2


# --- gradients in closed form, over floats (checked against autograd by the tests) -----------


def quadratic_bowl_gradient(x: float, y: float) -> Point:
    return (x / 5, 4 * y)


def ravine_gradient(x: float, y: float) -> Point:
    along, across = (x + y) / 100, 10 * (x - y)
    return (along + across, along - across)


def rosenbrock_gradient(x: float, y: float) -> Point:
    inner = y - x * x
    return (-2 * (1 - x) - 400 * x * inner, 200 * inner)


def beale_gradient(x: float, y: float) -> Point:
    a = 1.5 - x + x * y
    b = 2.25 - x + x * y * y
    c = 2.625 - x + x * y**3
    gx = 2 * a * (y - 1) + 2 * b * (y * y - 1) + 2 * c * (y**3 - 1)
    gy = 2 * a * x + 2 * b * 2 * x * y + 2 * c * 3 * x * y * y
    return (gx, gy)


def himmelblau_gradient(x: float, y: float) -> Point:
    a = x * x + y - 11
    b = x + y * y - 7
    return (4 * x * a + 2 * b, 2 * a + 4 * y * b)


def saddle_gradient(x: float, y: float) -> Point:
    return (2 * x, -2 * y)


def monkey_saddle_gradient(x: float, y: float) -> Point:
    return (3 * x * x - 3 * y * y, -6 * x * y)


def rastrigin_gradient(x: float, y: float) -> Point:
    two_pi = 2 * math.pi
    return (
        2 * x + 10 * two_pi * math.sin(two_pi * x),
        2 * y + 10 * two_pi * math.sin(two_pi * y),
    )


def six_hump_camel_gradient(x: float, y: float) -> Point:
    gx = 8 * x - 8.4 * x**3 + 2 * x**5 + y
    gy = x - 8 * y + 16 * y**3
    return (gx, gy)


#: Every test function, by name.
FUNCTIONS: dict[str, TestFunction] = {
    fn.name: fn
    for fn in (
        TestFunction(
            name="quadratic_bowl",
            title="Elongated quadratic bowl",
            formula="x^2/10 + 2 y^2",
            f=quadratic_bowl,
            gradient=quadratic_bowl_gradient,
            minima=((0.0, 0.0),),
            start=(-9.0, 1.5),
            bounds=((-10.0, 10.0), (-2.5, 2.5)),
            about="steep across, shallow along: plain gradient descent zig-zags (the notes' "
            "elliptical contours)",
        ),
        TestFunction(
            name="ravine",
            title="Diagonal ravine",
            formula="(x + y)^2/200 + 5 (x - y)^2",
            f=ravine,
            gradient=ravine_gradient,
            minima=((0.0, 0.0),),
            start=(-8.0, -6.0),
            bounds=((-10.0, 10.0), (-10.0, 10.0)),
            about="curvature 0.02 along the valley and 20 across it (condition number 1000), "
            "diagonal to the axes: plain gradient descent crawls along it, and per-coordinate "
            "step sizes see the same curvature on both axes",
        ),
        TestFunction(
            name="rosenbrock",
            title="Rosenbrock",
            formula="(1 - x)^2 + 100 (y - x^2)^2",
            f=rosenbrock,
            gradient=rosenbrock_gradient,
            minima=((1.0, 1.0),),
            start=(-1.2, 1.0),
            bounds=((-2.0, 2.0), (-1.0, 3.0)),
            about="a narrow curved valley with a flat floor",
        ),
        TestFunction(
            name="beale",
            title="Beale",
            formula="(1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2",
            f=beale,
            gradient=beale_gradient,
            minima=((3.0, 0.5),),
            start=(1.0, 1.4),
            bounds=((-4.5, 4.5), (-4.5, 4.5)),
            about="flat plateaus and sharp ridges near the corners",
        ),
        TestFunction(
            name="himmelblau",
            title="Himmelblau",
            formula="(x^2 + y - 11)^2 + (x + y^2 - 7)^2",
            f=himmelblau,
            gradient=himmelblau_gradient,
            minima=(
                (3.0, 2.0),
                (-2.805118, 3.131312),
                (-3.779310, -3.283186),
                (3.584428, -1.848126),
            ),
            start=(-0.5, -0.5),
            bounds=((-5.0, 5.0), (-5.0, 5.0)),
            about="four equal minima: where you end depends on the path",
        ),
        TestFunction(
            name="saddle",
            title="Saddle",
            formula="x^2 - y^2",
            f=saddle,
            gradient=saddle_gradient,
            minima=(),
            start=(-1.5, 1e-3),
            bounds=((-2.0, 2.0), (-2.0, 2.0)),
            critical_points=((0.0, 0.0),),
            about="zero gradient at the origin; on the ridge y = 0 gradient descent never "
            "leaves it, a little off it escapes",
        ),
        TestFunction(
            name="monkey_saddle",
            title="Monkey saddle",
            formula="x^3 - 3 x y^2",
            f=monkey_saddle,
            gradient=monkey_saddle_gradient,
            minima=(),
            start=(1.0, 0.05),
            bounds=((-1.5, 1.5), (-1.5, 1.5)),
            critical_points=((0.0, 0.0),),
            about="a flat, degenerate saddle: the gradient vanishes to second order",
        ),
        TestFunction(
            name="rastrigin",
            title="Rastrigin",
            formula="20 + x^2 - 10 cos(2 pi x) + y^2 - 10 cos(2 pi y)",
            f=rastrigin,
            gradient=rastrigin_gradient,
            minima=((0.0, 0.0),),
            start=(2.2, -1.8),
            bounds=((-3.0, 3.0), (-3.0, 3.0)),
            about="a bowl covered in local minima one unit apart",
        ),
        TestFunction(
            name="six_hump_camel",
            title="Six-hump camel",
            formula="(4 - 2.1 x^2 + x^4/3) x^2 + x y + (-4 + 4 y^2) y^2",
            f=six_hump_camel,
            gradient=six_hump_camel_gradient,
            minima=((0.0898, -0.7126), (-0.0898, 0.7126)),
            start=(-1.6, -0.6),
            bounds=((-2.0, 2.0), (-1.2, 1.2)),
            about="six minima, two of them global",
        ),
    )
}


def get_function(name: str) -> TestFunction:
    """The test function called ``name``; the error lists the valid names."""
    try:
        return FUNCTIONS[name]
    except KeyError:
        valid = ", ".join(FUNCTIONS)
        raise KeyError(f"unknown test function {name!r}; valid names: {valid}") from None
