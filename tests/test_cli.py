"""The ``optimlab`` command through its real entry point, on tiny budgets.

Most tests call the click command ``optimlab.cli.main`` in this process (CliRunner); a few run
the installed console script in a subprocess. Every subcommand is run; the run folders are
checked for what a user is promised (the exact command, versions, seed; metrics as CSV and
JSON; PNG and SVG figures that are not blank; report.html and summary.md); the HTML report is
opened in headless Chromium; and bad input must give one line, the right exit code and no
traceback.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from test_lab import assert_png, assert_svg

from optimlab.cli import SUBCOMMANDS, main

OPTIMLAB = Path(sys.executable).with_name("optimlab")


def run(*args: str, code: int = 0):
    """Invoke ``optimlab args`` in-process; check the exit code; return the result."""
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    return result


def one_line_error(result, *fragments: str) -> str:
    """The error is one line on stderr, without a traceback, and says each fragment."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def check_run_folder(folder: Path, subcommand: str, seed) -> dict:
    record = json.loads((folder / "run.json").read_text())
    assert record["tool"] == "optimlab" and record["status"] == "finished"
    assert record["subcommand"] == subcommand and record["seed"] == seed
    assert record["command"].startswith(f"optimlab {subcommand}")
    assert {"python", "optimlab", "torch", "numpy", "matplotlib"} <= set(record["versions"])
    assert record["wall_seconds"] > 0
    figures = sorted((folder / "figures").glob("*.png"))
    assert figures, "no figures"
    for png in figures:
        assert_png(png)
        assert_svg(png.with_suffix(".svg"))
    assert (folder / "report.html").stat().st_size > 1000
    assert (folder / "summary.md").read_text().startswith(f"# optimlab {subcommand}")
    return record


# --- compare: the main job ------------------------------------------------------------------

COMPARE = (
    "compare", "--problems", "quadratic_bowl", "--datasets", "digits",
    "--optimizers", "sgd,adam,nesterov:lr=0.01", "--seeds", "2", "--steps", "25",
    "--epochs", "1", "--batch-size", "64", "--lr-grid", "0.01,0.1", "--no-refine", "-j", "1",
    "--depth", "1", "--hidden", "64",  # the shallow network: every optimizer learns in 1 epoch
)  # fmt: skip


@pytest.fixture(scope="session")  # session, not module: xdist may interleave other modules
def compare_folder():
    folder = Path(tempfile.mkdtemp()) / "compare"
    result = run(*COMPARE, "--out", str(folder))
    yield folder, result
    shutil.rmtree(folder.parent, ignore_errors=True)


def test_compare_all_runs_every_optimizer_on_the_built_in_problems(tmp_path):
    # Issue 8's "done when": every optimizer optimlab has, on a test function and the digits.
    import optimlab

    folder = tmp_path / "all"
    run(
        "compare", "--optimizers", "all", "--problems", "quadratic_bowl", "--datasets", "digits",
        "--seeds", "1", "--steps", "15", "--epochs", "1", "--batch-size", "128",
        "--lr-grid", "0.01", "--no-refine", "-j", "2", "--out", str(folder),
    )  # fmt: skip
    with open(folder / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    ran = {(r["problem"], r["optimizer"]) for r in rows}
    names = set(optimlab.OPTIMIZERS) | {"heavy_ball", "nesterov", "adam_no_bias_correction"}
    assert ran == {(p, n) for p in ("quadratic_bowl", "digits") for n in names}
    for row in rows:  # every run trained: a finite loss, and nothing diverged at lr 0.01
        assert float(row["diverged"]) == 0.0, row
    summary = (folder / "summary.md").read_text()
    for cls in optimlab.OPTIMIZERS.values():
        assert f"| {cls.__name__}" in summary, cls.__name__  # a table row per optimizer


@pytest.mark.xdist_group("compare")
def test_compare_writes_the_promised_run_folder(compare_folder):
    folder, result = compare_folder
    record = check_run_folder(folder, "compare", 0)
    assert record["argv"] == [*COMPARE, "--out", str(folder)]
    assert record["options"]["optimizers"] == ["sgd", "adam", "nesterov:lr=0.01"]
    names = {p.stem for p in (folder / "figures").glob("*.png")}
    assert names == {"landscapes", "function_curves", "digits_curves", "digits_cost", "sweep"}
    with open(folder / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    # one row per problem, optimizer and seed
    assert len(rows) == 2 * 3 * 2
    assert {r["optimizer"] for r in rows} == {"sgd", "adam", "nesterov:lr=0.01"}
    assert {r["seed"] for r in rows} == {"0", "1"}
    for column in ("test_accuracy", "best_val_accuracy", "val_loss", "steps_to_target",
                   "seconds_to_target", "train_seconds"):  # fmt: skip
        assert column in rows[0]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert len(metrics["verdicts"]) == 2 and len(metrics["summary"]) == 6
    digits = [r for r in metrics["summary"] if r["problem"] == "digits"]
    assert all(0.5 < r["test_accuracy_mean"] <= 1 for r in digits)
    chosen = [r for r in metrics["sweep"] if r["chosen"]]
    assert len(chosen) == 4  # sgd and adam on two problems; nesterov's lr was fixed
    assert all(r["lr"] in (0.01, 0.1) for r in chosen)
    # The verdicts are printed, one per problem; two seeds support no claim of a winner
    for title in ("Elongated quadratic bowl", "Handwritten digits"):
        assert result.stdout.count(f"On {title}, ") == 1
    assert " won: " not in result.stdout
    assert result.stdout.count("a claim needs at least 3 seeds") == 2


@pytest.mark.xdist_group("compare")
def test_compare_summary_has_every_table(compare_folder):
    folder, _ = compare_folder
    summary = (folder / "summary.md").read_text()
    for caption in ("Standing of each optimizer", "Elongated quadratic bowl: mean",
                    "Handwritten digits: mean", "Learning-rate sweep"):  # fmt: skip
        assert caption in summary
    assert "test accuracy" in summary and "seconds to 95% val. accuracy" in summary
    assert "- **command**: `optimlab compare --problems quadratic_bowl" in summary
    assert "![" in summary and "(figures/landscapes.png)" in summary


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return None


@pytest.mark.xdist_group("compare")
def test_the_html_report_opens_in_headless_chromium_without_errors(compare_folder, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed, so the report was not opened in a browser "
                    "(make test installs it with apt-get when it can)")  # fmt: skip
    folder, _ = compare_folder
    report = folder / "report.html"
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
         "--v=0", "--virtual-time-budget=5000", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=600,  # only catches a hang
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console
    dom = done.stdout
    metrics = json.loads((folder / "metrics.json").read_text())
    tables = ["ranking", "sweep"] + [f"summary-{p}" for p in ("quadratic_bowl", "digits")]
    for table in tables:
        assert f'id="table-{table}"' in dom
    assert len(metrics["verdicts"]) == 2 and dom.count("a claim needs at least 3 seeds") == 2
    # the report's own script counted the figures that decoded
    assert 'data-figures-loaded="5/5"' in dom


def test_compare_reads_its_options_from_toml(tmp_path):
    config = tmp_path / "compare.toml"
    config.write_text(
        'optimizers = ["sgd:lr=0.1"]\nproblems = "quadratic_bowl"\ndatasets = "none"\n'
        "seeds = 1\nsteps = 5\n"
    )
    out = tmp_path / "run"
    result = run("compare", "--config", str(config), "--steps", "7", "--out", str(out), "-j", "1")
    assert "On Elongated quadratic bowl, sgd:lr=0.1 (the only contender)" in result.stdout
    record = json.loads((out / "run.json").read_text())
    assert record["options"]["steps"] == 7  # the command line wins over the file
    assert record["options"]["seeds"] == 1 and record["options"]["datasets"] == []


# --- the other subcommands -------------------------------------------------------------------


def test_landscape_draws_paths_and_an_animation(tmp_path):
    out = tmp_path / "land"
    run("landscape", "--problems", "saddle", "--optimizers", "sgd,adam", "--steps", "20",
        "--lr-grid", "0.01,0.1", "--no-refine", "--animate", "-j", "1", "--out", str(out))  # fmt: skip
    check_run_folder(out, "landscape", 0)
    with Image.open(out / "figures" / "landscape_saddle.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames > 10
    with open(out / "paths.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["function"], r["optimizer"]) for r in rows} == {
        ("saddle", "sgd"),
        ("saddle", "adam"),
    }
    assert len(rows) == 2 * 21
    assert "Where each optimizer ended" in (out / "summary.md").read_text()
    # the GIF is shown in the report, not only written beside it
    assert "figures/landscape_saddle.gif" in (out / "summary.md").read_text()
    assert "data:image/gif;base64," in (out / "report.html").read_text()
    assert "learning rates tuned per function" in (out / "summary.md").read_text()


def test_landscape_start_option_puts_gradient_descent_on_the_ridge(tmp_path):
    out = tmp_path / "ridge"
    run("landscape", "--problems", "saddle", "--optimizers", "sgd:lr=0.1", "--steps", "50",
        "--start", "-1.5,0", "-j", "1", "--out", str(out))  # fmt: skip
    with open(out / "paths.csv") as handle:
        ys = {float(r["y"]) for r in csv.DictReader(handle)}
    assert ys == {0.0}
    summary = (out / "summary.md").read_text()  # the rate given, not tuned: said so
    assert "learning rates as given" in summary and "tuned" not in summary
    assert "0.1 (fixed)" in summary


def test_ewa_reproduces_the_notes_table_from_a_csv(tmp_path):
    data = tmp_path / "ningbo.csv"
    data.write_text("day,temperature\n1,20\n2,23\n3,17\n")
    out = tmp_path / "ewa"
    run("ewa", "--csv", str(data), "--betas", "0.8", "--day", "3", "--out", str(out))
    check_run_folder(out, "ewa", 0)
    with open(out / "series.csv") as handle:
        rows = list(csv.DictReader(handle))
    # seed 000, section 3.1: v = 4, 7.8, 9.64 for beta = 0.8
    assert [round(float(r["ewa_0.8"]), 4) for r in rows] == [4.0, 7.8, 9.64]
    with open(out / "weights.csv") as handle:
        weights = [float(r["weight_0.8"]) for r in csv.DictReader(handle)]
    assert weights == pytest.approx([0.8**2 * 0.2, 0.8 * 0.2, 0.2])


def test_ewa_on_the_generated_series(tmp_path):
    out = tmp_path / "ewa"
    result = run("ewa", "--days", "60", "--seed", "3", "--out", str(out))
    record = check_run_folder(out, "ewa", 3)
    # whatever the series, the notes' own example comes first (seed 000: beta 0.8 over 20,
    # 23, 17), computed here independently
    v, rows = 0.0, []
    for t, x in enumerate([20.0, 23.0, 17.0], start=1):
        v = 0.8 * v + 0.2 * x
        rows.append(f"{t} {x:g} {v:.4g} {v / (1 - 0.8**t):.4g}")
    printed = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert rows == ["1 20 4 20", "2 23 7.8 21.67", "3 17 9.64 19.75"]
    assert all(row in printed for row in rows)
    assert "The notes' example" in (out / "summary.md").read_text()
    assert record["options"]["betas"] == [0.5, 0.8, 0.9, 0.98]
    with open(out / "series.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 60
    # the plain average starts far below the data; the corrected one does not
    first = rows[0]
    assert float(first["ewa_0.98"]) < 0.05 * float(first["temperature"])
    assert float(first["ewa_0.98_bias_corrected"]) == pytest.approx(float(first["temperature"]))


def test_schedule_prints_and_plots(tmp_path):
    out = tmp_path / "schedule"
    spec = "step_decay:lr=0.1,gamma=0.5,step_size=10"
    result = run("schedule", spec, "cosine_decay:lr=0.1,decay_steps=20", "--steps", "30",
                 "--print", "--every", "10", "--out", str(out))  # fmt: skip
    rows = list(csv.reader(result.stdout.splitlines()))
    assert rows[0] == ["step", spec, "cosine_decay:lr=0.1,decay_steps=20"]
    assert [r[:2] for r in rows[1:]] == [["0", "0.1"], ["10", "0.05"], ["20", "0.025"]]
    check_run_folder(out, "schedule", None)
    with open(out / "values.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 30


def test_schedule_print_alone_writes_nothing_and_reads_well(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(
        "schedule",
        "exponential_decay:lr=0.1,decay_rate=0.9,decay_steps=1",
        "--steps",
        "3",
        "--print",
    )
    assert result.stdout.splitlines()[1:] == ["0,0.1", "1,0.09", "2,0.081"]
    assert list(tmp_path.iterdir()) == []  # no run folder
    # with --out a folder in use: refused before anything is printed (not a whole CSV, then
    # the usage error)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "mine.txt").write_text("the user's")
    refused = run("schedule", "constant:lr=0.1", "--print", "--out", "used", code=2)
    assert refused.stdout == "" and "--out used is not empty" in refused.stderr
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["mine.txt"]


def test_batch_size_study(tmp_path):
    out = tmp_path / "batch"
    run("batch-size", "--batch-sizes", "256,full", "--epochs", "2", "-j", "1", "--out", str(out))
    check_run_folder(out, "batch-size", 0)
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["batch"] for r in rows] == ["mini-batch (256)", "batch (all 1077)"]
    assert [int(r["steps_per_epoch"]) for r in rows] == [5, 1]
    assert all(float(r["seconds_per_epoch"]) > 0 for r in rows)


def test_list_shows_every_kind_of_name():
    result = run("list")
    for heading in ("optimizers:", "schedules:", "problems:", "datasets:"):
        assert heading in result.stdout
    for name in ("adam_no_bias_correction", "step_decay", "rosenbrock", "six_hump_camel", "digits"):
        assert name in result.stdout
    only = run("list", "datasets").stdout
    assert only.startswith("datasets:") and "rosenbrock" not in only
    from optimlab.lab.escape.problems import PROBLEMS
    from optimlab.lab.escape.study import METHODS, REMEDIES

    for section, names in (("escape-problems", PROBLEMS), ("escape-methods", METHODS),
                           ("escape-remedies", REMEDIES)):  # fmt: skip
        listed = run("list", section).stdout.splitlines()
        assert listed[0] == f"{section}:" and [ln.split()[0] for ln in listed[1:]] == list(names)
        assert f"{section}:" in result.stdout
    import optimlab

    lines = run("list", "optimizers").stdout.splitlines()
    for name, cls in optimlab.OPTIMIZERS.items():  # one line each, beyond the notes marked
        (line,) = [line for line in lines if line.split()[0] == name]
        assert cls.__name__ in line
        assert ("[beyond the notes]" in line) == (name in optimlab.BEYOND_NOTES)


@pytest.mark.parametrize(
    "command", ["compare", "landscape", "ewa", "schedule", "batch-size", "list"]
)
def test_every_subcommand_has_help(command):
    assert "Usage: optimlab " + command in run(command, "--help").stdout


# --- bad input: one line, exit 2 for usage errors, 1 for failures, no traceback --------------

USAGE_ERRORS = [
    (["compare", "--optimizers", "sgd,adm"], ["unknown optimizer 'adm'", "valid names: sgd"]),
    (["compare", "--optimizers", "adam:bta=0.9"], ["Adam has no argument 'bta'", "betas"]),
    (["compare", "--optimizers", "adam:lr=-1"], ["'adam:lr=-1'", "Invalid learning rate: -1 (lr)"]),
    (["compare", "--problems", "rosenbrok"], ["unknown test function 'rosenbrok'", "himmelblau"]),
    (["compare", "--datasets", "mnist"], ["unknown data set 'mnist'", "digits, breast_cancer"]),
    (["compare", "--problems", "none", "--datasets", "none"], ["nothing to compare"]),
    (["compare", "--lr-grid", "0.1,fast"], ["'fast' is not a number"]),
    (["compare", "--device", "cuda:7"], ["'cuda:7' is not available"]),
    (["compare", "--device", "toaster"], ["'toaster' is not a torch device"]),
    (["compare", "--steps", "0"], ["--steps", "0"]),
    (["compare", "--bogus"], ["No such option '--bogus'"]),
    (["landscape", "--problems", "banana"], ["unknown test function 'banana'", "rosenbrock"]),
    (["landscape", "--start", "1;2"], ["expected x,y"]),
    (["batch-size", "--dataset", "cifar"], ["unknown data set 'cifar'", "digits"]),
    (["batch-size", "--batch-sizes", "0"], ["batch size must be >= 1"]),
    (["batch-size", "--lr", "fast"], ["--lr", "a number > 0 or auto"]),
    (["schedule", "step_decay:lr=0.1,gamma=2,step_size=10"], ["gamma must be in (0, 1]"]),
    (["schedule", "stepdecay:lr=0.1"], ["stepdecay", "step_decay"]),
    (["schedule", "step_decay:lr"], ["expected key=value"]),
    (["schedule", "reduce_on_plateau:lr=0.1"], ["follows a validation metric"]),
    (["ewa", "--betas", "0.5,1.5"], ["beta must be in [0, 1)"]),
    (["ewa", "--csv", "no/such/file.csv"], ["no/such/file.csv", "does not exist"]),
    (["ewa", "--column", "t"], ["--column needs --csv"]),
    # refused, not changed silently: a day past the series, a key given twice
    (["ewa", "--days", "10", "--day", "50"], ["--day", "day=50 is past the series' last day"]),
    (["compare", "--optimizers", "adam:lr=0.1,lr=0.001"], ["argument 'lr' given twice"]),
    (["compare", "--optimizers", "adam:foreach=True"], ["'foreach' says how a step is computed"]),
    (["list", "widgets"], ["widgets"]),
    (["frobnicate"], ["No such command 'frobnicate'"]),
]


@pytest.mark.parametrize(
    "args, fragments", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS]
)
def test_usage_errors_are_one_line_with_exit_code_2(args, fragments, tmp_path):
    result = run(*args, "--out", str(tmp_path / "x"), code=2) if args[0] in (
        "compare", "landscape", "batch-size") else run(*args, code=2)  # fmt: skip
    one_line_error(result, *fragments)
    assert not (tmp_path / "x").exists()  # nothing was started


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("steps = 5\nepochs = = 3\n", ["not valid TOML", "line 2"]),
        ("stepz = 3", ["unknown key 'stepz'", "valid keys:", "steps"]),
        ('steps = "many"', ["key 'steps'", "'many' is not a valid integer"]),
        ("seeds = 2.5", ["key 'seeds'", "'2.5' is not a valid integer"]),  # (not 2 seeds)
        ("seeds = true", ["key 'seeds'", "'True' is not a valid integer"]),  # (not 1 seed)
        ('optimizers = ["sgd", "adamm"]', ["key 'optimizers'", "unknown optimizer 'adamm'"]),
    ],
    ids=["malformed", "unknown key", "bad value", "float count", "boolean count", "bad name"],
)
def test_bad_toml_config_points_at_the_key_or_line(text, fragments, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    result = run("compare", "--config", str(config), code=2)
    one_line_error(result, str(config), *fragments)


@pytest.mark.parametrize(
    "content, fragments",
    [
        ("day,temperature\n1,20\n2,warm\n", ["line 3", "'temperature'", "'warm' is not a number"]),
        ("day,temperature\n", ["no data rows"]),
        ("day,temperature\n1,20\n", ["has 1 value; need at least 2"]),
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", ["not a text CSV file"]),
    ],
    ids=["not a number", "empty", "one value", "binary"],
)
def test_malformed_data_file_names_the_file_and_the_problem(content, fragments, tmp_path):
    data = tmp_path / "data.csv"
    data.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = run("ewa", "--csv", str(data), "--out", str(tmp_path / "out"), code=1)
    one_line_error(result, str(data), *fragments)


def test_a_missing_column_lists_the_columns(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("day,temperature\n1,20\n2,21\n")
    result = run("ewa", "--csv", str(data), "--column", "temp", code=1)
    one_line_error(result, "no column 'temp'; columns are: day, temperature")


# --- run folders: never deleted; --overwrite replaces a run's files only once it finished -------


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``folder``, by relative path."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


def outside_staging(folder: Path) -> dict[str, bytes | None]:
    return {k: v for k, v in snapshot(folder).items() if not k.startswith(".optimlab-staging-")}


WRITERS = [
    ["compare"], ["landscape"], ["ewa", "--days", "10"], ["schedule", "constant:lr=0.1"],
    ["batch-size"], ["escape", "--quick"],
]  # fmt: skip


@pytest.mark.parametrize("args", WRITERS, ids=[a[0] for a in WRITERS])
def test_a_folder_that_holds_anything_is_refused_and_left_alone(args, tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    before = snapshot(tmp_path)
    result = run(*args, "--out", str(tmp_path), code=2)
    one_line_error(result, f"--out {tmp_path} is not empty", "another --out", "--overwrite")
    assert "--resume" not in result.stderr  # only train has it
    assert snapshot(tmp_path) == before
    assert "--overwrite" in run(args[0], "--help").stdout


def test_overwrite_keeps_the_users_files_and_replaces_the_report_only_at_the_end(
    tmp_path, monkeypatch
):
    from optimlab.lab.rundir import RunFolder

    out = tmp_path / "ewa"
    run("ewa", "--days", "30", "--out", str(out))
    (out / "notes.txt").write_text("mine")
    (out / "figures" / "mine.txt").write_bytes(b"mine too")
    old = snapshot(out)
    refused = run("ewa", "--days", "40", "--out", str(out), code=2)  # a rerun is refused
    one_line_error(refused, str(out), "--overwrite")
    assert snapshot(out) == old

    seen = {}
    finish = RunFolder.finish

    def spy(folder, status="finished"):  # the new report is written, beside the old one
        seen["staging"], seen["before"] = folder.path, outside_staging(out)
        seen["new report"] = (folder.path / "report.html").read_bytes()
        finish(folder, status)

    monkeypatch.setattr(RunFolder, "finish", spy)
    run("ewa", "--days", "40", "--out", str(out), "--overwrite")
    assert seen["staging"].parent == out and seen["before"] == old
    record = check_run_folder(out, "ewa", 0)
    assert record["options"]["days"] == 40 and record["argv"][-1] == "--overwrite"
    assert (out / "report.html").read_bytes() == seen["new report"] != old["report.html"]
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "figures" / "mine.txt").read_bytes() == b"mine too"
    assert "notes.txt" not in record["files"] and "report.html" in record["files"]
    assert not seen["staging"].exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".optimlab-staging-")]
    with open(out / "series.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 40


@pytest.mark.parametrize(
    "error, code, message",
    [(RuntimeError("disk on fire"), 1, "RuntimeError: disk on fire"), (KeyboardInterrupt(), 130,
      "interrupted")],
    ids=["exception", "ctrl-c"],
)  # fmt: skip
def test_an_interrupted_overwrite_leaves_the_previous_run_in_place(
    error, code, message, tmp_path, monkeypatch
):
    from optimlab.lab import report

    out = tmp_path / "ewa"
    run("ewa", "--days", "30", "--out", str(out))
    (out / "notes.txt").write_text("mine")
    old = snapshot(out)
    written = {}

    def fail(document, folder):  # midway: metrics, figures and report.html are written
        written.update(snapshot(folder))
        raise error

    monkeypatch.setattr(report, "write_markdown", fail)
    result = run("ewa", "--days", "40", "--out", str(out), "--overwrite", code=code)
    one_line_error(result, message)
    assert {"report.html", "series.csv", "figures/ewa.png"} <= set(written)
    assert snapshot(out) == old  # the previous report, its run.json, the user's file; no staging
    assert json.loads(old["run.json"])["status"] == "finished"


def test_default_folders_are_new_each_time(tmp_path, monkeypatch):
    from optimlab.cli.options import _new_folder

    monkeypatch.chdir(tmp_path)
    run("ewa", "--days", "10")
    run("ewa", "--days", "10")
    made = sorted((tmp_path / "runs").iterdir())
    assert len(made) == 2 and all(p.name.startswith("ewa-") for p in made)
    (tmp_path / "runs" / "x-1").mkdir()
    assert _new_folder(tmp_path / "runs", "x-1") == tmp_path / "runs" / "x-1-2"
    assert _new_folder(tmp_path / "runs", "x-1") == tmp_path / "runs" / "x-1-3"


def test_debug_shows_the_traceback(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("a\nx\n")
    plain = run("ewa", "--csv", str(data), code=1)
    assert "Traceback" not in plain.output
    for args in (["--debug", "ewa", "--csv", str(data)], ["ewa", "--csv", str(data), "--debug"]):
        result = run(*args, code=1)
        assert "Traceback (most recent call last)" in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("Error: ")


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and preexec_fn are POSIX")
def test_a_full_disk_names_the_file_and_leaves_no_partial_one(tmp_path):
    """A write that runs out of room (here: a file-size limit just below the run's largest
    file, EFBIG; a full disk is ENOSPC, the same path) names the file in its one line, exits
    1, leaves no truncated file and no temporary one, and run.json says the run failed."""
    import resource

    args = [sys.executable, "-m", "optimlab", "schedule", "--steps", "200",
            "exponential_decay:lr=0.1,decay_rate=0.5,decay_steps=50"]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    whole = tmp_path / "whole"
    done = subprocess.run([*args, "--out", str(whole)], capture_output=True, text=True, env=env,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    sizes = {p.relative_to(whole).as_posix(): p.stat().st_size for p in whole.rglob("*.*")}
    largest = max(sizes, key=sizes.get)
    assert largest != "run.json"  # (run.json records the failure, so it must fit)

    def limited() -> None:  # Python ignores SIGXFSZ: a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (sizes[largest] - 1, sizes[largest] - 1))

    out = tmp_path / "limited"
    done = subprocess.run([*args, "--out", str(out)], capture_output=True, text=True, env=env,
                          timeout=600, preexec_fn=limited)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and str(out / largest) in done.stderr, done.stderr
    assert not (out / largest).exists()
    assert all(not p.name.startswith(".") for p in out.rglob("*")), list(out.rglob(".*"))
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed" and largest not in record["files"]
    for name in record["files"]:  # what was written is whole
        if name != "run.json":
            assert (out / name).stat().st_size == sizes[name], name


def test_the_installed_console_script_and_python_m():
    assert OPTIMLAB.exists(), "the optimlab console script is not installed in this environment"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    listed = subprocess.run(
        [str(OPTIMLAB), "list", "problems"], capture_output=True, text=True, env=env, timeout=600
    )  # the time-outs here only catch a hang
    assert listed.returncode == 0 and "rosenbrock" in listed.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "optimlab", "compare", "--optimizers", "adm"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "unknown optimizer 'adm'" in bad.stderr


def test_ctrl_c_exits_130_and_the_run_says_interrupted(tmp_path, monkeypatch):
    import optimlab.lab.compare as compare

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "run_compare", interrupted)
    out = tmp_path / "run"
    result = run("compare", "--problems", "quadratic_bowl", "--datasets", "none", "--out",
                 str(out), code=130)  # fmt: skip
    one_line_error(result, "interrupted")
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"


def run_fresh(*args: str) -> str:
    """``optimlab args`` in a fresh interpreter; its output, ending with a line saying the exit
    code and whether torch and the lab were imported."""
    code = (
        "import sys\n"
        "from optimlab.cli import main\n"
        "try:\n"
        f"    main({list(args)!r})\n"
        "except SystemExit as done:\n"
        "    print('exit', done.code, 'torch' in sys.modules, 'optimlab.lab' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


def test_help_lists_every_subcommand_without_importing_torch():
    """`optimlab --help` answers from the table of subcommands: no torch, no lab (issue 18)."""
    output = run_fresh("--help")
    assert output.strip().splitlines()[-1] == "exit 0 False False", output
    for name in SUBCOMMANDS:
        assert f"  {name} " in output


def test_list_answers_without_importing_torch():
    """`optimlab list` reads its kept lines: no torch, no lab (issue 18: under half a second)."""
    output = run_fresh("list")
    assert output.strip().splitlines()[-1] == "exit 0 False False", output
    assert "adam_no_bias_correction" in output and "six_hump_camel" in output


def test_the_kept_list_is_the_live_one():
    from optimlab.cli._listing_index import SECTIONS
    from optimlab.cli.listing import live_sections

    live = live_sections()
    assert {k: [tuple(row) for row in rows] for k, rows in SECTIONS.items()} == live, (
        "src/optimlab/cli/_listing_index.py is out of date: run python -m optimlab.cli.listing"
    )


def test_the_table_of_subcommands_is_the_commands_own():
    import click

    ctx = click.Context(main)
    for name, (module, _, sentence) in SUBCOMMANDS.items():
        command = main.get_command(ctx, name)
        assert command.name == name and command.callback.__module__ == f"optimlab.cli.{module}"
        assert command.get_short_help_str(limit=10_000) == sentence, name


@pytest.mark.xdist_group("compare")
def test_a_tie_below_the_resolution_is_said_to_be_one(tmp_path):
    """Gaps below 1e-10 count as equal: a verdict tying 3e-11 with 1e-14 says so, instead of
    calling a thousandfold difference noise (issue 18: each sentence backed by its numbers)."""
    out = tmp_path / "run"
    result = run("compare", "--optimizers", "sgd,nesterov", "--problems", "quadratic_bowl",
                 "--datasets", "none", "--out", str(out), "-j", "1")  # fmt: skip
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    worst = {name: max(float(r["gap"]) for r in rows if r["optimizer"] == name)
             for name in ("sgd", "nesterov")}  # fmt: skip
    assert max(worst.values()) <= 1e-10, worst  # the bowl's tuned runs end below it
    (sentence,) = [line for line in result.stdout.splitlines() if "Elongated" in line]
    assert "no clear winner: " in sentence and " won: " not in sentence
    assert "SGD and Nesterov end below 1e-10 on every seed" in sentence, sentence
    assert "within the noise" not in sentence


@pytest.mark.xdist_group("compare")
def test_one_algorithm_in_two_forms_wins_as_one(tmp_path):
    """On the ravine momentum, averaged or heavy ball (one algorithm at the rates tuned), ends
    thousands of times below plain gradient descent on every seed: the verdict, the table and
    the takeaway say the algorithm won, not "no clear winner"."""
    out = tmp_path / "run"
    run("compare", "--optimizers", "sgd,momentum,heavy_ball", "--problems", "ravine",
        "--datasets", "none", "--out", str(out), "-j", "1")  # fmt: skip
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    gaps = {n: [float(r["gap"]) for r in rows if r["optimizer"] == n] for n in
            ("sgd", "momentum", "heavy_ball")}  # fmt: skip
    assert min(gaps["sgd"]) > 100 * max(gaps["momentum"] + gaps["heavy_ball"]), gaps
    (verdict,) = json.loads((out / "metrics.json").read_text())["verdicts"]
    assert verdict["one_algorithm"] and verdict["winner"] is None
    assert sorted(verdict["winners"]) == ["heavy_ball", "momentum"]  # (the win, for readers)
    assert sorted(verdict["tied"]) == ["heavy_ball", "momentum"]
    assert "won as one algorithm" in verdict["sentence"]
    assert "the others are clearly behind the best on each seed" in verdict["sentence"]
    summary = (out / "summary.md").read_text()
    assert summary.count("**won (one algorithm)**") == 2
    assert "In short: a clear winner on 1 of 1 problems (one algorithm, " in summary
