"""What the command line promises about its own times, measured as a user meets them.

Each case runs ``python -m optimlab ...`` in a fresh process (the interpreter's start and
every import included, as typing the command does), ``repeats`` times, and reports the median:

* ``optimlab --help`` and ``optimlab list`` answer in under half a second (issue 18): neither
  imports torch;
* ``optimlab build`` compiles the fused kernels and plan checks into an empty kernel cache
  (a temporary ``$OPTIMLAB_KERNEL_CACHE``, removed afterwards) in about 35 s, and a few
  seconds once they are built (README, build's help): run once each, they are minutes of
  compiler time and the first figure is what a new user waits for.

    python -m optimlab.benchmarks.bench_commands
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

__all__ = ["CASES", "markdown", "run"]

#: (id, the command as a user types it, its arguments, the seconds promised, where promised)
CASES: list[tuple[str, str, list[str], float, str]] = [
    ("help", "optimlab --help", ["--help"], 0.5, "issue 18: under half a second"),
    ("list", "optimlab list", ["list"], 0.5, "issue 18: under half a second"),
]
#: ``optimlab build``: into an empty cache, then with its kernels built, as the README and its
#: help say (the seconds a verdict allows: "about 35 s" up to 45, "a few" up to 10)
BUILD_CASES: list[tuple[str, str, float, str]] = [
    ("build-cold", "optimlab build, empty kernel cache", 45.0, "README: about 35 s"),
    ("build-warm", "optimlab build, kernels built", 10.0, "README: a few seconds"),
]


def _timed(arguments: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "optimlab", *arguments],
        check=True,
        capture_output=True,
        env=env,
        timeout=900,  # only catches a hang
    )
    return time.perf_counter() - started


def _row(case: str, what: str, times: list[float], promised: float, where: str) -> dict:
    return {
        "case": case,
        "what": what,
        "repeats": len(times),
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "promised_s": promised,
        "promised_where": where,
    }


def run(repeats: int = 7, build: bool = True, progress: Callable[[str], None] = print) -> list:
    """The quick commands ``repeats`` times each (interleaved, after one untimed start that
    warms the file cache), then, with ``build``, ``optimlab build`` once into an empty cache
    and once more with the kernels built."""
    progress(f"commands: {len(CASES)} quick ones, {repeats} repeats each")
    times: dict[str, list[float]] = {case[0]: [] for case in CASES}
    for _, _, arguments, _, _ in CASES:
        _timed(arguments)
    for _ in range(repeats):
        for case, _, arguments, _, _ in CASES:
            times[case].append(_timed(arguments))
    rows = [_row(c, what, times[c], p, where) for c, what, _, p, where in CASES]
    if build:
        progress("commands: optimlab build into an empty kernel cache, then again")
        with tempfile.TemporaryDirectory(prefix="optimlab-bench-cache-") as cache:
            env = {**os.environ, "OPTIMLAB_KERNEL_CACHE": cache}
            for case, what, promised, where in BUILD_CASES:
                rows.append(_row(case, what, [_timed(["build"], env)], promised, where))
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| command | median | fastest | slowest | runs | promised |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| `{r['what']}` | {r['median_s']:.2f} s | {r['min_s']:.2f} s | "
            f"{r['max_s']:.2f} s | {r['repeats']} | {r['promised_where']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(run()))
