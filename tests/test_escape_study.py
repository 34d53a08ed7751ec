"""The escape problems, the Rastrigin statistics, and the study's tables and figures."""

from __future__ import annotations

import csv
import dataclasses
import functools
import math

import pytest
import torch

import optimlab
from optimlab.lab import functions
from optimlab.lab.escape import descend, escape_main, problems
from optimlab.lab.escape.study import METHODS, cells, run_study, wilson_interval
from optimlab.remedies import random_restarts

# --- the problems --------------------------------------------------------------------------------


def _grad(f, point):
    x = torch.tensor(point, dtype=torch.float64, requires_grad=True)
    f(x).backward()
    return x.grad


@pytest.mark.parametrize(
    "f, point, value",
    [
        (problems.SADDLE.objective, (1.0, 0.0), 1.0),
        (problems.MONKEY_SADDLE.objective, (1.0, 1.0), -2.0),
        (problems.RASTRIGIN.objective, (0.0, 0.0), 0.0),
        (problems.SIX_HUMP_CAMEL.objective, (0.0898, -0.7126), -1.0316),
        (problems.SIX_HUMP_CAMEL.objective, (-0.0898, 0.7126), -1.0316),
        (problems.HIMMELBLAU.objective, (3.0, 2.0), 0.0),
        (problems.HIMMELBLAU.objective, (-2.805118, 3.131312), 0.0),
    ],
)
def test_known_values(f, point, value):
    assert f(torch.tensor(point, dtype=torch.float64)).item() == pytest.approx(value, abs=1e-4)


def test_the_2d_traps_are_the_labs_test_functions():
    for name in ("saddle", "monkey_saddle", "six_hump_camel", "himmelblau"):
        assert problems.PROBLEMS[name].objective is functions.FUNCTIONS[name].f
    # Rastrigin in the lab's form summed over the last dimension: the same function and
    # gradient; the value may differ from the written-out 2-D sum in the last bit only.
    x = (torch.rand(1000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
         - 0.5) * 6  # fmt: skip
    summed, written_out = problems.RASTRIGIN.objective(x), functions.rastrigin(x)
    assert torch.allclose(summed, written_out, rtol=0, atol=64 * torch.finfo(x.dtype).eps)
    assert torch.equal(summed, 20 + (x**2 - 10 * torch.cos(2 * math.pi * x)).sum(-1))
    point = (0.3, -1.2)
    assert torch.equal(_grad(problems.RASTRIGIN.objective, point),
                       _grad(functions.rastrigin, point))  # fmt: skip


def test_the_traps_are_stationary_where_the_notes_say():
    saddle, monkey = problems.SADDLE.objective, problems.MONKEY_SADDLE.objective
    assert torch.equal(_grad(saddle, (1.0, 0.0)), torch.tensor([2.0, 0.0]).double())
    assert torch.equal(_grad(monkey, (0.0, 0.0)), torch.zeros(2).double())
    # The high-dimensional saddle: curvatures -0.5, -0.25 and 48 positive ones, and from its
    # start the gradient has (up to rounding) nothing along the two negative directions.
    x = torch.zeros(problems.QUADRATIC_SADDLE_DIM, dtype=torch.float64)
    hessian = torch.autograd.functional.hessian(problems.quadratic_saddle, x)
    eigenvalues = torch.linalg.eigvalsh(hessian)
    assert eigenvalues[:2].tolist() == pytest.approx([-0.5, -0.25])
    # a symmetric eigensolver's values are within about n eps |H| = 50 * 2.2e-16 * 2 = 2e-14
    assert (eigenvalues[2:] >= 0.5 - 1e-12).all()
    q, _ = problems._quadratic_saddle_basis(problems.QUADRATIC_SADDLE_DIM, torch.float64)
    g = _grad(problems.quadratic_saddle, problems.QUADRATIC_SADDLE.start)
    # "Up to rounding": the start sums 48 columns of q, the gradient is two products of 50
    # terms and the projection a third (QR's columns are orthogonal to about n eps): about
    # 4 n eps |g| in all, whatever order this CPU's BLAS sums in (measured: 1e-16 to 7e-16)
    dim = problems.QUADRATIC_SADDLE_DIM
    assert (g @ q[:, :2]).abs().max() < 4 * dim * torch.finfo(g.dtype).eps * g.norm()
    assert g.norm() > 1.0


def test_the_network_is_fitted_exactly_by_its_teacher():
    teacher = [*problems._TEACHER[0], *problems._TEACHER[1], *problems._TEACHER[2]]
    x = torch.tensor([*teacher, problems._TEACHER[3]], dtype=torch.float64)
    assert problems.tiny_network(x).item() == 0.0
    assert problems.TINY_NETWORK.dim == x.numel() == 7


@pytest.mark.parametrize("problem", list(problems.PROBLEMS.values()), ids=lambda p: p.name)
def test_mini_batches_average_to_the_full_gradient(problem):
    # The finite sum behind mini-batch SGD: over one epoch of equal batches the batch gradients
    # average to the gradient of the full loss.
    generator = torch.Generator().manual_seed(0)
    x = problem.random_start(generator, torch.float64).requires_grad_(True)
    data = problem.data(torch.float64)
    assert all(len(t) == problem.samples for t in data)
    full = torch.autograd.grad(problem.loss(x), x)[0]
    batches = [tuple(t[i : i + 8] for t in data) for i in range(0, problem.samples, 8)]
    mean = sum(torch.autograd.grad(problem.loss(x, b), x)[0] for b in batches) / len(batches)
    # the same terms summed in another order: a few ulp per sample of the terms' magnitudes,
    # far below 1e-10 for these few hundred samples of order-one terms
    assert torch.allclose(mean, full, rtol=1e-10, atol=1e-10)


# --- 2-d Rastrigin: restarts and annealing beat a single run -------------------------------------
#
# The trap: gradient descent from (1, 0), in the basin of the local minimum (0.995, 0) with
# f = 0.995, next to the global minimum f(0, 0) = 0; random starts are drawn from [-1.5, 1.5]^2.
# Success: f <= 0.1, as in the study.
#
# How large a margin: the single run (full-batch GD from a fixed point) draws no random number,
# so it fails for every seed (asserted below: any two seeds give the same run) and the difference of the success rates is the
# remedy's own rate p_hat over n = 40 seeds, a mean of 40 independent Bernoulli(p) outcomes.
# Hoeffding's inequality: P(p_hat <= p - eps) <= exp(-2 n eps^2), which is 1e-4 for
# eps = sqrt(ln(1e4) / (2 n)) = 0.339. On 100 other seeds (1000..1099) restarts succeeded 75
# times and annealing 61; taking p at least two standard errors below that (0.65 and 0.51),
# the margins p - eps are 0.31 and 0.17, so the test fails by chance less than once in 10,000
# runs while still demanding that a remedy succeed for 13 (restarts) and 7 (annealing) of 40
# seeds where the single run succeeds for none.

RASTRIGIN_TRAP = dataclasses.replace(problems.RASTRIGIN, start=(1.0, 0.0), low=-1.5, high=1.5)
SEEDS = range(40)
EPSILON = math.sqrt(math.log(1e4) / (2 * len(SEEDS)))
GD = dict(lr=2e-3)


def _margin(p_lower):
    return p_lower - EPSILON


def test_the_rastrigin_margins_follow_from_the_number_of_seeds():
    assert EPSILON == pytest.approx(0.3393, abs=1e-4)
    assert math.exp(-2 * len(SEEDS) * EPSILON**2) == pytest.approx(1e-4)
    assert _margin(0.65) == pytest.approx(0.31, abs=0.005)
    assert _margin(0.51) == pytest.approx(0.17, abs=0.005)


def _single_run_rate(steps):
    # The single run draws no random number (a fixed start, the full batch, no remedy): seeds 0
    # and 1 give bitwise the same run, so its success rate over any seeds is that run's outcome.
    first, second = (descend(RASTRIGIN_TRAP, optimlab.SGD, s, steps=steps, **GD) for s in (0, 1))
    assert first.losses == second.losses and torch.equal(first.x, second.x)
    return float(first.succeeded)


def test_random_restarts_raise_the_success_rate_on_rastrigin():
    restarts, steps_each = 10, 20
    job = functools.partial(
        descend, RASTRIGIN_TRAP, optimlab.SGD, steps=steps_each, random_start=True, **GD
    )
    successes = [
        any(run.result.succeeded for run in random_restarts(job, restarts, seed=s).runs)
        for s in SEEDS
    ]
    single = _single_run_rate(restarts * steps_each)  # the same budget of steps
    assert single == 0.0
    assert sum(successes) / len(SEEDS) - single >= _margin(0.65)


def test_annealing_raises_the_success_rate_on_rastrigin():
    steps = 300
    annealing = dict(
        temperature=f"exponential_decay:lr=5,decay_rate=0.01,decay_steps={steps}",
        perturbation_std=1.0,
    )
    runs = [
        descend(RASTRIGIN_TRAP, optimlab.SGD, s, steps=steps, annealing=annealing, **GD)
        for s in SEEDS
    ]
    single = _single_run_rate(steps)
    assert single == 0.0
    assert sum(r.succeeded for r in runs) / len(SEEDS) - single >= _margin(0.51)
    proposals = sum(r.acceptance.proposals for r in runs)
    assert 0 < sum(r.acceptance.accepted for r in runs) < proposals


# --- the study -----------------------------------------------------------------------------------


def test_wilson_interval():
    assert wilson_interval(0, 20)[0] == 0.0
    low, high = wilson_interval(10, 20)
    assert low == pytest.approx(0.2993, abs=1e-4) and high == pytest.approx(0.7007, abs=1e-4)


def test_the_grid_has_every_method_and_remedy_and_the_walk_only_anneals():
    grid = cells(["saddle"], list(METHODS), ["plain", "noise", "restarts", "annealing"])
    assert len(grid) == 4 * 4 + 1
    assert ("saddle", "metropolis", "annealing") in grid
    assert ("saddle", "metropolis", "plain") not in grid


def test_the_study_writes_its_tables_and_figures(tmp_path):
    report = escape_main(
        tmp_path,
        seeds=2,
        problems=["saddle", "himmelblau"],
        methods=["gd", "metropolis"],
        processes=1,
    )
    names = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*"))
    assert names == sorted(
        [
            "escape_results.csv",
            "escape_results.md",
            "escape_runs.csv",
            "figures/escape_annealing.png",
            "figures/escape_paths.png",
            "figures/escape_steps.png",
            "figures/escape_success.png",
        ]
    )
    assert all((tmp_path / n).stat().st_size > 1000 for n in names if n.endswith(".png"))
    with (tmp_path / "escape_runs.csv").open() as f:
        runs = list(csv.DictReader(f))
    assert len(runs) == 2 * (4 + 1) * 2  # problems x (remedies + the walk) x seeds
    with (tmp_path / "escape_results.csv").open() as f:
        table = {(r["problem"], r["method"], r["remedy"]): r for r in csv.DictReader(f)}
    # The saddle from (1, 0): plain GD never leaves the ridge, noise always does.
    assert table[("saddle", "gd", "plain")]["successes"] == "0"
    assert table[("saddle", "gd", "noise")]["successes"] == "2"
    markdown = (tmp_path / "escape_results.md").read_text()
    assert "| saddle | escaped: f <= -1 | full-batch GD | **0%** (0/2)" in markdown
    assert "![escape_success](figures/escape_success.png)" in markdown
    assert report.markdown == markdown


def _cell(problem, successes, steps):
    from optimlab.lab.escape.study import CellSummary

    return CellSummary(problem, "gd", "plain", 2, successes, successes / 2, 0.0, 1.0, steps, None,
                       400.0, 0.1, 0, None)  # fmt: skip


def test_a_problem_where_nothing_succeeded_gets_a_note_not_an_empty_log_axis(tmp_path):
    """The steps to success are drawn on a log axis; a problem with no successful seed has no
    bar there, and matplotlib cannot scale an axis without a positive value in log (it raised
    when the figure was saved): that panel says in words that no seed succeeded."""
    import matplotlib.pyplot as plt

    from optimlab.lab.escape import figures
    from optimlab.lab.escape.study import REMEDY_LABELS

    summaries = [_cell("saddle", 2, 37.0), _cell("rastrigin", 0, None)]
    path = figures._bars(tmp_path, "steps.png", summaries, METHODS, REMEDY_LABELS,
                         "median_steps_to_target", "steps", "steps", log=True)  # fmt: skip
    assert path.stat().st_size > 1000
    for cell, log in [(summaries[0], True), (summaries[1], True), (summaries[1], False)]:
        fig, ax = plt.subplots()
        value = "median_steps_to_target" if log else "success_rate"
        figures._bar_panel(ax, [cell], ["plain"], REMEDY_LABELS, value, log)
        notes = [t.get_text() for t in ax.texts]
        heights = [p.get_height() for p in ax.patches]
        plt.close(fig)
        if cell.successes:
            assert ax.get_yscale() == "log" and notes == [] and heights == [37.0]
        else:
            assert ax.get_yscale() == "linear" and notes[0].startswith("no seed succeeded")
            assert heights == ([] if log else [0.0])


def test_the_study_is_a_function_of_its_seeds():
    def strip(records):
        return [
            {k: v for k, v in dataclasses.asdict(r).items() if "seconds" not in k} for r in records
        ]

    args = (["monkey_saddle"], ["sgd", "adam"], ["noise", "annealing"], 2)
    assert strip(run_study(*args)) == strip(run_study(*args))


def test_escape_main_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"escape_main: seeds must be an integer >= 1, got 0"):
        escape_main(tmp_path, seeds=0)
    with pytest.raises(ValueError, match=r"escape_main: problems must be a non-empty list of"):
        escape_main(tmp_path, problems=["everest"])
    with pytest.raises(ValueError, match=r"escape_main: remedies must be a non-empty list of"):
        escape_main(tmp_path, remedies=["prayer"])
