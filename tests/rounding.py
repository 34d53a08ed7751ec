"""Tolerances for comparing an optimizer's path with a float64 NumPy transcription.

Two float64 computations of the same rule differ by rounding: a few ulp per operation, where
the operations differ (the order of a product, a fused multiply-add or not, which vector unit
ATen picked on this CPU). Over a run these differences are carried forward and, where the
update is sensitive to its inputs (RMSprop's normalized steps near a minimum, a sign that
flips, a maximum that changes hands), amplified: how much depends on the path, not on the
machine. A fixed ``rtol`` tuned on one machine is therefore either loose where the path is
well conditioned or fails on another vector unit where it is not.

:func:`assert_path_close` derives the tolerance of each point from the computation itself.
It runs the reference again with a one-ulp difference injected at every step (the gradient
evaluated at a point one ulp away, and returned one ulp away: what one rounding difference
upstream does to the step) and takes the largest distance from the plain reference at each
point as that point's sensitivity ``S_t``. A difference of ``k`` ulp per step moves the path
by about ``k * S_t``; with ``OPS`` for the operations of one step that may round differently
(a few ulp each), the point's tolerance is

    OPS * (S_t + (t + 1) * eps * max|w_s|, s <= t)

the second term being the tolerance of a path that nothing amplifies: ``t + 1`` steps of one
ulp of the largest coordinate so far each. Where the sensitivity grows so large that this
bound stops telling a wrong rule from rounding, :func:`assert_path_close` fails and says so:
compare fewer steps there.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

EPS = float(np.finfo(np.float64).eps)

#: ulp of difference per step that the tolerance allows for each ulp injected: about ten
#: operations per step (a moving average, a root, a division, the update), each within one
#: or two ulp of the transcription's, and a factor for the injected perturbations being one
#: draw of the many roundings that could differ. (Measured over every registry case with a
#: reference, fused or not, under ATEN_CPU_CAPABILITY=default and avx2: the largest
#: |actual - reference| / (S_t + (t + 1) eps max|w|) was 0.51, so 32 leaves a factor of 60
#: for other vector units; a reference off by 1e-8 relative in one constant still fails.)
OPS = 32

#: The tolerance must stay this small relative to the distance the path travels, or the
#: comparison says little (any rule that gets the first steps right would pass).
MEANINGFUL = 1e-6

Grad = Callable[[np.ndarray], np.ndarray]


def _perturbed(grad: Grad, signs: Callable[[tuple[int, ...]], np.ndarray]) -> Grad:
    def nudge(x):  # one ulp, or a list of arrays (one per layer) one ulp each
        if isinstance(x, (list, tuple)):
            return [nudge(part) for part in x]
        x = np.asarray(x, dtype=np.float64)
        return x * (1 + EPS * signs(x.shape))

    def perturbed(w):
        return nudge(grad(nudge(w)))

    return perturbed


def sensitivity(run_reference: Callable[[Grad], object], grad: Grad, seed: int = 0):
    """The plain reference path and, for each of its points, ``S_t`` (see the module).

    ``run_reference(grad)`` returns the path (an array of points, one row per step) or a tuple
    of such paths (then both results are tuples). Four perturbed runs: one ulp up at every
    step, one ulp down (a bias that accumulates linearly, the worst case of a systematic
    rounding difference) and two of random signs.
    """
    rng = np.random.default_rng(seed)
    modes = [
        lambda shape: np.ones(shape),
        lambda shape: -np.ones(shape),
        lambda shape: rng.choice([-1.0, 1.0], size=shape),
        lambda shape: rng.choice([-1.0, 1.0], size=shape),
    ]
    plain = _as_tuple(run_reference(grad))
    spread = [np.zeros_like(p) for p in plain]
    for mode in modes:
        other = _as_tuple(run_reference(_perturbed(grad, mode)))
        spread = [np.maximum(s, np.abs(o - p)) for s, o, p in zip(spread, other, plain)]
    return plain, spread


def path_tolerance(plain: np.ndarray, spread: np.ndarray, first_step: int = 1) -> np.ndarray:
    """Each point's tolerance from its sensitivity (see the module docstring); the rows of
    ``plain`` are the points after ``first_step - 1``, ``first_step``, ... steps."""
    steps = np.arange(first_step, first_step + len(plain), dtype=np.float64)
    largest = np.maximum.accumulate(np.abs(plain).reshape(len(plain), -1).max(axis=1))
    floor = (steps * EPS * largest).reshape((-1,) + (1,) * (plain.ndim - 1))
    return OPS * (spread + floor)


def assert_path_close(
    actual, run_reference: Callable[[Grad], object], grad: Grad, final_after: int | None = None
):
    """Assert that ``actual`` (a path, or a tuple of paths) follows ``run_reference(grad)``
    within the tolerance that rounding allows on this path (see the module docstring).

    In a tuple, a 1-D array is one point after as many steps as the first path has (the end
    of the run: schedule-free's ``x`` and ``z``). With ``final_after``, every array of the
    tuple is only the end point, after that many steps: a layer's tensor."""
    plain, spread = sensitivity(run_reference, grad)
    actual = _as_tuple(actual)
    assert len(actual) == len(plain)
    steps = len(plain[0]) if final_after is None else final_after
    for got, expected, s in zip(actual, plain, spread):
        got = np.asarray(got, dtype=np.float64)
        assert got.shape == expected.shape, (got.shape, expected.shape)
        if final_after is not None or expected.ndim == 1:  # one point, at the end
            got, expected, s = got[None], expected[None], s[None]
            tolerance = path_tolerance(expected, s, first_step=steps)
        else:
            tolerance = path_tolerance(expected, s)
        travelled = np.abs(expected - expected[0]).max()
        assert tolerance.max() <= MEANINGFUL * max(travelled, np.abs(expected).max()), (
            f"rounding is amplified to {tolerance.max():.3g} on this path: too ill conditioned "
            "to compare; compare fewer steps"
        )
        error = np.abs(got - expected)
        bad = error > tolerance
        if bad.any():
            t = int(np.argwhere(bad)[0][0])
            raise AssertionError(
                f"the paths part at step {t}: |actual - reference| = {error[t].max():.3g}, "
                f"tolerance {tolerance[t].min():.3g} (sensitivity {s[t].max():.3g})\n"
                f"actual    {got[t]}\nreference {expected[t]}"
            )


def _as_tuple(paths) -> tuple[np.ndarray, ...]:
    if isinstance(paths, tuple):
        return tuple(np.asarray(p, dtype=np.float64) for p in paths)
    return (np.asarray(paths, dtype=np.float64),)
