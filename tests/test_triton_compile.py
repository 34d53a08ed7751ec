"""The Triton kernels compiled for the GPUs they run on, here, on a machine without one.

``test_triton.py`` proves the generated source's arithmetic in Triton's interpreter, which
computes each operation as written. A GPU runs that source compiled: Triton lowers it to PTX,
and ``ptxas`` (shipped with Triton) to machine code, and both may contract a multiply and an
add into one fused multiply-add, which rounds once instead of twice. Here every kernel that the
registry's fusable configurations launch is compiled ahead of time for an H100 (``sm_90``), and
every operation, the bfloat16 kernels with float32 state and the non-finite check also for an A100 (``sm_80``), a
B200 (``sm_100``) and an RTX 5090 (``sm_120``), with the options the launches pass
(:data:`optimlab.fused.triton_kernels.COMPILE_OPTIONS`), through ``ptxas``, and its PTX is
checked (:func:`~optimlab.fused.triton_kernels.ptx_problems`): every floating-point add,
subtract and multiply carries a rounding mode, which the PTX ISA forbids ``ptxas`` to contract;
no approximate or flush-to-zero instruction; no more ``fma`` than the source calls ``tl.fma``
(so LLVM contracted nothing either). A control compiles with Triton's default options, which
fail the check. The machine code keeps every value in registers (``cuobjdump -res-usage``: no
local memory, which a spill would add to the memory traffic).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import triton  # (make test installs it: the dev extra)
from test_triton import CASES, FUSABLE, MIXED, _all_operations, _Launches, _run

from optimlab.fused import triton_kernels

# masked-off lanes of a block divide by zero in the interpreter (never stored)
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

#: Triton's NVIDIA backend ships it in every Linux wheel (checked before each compile)
PTXAS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
WORKER = Path(__file__).with_name("triton_compile_worker.py")

#: the GPUs compiled for, by name: their compute capabilities
ARCHS = {"A100": 80, "H100": 90, "B200": 100, "RTX 5090": 120}
#: the elements each thread computes: a block over Triton's default 4 warps of 32 threads
PER_THREAD = triton_kernels.BLOCK // (4 * 32)

#: the update kernel's arguments as a launch passes them (DeviceBucket.run): pointers to int64,
#: float64 and float32 tensors, and Python ints, which Triton compiles as constants where they
#: are 1 (its specialisation; the variants below)
STEP_SIGNATURE = {
    "table": "*i64",
    "chunks": "*i64",
    "scalars": "*fp64",
    "flag": "*fp32",
    "skips": "*fp64",
    "ntensors": "i32",
    "rows": "i32",
    "nscalars": "i32",
    "BLOCK": "constexpr",
}
#: the integers a launch may pass as 1: none, one row of scalars (no unread step), all
STEP_VARIANTS = [{}, {"rows": 1}, {"rows": 1, "nscalars": 1, "ntensors": 1}]


def _step_specs(key: tuple, variants=STEP_VARIANTS) -> list[dict]:
    program, dtype, storage, stochastic, aligned, state_storage = key
    source = triton_kernels.program_source(
        program, dtype, "optimlab_step", storage, stochastic, aligned, state_storage
    )
    declared = re.search(r"def optimlab_step\((.*?)\)", source, re.DOTALL).group(1)
    names = [a.split(":")[0].strip() for a in declared.split(",")]
    assert names == list(STEP_SIGNATURE)  # the launch's arguments, in its order
    specs = []
    for ones in variants:
        signature = {**STEP_SIGNATURE, **dict.fromkeys(ones, "constexpr")}
        constexprs = {"BLOCK": triton_kernels.BLOCK, **ones}
        specs.append(
            {
                "name": "optimlab_step",
                "source": source,
                "signature": signature,
                "constexprs": constexprs,
                "aligned": aligned,
            }
        )
    return specs


def _compile(specs: list[dict], archs, tmp_path, options=None) -> list[list[dict]]:
    """Each spec compiled for each of ``archs`` in a process of its own (see the worker),
    Triton's cache in ``tmp_path``."""
    assert PTXAS.exists(), f"Triton {triton.__version__} ships no ptxas here ({PTXAS})"
    job = {
        "targets": list(archs),
        "options": triton_kernels.COMPILE_OPTIONS if options is None else options,
        "kernels": specs,
    }
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")
    env["TRITON_DEFAULT_FP_FUSION"] = "1"  # (Triton's default, said: no warning)
    done = subprocess.run(
        [sys.executable, str(WORKER)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=env,
        timeout=900,  # catches a hang only
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def _assert_rounds_as_written(
    specs: list[dict], results: list[list[dict]], in_registers: bool = True
) -> None:
    assert len(results) == len(specs)
    for spec, compiled in zip(specs, results):
        fmas_written = spec["source"].count("tl.fma(")
        for result in compiled:
            where = f"sm_{result['arch']}, {spec['constexprs']}:\n{spec['source']}"
            assert triton_kernels.ptx_problems(result["ptx"]) == [], where
            fmas = len(re.findall(r"\bfma\.rn\.f(?:32|64)\b", result["ptx"]))
            assert fmas <= PER_THREAD * fmas_written, where
            assert result["cubin_bytes"] > 0  # ptxas made machine code of it
            if spec["aligned"]:  # whole chunks: 16 bytes per load and store of the elements
                assert re.search(r"\bld\.global(?:\.\w+)*\.v[248]\.", result["ptx"]), where
                assert re.search(r"\bst\.global(?:\.\w+)*\.v[248]\.", result["ptx"]), where
            # ... that keeps its values in registers: a spill to local memory would add
            # memory traffic to a kernel bound by it
            used = result["resources"]
            assert used["REG"] > 0
            if in_registers:
                assert used["LOCAL"] == used["STACK"] == 0, (used, where)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_every_operation_compiles_for_each_gpu_without_contraction(dtype, tmp_path):
    specs = []
    for aligned in (False, True):  # each variant for an H100, the general one for every GPU
        specs += _step_specs((_all_operations().program, dtype, None, False, aligned, None))
        specs[-len(STEP_VARIANTS)]["targets"] = list(ARCHS.values())
    # (a program of every operation at once, 30 results, is no optimizer's: it may spill)
    results = _compile(specs, [ARCHS["H100"]], tmp_path)
    _assert_rounds_as_written(specs, results, in_registers=False)


def test_the_check_catches_what_triton_s_default_options_compile(tmp_path):
    # the control: with Triton's default (fp fusion on, as the launches were before they passed
    # COMPILE_OPTIONS) the multiplies and adds carry no rounding mode, free for ptxas to fuse
    specs = _step_specs((_all_operations().program, torch.float32, None, False, False, None), [{}])
    (compiled,) = _compile(specs, [ARCHS["H100"]], tmp_path, options={})
    problems = triton_kernels.ptx_problems(compiled[0]["ptx"])
    assert any("mul.f32" in p for p in problems) and any("add.f32" in p for p in problems)


CLASSES = sorted({c.cls for c in FUSABLE}, key=lambda c: c.__name__)


@pytest.mark.parametrize("half", [0, 1])
def test_every_fusable_configuration_s_kernels_compile_for_an_h100(half, monkeypatch, tmp_path):
    # the optimizers in two halves, each compiled by one process (one start of the compiler)
    launches = _Launches(monkeypatch)
    # (in float32: each operation's float64 code is compiled above, for both GPUs)
    for case in (c for c in FUSABLE if c.cls in CLASSES[half::2]):
        _run(case, torch.float32, "triton", steps=2)
    # every launch compiles as the check below does
    assert all(options == triton_kernels.COMPILE_OPTIONS for *_, options in launches.launched)
    keys = dict.fromkeys(key for key, *_ in launches.launched)
    assert keys
    specs = [spec for key in keys for spec in _step_specs(key, [{}])]
    _assert_rounds_as_written(specs, _compile(specs, [ARCHS["H100"]], tmp_path))


def _run_params():
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(n, generator=generator) for n in (5, 1500)]


#: the parameters' and the state's dtype of the kernels for narrow parameters
NARROW = {
    # bfloat16 with float32 state, both roundings: for every GPU
    "float32": [(torch.bfloat16, torch.float32, False), (torch.bfloat16, torch.float32, True)],
    # the state in the parameters' dtype (torch's default), float16 also with float32 state:
    # loads and stores converted as each dtype is, for an H100
    "narrow": [
        (torch.bfloat16, None, False),
        (torch.float16, None, False),
        (torch.float16, torch.float32, False),
    ],
}


@pytest.mark.parametrize("state", list(NARROW))
def test_narrow_parameters_kernels_compile_for_each_gpu(state, monkeypatch, tmp_path):
    launches = _Launches(monkeypatch)
    for name in MIXED:
        case = next(c for c in CASES if c.id == name)
        for dtype, state_dtype, stochastic in NARROW[state]:
            params = [p.detach().to(dtype).requires_grad_() for p in _run_params()]
            options = dict(state_dtype=state_dtype, stochastic_rounding=stochastic)
            opt = case.make(params, lr=0.01, fused="triton", **options)
            for p in params:
                p.grad = torch.ones_like(p)
            opt.step()
    keys = dict.fromkeys(key for key, *_ in launches.launched)
    made = {(key[2], key[5], key[3]) for key in keys}  # (storage, state storage, stochastic)
    assert made == {(p, s or p, r) for p, s, r in NARROW[state]}
    specs = [  # (the general variant too: these tensors were aligned)
        spec
        for key in keys
        for aligned in (False, True)
        for spec in _step_specs((*key[:4], aligned, key[5]), [{}])
    ]
    archs = ARCHS.values() if state == "float32" else [ARCHS["H100"]]
    _assert_rounds_as_written(specs, _compile(specs, archs, tmp_path))


FLOAT_ARITHMETIC = r"\b(?:add|sub|mul|fma|div|sqrt|setp|min|max)(?:\.\w+)*\.f(?:16|32|64)\b"


def test_the_nonfinite_check_compiles_for_each_gpu(tmp_path):
    signature = {
        "table": "*i64",
        "chunks": "*i64",
        "row": "constexpr",  # always 1 (the gradients' row): a constant to Triton
        "sizes": "i32",
        "flags": "*fp32",
        "first_flag": "i32",
        "ntensors": "i32",
        "BLOCK": "constexpr",
        "BITS": "constexpr",
        "EXPONENT": "constexpr",
        "ALIGNED": "constexpr",
    }
    specs = [
        {
            "name": "optimlab_nonfinite",
            "source": triton_kernels._NONFINITE_SOURCE,
            "signature": signature,
            "constexprs": {
                "row": 1,
                "BLOCK": triton_kernels.BLOCK,
                "BITS": bits,
                "EXPONENT": exponent,
                "ALIGNED": aligned,
            },
        }
        for bits, exponent in triton_kernels._EXPONENTS.values()
        for aligned in (False, True)
    ]
    results = _compile(specs, ARCHS.values(), tmp_path)
    for spec, compiled in zip(specs, results):
        for result in compiled:
            assert result["cubin_bytes"] > 0
            if spec["constexprs"]["ALIGNED"]:  # whole chunks: 16 bytes per load
                assert re.search(r"\bld\.global(?:\.\w+)*\.v[248]\.", result["ptx"])
            # it reads the bits as integers: no floating-point arithmetic or comparison
            assert not re.search(FLOAT_ARITHMETIC, result["ptx"])


def test_the_ptx_check_reads_predicated_instructions():
    ptx = (
        "\t@!%p1 add.f32 %f1, %f2, %f3;\n"
        "\t@%p2 div.full.f32 %f1, %f2, %f3;\n"
        "\tadd.rn.f32 %f1, %f2, %f3;\n"
        "\tsqrt.rn.ftz.f32 %f1, %f2;\n"
        "\tfma.rn.f64 %fd1, %fd2, %fd3, %fd4;\n"
    )
    assert triton_kernels.ptx_problems(ptx) == [
        "line 1: add.f32",
        "line 2: div.full.f32",
        "line 4: sqrt.rn.ftz.f32",
    ]
