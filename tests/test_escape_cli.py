"""`optimlab escape` through the real entry point, on a tiny grid."""

from __future__ import annotations

import csv
import json

from click.testing import CliRunner
from test_lab import assert_png

from optimlab.cli import main


def test_escape_command_writes_the_report(tmp_path):
    out = tmp_path / "escape"
    args = ["escape", "--quick", "--problems", "saddle", "--methods", "gd",
            "--remedies", "plain,noise", "--jobs", "1", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "finished" and record["subcommand"] == "escape"
    html = (out / "report.html").read_text()
    assert "saddle: successes over seeds" in html
    # plain gradient descent stays on the ridge; with noise it escapes
    summary = (out / "summary.md").read_text()
    assert "| gd | plain | 0/2 |" in summary and "| gd | noise | 2/2 |" in summary
    assert_png(out / "figures" / "escape_success.png")
    assert "figures/escape_success.png" in (out / "summary.md").read_text()


def test_escape_command_bad_names():
    result = CliRunner().invoke(main, ["escape", "--problems", "nope"])
    assert result.exit_code == 2
    assert "unknown 'nope'; valid: saddle" in result.output and "Traceback" not in result.output
    assert "--problems" in result.output  # (the option is named)
    result = CliRunner().invoke(main, ["escape", "--remedies", "plain,magic"])
    assert result.exit_code == 2 and "--remedies" in result.output and "'magic'" in result.output


def test_escape_with_no_success_anywhere_still_draws_and_reports(tmp_path):
    """Plain gradient descent never reaches Rastrigin's global minimum from seeds 0 and 1: the
    median steps to success has no value at all, and the run used to stop on the log axis of
    that figure (exit 1, no report). It finishes, with the figure and the report."""
    out = tmp_path / "escape"
    args = ["escape", "--quick", "--problems", "rastrigin", "--methods", "gd",
            "--remedies", "plain", "--jobs", "1", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    with (out / "escape_results.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    # the case under test: nothing succeeded, so no steps to success
    assert row["successes"] == "0" and row["median_steps_to_target"] == ""
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert "| gd | plain | 0/2 |" in (out / "summary.md").read_text()
    assert (out / "report.html").stat().st_size > 0
    for name in ("escape_steps.png", "escape_success.png"):
        assert_png(out / "figures" / name)
