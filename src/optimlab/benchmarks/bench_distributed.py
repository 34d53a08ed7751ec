"""Samples per second of optimlab.train.fit on 1 and on 2 processes (DDP, gloo, CPU).

    python -m optimlab.benchmarks.bench_distributed   # runs the three settings and prints a table

Each setting trains the same MLP (784-256-10, float32) on synthetic data for a fixed number of
steps at global batch 256; the time of the first epoch's warm-up steps is excluded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import torch

STEPS, WARMUP, BATCH = 60, 10, 256


def worker() -> None:
    import optimlab
    from optimlab.data import MiniBatches
    from optimlab.train import Callback, fit

    ranks = optimlab.distributed.init()
    g = torch.Generator().manual_seed(0)
    X = torch.randn(BATCH * STEPS, 784, generator=g)
    y = torch.randint(0, 10, (BATCH * STEPS,), generator=g)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    )
    optimizer = optimlab.Adam(model.parameters(), lr=1e-3)

    class Clock(Callback):
        def on_step_end(self, state):
            if state.step == WARMUP:
                self.start = time.perf_counter()
            if state.step == STEPS:
                self.seconds = time.perf_counter() - self.start

    clock = Clock()
    fit(
        model,
        optimizer,
        MiniBatches(X, y, batch_size=BATCH, seed=0),
        steps=STEPS,
        callbacks=[clock],
        progress=False,
    )
    if ranks.is_main:
        samples = (STEPS - WARMUP) * BATCH
        print(json.dumps({"samples_per_second": samples / clock.seconds}))


def measure(processes: int, threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPTIMLAB_BENCH_WORKER": "1"}
    script = [os.path.abspath(__file__)]
    if processes == 1:
        command = [sys.executable, *script]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            *script,
        ]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    return json.loads(line)["samples_per_second"]


def main() -> None:
    rows = [(p, t, measure(p, t)) for p, t in ((1, 1), (1, 2), (2, 1))]
    base = rows[0][2]
    print("| processes | threads each | samples/s | vs 1 process, 1 thread |")
    print("|---|---|---|---|")
    for p, t, sps in rows:
        print(f"| {p} | {t} | {sps:,.0f} | {sps / base:.2f}x |")


if __name__ == "__main__":
    if os.environ.get("OPTIMLAB_BENCH_WORKER"):
        worker()
    else:
        main()
