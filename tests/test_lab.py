"""The lab's pieces: test functions, problems, the runner and its sweep, summaries, figures."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET

import pytest
import torch
from PIL import Image

import optimlab
from optimlab import evaluation_weights
from optimlab.lab import plots
from optimlab.lab.contenders import (
    CONTENDERS,
    NOTES_CONTENDERS,
    parse_contender,
    parse_contender_list,
)
from optimlab.lab.datasets import load_split
from optimlab.lab.functions import FUNCTIONS
from optimlab.lab.landscape import grid
from optimlab.lab.problems import make_problem
from optimlab.lab.report import Document, Section, Table, write_html, write_markdown
from optimlab.lab.runner import Budget, Runner, RunSpec, outcome, run_one, tune
from optimlab.lab.summary import aggregate, curves, mean_std


def assert_png(path):
    """A readable PNG that is not one flat colour."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 1, f"{path} is a single colour"


def assert_svg(path):
    """Well-formed SVG that draws in more than one colour."""
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    colours = set(re.findall(r"#[0-9a-fA-F]{6}\b", path.read_text()))
    assert len(colours) > 1, f"{path} uses {colours}"


# --- test functions ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_every_function_has_zero_gradient_and_the_right_value_at_its_minima(name):
    function = FUNCTIONS[name]
    points = function.minima or function.critical_points
    assert points, "a test function needs minima or critical points to be tested against"
    for point in points:
        xy = torch.tensor(point, dtype=torch.float64, requires_grad=True)
        value = function.f(xy)
        value.backward()
        # The published minima are given to 4-6 digits; the gradient is small, not zero.
        assert xy.grad.abs().max().item() < 2e-3, (name, point, xy.grad)
        if function.minima:
            assert value.item() == pytest.approx(function.minimum_value, abs=1e-6)
            nearby = [
                function.f(torch.tensor((point[0] + dx, point[1] + dy), dtype=torch.float64))
                for dx, dy in ((1e-2, 0), (-1e-2, 0), (0, 1e-2), (0, -1e-2))
            ]
            assert all(v.item() > value.item() for v in nearby), (name, point)


@pytest.mark.parametrize("name", ["saddle", "monkey_saddle"])
def test_saddles_have_no_minimum_and_go_both_ways_at_the_critical_point(name):
    function = FUNCTIONS[name]
    assert function.minima == () and function.minimum_value is None
    at = function.f(torch.zeros(2, dtype=torch.float64)).item()
    around = [
        function.f(torch.tensor((0.1 * math.cos(a), 0.1 * math.sin(a)), dtype=torch.float64))
        for a in torch.linspace(0, 2 * math.pi, 13).tolist()
    ]
    assert min(v.item() for v in around) < at < max(v.item() for v in around)


def test_functions_evaluate_whole_grids_at_once():
    surface = grid(FUNCTIONS["himmelblau"], points=31)
    assert len(surface.x) == len(surface.y) == 31
    assert len(surface.values) == 31 and len(surface.values[0]) == 31
    assert surface.levels == sorted(set(surface.levels)) and len(surface.levels) > 5
    x, y = surface.x[7], surface.y[20]
    expected = (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2
    assert surface.values[20][7] == pytest.approx(expected)


# --- landscapes: every optimizer reaches the known minimum --------------------------------------

# (learning rate, steps) for each optimizer; the tolerance is the distance to the minimum.
BOWL_TOLERANCE = 1e-3
BOWL = {
    "sgd": (0.3, 200),
    "momentum": (0.3, 200),
    "heavy_ball": (0.1, 200),
    "nesterov": (0.3, 200),
    "rmsprop": (0.3, 200),
    "adam": (1.0, 200),
    "adam_no_bias_correction": (0.3, 200),
    "adamw": (0.3, 200),
}
# Plain gradient descent crawls along Rosenbrock's flat valley floor, and RMSprop and AdamW
# with a constant rate circle the minimum before settling: their budgets say so.
ROSENBROCK_TOLERANCE = 0.05
ROSENBROCK = {
    "sgd": (2e-3, 5000),
    "momentum": (0.03, 500),
    "heavy_ball": (3e-3, 500),
    "nesterov": (1e-3, 1000),
    "rmsprop": (3e-3, 4000),
    "adam": (0.1, 1000),
    "adam_no_bias_correction": (0.1, 1000),
    "adamw": (1e-2, 5000),
}


# The optimizers beyond the notes reach the minima of the registry's quadratic and Rosenbrock
# in tests/test_convergence.py, and run through the lab in test_cli's `compare --optimizers all`.
NOTES_AND_ADAMW = [name for name in CONTENDERS if name not in optimlab.BEYOND_NOTES]


def test_the_tables_cover_every_optimizer_of_the_notes():
    assert set(BOWL) == set(ROSENBROCK) == set(NOTES_AND_ADAMW)


@pytest.mark.parametrize("name", NOTES_AND_ADAMW)
def test_each_optimizer_reaches_the_minimum_of_the_quadratic_bowl(name):
    lr, steps = BOWL[name]
    result = run_one(RunSpec(make_problem("quadratic_bowl"), CONTENDERS[name], lr, 0, steps))
    assert not result.diverged
    assert result.history["distance"][-1] < BOWL_TOLERANCE


@pytest.mark.parametrize("name", NOTES_AND_ADAMW)
def test_each_optimizer_reaches_the_minimum_of_rosenbrock(name):
    lr, steps = ROSENBROCK[name]
    result = run_one(RunSpec(make_problem("rosenbrock"), CONTENDERS[name], lr, 0, steps))
    assert not result.diverged
    assert result.history["distance"][-1] < ROSENBROCK_TOLERANCE


def test_the_ravine_is_a_thousand_times_steeper_across_than_along_and_diagonal():
    """Its Hessian (autograd) has curvatures 0.02 and 20, with eigenvectors at 45 degrees: both
    axes see the same curvature, so per-coordinate step sizes cannot tell along from across."""
    hessian = torch.autograd.functional.hessian(
        FUNCTIONS["ravine"].f, torch.tensor([0.3, -0.7], dtype=torch.float64)
    )
    curvatures, directions = torch.linalg.eigh(hessian)
    assert curvatures.tolist() == pytest.approx([0.02, 20.0], rel=1e-12)
    assert directions.abs().flatten().tolist() == pytest.approx([0.5**0.5] * 4, rel=1e-12)
    assert hessian[0, 0] == hessian[1, 1]


def ravine_gap(lr: float, beta: float, steps: int) -> float:
    """The gap after ``steps`` heavy-ball steps (w -= lr * g + beta * previous step; beta = 0 is
    gradient descent) from the ravine's start, in float64 along its eigenvectors: each error
    follows e(t+1) = (1 + beta - lr * c) e(t) - beta e(t-1) for its curvature c."""
    gap = 0.0
    for curvature, error in ((0.02, -14 / 2**0.5), (20.0, -2 / 2**0.5)):  # (x+y), (x-y) / sqrt 2
        before, now = error, (1 - lr * curvature) * error
        for _ in range(steps - 1):
            before, now = now, (1 + beta - lr * curvature) * now - beta * before
        gap += curvature * now**2 / 2
    return gap


def test_on_the_ravine_momentum_beats_gradient_descent_as_polyak_says():
    """optimlab's runs follow the closed-form recurrences; and by them gradient descent at any
    stable rate (lr < 2/20) keeps more than 0.4 of the gap after 200 steps (along the valley the
    error shrinks by 1 - 0.02 lr >= 0.998 a step), while the heavy ball at Polyak's rate and
    momentum, contracting by (sqrt(1000) - 1)/(sqrt(1000) + 1), about 0.939 a step, ends
    below 1e-4: four orders of magnitude apart."""
    problem, steps = make_problem("ravine"), 200
    for lr in (0.001, 0.01, 0.05, 0.099):
        result = run_one(RunSpec(problem, CONTENDERS["sgd"], lr, 0, steps))
        assert result.history["gap"][-1] == pytest.approx(ravine_gap(lr, 0.0, steps), rel=1e-9)
        assert result.history["gap"][-1] > 0.4
    small, large = 0.02, 20.0
    root = (large / small) ** 0.5
    beta = ((root - 1) / (root + 1)) ** 2
    lr = 4 / (large**0.5 + small**0.5) ** 2
    heavy_ball = parse_contender(f"heavy_ball:momentum={beta!r}")
    result = run_one(RunSpec(problem, heavy_ball, lr, 0, steps))
    assert result.history["gap"][-1] == pytest.approx(ravine_gap(lr, beta, steps), rel=1e-6)
    assert result.history["gap"][-1] < 1e-4


def test_gradient_descent_on_the_ridge_of_the_saddle_stays_there_and_a_little_off_escapes():
    sgd = CONTENDERS["sgd"]
    on_ridge = make_problem("saddle", start=(-1.5, 0.0))
    off_ridge = make_problem("saddle", start=(-1.5, 1e-3))
    stays = run_one(RunSpec(on_ridge, sgd, 0.1, 0, 200))
    escapes = run_one(RunSpec(off_ridge, sgd, 0.1, 0, 200))
    # On the ridge the y-gradient, -2y, is exactly zero: y never changes, x slides into the
    # saddle point, where every gradient vanishes.
    assert set(stays.history["y"]) == {0.0}
    assert abs(stays.history["x"][-1]) < 1e-12
    # Off it, y grows by a factor 1.2 per step: out of the plot (|y| > 2) within 60 steps,
    # while f falls without bound (the run stops once it is far off the plot).
    ys = escapes.history["y"]
    out = next(i for i, y in enumerate(ys) if abs(y) > 2)
    assert out < 60 and escapes.history["loss"][out] < -3


# --- problems, runs, the sweep --------------------------------------------------------------


def test_digits_split_is_stratified_standardized_and_disjoint():
    split = load_split("digits", seed=0)
    sizes = [len(split.y_train), len(split.y_val), len(split.y_test)]
    assert sum(sizes) == 1797 and sizes == [1077, 360, 360]
    assert split.X_train.mean(0).abs().max() < 1e-5  # standardized with training statistics
    assert split.X_val.mean(0).abs().max() > 1e-3  # ... not with the validation set's own
    for labels in (split.y_train, split.y_val, split.y_test):
        assert torch.bincount(labels, minlength=10).min() > 0.08 * len(labels)
    rows = {tuple(r) for r in split.X_train.tolist()}
    assert not any(tuple(r) in rows for r in split.X_test.tolist()[:50])


def test_a_run_records_curves_and_end_numbers_and_a_diverging_run_stops():
    problem = make_problem("digits", batch_size=64)
    result = run_one(RunSpec(problem, CONTENDERS["adam"], 3e-3, 0, 34, 5))
    assert result.history["step"] == [0, 5, 10, 15, 20, 25, 30, 34]
    row = outcome(result)
    assert row["best_val_accuracy"] >= row["val_accuracy"] > 0.5
    assert 0 < row["test_accuracy"] <= 1 and row["train_seconds"] > 0
    assert row["steps_to_target"] in result.history["step"] or math.isnan(row["steps_to_target"])
    # time to target at the steady-state cost: its steps at the run's median step
    bowl = outcome(run_one(RunSpec(make_problem("quadratic_bowl"), CONTENDERS["sgd"], 0.3, 0, 200)))
    assert bowl["steps_to_target"] > 0 and 0 < bowl["step_seconds"] < bowl["train_seconds"]
    assert bowl["seconds_to_target"] == bowl["steps_to_target"] * bowl["step_seconds"]
    diverged = run_one(RunSpec(make_problem("rosenbrock"), CONTENDERS["sgd"], 1.0, 0, 100))
    assert diverged.diverged and len(diverged.history["step"]) < 101
    assert outcome(diverged)["loss"] == math.inf


def test_seeds_change_the_start_of_a_function_run_only_when_jittered():
    plain, jittered = make_problem("rosenbrock"), make_problem("rosenbrock", jitter=0.01)
    assert plain.start_point(0) == plain.start_point(1) == FUNCTIONS["rosenbrock"].start
    a, b = jittered.start_point(0), jittered.start_point(1)
    assert a != b and math.dist(a, FUNCTIONS["rosenbrock"].start) < 0.2
    assert jittered.start_point(0) == a  # seeded


def test_the_sweep_chooses_the_lowest_final_value_and_refines_halfway():
    bowl = make_problem("quadratic_bowl")
    sgd = CONTENDERS["sgd"]
    with Runner() as runner:
        tunings = tune(
            runner,
            [(bowl, sgd), (bowl, parse_contender("sgd:lr=0.05"))],
            grid=[1e-3, 1e-2, 1e-1, 1.0],
            seeds=[0],
            budget=Budget(steps=60),
            eval_every=lambda p: 1,
        )
    tuning = tunings[(bowl, sgd)]
    # lr = 1 diverges (curvature 4 needs lr < 0.5); the best of the grid is 0.1, and the
    # halfway points around it in log scale are sqrt(0.01 * 0.1) and sqrt(0.1 * 1).
    assert tuning.scores[1.0] == math.inf
    assert sorted(tuning.scores) == pytest.approx([1e-3, 1e-2, 0.0316, 0.1, 0.316, 1.0], rel=1e-3)
    assert tuning.lr == min(tuning.scores, key=tuning.scores.get)
    assert tuning.lr == pytest.approx(0.316, rel=1e-3)
    fixed = tunings[(bowl, parse_contender("sgd:lr=0.05"))]
    assert fixed.fixed and fixed.lr == 0.05 and fixed.scores == {}


def test_the_runner_runs_each_spec_once_and_workers_give_the_same_numbers():
    bowl = make_problem("quadratic_bowl", jitter=0.01)
    specs = [RunSpec(bowl, CONTENDERS[n], 0.1, s, 40) for n in ("sgd", "adam") for s in (0, 1)]
    calls = []
    with Runner(progress=lambda label, total: lambda: calls.append(label)) as runner:
        first = runner.run(specs)
        again = runner.run(specs + specs[:1])
    assert len(calls) == len(specs)  # the second batch found everything done
    assert again[:4] == first and again[4] is first[0]
    with Runner(jobs=2) as pool:
        parallel = pool.run(specs)
    for a, b in zip(first, parallel):
        assert a.history["loss"] == b.history["loss"] and a.history["x"] == b.history["x"]


def test_aggregate_and_curves_over_seeds():
    bowl = make_problem("quadratic_bowl", jitter=0.05)
    runs = [run_one(RunSpec(bowl, CONTENDERS["sgd"], 0.3, s, 30)) for s in range(3)]
    row = aggregate(runs)
    gaps = [r.history["gap"][-1] for r in runs]
    assert row["runs"] == 3 and row["diverged"] == 0
    assert row["gap_mean"] == pytest.approx(sum(gaps) / 3)
    table = curves(runs, ["gap"])
    assert table["step"] == list(range(31))
    assert table["gap_min"][-1] == min(gaps) and table["gap_max"][-1] == max(gaps)
    assert mean_std([1.0, math.inf])[0] == math.inf


# --- contenders ------------------------------------------------------------------------------


def test_the_notes_contenders_are_the_notes_optimizers():
    assert NOTES_CONTENDERS == (
        "sgd", "momentum", "heavy_ball", "nesterov", "rmsprop", "adam", "adam_no_bias_correction",
    )  # fmt: skip
    assert dict(CONTENDERS["nesterov"].arguments) == {"form": "heavy_ball", "nesterov": True}
    assert dict(CONTENDERS["adam_no_bias_correction"].arguments) == {"bias_correction": False}


def test_contender_specs_parse_and_bad_ones_say_what_is_wrong():
    specs = parse_contender_list("sgd, adam:lr=0.01,betas=0.9/0.99, nesterov:beta=0.8")
    assert [c.name for c in specs] == ["sgd", "adam:lr=0.01,betas=0.9/0.99", "nesterov:beta=0.8"]
    assert specs[1].lr == 0.01 and dict(specs[1].arguments)["betas"] == (0.9, 0.99)
    assert dict(specs[2].arguments) == {"form": "heavy_ball", "nesterov": True, "beta": 0.8}
    with pytest.raises(ValueError, match=r"unknown optimizer 'adm'; valid names: sgd, momentum"):
        parse_contender("adm")
    with pytest.raises(ValueError, match=r"Adam has no argument 'bta'; its arguments are: lr"):
        parse_contender("adam:bta=0.9")
    with pytest.raises(ValueError, match=r"'adam:lr=-1'.*Invalid learning rate: -1 \(lr\)"):
        parse_contender("adam:lr=-1")
    with pytest.raises(ValueError, match=r"expected key=value, got 'lr'"):
        parse_contender("adam:lr")
    with pytest.raises(ValueError, match="listed twice"):
        parse_contender_list("sgd,sgd")


def test_group_words_expand_to_every_optimizer():
    everything = [c.name for c in parse_contender_list("all")]
    assert everything[: len(NOTES_CONTENDERS)] == list(NOTES_CONTENDERS)
    # every optimizer class optimlab has is reachable from "all", each once
    assert {c.optimizer for c in parse_contender_list("all")} == set(optimlab.OPTIMIZERS)
    assert len(everything) == len(set(everything))
    assert [c.name for c in parse_contender_list("notes")] == list(NOTES_CONTENDERS)
    beyond = [c.name for c in parse_contender_list("beyond")]
    assert beyond == list(optimlab.BEYOND_NOTES)
    assert not set(beyond) & set(NOTES_CONTENDERS)
    for name in beyond:  # titled by class, described by the first docstring line
        contender = parse_contender(name)
        assert contender.title == optimlab.OPTIMIZERS[name].__name__ and contender.about


def test_evaluation_weights_switch_optimizers_that_have_two_points():
    calls = []

    class TwoPoints:
        def eval(self):
            calls.append("eval")

        def train(self):
            calls.append("train")

    with evaluation_weights(TwoPoints()):
        calls.append("inside")
    assert calls == ["eval", "inside", "train"]
    calls.clear()
    with pytest.raises(RuntimeError), evaluation_weights(TwoPoints()):
        raise RuntimeError("back to training even when evaluation fails")
    assert calls == ["eval", "train"]
    w = torch.zeros(2, requires_grad=True)
    with evaluation_weights(torch.optim.SGD([w], lr=0.1)):  # no eval(): nothing happens
        pass


# --- figures and reports ----------------------------------------------------------------------


def test_draw_writes_a_png_and_an_svg_of_the_panels(tmp_path):
    surface = grid(FUNCTIONS["rosenbrock"], points=40)
    path = plots.Line("sgd", [-1.2, 0.0, 1.0], [1.0, 0.5, 1.0])
    panels = [
        plots.ContourPanel(
            "Rosenbrock",
            surface.x,
            surface.y,
            surface.values,
            surface.levels,
            [path],
            minima=[(1.0, 1.0)],
            start=(-1.2, 1.0),
        ),  # fmt: skip
        plots.Panel(
            "curve",
            "step",
            "f",
            [plots.Line("sgd", [0, 1, 2], [3, 2, 1], [2, 1, 0], [4, 3, 2])],
            yscale="log",
        ),  # fmt: skip
        plots.Panel("bars", "", "s", bars=plots.Bars(["sgd", "adam"], [1.0, 2.0], [0.1, 0.2])),
    ]
    png, svg = plots.draw(panels, tmp_path / "figure")
    assert png.name == "figure.png" and svg.name == "figure.svg"
    assert_png(png)
    assert_svg(svg)
    gif = plots.animate(panels[0], tmp_path / "paths.gif", frames=[1, 2, 3])
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames == 3
    # the report's figures are drawn by the runner's worker processes: the same files
    jobs = [(panels, tmp_path / f"worker{i}", {}) for i in range(2)]
    with Runner(jobs=2) as runner:
        drawn = runner.map(plots.draw_job, jobs, "figures")
    assert [p.name for p in drawn[1]] == ["worker1.png", "worker1.svg"]
    assert drawn[0][1].read_bytes() == svg.read_bytes()
    assert drawn[0][0].read_bytes() == png.read_bytes()


@pytest.mark.parametrize("values", [[1.0, 0.1, 0.0], [2.0, 0.5, -0.25]])
def test_a_log_axis_draws_values_at_or_below_zero_and_says_where_it_turns_linear(values):
    """matplotlib's log axis drops 0 and negative values without a word (a training loss of
    exactly 0, a schedule decaying to lr 0); the axis turns linear below the smallest positive
    magnitude instead, every point inside the axes, and a note says so."""
    import matplotlib.pyplot as plt

    panel = plots.Panel("p", "step", "loss", [plots.Line("a", [0, 1, 2], values)], yscale="log")
    fig, ax = plt.subplots()
    try:
        plots._draw_panel(ax, panel, {"a": plots.PALETTE[0]})
        low, high = ax.get_ylim()
        assert ax.get_yscale() == "symlog" and low <= min(values) and max(values) <= high
        threshold = min(abs(v) for v in values if v != 0)
        assert ax.yaxis.get_transform().linthresh == threshold
        assert any("linear below" in t.get_text() for t in ax.texts)
        positive = plots.Panel("q", "x", "y", [plots.Line("a", [0, 1], [1.0, 0.1])], yscale="log")
        plots._draw_panel(ax2 := fig.add_subplot(2, 1, 2), positive, {"a": plots.PALETTE[0]})
        assert ax2.get_yscale() == "log" and not ax2.texts
    finally:
        plt.close(fig)


def test_the_deep_narrow_network_has_depth_layers_of_hidden_units():
    """compare's default digits model: 6 layers of 32 ReLU units at PyTorch's initialisation;
    depth 1 is the single hidden layer."""
    problem = make_problem("digits", hidden=32, depth=6)
    model = problem.trial(seed=0).model
    linear = [m for m in model if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(64, 32)] + [(32, 32)] * 5 + [
        (32, 10)
    ]
    assert sum(isinstance(m, torch.nn.ReLU) for m in model) == 6
    shallow = make_problem("digits").trial(seed=0).model
    assert [type(m).__name__ for m in shallow] == ["Linear", "ReLU", "Linear"]


def test_reports_show_every_table_and_embed_every_figure(tmp_path):
    plots.draw([plots.Panel("p", "x", "y", [plots.Line("a", [0, 1], [1, 0])])], tmp_path / "f")
    from optimlab.lab.report import Figure

    tables = [Table("one", "First", ["a", "b"], [["x", "1"]], {(0, 1)}),
              Table("two", "Second | piped", ["c"], [["y|z"]])]  # fmt: skip
    doc = Document("Title", "sub", [Section("S", ["text <b>"], tables, [Figure("f.png", "cap")])])
    html = write_html(doc, tmp_path).read_text()
    assert 'id="table-one"' in html and 'id="table-two"' in html
    assert "text &lt;b&gt;" in html and 'class="best">1<' in html
    assert "data:image/png;base64," in html and "f.png" not in html.split("alt=")[0]
    markdown = write_markdown(doc, tmp_path).read_text()
    assert "| x | **1** |" in markdown and "y\\|z" in markdown and "![cap](f.png)" in markdown


# --- the run folder: nothing deleted but the previous run's own files, and only at the end ------


def _run(path, **kwargs):
    from optimlab.lab.rundir import RunFolder

    return RunFolder.create(path, ["x"], subcommand="x", seed=0, options={}, **kwargs)


def test_overwrite_replaces_only_the_previous_runs_files_once_finished(tmp_path):
    from optimlab.lab.rundir import FolderInUse

    out = tmp_path / "run"
    first = _run(out)
    first.file("a.txt").write_text("old a")
    first.file("sub/b.txt").write_text("old b")
    first.finish()
    (out / "user.txt").write_text("mine")
    (out / "sub" / "user.txt").write_text("mine too")
    with pytest.raises(FolderInUse):
        _run(out)
    second = _run(out, overwrite=True)
    assert second.staged and second.final == out and second.path.parent == out
    second.file("a.txt").write_text("new a")
    second.file("c.txt").write_text("new c")
    assert (out / "a.txt").read_text() == "old a" and not (out / "c.txt").exists()
    second.finish()
    assert second.path == out and not second.staged
    assert (out / "a.txt").read_text() == "new a" and (out / "c.txt").read_text() == "new c"
    assert not (out / "sub" / "b.txt").exists()  # the previous run's, not written again
    assert (out / "user.txt").read_text() == "mine"
    assert (out / "sub" / "user.txt").read_text() == "mine too"
    assert sorted(p.name for p in out.iterdir()) == [
        "a.txt", "c.txt", "figures", "run.json", "sub", "user.txt"]  # fmt: skip
    assert json.loads((out / "run.json").read_text())["files"] == ["a.txt", "c.txt", "run.json"]


def test_an_abandoned_overwrite_leaves_the_previous_run_and_no_staging(tmp_path):
    out = tmp_path / "run"
    first = _run(out)
    first.file("a.txt").write_text("old a")
    first.finish()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    second = _run(out, overwrite=True)
    second.file("a.txt").write_text("new a")
    second.abandon()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "figures", "run.json"]


def test_keep_continues_in_place_and_lists_only_the_runs_files(tmp_path):
    out = tmp_path / "run"
    first = _run(out)
    first.file("ckpt/1.pt").write_text("one")
    first.finish()
    (out / "user.txt").write_text("mine")
    second = _run(out, keep=True)
    assert not second.staged
    second.file("ckpt/2.pt").write_text("two")
    second.finish()
    assert (out / "ckpt" / "1.pt").read_text() == "one" and (out / "user.txt").exists()
    files = json.loads((out / "run.json").read_text())["files"]
    assert files == ["ckpt/1.pt", "ckpt/2.pt", "run.json"]


def test_a_run_json_that_lists_no_files_or_names_outside_deletes_nothing(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (tmp_path / "outside.txt").write_text("x")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "f.txt").write_text("x")
    (out / "link").symlink_to(tmp_path / "elsewhere")
    (out / "old.txt").write_text("an older optimlab's file, or the user's")
    listed = ["../outside.txt", str(tmp_path / "outside.txt"), "link/f.txt", ".", 3]
    for record in ({"tool": "optimlab"}, {"tool": "optimlab", "files": listed}):
        (out / "run.json").write_text(json.dumps(record))
        _run(out, overwrite=True).finish()
        assert (tmp_path / "outside.txt").exists() and (out / "old.txt").exists()
        assert (tmp_path / "elsewhere" / "f.txt").exists()
