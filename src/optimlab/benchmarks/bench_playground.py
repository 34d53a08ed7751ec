"""The playground's answer times, as the page sees them: HTTP requests over loopback.

The real server (Starlette under uvicorn) runs in a thread of this process on a free loopback
port, and each case posts the request the page sends, timed from the request to the last byte
of the reply. A case repeats with a new learning rate each time where the server keeps paths
(a ``cold`` answer computes every path); ``one slider`` changes one of three optimizers, as
moving one slider does. The table gives medians over the repeats; the server's own computing
time (``seconds`` in the reply) is reported beside the whole answer.

    python -m optimlab.benchmarks.bench_playground
"""

from __future__ import annotations

import gc
import json
import statistics
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["CASES", "markdown", "run"]

#: the target of issue 19: three optimizers of 300 steps answer within this many seconds
TARGET_SECONDS = 0.100


def _paths(scale: float, changed: int = 3) -> dict[str, Any]:
    """Three of the notes' optimizers on Rosenbrock, 300 steps: the first ``changed`` take
    learning rates scaled by ``scale``, the others their rates scaled by 3 (kept by the server
    after the first request: the cases never share a rate)."""
    base = [0.001, 0.002, 0.01]
    optimizers = [
        {"name": name, "settings": {"lr": base[i] * (scale if i < changed else 3.0)}}
        for i, name in enumerate(("momentum", "rmsprop", "adam"))
    ]
    return {"function": "rosenbrock", "steps": 300, "optimizers": optimizers}


#: (id, what it is, view, the request for repeat k)
CASES: list[tuple[str, str, str, Callable[[int], dict[str, Any]]]] = [
    (
        "paths-cold",
        "paths: 3 optimizers x 300 steps, every path computed",
        "paths",
        lambda k: _paths(1 + k / 1000),
    ),
    (
        "paths-one-slider",
        "paths: 3 optimizers x 300 steps, one slider moved",
        "paths",
        lambda k: _paths(2 + k / 1000, changed=1),
    ),
    (
        "surface",
        "contours: a 101 x 101 grid of Rosenbrock",
        "surface",
        lambda k: {"function": "rosenbrock"},
    ),
    ("ewa", "averages: 180 days, 3 betas", "ewa", lambda k: {"betas": [0.5, 0.9, 0.98], "seed": k}),
    (
        "schedules",
        "schedules: 3 specs x 1,000 steps",
        "schedules",
        lambda k: {
            "specs": [
                f"step_decay:lr={0.1 + k / 1e6},gamma=0.5,step_size=200",
                "exponential_decay:lr=0.1,decay_rate=0.95,decay_steps=20",
                "inverse_time_decay:lr=0.1,decay_rate=1,decay_steps=50",
            ],
            "steps": 1000,
        },
    ),
]


def _post(url: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        reply = json.loads(response.read())
    return time.perf_counter() - started, reply


@contextmanager
def _unfrozen_after() -> Iterator[None]:
    # back in the collector's sight: the rest of the process frees them as usual
    try:
        yield
    finally:
        gc.unfreeze()


def run(repeats: int = 21, progress: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Each case ``repeats`` times (after one untimed warm-up), interleaved; one row per case."""
    from ..lab.playground.server import running

    answers: dict[str, list[float]] = {case[0]: [] for case in CASES}
    computing: dict[str, list[float]] = {case[0]: [] for case in CASES}
    gc.freeze()  # as `optimlab playground` does before it serves (see server.serve)
    with running() as address, _unfrozen_after():
        base = address + "api/"
        for _, _, view, body in CASES:  # first use: imports, kernels loaded, caches warmed
            _post(base + view, body(repeats))
        progress(f"playground: {len(CASES)} kinds of request, {repeats} repeats each")
        for k in range(repeats):
            for case_id, _, view, body in CASES:
                seconds, reply = _post(base + view, body(k))
                answers[case_id].append(seconds)
                computing[case_id].append(reply.get("seconds", float("nan")))
    return [
        {
            "case": case_id,
            "what": what,
            "repeats": repeats,
            "median_ms": 1e3 * statistics.median(answers[case_id]),
            "min_ms": 1e3 * min(answers[case_id]),
            "max_ms": 1e3 * max(answers[case_id]),
            "computing_ms": 1e3 * statistics.median(computing[case_id]),
        }
        for case_id, what, _, _ in CASES
    ]


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| request | median | fastest | slowest | of which computing (median) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        computing = "" if r["computing_ms"] != r["computing_ms"] else f"{r['computing_ms']:.1f} ms"
        lines.append(
            f"| {r['what']} | {r['median_ms']:.1f} ms | {r['min_ms']:.1f} ms | "
            f"{r['max_ms']:.1f} ms | {computing} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(run()))
