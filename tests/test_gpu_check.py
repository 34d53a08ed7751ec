"""``scripts/gpu_check.py``, the checks a GPU machine runs, run here on the CPU in Triton's
interpreter, so that a short loan of a GPU is not spent on the script's own bugs.

The script reaches the GPU through one object (``gpu_check.GPU``, a ``Cuda``); here
:class:`Interpreted` stands in for it: CPU tensors with ``fused="triton"`` (the same
``DeviceSteps`` code a GPU runs); for CUDA's sync debug mode, a dispatch mode that raises where
the host reads a single value (``.item()``, ``bool()``) that would be in device memory there
(:class:`DeviceReads`: the flags, and anything computed from or written with parameters,
gradients or state; a control shows it; copies to the host it does not see); for CUDA graphs, the recorded capture of ``test_capturable.py``; and the
CPU's clock. What only a GPU can show (the compiled kernels' bits, CUDA's runtime rules, speed)
stays for the loan; the script's own logic, its expectations (counts, skips, bitwise
comparisons) and its report are proven here.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import os
import time
import weakref
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

os.environ["TRITON_INTERPRET"] = "1"  # (conftest.py sets it before anything imports Triton)

import pytest  # noqa: E402
import torch  # noqa: E402
from test_capturable import Graph  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import optimlab  # noqa: E402
from optimlab.fused import steps  # noqa: E402
from optimlab.train import loop  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


class DeviceReads(TorchDispatchMode):
    """Raises, while ``checking``, where the host reads a value that on a GPU would be in
    device memory. Every tensor here is on the CPU, so "on the device" is told apart as the
    data: a tensor of more than one element (parameters, gradients, state, the flags; the
    counts and scalars a step keeps on the host are 0-dim), and whatever is computed from one
    (as ``bool(norms.isfinite().all())``)."""

    def __init__(self):
        super().__init__()
        self.checking = False
        self.checked = 0  # how many checked blocks ran
        self.derived: dict[int, weakref.ref] = {}  # (by identity: == is elementwise)

    def _on_device(self, t: torch.Tensor) -> bool:
        seen = self.derived.get(id(t))
        return t.numel() > 1 or (seen is not None and seen() is t)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = [t for t in torch.utils._pytree.tree_leaves((args, kwargs)) if torch.is_tensor(t)]
        device = any(self._on_device(t) for t in inputs)
        if self.checking and device and func is torch.ops.aten._local_scalar_dense.default:
            raise RuntimeError("called a synchronizing CUDA operation (a device read)")
        out = func(*args, **kwargs)
        if device:
            if len(self.derived) > 100_000:  # (forget the dead)
                self.derived = {k: r for k, r in self.derived.items() if r() is not None}
            for t in [*torch.utils._pytree.tree_leaves(out), *_written(func, args, kwargs)]:
                if torch.is_tensor(t):
                    self.derived[id(t)] = weakref.ref(t)
        return out


def _written(func, args, kwargs) -> list:
    """The tensors ``func`` writes in place (as GradScaler's ``found_inf``)."""
    written = []
    for i, argument in enumerate(func._schema.arguments):
        if argument.alias_info is not None and argument.alias_info.is_write:
            value = args[i] if i < len(args) else kwargs.get(argument.name)
            written += torch.utils._pytree.tree_leaves(value)
    return written


class Interpreted:
    """Stands in for ``gpu_check.Cuda`` on the CPU (see the module's docstring)."""

    device = "cpu"
    options = {"fused": "triton"}
    precisions = ("fp32", "bf16")  # (fit takes fp16 on CUDA only)
    scaled_dtype = torch.bfloat16  # (GradScaler on the CPU: bf16 autocast)

    def __init__(self):
        self.reads = DeviceReads()

    @contextlib.contextmanager
    def no_syncs(self):
        previous = self.reads.checking
        self.reads.checking = True
        self.reads.checked += 1
        try:
            with self.reads:
                yield
        finally:
            self.reads.checking = previous

    @contextlib.contextmanager
    def syncs_allowed(self):
        previous = self.reads.checking
        self.reads.checking = False
        try:
            yield
        finally:
            self.reads.checking = previous

    def capture(self, warm_up, step):
        """A recording runs the step it records (CUDA's capture runs nothing): the first
        replay records, the others replay the recording."""
        warm_up()
        graphs = []

        def replay():
            if graphs:
                graphs[0].replay()
                return
            with contextlib.ExitStack() as stack:
                stack.enter_context(mock.patch.object(steps, "capturing_on", lambda device: True))
                for name in ("is_initialized", "is_current_stream_capturing"):
                    stack.enter_context(mock.patch.object(torch.cuda, name, lambda: True))
                graph = stack.enter_context(Graph())
                step()
            assert graph.host_reads == []
            graphs.append(graph)

        return replay

    def seconds(self, fn, calls):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return time.perf_counter() - start

    def free(self):
        gc.collect()

    def compiled_kernels(self):
        # (the interpreter compiles nothing; tests/test_triton_compile.py checks real PTX)
        return [SimpleNamespace(asm={"ptx": "add.rn.f32 %f3, %f1, %f2;\n"})]


@pytest.fixture
def gpu_check(monkeypatch):
    """The script as a module, on :class:`Interpreted`, at sizes the interpreter runs in
    seconds."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.GPU = Interpreted()
    # (each fusable configuration is the C kernels' in test_triton.py: here, the script's
    # code on a few of each kind)
    module.VARIANTS = ("sgd-momentum", "rmsprop", "adam", "adamw", "nadam", "radam", "lion")
    module.VARIANTS += ("asgd", "schedule_free_adamw")
    module.PARITY_SIZES = (5, 1500, 33)
    module.SIZES = (300, 33, 5)
    module.BENCH_TOTAL, module.BENCH_TENSORS, module.TIMING = 4000, (2, 4), (1, 1)
    module.GRAPH_TIMES_SIZES = (100,) * 3
    module.FIT_STEPS = 6
    # fit reads the losses every step on the CPU; on a GPU, every DEVICE_READ_EVERY steps
    monkeypatch.setattr(loop, "_read_every", lambda device, policy: loop.DEVICE_READ_EVERY)
    return module


def test_every_part_runs_and_passes_here(gpu_check, tmp_path, capsys):
    assert gpu_check.check(tmp_path, ["# dry run\n"]) == 0, capsys.readouterr().out[-4000:]
    report = (tmp_path / "gpu_check.md").read_text()
    assert "FAILED" not in report and "DIFFERS" not in report, report
    assert "Failures: none." in report
    sections = ("Parity", "Mixed precision", "inside step()", "CUDA graphs", "fit's steps")
    for section in (*sections, "Speed", "PTX"):
        assert f"{section}" in report
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    assert results["failures"] == []
    paths = {(r["variant"], r["dtype"], r["tensors"], r["path"]) for r in results["speed"]}
    assert ("adam", "float32", 4, "torch fused") in paths
    assert ("adam", "float32", 4, "optimlab") in paths
    assert ("lion", "float32", 2, "optimlab") in paths
    assert ("lion", "float32", 4, "optimlab") not in paths
    for dtype in ("bfloat16", "float16"):  # torch's twins, in the first count
        assert ("adamw", dtype, 2, "torch fused") in paths
        assert ("adamw", dtype, 2, "optimlab") in paths
        assert ("adamw", dtype, 4, "optimlab") not in paths
        assert ("lion", dtype, 2, "optimlab") not in paths
    # every row of the checks ran: 7 optimizers under 3 policies, 5 resumed runs, GradScaler
    assert report.count("| 0 syncs") >= 7 * 3 + 5 and "0 syncs in scaler.step()" in report
    assert "| ASGD capturable=True | skip | 0 syncs, 0 waits for flags |" in report
    assert report.count("replays bitwise the eager steps") == len(gpu_check.CAPTURABLE)
    assert "| bf16 | 0 syncs in 6 steps; losses read after steps [3, 6, 6]" in report
    assert gpu_check.GPU.reads.checked > 0
    if "skipped: the C kernel" not in report:  # (parity needs the C kernel as its reference)
        assert "| adam | float32 | aligned | bitwise |" in report
        assert "| adam | float32 | general | bitwise |" in report
        for label in gpu_check.MIXED:
            assert f"| adam | {label} | bitwise |" in report


@pytest.mark.parametrize("read", ["a computed value", "a flag", "a value written in place"])
def test_the_stand_in_raises_where_the_host_reads_the_device(gpu_check, read):
    # the control: reads of values CUDA's sync debug mode would refuse, the stand-in refuses
    # too (it sees reads of single values, .item() and bool(); not copies to the host)
    params = [torch.randn(n, requires_grad=True) for n in (300, 5)]
    opt = optimlab.Adam(params, lr=0.01, **gpu_check.GPU.options)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    flags = opt._fused.device_steps.flags
    found_inf = torch.zeros(())
    with pytest.raises(RuntimeError, match="synchronizing"), gpu_check.GPU.no_syncs():
        if read == "a flag":
            bool(flags[:1])
        elif read == "a computed value":
            bool(torch.stack([p.grad.norm() for p in params]).isfinite().all())
        else:  # (GradScaler's found_inf, written by its unscaling)
            grads = [p.grad for p in params]
            torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf, torch.ones(()))
            bool(found_inf)
    with gpu_check.GPU.no_syncs(), gpu_check.GPU.syncs_allowed():
        bool(flags[:1])  # (allowed again inside)


def test_a_failing_part_is_reported_and_the_others_still_run(gpu_check, tmp_path, monkeypatch):
    def broken(report, failures):
        raise ValueError("broken on purpose")

    def ran(report, failures):
        report.append("## ran\n")

    for name in ("parity", "mixed_parity", "syncs", "fit_syncs"):
        monkeypatch.setattr(gpu_check, name, ran)
    monkeypatch.setattr(gpu_check, "graphs", broken)
    assert gpu_check.check(tmp_path, ["# dry run\n"], with_speed=False) == 1
    report = (tmp_path / "gpu_check.md").read_text()
    assert "ValueError: broken on purpose" in report and report.count("## ran") == 4
    assert "Failures: broken." in report and "kernels compiled" in report
