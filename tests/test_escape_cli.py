"""`optimlab escape` through the real entry point, on a tiny grid."""

from __future__ import annotations

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
    assert_png(out / "escape_success.png")


def test_escape_command_bad_names():
    result = CliRunner().invoke(main, ["escape", "--problems", "nope"])
    assert result.exit_code == 2
    assert "unknown 'nope'; valid: saddle" in result.output and "Traceback" not in result.output
