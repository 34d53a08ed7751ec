"""The checks of the Triton path that need a GPU, in one run of under 5 minutes.

    PYTHONPATH=src python3 scripts/gpu_check.py --out "$OUT"     # on a CUDA machine

1. **Parity.** Every fusable configuration of the registry (the variants ``optimlab build``
   compiles) steps the same parameters on the GPU (``fused="triton"``, the compiled kernels)
   and on the CPU (``fused=True``, the C kernel, which the test suite proves bitwise equal to
   the same Triton source in Triton's interpreter and within 1 ulp per root of PyTorch):
   parameters and state must agree bit for bit, in float32 (and float64 for a few), with the
   kernel variant of aligned tensors and (for a few) the general one.
2. **CUDA graphs.** ``capturable=True``: a captured step of each capturable optimizer,
   replayed with new gradients and learning rates (and a NaN once), bitwise the eager steps.
3. **No synchronisation.** ``torch.cuda.set_sync_debug_mode("error")`` around ``step()`` for
   Adam, AdamW, SGD, NAdam, ASGD and ScheduleFreeAdamW under each ``nonfinite_grads``
   policy, with a NaN in some steps, after ``load_state_dict`` (NAdam, ASGD, bf16 Adam with
   stochastic rounding), and under ``GradScaler`` with fp16 autocast and an Inf: any host
   synchronisation raises. The same around each of ``fit``'s steps (forward, backward,
   clipping, schedule, optimizer step; not its reads of the losses every ``read_every``
   steps) in fp32, bf16 and fp16.
4. **Compiled kernels.** The PTX of every kernel the GPU compiled in the other parts is checked as
   the suite checks kernels compiled ahead of time for an A100 and an H100
   (``tests/test_triton_compile.py``): no multiply and add left to ptxas to contract, no
   approximate instruction.
5. **Speed.** 100M fp32 parameters in 200 and in 2,000 tensors: optimlab's default (with its
   non-finite check), without the check, and with every chunk through the general kernel
   (``triton_kernels.ALIGNED_LOADS = False``: no 16-byte loads), torch's ``fused`` and
   ``foreach`` for Adam, AdamW and SGD with momentum, every other fusable default against the
   bandwidth a plain copy reaches (``dst.copy_(src)``: 8 bytes per element); medians of 5
   repeats of 20 steps, each timed by CUDA events, all paths side by side in one process.

Writes ``gpu_check.md`` and ``gpu_check.json`` into ``--out`` (and prints them). Exit 1 if a
parity or synchronisation check fails.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

import optimlab
from optimlab.fused import native
from optimlab.fused.steps import traffic
from optimlab.optim.registry import REGISTRY

#: where the Triton kernels run; ``--dry-run`` (tests, no GPU): the CPU, in the interpreter
DEVICE = "cuda"
PARITY_SIZES = (5, 1500, 33, 4096, 70_001)
BENCH_TOTAL = 100_000_000


def device_variants():
    """The registry's fusable variants the Triton path takes (all of them, NAdam, ASGD and
    the schedule-free ones included)."""
    return [
        v
        for entry in REGISTRY.values()
        if entry.fusable
        for v in entry.variants()
        if v.make([torch.zeros(1, requires_grad=True)])._host_steps_reason() is None
    ]


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return native._same_bits(a.detach().cpu(), b.detach().cpu())


#: the configurations whose parity is checked with the general kernel variant too
GENERAL_VARIANT_TOO = ("adam", "adamw", "sgd-momentum", "rmsprop", "radam")


def parity(report: list[str], failures: list[str]) -> None:
    from optimlab.fused import triton_kernels

    report.append("## Parity: compiled Triton kernels (GPU) against the C kernel (CPU)\n")
    if not native.available():
        report.append(f"skipped: the C kernel cannot run here ({native.unavailable_reason()})\n")
        return
    rows = []
    for variant in device_variants():
        for dtype in (torch.float32,) + (
            (torch.float64,) if variant.id in ("adam", "sgd-momentum", "rmsprop") else ()
        ):
            generator = torch.Generator().manual_seed(0)
            start = [torch.randn(n, generator=generator, dtype=dtype) for n in PARITY_SIZES]
            grads = [
                [torch.randn(n, generator=generator, dtype=dtype) for n in PARITY_SIZES]
                for _ in range(4)
            ]
            # the C kernel first; then the GPU's kernels: the variant of aligned tensors (16
            # bytes per load, which fresh allocations take), and for a few the general one
            # (which views one element into an allocation, as a gradient bucket's, take)
            runs = []
            for device, fused, aligned in (
                ("cpu", True, True),
                (DEVICE, "triton", True),
                *([(DEVICE, "triton", False)] if variant.id in GENERAL_VARIANT_TOO else []),
            ):
                triton_kernels.ALIGNED_LOADS = aligned
                try:
                    params = [t.clone().to(device).requires_grad_() for t in start]
                    opt = variant.make(params, lr=0.01, fused=fused)
                    for k, step_grads in enumerate(grads):
                        for p, g in zip(params, step_grads):
                            p.grad = g.to(device)
                        opt.param_groups[0]["lr"] = 0.01 * (k + 1)
                        opt.step()
                    opt.check_finite()
                finally:
                    triton_kernels.ALIGNED_LOADS = True
                runs.append((params, opt))
            (cp, co), *gpu_runs = runs
            for kernels, (gp, go) in zip(("aligned", "general"), gpu_runs):
                same = all(_same_bits(a, b) for a, b in zip(gp, cp)) and all(
                    _same_bits(v, co.state[b][k])
                    for a, b in zip(gp, cp)
                    for k, v in go.state[a].items()
                    if torch.is_tensor(v)
                )
                verdict = "bitwise" if same else "DIFFERS"
                rows.append(f"| {variant.id} | {str(dtype)[6:]} | {kernels} | {verdict} |")
                if not same:
                    failures.append(f"parity {variant.id} {dtype} {kernels}")
    report += [
        "| configuration | dtype | kernel variant | GPU vs C kernel |",
        "|---|---|---|---|",
        *rows,
        "",
    ]


def compiled_kernels(report: list[str], failures: list[str]) -> None:
    """The PTX of the Triton kernels compiled in this process (by the parts before), checked
    by ``triton_kernels.ptx_problems``."""
    from optimlab.fused import triton_kernels

    report.append("## The kernels this GPU compiled: their PTX\n")
    compiled = []
    for fn in list(triton_kernels._kernels.values()):
        for caches in getattr(fn, "device_caches", {}).values():  # Triton 3: (kernels, ...)
            compiled += list(caches[0].values())
    problems = {
        id(k): triton_kernels.ptx_problems(k.asm["ptx"]) for k in compiled if "ptx" in k.asm
    }
    bad = [p for p in problems.values() if p]
    report.append(
        f"{len(compiled)} kernels compiled, {len(problems)} PTX read, {len(bad)} with "
        "instructions that round otherwise than the interpreter"
        + (f": {bad[0][:5]}" if bad else "")
        + ".\n"
    )
    if bad or not problems:
        failures.append("compiled_kernels")


def syncs(report: list[str], failures: list[str]) -> None:
    """No host synchronisation inside step() (the lr changing every step), and no wait for a
    launched step's flags either (an event's synchronize, which the debug mode does not see;
    expected only for ASGD and ScheduleFreeAdamW under "skip", whose host state follows the
    lr: see DeviceSteps)."""
    from optimlab.fused.steps import DeviceSteps

    report.append("## Host synchronisations inside step()\n")
    rows = []
    model_sizes = (4096, 1000, 77, 10)
    waits: list[bool] = []
    resolve = DeviceSteps.resolve

    def counted_resolve(self, wait):
        waits.append(wait and bool(self.launched))
        return resolve(self, wait)

    DeviceSteps.resolve = counted_resolve
    for name in ("Adam", "AdamW", "SGD", "NAdam", "ASGD", "ScheduleFreeAdamW"):
        for policy in ("raise", "skip", "ignore"):
            params = [torch.randn(n, device="cuda", requires_grad=True) for n in model_sizes]
            opt = getattr(optimlab, name)(
                params,
                lr=0.01,
                nonfinite_grads=policy,
                **({"momentum": 0.9} if name == "SGD" else {}),
            )
            verdict = "0 syncs"
            try:
                waits.clear()
                for k in range(6):
                    for p in params:
                        p.grad = torch.randn_like(p)
                        if k == 3 and policy == "skip":
                            p.grad[0] = float("nan")
                    opt.param_groups[0]["lr"] = 0.01 * (1 + k) / 6
                    torch.cuda.set_sync_debug_mode("error")
                    try:
                        opt.step()
                    finally:
                        torch.cuda.set_sync_debug_mode(0)
                verdict += f", {sum(waits)} waits for flags"
                opt.check_finite()
                if policy == "skip" and opt.skipped_steps != 1:
                    verdict = f"skipped {opt.skipped_steps} steps, expected 1"
                    failures.append(f"skip count {name}")
            except Exception as error:  # noqa: BLE001 - reported, then the run goes on
                verdict = f"FAILED: {type(error).__name__}: {str(error)[:200]}"
                failures.append(f"sync {name} {policy}")
            rows.append(f"| {name} | {policy} | {verdict} |")
    DeviceSteps.resolve = resolve
    # after load_state_dict (a resumed run): the numbers the host reads stay on the host
    for name, options, dtype in (
        ("NAdam", {}, torch.float32),
        ("ASGD", {}, torch.float32),
        ("Adam", {"state_dtype": torch.float32, "stochastic_rounding": True}, torch.bfloat16),
    ):
        verdict = "0 syncs"
        try:
            cls = getattr(optimlab, name)
            params = [torch.randn(n, device="cuda", dtype=dtype) for n in model_sizes]
            params = [p.requires_grad_() for p in params]
            opt = cls(params, lr=0.01, **options)
            for p in params:
                p.grad = torch.randn_like(p)
            opt.step()
            resumed = cls(params, lr=0.01, **options)
            resumed.load_state_dict(opt.state_dict())
            for _ in range(3):
                for p in params:
                    p.grad = torch.randn_like(p)
                torch.cuda.set_sync_debug_mode("error")
                try:
                    resumed.step()
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            resumed.check_finite()
        except Exception as error:  # noqa: BLE001 - reported, then the run goes on
            verdict = f"FAILED: {type(error).__name__}: {str(error)[:200]}"
            failures.append(f"sync resumed {name}")
        rows.append(f"| {name} {str(dtype)[6:]} | resumed (load_state_dict) | {verdict} |")
    # GradScaler with fp16 autocast and an Inf at step 2
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1)
    ).cuda()
    opt = optimlab.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    X, y = torch.randn(128, 64, device="cuda"), torch.randn(128, 1, device="cuda")
    verdict = "0 syncs in scaler.step()"
    try:
        for k in range(5):
            opt.zero_grad()
            with torch.autocast("cuda", dtype=torch.float16):
                loss = ((model(X) - y) ** 2).mean()
            if k == 2:
                loss = loss * float("inf")
            scaler.scale(loss).backward()
            torch.cuda.set_sync_debug_mode("error")
            try:
                scaler.step(opt)  # hands the step found_inf and grad_scale as device tensors
            finally:
                torch.cuda.set_sync_debug_mode(0)
            scaler.update()
        opt.check_finite()
        steps = {int(s["step"]) for s in opt.state.values()}
        if steps != {4}:
            verdict = f"step counts {steps}, expected 4"
            failures.append("grad scaler count")
    except Exception as error:  # noqa: BLE001
        verdict = f"FAILED: {type(error).__name__}: {str(error)[:200]}"
        failures.append("sync grad scaler")
    rows.append(f"| Adam | GradScaler (found_inf, grad_scale on the device) | {verdict} |")
    report += ["| optimizer | policy | result |", "|---|---|---|", *rows, ""]


#: the classes that take ``capturable=True`` (torch's)
CAPTURABLE = ("Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adadelta", "Rprop", "ASGD")


def graphs(report: list[str], failures: list[str]) -> None:
    """``capturable=True`` in real CUDA graphs: three eager steps on a side stream, one step
    captured, ten replays with new gradients and learning rates written into the static
    tensors (a NaN in one, policy "skip"); the replays must be bitwise the eager capturable
    steps, and close to the CPU's C kernel (the device's pow may differ in the last place)."""
    report.append("## CUDA graphs (capturable=True)\n")
    rows = []
    sizes = (4096, 1000, 77, 10)
    for name in CAPTURABLE:
        cls = getattr(optimlab, name)
        verdict = "replays bitwise the eager steps"
        try:
            runs = []
            for mode in ("graph", "eager", "cpu"):
                device = "cpu" if mode == "cpu" else "cuda"
                generator = torch.Generator().manual_seed(0)
                params = [torch.randn(n, generator=generator).to(device) for n in sizes]
                params = [p.requires_grad_() for p in params]
                grads = [torch.zeros_like(p) for p in params]
                for p, g in zip(params, grads):
                    p.grad = g
                lr = torch.tensor(0.01, device=device)
                opt = cls(
                    params,
                    lr=lr,
                    capturable=mode != "cpu",
                    fused=None,  # (on the CPU: the C kernel where it runs, else torch's ops)
                    nonfinite_grads="skip",
                )

                def feed(k, grads=grads, lr=lr):
                    gen = torch.Generator().manual_seed(100 + k)
                    for j, g in enumerate(grads):
                        g.copy_(torch.randn(g.shape, generator=gen))
                        if k == 6 and j == 1:
                            g[3] = float("nan")
                    lr.fill_(0.01 * (1 + k) / 12)

                if mode == "graph":
                    side = torch.cuda.Stream()
                    side.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(side):
                        for k in range(3):
                            feed(k)
                            opt.step()
                    torch.cuda.current_stream().wait_stream(side)
                    feed(3)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        opt.step()
                    graph.replay()  # (capture runs nothing: this is step 4)
                    for k in range(4, 13):
                        feed(k)
                        graph.replay()
                else:
                    for k in range(13):
                        feed(k)
                        opt.step()
                state = opt.state_dict()  # counts the skip the replays made
                runs.append((params, state, opt.skipped_steps))
            (gp, gs, gk), (ep, es, ek), (cp, cs, ck) = runs
            same = all(_same_bits(a.detach(), b.detach()) for a, b in zip(gp, ep))
            same = same and all(
                _same_bits(v, es["state"][key][n])
                for key, entry in gs["state"].items()
                for n, v in entry.items()
            )
            worst = max(
                float(
                    (
                        (a.detach().cpu() - b.detach()).abs() / b.detach().abs().clamp_min(1e-30)
                    ).max()
                )
                for a, b in zip(gp, cp)
            )
            counts = {int(e["step"]) for e in gs["state"].values()}
            if not same or gk != 1 or counts != {12}:
                verdict = f"DIFFERS (bitwise {same}, skipped {gk}, counts {counts})"
                failures.append(f"graph {name}")
            rows.append(f"| {name} | {verdict} | {worst:.1e} |")
        except Exception as error:  # noqa: BLE001
            rows.append(f"| {name} | FAILED: {type(error).__name__}: {str(error)[:200]} | |")
            failures.append(f"graph {name}")
    report += [
        "| optimizer | 10 replays of a captured step (a NaN in one) | max rel. diff vs CPU |",
        "|---|---|---|",
        *rows,
        "",
    ]
    try:
        report += _graph_times()
    except Exception:  # noqa: BLE001
        report.append("```\n" + traceback.format_exc() + "```\n")
        failures.append("graph times")


def _graph_times() -> list[str]:
    """AdamW on 10M parameters in 200 tensors: a step as usual, a capturable step, and a
    replay of a captured one (medians, CUDA events, side by side)."""
    sizes = [50_000] * 200
    rows = []
    for label in ("step()", "step(), capturable=True", "graph.replay()"):
        params = [torch.randn(n, device="cuda", requires_grad=True) for n in sizes]
        for p in params:
            p.grad = torch.randn_like(p)
        plain = label == "step()"  # (a float lr: a tensor one is read on the host there)
        lr = 1e-3 if plain else torch.tensor(1e-3, device="cuda")
        opt = optimlab.AdamW(params, lr=lr, capturable=not plain)
        call = opt.step
        if label == "graph.replay()":
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    opt.step()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                opt.step()
            call = graph.replay
        rows.append(f"| {label} | {_time(call) * 1e3:.3f} |")
        del params, opt
    return [
        "AdamW, 10M parameters in 200 tensors (ms per step, median of 5x20):\n",
        "| how | ms |",
        "|---|---|",
        *rows,
        "",
    ]


def fit_syncs(report: list[str], failures: list[str]) -> None:
    """No host synchronisation inside any of fit's steps: sync debug mode "error" around each
    (the micro-batches moved to the GPU before it), off only while fit reads the losses."""
    from optimlab.data import MiniBatches
    from optimlab.train import fit, loop

    report.append("## Host synchronisations inside fit's steps\n")
    rows = []
    step, read = loop._Trainer.step, loop._Trainer.read
    reads: list[int] = []

    def checked_step(self, micro_batches, total):
        micro_batches = [tuple(t.cuda() for t in batch) for batch in micro_batches]
        torch.cuda.set_sync_debug_mode("error")
        try:
            return step(self, micro_batches, total)
        finally:
            torch.cuda.set_sync_debug_mode(0)

    def unchecked_read(self):
        # (fit reads inside its steps and outside them, at epoch ends and evaluations: the
        # mode goes back to what it was)
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode(0)
        try:
            reads.append(self.run.step)
            return read(self)
        finally:
            torch.cuda.set_sync_debug_mode(previous)

    torch.manual_seed(0)
    X, y = torch.randn(4096, 64), torch.randint(0, 10, (4096,))
    loop._Trainer.step, loop._Trainer.read = checked_step, unchecked_read
    try:
        for precision in ("fp32", "bf16", "fp16"):
            reads.clear()
            model = torch.nn.Sequential(
                torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
            ).cuda()
            opt = optimlab.AdamW(model.parameters(), lr=1e-3)
            try:
                result = fit(
                    model, opt, MiniBatches(X, y, batch_size=256, seed=0), steps=40,
                    accumulation=2, clip_norm=1.0, precision=precision, progress=False,
                    eval_data=(X[:512].cuda(), y[:512].cuda()), eval_every=20,
                )  # fmt: skip
                verdict = f"0 syncs in {result.steps} steps; losses read after steps {reads}"
            except Exception as error:  # noqa: BLE001 - reported, then the run goes on
                verdict = f"FAILED: {type(error).__name__}: {str(error)[:200]}"
                failures.append(f"fit sync {precision}")
            rows.append(f"| {precision} | {verdict} |")
    finally:
        loop._Trainer.step, loop._Trainer.read = step, read
        torch.cuda.set_sync_debug_mode(0)
    report += ["| precision | result |", "|---|---|", *rows, ""]


def _time(fn, repeats=5, steps=20) -> float:
    """Median seconds per call over ``repeats`` of ``steps`` calls (after 3 warm-up calls)."""
    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1000 / steps)
    return statistics.median(samples)


def _copy_bandwidth() -> float:
    """Bytes per second of ``dst.copy_(src)`` over 100M floats (8 bytes per element)."""
    src = torch.empty(BENCH_TOTAL, device="cuda")
    dst = torch.empty_like(src)
    return 8 * BENCH_TOTAL / _time(lambda: dst.copy_(src))


def speed(report: list[str], results: dict) -> None:
    from optimlab.fused import triton_kernels

    bandwidth = _copy_bandwidth()
    results["copy_bandwidth_GBps"] = bandwidth / 1e9
    report.append(f"## Speed: {BENCH_TOTAL / 1e6:g}M fp32 parameters\n")
    report.append(
        f"Copy bandwidth (dst.copy_(src), 8 bytes per element): {bandwidth / 1e9:.0f} GB/s.\n"
    )
    report.append(
        "| optimizer | tensors | path | ms per step | vs torch fused | % of copy bandwidth |"
    )
    report.append("|---|---|---|---|---|---|")
    twins = {
        "adam": ("Adam", {}),
        "adamw": ("AdamW", {}),
        "sgd-momentum": ("SGD", {"momentum": 0.9}),
    }
    for tensors in (200, 2000):
        for variant in device_variants():
            if tensors == 2000 and variant.id not in twins:
                continue  # the other optimizers: 200 tensors only (the time budget)
            size = BENCH_TOTAL // tensors
            params = [torch.zeros(size, device="cuda", requires_grad=True) for _ in range(tensors)]
            for p in params:
                p.grad = torch.randn_like(p) * 1e-3
            reads, writes = traffic(variant.make([torch.zeros(1, requires_grad=True)]))
            bytes_per = 4 * (len(reads) + len(writes))
            paths = {"optimlab": variant.make(params, lr=1e-3)}
            if variant.id in twins:
                paths["optimlab no check"] = variant.make(params, lr=1e-3, nonfinite_grads="ignore")
                name, kwargs = twins[variant.id]
                cls = getattr(torch.optim, name)
                paths["torch fused"] = cls(params, lr=1e-3, fused=True, **kwargs)
                paths["torch foreach"] = cls(params, lr=1e-3, foreach=True, **kwargs)
            times = {path: _time(opt.step) for path, opt in paths.items()}
            if variant.id in twins:  # side by side: every chunk through the general kernel
                triton_kernels.ALIGNED_LOADS = False
                try:
                    times["optimlab, no 16-byte variant"] = _time(paths["optimlab"].step)
                finally:
                    triton_kernels.ALIGNED_LOADS = True
            fused_s = times.get("torch fused")
            for path, seconds in times.items():
                check = 0 if "no check" in path or "torch" in path else 4  # (reads the grads)
                share = (bytes_per + check) * BENCH_TOTAL / seconds / bandwidth
                versus = f"{fused_s / seconds:.2f}x" if fused_s else "-"
                report.append(
                    f"| {variant.id} | {tensors} | {path} | {seconds * 1e3:.3f} | {versus} "
                    f"| {share:.0%} |"
                )
                results.setdefault("speed", []).append(
                    {
                        "variant": variant.id,
                        "tensors": tensors,
                        "path": path,
                        "seconds": seconds,
                        "bandwidth_share": share,
                    }
                )
            del params, paths
            gc.collect()  # (an optimizer is a reference cycle, torch's as well as optimlab's)
            torch.cuda.empty_cache()
    report.append("")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument(
        "--dry-run", action="store_true", help="parity only, on CPU tensors in the interpreter"
    )
    args = parser.parse_args()
    if args.dry_run:
        global DEVICE, PARITY_SIZES
        DEVICE, PARITY_SIZES = "cpu", (5, 1500, 33)
        failures: list[str] = []
        report: list[str] = []
        parity(report, failures)
        print("\n".join(report))
        return 1 if failures else 0
    if not torch.cuda.is_available():
        print("no CUDA device here", file=sys.stderr)
        return 2
    import triton

    started = time.perf_counter()
    card = torch.cuda.get_device_name()
    report = [
        "# The Triton path on a GPU\n",
        f"{card}; torch {torch.__version__}, Triton {triton.__version__}.\n",
    ]
    results: dict = {"card": card}
    failures: list[str] = []
    parts = [parity, syncs, graphs, fit_syncs]
    if not args.no_speed:
        parts.append(lambda report, failures: speed(report, results))
    parts.append(compiled_kernels)  # (every kernel the parts before compiled)
    args.out.mkdir(parents=True, exist_ok=True)

    def write(final: bool = False) -> str:
        """The report so far, written after each part (a part that kills the process loses
        only itself)."""
        text = "\n".join(report)
        if final:
            took = time.perf_counter() - started
            text += f"\nFailures: {', '.join(failures) or 'none'}. Took {took:.0f} s.\n"
        results["failures"] = failures
        (args.out / "gpu_check.md").write_text(text)
        (args.out / "gpu_check.json").write_text(json.dumps(results, indent=1))
        return text

    for part in parts:
        name = getattr(part, "__name__", "speed").replace("<lambda>", "speed")
        try:
            part(report, failures)
        except Exception:  # noqa: BLE001
            failures.append(name)
            report.append("```\n" + traceback.format_exc() + "```\n")
            gc.collect()
            torch.cuda.empty_cache()
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
        write()
    print(write(final=True))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
