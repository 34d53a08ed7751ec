"""``optimlab bench``: the benchmark suite runs end to end (on tiny sizes) and writes its report.

Timing is never asserted: only that every part ran, measured what it says, and wrote the report,
the plot and the rows.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from test_lab import assert_png

from optimlab.benchmarks import main
from optimlab.cli.bench import bench

ROOT = Path(__file__).resolve().parents[1]


def test_bench_smoke_writes_the_report_plot_and_rows(tmp_path):
    out, plot, rows = tmp_path / "B.md", tmp_path / "steps.png", tmp_path / "rows.json"
    args = ["--smoke", "--out", str(out), "--plot", str(plot), "--json", str(rows)]
    result = CliRunner().invoke(bench, args, obj={"argv": ["bench", *args]})
    assert result.exit_code == 0, (result.output, result.exception)

    data = json.loads(rows.read_text())
    assert {r["variant"] for r in data["steps"]} == {"adam"}
    paths = {r["path"] for r in data["steps"]}
    ours = {"optimlab default", "optimlab no check", "optimlab exact"}
    assert ours | {"torch fused", "torch foreach"} <= paths
    assert all(r["median_s"] > 0 and r["bound_s"] > 0 for r in data["steps"])
    # Paths with the non-finite check are held to a bound with the gradients' second read.
    for r in data["steps"]:
        extra = r["check_bound_s"] / r["bound_s"]
        if r["path"].startswith("optimlab") and r["path"] != "optimlab no check":
            assert abs(extra - (r["bytes_per_param"] + 4) / r["bytes_per_param"]) < 1e-9
        else:
            assert extra == 1.0
    plans = {r["plan"]: r for r in data["plans"]}
    assert plans["DataLoader(TensorDataset)"]["speedup_vs_dataloader"] == 1.0
    assert plans["MiniBatches"]["samples_per_s"] > 0
    loops = {r["loop"]: r for r in data["train"]}
    assert set(loops) == {"hand-written loop", "optimlab.train.fit"}
    # Both loops did the same work: bitwise the same parameters at the end.
    assert all(r["same_parameters"] for r in data["train"])
    answers = {r["case"]: r for r in data["playground"]}
    assert {"paths-cold", "paths-one-slider", "surface", "ewa", "schedules"} <= set(answers)
    assert all(0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"] for r in answers.values())
    # the quick commands in fresh processes; a smoke run leaves out the half-minute build
    commands = {r["case"]: r for r in data["commands"]}
    assert set(commands) == {"help", "list"}
    assert all(0 < r["min_s"] <= r["median_s"] <= r["max_s"] for r in commands.values())
    # bfloat16 parameters with float32 state: every path of every case, and the bytes moved
    mixed = {(r["case"], r["path"]): r for r in data["mixed"]}
    assert {case for case, _ in mixed} == {"adam", "adamw", "sgd-momentum"}
    assert {path for _, path in mixed} == {"plain", "fused", "fused, stochastic", "fp32 fused"}
    assert all(r["median_s"] > 0 and r["bound_s"] > 0 for r in mixed.values())
    # Adam reads param, grad, two moments; writes param and moments: 2+2+4+4 + 2+4+4, and the
    # check's second read of the bfloat16 gradient
    assert mixed["adam", "fused"]["bytes_per_param"] == 2 + 2 + 4 + 4 + 2 + 4 + 4 + 2

    text = out.read_text()
    assert text.startswith("# Benchmarks")
    assert "**Smoke run**" in text and "`optimlab bench --smoke" in text
    for heading in (
        "## Targets (issues 6, 18 and 19)",
        "## Command times",
        "## Mini-batch plans vs DataLoader",
        "## The training loop vs a hand-written loop",
        "## The playground's answer times",
        "## Mixed precision: bfloat16 parameters, float32 state",
        "## Every path",
    ):
        assert heading in text
    for target in (
        "mini-batch plans ≥ 10×",
        "training loop within 5%",
        "never slower than torch",
        "default × (bound + check)",
        "no check × bound",
        "exact × bound",
        "3 optimizers of 300 steps answer in under 100 ms",
    ):
        assert target in text
    assert_png(plot)
    assert "wrote" in result.output

    # --steps-from reports an earlier run's optimizer steps instead of measuring them, and says so.
    again = tmp_path / "again.md"
    # (the other parts left out: without --smoke they would run at full size, a build included)
    args = ["--steps-from", str(rows), "--no-plans", "--no-train", "--no-playground"]
    args += ["--no-commands", "--no-mixed"]
    args += ["--out", str(again)]
    args += ["--plot", str(tmp_path / "again.png"), "--json", str(tmp_path / "again.json")]
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, (result.output, result.exception)
    text = again.read_text()
    assert "**Optimizer steps reused.**" in text and data["machine"]["date"] in text
    assert json.loads((tmp_path / "again.json").read_text())["steps"] == data["steps"]


def test_bench_rejects_bad_options_with_exit_2():
    result = CliRunner().invoke(bench, ["--variants", "adam,nope", "--no-plans", "--no-train"])
    assert result.exit_code == 2
    assert "Invalid --variants: unknown ['nope']" in result.output
    result = CliRunner().invoke(bench, ["--sizes", "1M,lots"])
    assert result.exit_code == 2 and "'lots' is not a count" in result.output


def test_a_gpu_run_measures_the_issue_s_model_and_keeps_the_cpu_report(tmp_path, monkeypatch):
    # `optimlab bench --device cuda` on a GPU machine: 100M parameters in 200 and 2,000
    # tensors, written beside the CPU's BENCHMARKS.md, never over it
    from optimlab.benchmarks.suite import Options, _sizes_layouts_rounds

    monkeypatch.chdir(tmp_path)
    gpu, cpu = Options(device="cuda"), Options()
    gpu.resolve(), cpu.resolve()
    assert gpu.out == Path("benchmarks/cuda/BENCHMARKS.md") != cpu.out == Path("BENCHMARKS.md")
    assert gpu.json == Path("benchmarks/cuda/results.json") != cpu.json
    assert gpu.plot.parent == Path("benchmarks/cuda")
    quick = Options(device="cuda", quick=True)
    quick.resolve()
    assert quick.out == Path("benchmarks/cuda/quick/BENCHMARKS.md")
    assert _sizes_layouts_rounds(gpu) == ([100_000_000], [200, 2000], 7)
    assert _sizes_layouts_rounds(Options(device="cuda", layouts=[7])) == ([100_000_000], [7], 7)
    assert _sizes_layouts_rounds(cpu) == ([1_000_000, 10_000_000, 50_000_000], [10, 1000], 7)


def test_python_m_benchmarks_is_the_same_command(monkeypatch, capsys):
    # The repository's benchmarks/ folder is a thin shim over optimlab.benchmarks.
    monkeypatch.syspath_prepend(str(ROOT))
    import benchmarks

    assert benchmarks.main is main
    assert main(["--help"], prog="python -m benchmarks") == 0
    assert "--quick" in capsys.readouterr().out
    assert main(["--variants", "nope"]) == 2
