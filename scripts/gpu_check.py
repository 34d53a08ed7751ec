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
   stochastic rounding, bf16 and fp16 AdamW with state in their dtype), and under
   ``GradScaler`` with fp16 autocast and an Inf: any host synchronisation raises. The
   same around each of ``fit``'s steps (forward, backward,
   clipping, schedule, optimizer step; not its reads of the losses every ``read_every``
   steps) in fp32, bf16 and fp16.
4. **Compiled kernels.** The PTX of every kernel the GPU compiled in the other parts is
   checked as the suite checks kernels compiled ahead of time for GPUs it does not have
   (``tests/test_triton_compile.py``): no multiply and add left to ptxas to contract, no
   approximate instruction.
5. **Speed.** 100M fp32 parameters in 200 and in 2,000 tensors: optimlab's default (with its
   non-finite check), without the check, and with every chunk through the general kernel
   (``triton_kernels.ALIGNED_LOADS = False``: no 16-byte loads), torch's ``fused`` and
   ``foreach`` for Adam, AdamW and SGD with momentum, every other fusable default against the
   bandwidth a plain copy reaches (``dst.copy_(src)``: 8 bytes per element); the three in
   bf16 and fp16 too (200 tensors, state in the parameters' dtype, torch's default); medians
   of 5 repeats of 20 steps, each timed by CUDA events, all paths side by side in one
   process.

Writes ``gpu_check.md`` and ``gpu_check.json`` into ``--out`` (and prints them). Exit 1 if a
parity or synchronisation check fails.

What the checks need of the GPU (the device, its sync debug mode, graphs, timers) goes through
:class:`Cuda`; ``tests/test_gpu_check.py`` runs every part on the CPU, in Triton's interpreter,
through a stand-in for it, so that a short loan of a GPU is not spent on the script's own bugs.
"""

from __future__ import annotations

import argparse
import contextlib
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

PARITY_SIZES = (5, 1500, 33, 4096, 70_001)
#: the tensors of the synchronisation and graph checks
SIZES = (4096, 1000, 77, 10)
#: the speed part: parameters in all, in how many tensors; each time a median of repeats of
#: steps (CUDA events)
BENCH_TOTAL = 100_000_000
BENCH_TENSORS = (200, 2000)
TIMING = (5, 20)
#: the graph timings: AdamW on 10M parameters in 200 tensors
GRAPH_TIMES_SIZES = (50_000,) * 200
FIT_STEPS = 40


class Cuda:
    """What the checks need of the GPU, in one place (the tests stand in for it on the CPU)."""

    device = "cuda"
    #: the optimizers' options: none, the default path (on CUDA tensors, the Triton kernels)
    options: dict = {}
    #: fit's precisions checked; autocast's type under GradScaler
    precisions = ("fp32", "bf16", "fp16")
    scaled_dtype = torch.float16

    @contextlib.contextmanager
    def no_syncs(self):
        """Any host synchronisation inside raises (``torch.cuda.set_sync_debug_mode``)."""
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(previous)

    @contextlib.contextmanager
    def syncs_allowed(self):
        """Inside :meth:`no_syncs`: synchronisations allowed again for a while."""
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode(0)
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(previous)

    def capture(self, warm_up, step):
        """``warm_up()`` on a side stream (as CUDA graphs ask), then ``step`` captured in a
        graph; returns its replay. Capture runs nothing: the first replay is the first step."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            warm_up()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        return graph.replay

    def seconds(self, fn, calls: int) -> float:
        """Seconds the device takes for ``calls`` calls of ``fn`` (CUDA events)."""
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000

    def free(self) -> None:
        gc.collect()  # (an optimizer is a reference cycle, torch's as well as optimlab's)
        torch.cuda.empty_cache()

    def compiled_kernels(self) -> list:
        """The kernels Triton compiled in this process (Triton 3: ``device_caches``)."""
        from optimlab.fused import triton_kernels

        compiled = []
        for fn in list(triton_kernels._kernels.values()):
            for caches in getattr(fn, "device_caches", {}).values():  # (kernels, ...)
                compiled += list(caches[0].values())
        # (a kernel compiled asynchronously is cached as its future)
        return [k.result() if hasattr(k, "result") else k for k in compiled]


GPU = Cuda()


#: the registry ids the parity and speed parts take (None: every fusable variant)
VARIANTS: tuple[str, ...] | None = None


def device_variants():
    """The registry's fusable variants the Triton path takes (all of them, NAdam, ASGD and
    the schedule-free ones included; those of :data:`VARIANTS` where it names some)."""
    return [
        v
        for entry in REGISTRY.values()
        if entry.fusable
        for v in entry.variants()
        if (VARIANTS is None or v.id in VARIANTS)
        and v.make([torch.zeros(1, requires_grad=True)])._host_steps_reason() is None
    ]


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.detach().cpu(), b.detach().cpu()
    if a.is_complex() and b.is_complex():  # as pairs of reals
        a, b = torch.view_as_real(a), torch.view_as_real(b)
    return native._same_bits(a, b)


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
        for dtype in (
            (torch.float32,)
            + ((torch.float64,) if variant.id in ("adam", "sgd-momentum", "rmsprop") else ())
            + ((torch.complex64,) if variant.id in ("adam", "sgd-momentum") else ())
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
                (GPU.device, "triton", True),
                *([(GPU.device, "triton", False)] if variant.id in GENERAL_VARIANT_TOO else []),
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


#: bfloat16 and float16 parameters as the kernels keep them: their dtype and the group's
#: options, by name
MIXED = {
    "bfloat16, float32 state": (torch.bfloat16, {"state_dtype": torch.float32}),
    "bfloat16, float32 state, stochastic": (
        torch.bfloat16,
        {"state_dtype": torch.float32, "stochastic_rounding": True},
    ),
    "bfloat16, bfloat16 state": (torch.bfloat16, {}),  # (torch's default)
    "float16, float32 state": (torch.float16, {"state_dtype": torch.float32}),
    "float16, float16 state": (torch.float16, {}),
}


def mixed_parity(report: list[str], failures: list[str]) -> None:
    """bfloat16 and float16 parameters on the GPU's kernels against the float32 step of the
    C kernel (CPU) on them widened, rounded after each step as ``core.precision`` defines
    (the state too where it is kept in the parameters' dtype)."""
    from optimlab.core.precision import stochastic_round_bf16

    report.append(
        "## Mixed precision: bfloat16 and float16 parameters (GPU) against the float32 step\n"
    )
    if not native.available():
        report.append(f"skipped: the C kernel cannot run here ({native.unavailable_reason()})\n")
        return
    rows = []
    for variant in (v for v in device_variants() if v.id in ("adam", "sgd-momentum")):
        for label, (dtype, options) in MIXED.items():
            generator = torch.Generator().manual_seed(0)
            start = [torch.randn(n, generator=generator).to(dtype) for n in PARITY_SIZES]
            params = [t.clone().to(GPU.device).requires_grad_() for t in start]
            wide = [t.float().requires_grad_() for t in start]
            opt = variant.make(params, lr=0.01, **options, **GPU.options)
            ref = variant.make(wide, lr=0.01, fused=True)
            for step in range(1, 5):
                for p, w in zip(params, wide):
                    g = torch.randn(p.shape, generator=generator).to(dtype)
                    p.grad, w.grad = g.to(GPU.device), g.float()
                opt.step()
                ref.step()
                with torch.no_grad():
                    for p, w in zip(params, wide):
                        if options.get("stochastic_rounding"):
                            seed = int(opt.state[p]["rounding_seed"])
                            w.copy_(stochastic_round_bf16(w, seed, step).float())
                        kept = {"": w} if options else {"": w, **ref.state[w]}
                        for key, t in kept.items():
                            if key != "step":  # (to nearest; a no-op where rounded already)
                                t.copy_(t.to(dtype).float())
            opt.check_finite()
            same = all(
                _same_bits(a.float(), b) and _same_bits(opt.state[a][k].float(), v)
                for a, b in zip(params, wide)
                for k, v in ref.state[b].items()
            )
            rows.append(f"| {variant.id} | {label} | {'bitwise' if same else 'DIFFERS'} |")
            if not same:
                failures.append(f"mixed parity {variant.id} {label}")
    report += ["| configuration | parameters | GPU vs C kernel, rounded |"]
    report += ["|---|---|---|", *rows, ""]


def compiled_kernels(report: list[str], failures: list[str]) -> None:
    """The PTX of the Triton kernels compiled in this process (by the parts before), checked
    by ``triton_kernels.ptx_problems``."""
    from optimlab.fused import triton_kernels

    report.append("## The kernels this GPU compiled: their PTX\n")
    compiled = GPU.compiled_kernels()
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
    lr: see DeviceSteps; not for ASGD with capturable=True)."""
    report.append("## Host synchronisations inside step()\n")
    rows = [*_policy_syncs(failures), *_resumed_syncs(failures), _scaler_syncs(failures)]
    report += ["| optimizer | policy | result |", "|---|---|---|", *rows, ""]


#: the optimizers (and options) whose steps are checked under each non-finite policy
POLICY_CASES = [
    ("Adam", {}),
    ("AdamW", {}),
    ("SGD", {"momentum": 0.9}),
    ("NAdam", {}),
    ("ASGD", {}),
    ("ASGD", {"capturable": True}),  # (its state on the device: no wait under "skip")
    ("ScheduleFreeAdamW", {}),
]


def _policy_syncs(failures: list[str]) -> list[str]:
    from optimlab.fused.steps import DeviceSteps

    rows = []
    waits: list[bool] = []
    resolve = DeviceSteps.resolve

    def counted_resolve(self, wait):
        waits.append(wait and bool(self.launched))
        return resolve(self, wait)

    DeviceSteps.resolve = counted_resolve
    try:
        for name, options in POLICY_CASES:
            for policy in ("raise", "skip", "ignore"):
                params = [torch.randn(n, device=GPU.device, requires_grad=True) for n in SIZES]
                opt = getattr(optimlab, name)(
                    params, lr=0.01, nonfinite_grads=policy, **options, **GPU.options
                )
                label = " ".join([name, *(f"{k}={v}" for k, v in options.items())])
                verdict = "0 syncs"
                try:
                    waits.clear()
                    for k in range(6):
                        for p in params:
                            p.grad = torch.randn_like(p)
                            if k == 3 and policy == "skip":
                                p.grad[0] = float("nan")
                        opt.param_groups[0]["lr"] = 0.01 * (1 + k) / 6
                        with GPU.no_syncs():
                            opt.step()
                    verdict += f", {sum(waits)} waits for flags"
                    opt.check_finite()
                    if policy == "skip" and opt.skipped_steps != 1:
                        verdict = f"skipped {opt.skipped_steps} steps, expected 1"
                        failures.append(f"skip count {label}")
                except Exception as error:  # noqa: BLE001 - reported, then the run goes on
                    verdict = f"FAILED: {type(error).__name__}: {str(error)[:200]}"
                    failures.append(f"sync {label} {policy}")
                rows.append(f"| {label} | {policy} | {verdict} |")
    finally:
        DeviceSteps.resolve = resolve
    return rows


def _resumed_syncs(failures: list[str]) -> list[str]:
    """After load_state_dict (a resumed run): the numbers the host reads stay on the host."""
    rows = []
    for name, options, dtype in (
        ("NAdam", {}, torch.float32),
        ("ASGD", {}, torch.float32),
        ("Adam", {"state_dtype": torch.float32, "stochastic_rounding": True}, torch.bfloat16),
        ("AdamW", {}, torch.bfloat16),  # (bfloat16 state)
        ("AdamW", {}, torch.float16),  # (float16 state)
    ):
        verdict = "0 syncs"
        try:
            cls = getattr(optimlab, name)
            params = [torch.randn(n, device=GPU.device, dtype=dtype) for n in SIZES]
            params = [p.requires_grad_() for p in params]
            opt = cls(params, lr=0.01, **options, **GPU.options)
            for p in params:
                p.grad = torch.randn_like(p)
            opt.step()
            resumed = cls(params, lr=0.01, **options, **GPU.options)
            resumed.load_state_dict(opt.state_dict())
            for _ in range(3):
                for p in params:
                    p.grad = torch.randn_like(p)
                with GPU.no_syncs():
                    resumed.step()
            resumed.check_finite()
        except Exception as error:  # noqa: BLE001 - reported, then the run goes on
            verdict = f"FAILED: {type(error).__name__}: {str(error)[:200]}"
            failures.append(f"sync resumed {name}")
        rows.append(f"| {name} {str(dtype)[6:]} | resumed (load_state_dict) | {verdict} |")
    return rows


def _scaler_syncs(failures: list[str]) -> str:
    """GradScaler with autocast (fp16 on CUDA) and an Inf at step 2."""
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1)
    ).to(GPU.device)
    opt = optimlab.Adam(model.parameters(), lr=1e-3, **GPU.options)
    scaler = torch.amp.GradScaler(GPU.device)
    X, y = torch.randn(128, 64, device=GPU.device), torch.randn(128, 1, device=GPU.device)
    verdict = "0 syncs in scaler.step()"
    try:
        for k in range(5):
            opt.zero_grad()
            with torch.autocast(GPU.device, dtype=GPU.scaled_dtype):
                loss = ((model(X) - y) ** 2).mean()
            if k == 2:
                loss = loss * float("inf")
            scaler.scale(loss).backward()
            with GPU.no_syncs():
                scaler.step(opt)  # hands the step found_inf and grad_scale as device tensors
            scaler.update()
        opt.check_finite()
        steps = {int(s["step"]) for s in opt.state.values()}
        if steps != {4}:
            verdict = f"step counts {steps}, expected 4"
            failures.append("grad scaler count")
    except Exception as error:  # noqa: BLE001
        verdict = f"FAILED: {type(error).__name__}: {str(error)[:200]}"
        failures.append("sync grad scaler")
    return f"| Adam | GradScaler (found_inf, grad_scale on the device) | {verdict} |"


#: the classes that take ``capturable=True`` (torch's)
CAPTURABLE = ("Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adadelta", "Rprop", "ASGD")


def graphs(report: list[str], failures: list[str]) -> None:
    """``capturable=True`` in real CUDA graphs: three eager steps on a side stream, one step
    captured, ten replays with new gradients and learning rates written into the static
    tensors (a NaN in one, policy "skip"); the replays must be bitwise the eager capturable
    steps, and close to the CPU's C kernel (the device's pow may differ in the last place)."""
    report.append("## CUDA graphs (capturable=True)\n")
    rows = []
    for name in CAPTURABLE:
        cls = getattr(optimlab, name)
        verdict = "replays bitwise the eager steps"
        try:
            (gp, gs, gk), (ep, es, ek), (cp, cs, ck) = (
                _graph_run(cls, mode) for mode in ("graph", "eager", "cpu")
            )
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


def _graph_run(cls, mode: str) -> tuple[list, dict, int]:
    """13 steps of ``cls`` (the lr a tensor, static gradients, a NaN at step 6): ``mode``
    "graph": 3 eager steps, the rest replays of a captured one; "eager": capturable steps;
    "cpu": the CPU's default path. The parameters, ``state_dict()`` and ``skipped_steps``."""
    device = "cpu" if mode == "cpu" else GPU.device
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(n, generator=generator).to(device) for n in SIZES]
    params = [p.requires_grad_() for p in params]
    grads = [torch.zeros_like(p) for p in params]
    for p, g in zip(params, grads):
        p.grad = g
    lr = torch.tensor(0.01, device=device)
    opt = cls(
        params,
        lr=lr,
        nonfinite_grads="skip",
        # (on the CPU: the C kernel where it runs, else torch's ops)
        **({"fused": None} if mode == "cpu" else {**GPU.options, "capturable": True}),
    )

    def feed(k):
        gen = torch.Generator().manual_seed(100 + k)
        for j, g in enumerate(grads):
            g.copy_(torch.randn(g.shape, generator=gen))
            if k == 6 and j == 1:
                g[3] = float("nan")
        lr.fill_(0.01 * (1 + k) / 12)

    def warm_up():
        for k in range(3):
            feed(k)
            opt.step()

    if mode == "graph":
        replay = GPU.capture(warm_up, opt.step)
        for k in range(3, 13):
            feed(k)
            replay()
    else:
        for k in range(13):
            feed(k)
            opt.step()
    return params, opt.state_dict(), opt.skipped_steps  # (state_dict counts the replays' skip)


def _graph_times() -> list[str]:
    """AdamW on 10M parameters in 200 tensors: a step as usual, a capturable step, and a
    replay of a captured one (medians, CUDA events, side by side)."""
    rows = []
    for label in ("step()", "step(), capturable=True", "graph.replay()"):
        params = [torch.randn(n, device=GPU.device, requires_grad=True) for n in GRAPH_TIMES_SIZES]
        for p in params:
            p.grad = torch.randn_like(p)
        plain = label == "step()"  # (a float lr: a tensor one is read on the host there)
        lr = 1e-3 if plain else torch.tensor(1e-3, device=GPU.device)
        opt = optimlab.AdamW(params, lr=lr, capturable=not plain, **GPU.options)
        call = opt.step
        if label == "graph.replay()":

            def warm_up(opt=opt):
                for _ in range(3):
                    opt.step()

            call = GPU.capture(warm_up, opt.step)
        rows.append(f"| {label} | {_time(call) * 1e3:.3f} |")
        del params, opt
        GPU.free()
    return [
        f"AdamW, {sum(GRAPH_TIMES_SIZES) / 1e6:g}M parameters in {len(GRAPH_TIMES_SIZES)} "
        f"tensors (ms per step, median of {TIMING[0]}x{TIMING[1]}):\n",
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
        micro_batches = [tuple(t.to(GPU.device) for t in batch) for batch in micro_batches]
        with GPU.no_syncs():
            return step(self, micro_batches, total)

    def unchecked_read(self):
        # (fit reads inside its steps and outside them, at epoch ends and evaluations)
        with GPU.syncs_allowed():
            reads.append(self.run.step)
            return read(self)

    torch.manual_seed(0)
    X, y = torch.randn(4096, 64), torch.randint(0, 10, (4096,))
    loop._Trainer.step, loop._Trainer.read = checked_step, unchecked_read
    try:
        for precision in GPU.precisions:
            reads.clear()
            model = torch.nn.Sequential(
                torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
            ).to(GPU.device)
            opt = optimlab.AdamW(model.parameters(), lr=1e-3, **GPU.options)
            try:
                result = fit(
                    model, opt, MiniBatches(X, y, batch_size=256, seed=0), steps=FIT_STEPS,
                    accumulation=2, clip_norm=1.0, precision=precision, progress=False,
                    eval_data=(X[:512].to(GPU.device), y[:512].to(GPU.device)),
                    eval_every=FIT_STEPS // 2,
                )  # fmt: skip
                verdict = f"0 syncs in {result.steps} steps; losses read after steps {reads}"
            except Exception as error:  # noqa: BLE001 - reported, then the run goes on
                verdict = f"FAILED: {type(error).__name__}: {str(error)[:200]}"
                failures.append(f"fit sync {precision}")
            rows.append(f"| {precision} | {verdict} |")
    finally:
        loop._Trainer.step, loop._Trainer.read = step, read
    report += ["| precision | result |", "|---|---|", *rows, ""]


def _time(fn) -> float:
    """Median seconds per call over ``TIMING`` (repeats, calls) after 3 warm-up calls."""
    for _ in range(3):
        fn()
    repeats, calls = TIMING
    return statistics.median(GPU.seconds(fn, calls) / calls for _ in range(repeats))


def _copy_bandwidth() -> float:
    """Bytes per second of ``dst.copy_(src)`` over ``BENCH_TOTAL`` floats (8 bytes each)."""
    src = torch.empty(BENCH_TOTAL, device=GPU.device)
    dst = torch.empty_like(src)
    return 8 * BENCH_TOTAL / _time(lambda: dst.copy_(src))


#: torch's twins of optimlab's configurations, timed beside them
TWINS = {"adam": ("Adam", {}), "adamw": ("AdamW", {}), "sgd-momentum": ("SGD", {"momentum": 0.9})}


#: the dtypes of the speed part's parameters (and state: torch's default); the narrow ones
#: for torch's twins, in the first tensor count only (the time budget)
SPEED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def speed(report: list[str], results: dict) -> None:
    bandwidth = _copy_bandwidth()
    results["copy_bandwidth_GBps"] = bandwidth / 1e9
    report.append(f"## Speed: {BENCH_TOTAL / 1e6:g}M parameters\n")
    report.append(
        f"Copy bandwidth (dst.copy_(src), 8 bytes per element): {bandwidth / 1e9:.0f} GB/s.\n"
    )
    report.append(
        "| optimizer | dtype | tensors | path | ms per step | vs torch fused "
        "| % of copy bandwidth |"
    )
    report.append("|---|---|---|---|---|---|---|")
    for dtype in SPEED_DTYPES:
        for tensors in BENCH_TENSORS:
            for variant in device_variants():
                first = tensors == BENCH_TENSORS[0] and dtype == torch.float32
                if not first and variant.id not in TWINS:
                    continue  # the other optimizers: fp32 and the first count only
                if dtype != torch.float32 and tensors != BENCH_TENSORS[0]:
                    continue
                _speed_rows(report, results, variant, tensors, dtype, bandwidth)
    report.append("")


def _speed_rows(report, results, variant, tensors, dtype, bandwidth) -> None:
    """The rows of one configuration: each path's time, against torch's fused one and the
    copy bandwidth (the bytes a step must move: each operand read or written once, and
    optimlab's check reading the gradients again)."""
    times = _speed_times(variant, tensors, dtype)
    reads, writes = traffic(variant.make([torch.zeros(1, requires_grad=True)]))
    size = torch.finfo(dtype).bits // 8
    fused_s = times.get("torch fused")
    for path, seconds in times.items():
        check = 0 if "no check" in path or "torch" in path else 1  # (reads the grads)
        share = size * (len(reads) + len(writes) + check) * BENCH_TOTAL / seconds / bandwidth
        versus = f"{fused_s / seconds:.2f}x" if fused_s else "-"
        name = str(dtype).removeprefix("torch.")
        report.append(
            f"| {variant.id} | {name} | {tensors} | {path} | {seconds * 1e3:.3f} | {versus} "
            f"| {share:.0%} |"
        )
        results.setdefault("speed", []).append(
            {
                "variant": variant.id,
                "dtype": name,
                "tensors": tensors,
                "path": path,
                "seconds": seconds,
                "bandwidth_share": share,
            }
        )


def _speed_times(variant, tensors: int, dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """Seconds per step of ``variant`` on ``BENCH_TOTAL`` parameters of ``dtype`` in
    ``tensors`` tensors: optimlab's default; for torch's twins also without the check, with
    the general kernel only (no 16-byte loads), and torch's fused and foreach, side by side."""
    from optimlab.fused import triton_kernels

    size = BENCH_TOTAL // tensors
    params = [
        torch.zeros(size, device=GPU.device, dtype=dtype, requires_grad=True)
        for _ in range(tensors)
    ]
    paths: dict = {}
    try:
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        paths["optimlab"] = variant.make(params, lr=1e-3, **GPU.options)
        if variant.id in TWINS:
            paths["optimlab no check"] = variant.make(
                params, lr=1e-3, nonfinite_grads="ignore", **GPU.options
            )
            name, kwargs = TWINS[variant.id]
            cls = getattr(torch.optim, name)
            paths["torch fused"] = cls(params, lr=1e-3, fused=True, **kwargs)
            paths["torch foreach"] = cls(params, lr=1e-3, foreach=True, **kwargs)
        times = {path: _time(opt.step) for path, opt in paths.items()}
        if variant.id in TWINS:  # side by side: every chunk through the general kernel
            triton_kernels.ALIGNED_LOADS = False
            try:
                times["optimlab, no 16-byte variant"] = _time(paths["optimlab"].step)
            finally:
                triton_kernels.ALIGNED_LOADS = True
        return times
    finally:  # (the memory back before the next variant, or the next part after a failure)
        del params, paths
        GPU.free()


def check(out: Path, header: list[str], with_speed: bool = True) -> int:
    """Runs the parts, writing the report into ``out`` after each; 1 if any failed."""
    started = time.perf_counter()
    report = list(header)
    results: dict = {}
    failures: list[str] = []

    def speed_part(report, failures):  # (its timings go into the JSON too)
        speed(report, results)

    parts = [parity, mixed_parity, syncs, graphs, fit_syncs]
    parts += [speed_part] if with_speed else []
    parts.append(compiled_kernels)  # (every kernel the parts before compiled)
    out.mkdir(parents=True, exist_ok=True)

    def write(final: bool = False) -> str:
        """The report so far, written after each part (a part that kills the process loses
        only itself)."""
        text = "\n".join(report)
        if final:
            took = time.perf_counter() - started
            text += f"\nFailures: {', '.join(failures) or 'none'}. Took {took:.0f} s.\n"
        results["failures"] = failures
        (out / "gpu_check.md").write_text(text)
        (out / "gpu_check.json").write_text(json.dumps({"header": header, **results}, indent=1))
        return text

    for part in parts:
        name = part.__name__.removesuffix("_part")
        try:
            part(report, failures)
        except Exception:  # noqa: BLE001
            failures.append(name)
            report.append("```\n" + traceback.format_exc() + "```\n")
            GPU.free()
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
        write()
    print(write(final=True))
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--no-speed", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device here", file=sys.stderr)
        return 2
    import triton

    card = torch.cuda.get_device_name()
    header = [
        "# The Triton path on a GPU\n",
        f"{card}; torch {torch.__version__}, Triton {triton.__version__}.\n",
    ]
    return check(args.out, header, with_speed=not args.no_speed)


if __name__ == "__main__":
    sys.exit(main())
