"""The fused path on the GPU: a recorded update rule as one multi-tensor Triton kernel.

The second code generator beside :mod:`.native`'s C one, from the same recorded
:class:`~optimlab.fused.tape.Program`: :data:`TRITON_EXPRESSIONS` writes each operation of
:data:`~optimlab.fused.tape.SIGNATURES` as Triton computes it, with the C kernel's rounding
(``tl.fma`` where the C code calls ``fma``; ``tl.div_rn``/``tl.sqrt_rn`` in float32, which a
GPU otherwise computes approximately; no other multiply-add contracted), so a step gives what
the C kernel gives, bit for bit (:func:`lint` checks the generated source for it).

**One launch per bucket.** The kernel covers every tensor of a bucket (one dtype, one step
count) at once: a *chunk table* (for each block of ``BLOCK`` elements: its tensor and its
offset) and a *pointer table* (one row per operand, one column per tensor, and a row of sizes)
live on the device, built once per plan; only the gradients' row is written again, and only
when the gradients moved. The scalars of the step (lr, bias corrections, ...; computed in
Python by the rule, as on every path) go to the device in a small float64 buffer, so a changing
learning rate or step count never recompiles anything; Triton caches the compiled kernels.

**No host synchronisation.** A step never reads a device value on the host:

* the non-finite check is a kernel (:func:`nonfinite_kernel`) that sets a device *flag* (and
  the flag of each tensor it found, for the error message); torch's ``GradScaler`` hands its
  own flag (``found_inf``) and scale (``grad_scale``) as device tensors, which the kernel reads
  the same way;
* the update kernel reads the flag and writes nothing where it is set;
* a step the flag skipped must not count, but the host does not know yet: it counts
  optimistically and learns the truth later from a copy of the device's skip counter, made
  without blocking (:class:`~optimlab.fused.steps.DeviceSteps`). Meanwhile each launch takes
  one row of scalars per possible number of skipped steps not yet known, and the kernel picks
  its row from the device's counter.

**CUDA graphs** (``capturable=True``): the step counts advance on the device, where the
scalars are then computed too (:mod:`.device_scalars`), into the same buffer; the kernels are
the same (see :meth:`~optimlab.fused.steps.DeviceSteps._capturable_step`).

**Without a GPU** the same kernels run on CPU tensors in Triton's interpreter
(``TRITON_INTERPRET=1``, for tests: slow, and exactly the arithmetic of the generated source).
Prototype findings this module relies on: the interpreter (like the GPU) must not see a block
of booleans combined with a scalar boolean, so scalars are broadcast by hand; ``tl.div_rn`` and
``tl.sqrt_rn`` take float32 only (float64 division and square root are correctly rounded
anyway).

Triton is an optional extra: ``pip install 'optimlab[gpu]'`` (beside the CPU build of torch, it
does not upgrade it).
"""

from __future__ import annotations

import functools
import hashlib
import linecache
import os
import re
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..core.precision import HASH_MULTIPLIERS
from .native import REAL_DTYPE, _say_once
from .tape import SIGNATURES, Program

#: Each operation as the Triton expression that computes what the C kernel computes
#: (:data:`optimlab.fused.native.C_EXPRESSIONS`). ``{0}``, ``{1}``, ``{2}`` are block operands,
#: ``{s}`` (``{s0}``, ...) the scalars, already in the element type; ``FMA`` a fused
#: multiply-add, ``DIV``/``SQRT`` the correctly rounded division and root, ``{NAN1}`` the NaN
#: with all bits set (ATen's vector maximum), ``{ONE}``/``{ZERO}`` blocks of 1 and +0.
TRITON_EXPRESSIONS = {
    "neg": "-{0}",
    "add": "FMA({1}, {s}, {0})",
    "add_": "FMA({1}, {s}, {0})",
    "add_scalar_": "{0} + {s}",
    "add_scalar": "{0} + {s}",
    "div": "DIV({0}, {s})",
    "div_": "DIV({0}, {s})",
    "div_tensor_": "DIV({0}, {1})",
    "lerp": "FMA({s}_coef, {1} - {0}, tl.where({s}_small, {0}, {1}))",
    "lerp_": "FMA({s}_coef, {1} - {0}, tl.where({s}_small, {0}, {1}))",
    "mul_": "{0} * {s}",
    "mul": "{0} * {s}",
    "mul_tensor_": "{0} * {1}",
    "mul_tensor": "{0} * {1}",
    "addcmul": "FMA({s} * {1}, {2}, {0})",
    "addcmul_": "FMA({s} * {1}, {2}, {0})",
    "addcdiv_": "{0} + DIV({s} * {1}, {2})",
    "sqrt": "SQRT({0})",
    "sqrt_": "SQRT({0})",
    "abs": "tl.abs({0})",
    "sign": "tl.where({0} > 0, {ONE}, tl.where({0} < 0, -{ONE}, {ZERO}))",
    "sign_": "tl.where({0} > 0, {ONE}, tl.where({0} < 0, -{ONE}, {ZERO}))",
    "reciprocal_": "DIV({ONE}, {0})",
    "maximum_": "tl.where(({0} != {0}) | ({1} != {1}), {NAN1}, tl.where({0} > {1}, {0}, {1}))",
    "maximum": "tl.where(({0} != {0}) | ({1} != {1}), {NAN1}, tl.where({0} > {1}, {0}, {1}))",
    # {s0}_nan: -0, or NaN for a NaN bound (ATen fills the tensor with NaN), as in the C kernel
    "clamp_": (
        "tl.where({s1} < tl.where({0} < {s0}, {s0}, {0}), {s1}, "
        "tl.where({0} < {s0}, {s0}, {0})) + {s0}_nan"
    ),
    "sign_select": "tl.where({0} > 0, {s0}_b, tl.where({0} < 0, {s1}_b, {s2}_b))",
    "copy_": "{1}",
}
assert set(TRITON_EXPRESSIONS) == set(SIGNATURES)

#: elements per program (one block of a chunk table)
BLOCK = 1024
#: how every kernel is compiled for a GPU: no multiply and add contracted into a fused
#: multiply-add unless the source calls ``tl.fma``, as the C kernel is compiled
#: (``-ffp-contract=off``). Triton's NVIDIA backend contracts by default, and then leaves
#: ``mul.f32``/``add.f32`` without a rounding mode in the PTX, which ptxas may fuse; without
#: it they are ``mul.rn``/``add.rn``, which it may not (PTX ISA, "add" and "mul"). The
#: interpreter never contracts and ignores the option.
COMPILE_OPTIONS = {"enable_fp_fusion": False}
#: whether an aligned bucket takes the kernel variant that reads and writes whole chunks 16
#: bytes per instruction (see :class:`DeviceBucket`; off: the general variant, for a
#: side-by-side measurement)
ALIGNED_LOADS = True
#: the Triton element types of the dtypes the kernels take
TL_TYPES = {torch.float32: "tl.float32", torch.float64: "tl.float64"}


class TritonUnavailable(RuntimeError):
    """Triton kernels cannot run here (Triton not installed, or CPU tensors outside the
    interpreter)."""


#: the oldest Triton whose compiled kernels round as the C kernel does. Triton 3.2 to 3.5 compile
#: ``tl.div_rn`` and ``tl.sqrt_rn`` to ``div.rn.ftz.f32`` and ``sqrt.rn.ftz.f32``, which flush
#: subnormal operands and results to zero (found by compiling every kernel ahead of time with
#: each release, as tests/test_triton_compile.py does); 3.6 to 3.9 compile them to
#: ``div.rn.f32`` and ``sqrt.rn.f32``.
OLDEST_TRITON = (3, 6)
#: the oldest Triton whose interpreter computes ``tl.fma`` as a GPU does, rounding once: 3.6 to
#: 3.8 multiply, round, add and round again, so the kernels' numbers there are not the GPU's
#: (nor the C kernel's), and the tests, which prove the kernels' arithmetic in the
#: interpreter, need 3.9
OLDEST_INTERPRETER = (3, 9)


def unavailable_reason(device: torch.device) -> str | None:
    """Why the Triton kernels cannot run on tensors of ``device``, or None when they can."""
    reason = _installed_reason()
    if reason is not None:
        return reason
    if device.type == "cuda":
        return None
    if device.type == "cpu":
        if os.environ.get("TRITON_INTERPRET") == "1":
            return _interpreter_reason()
        return (
            "the Triton kernels run on CUDA tensors; on CPU tensors only in Triton's "
            "interpreter, for tests (TRITON_INTERPRET=1 in the environment before Triton is "
            "imported)"
        )
    return f"the Triton kernels run on CUDA tensors, not on {device.type}"


def _triton_version() -> tuple[int, ...]:
    import triton

    return tuple(int(n) for n in re.findall(r"\d+", triton.__version__)[:2])


@functools.cache
def _interpreter_reason() -> str | None:
    """Why the installed Triton's interpreter cannot stand for a GPU (asked once)."""
    if _triton_version() < OLDEST_INTERPRETER:
        import triton

        oldest = ".".join(map(str, OLDEST_INTERPRETER))
        return (
            f"the Triton kernels run in Triton's interpreter from Triton {oldest} on, found "
            f"{triton.__version__}, whose interpreter computes tl.fma with two roundings "
            "(a GPU rounds once)"
        )
    return None


@functools.cache
def _installed_reason() -> str | None:
    """Why the installed Triton cannot run the kernels (asked once per process)."""
    try:
        import triton
    except ImportError:
        return "Triton is not installed (pip install 'optimlab[gpu]')"
    found = _triton_version()
    if found < OLDEST_TRITON:
        oldest = ".".join(map(str, OLDEST_TRITON))
        return (
            f"the Triton kernels need Triton {oldest} or newer, found {triton.__version__}, "
            "which compiles their correctly rounded division and square root to instructions "
            "that flush subnormal numbers to zero"
        )
    return None


# --- generating ---------------------------------------------------------------------------


def _scalar_lines(program: Program, ctype: str) -> list[str]:
    """Load the scalars of the chosen row, in the element type, and what some operations
    derive from them (as :func:`optimlab.fused.native._scalar_lines` does in C)."""
    n_scalars = 1 + max((k for *_, slots in program.instructions for k in slots), default=-1)
    lines = [f"    s{k} = tl.load(row + {k}).to({ctype})" for k in range(n_scalars)]
    for op, _, _, slots in program.instructions:
        if op in ("lerp", "lerp_"):
            s = f"s{slots[0]}"
            # a scalar boolean broadcast by hand to a block (see the module docstring)
            lines.append(f"    {s}_small = (ZEROS_I + (tl.abs({s}) < 0.5).to(tl.int32)) != 0")
            lines.append(f"    {s}_coef = tl.where(tl.abs({s}) < 0.5, {s}, {s} - 1.0)")
        elif op == "clamp_":
            low, high = f"s{slots[0]}", f"s{slots[1]}"
            lines.append(
                f"    {low}_nan = tl.where(({low} != {low}) | ({high} != {high}), "
                f"float('nan'), -0.0).to({ctype})"
            )
        elif op == "sign_select":
            for slot in slots:
                # a block holding the scalar exactly (an addition would turn -0 into +0)
                lines.append(f"    s{slot}_b = tl.where(ZEROS_I == 0, s{slot}, s{slot})")
    return lines


def _expression(op: str, args: Sequence[str], slots: Sequence[int], ctype: str) -> str:
    scalars = {f"s{k}": f"s{slot}" for k, slot in enumerate(slots)}
    expr = TRITON_EXPRESSIONS[op].format(
        *args, s=scalars.get("s0", ""), ONE="ONE", ZERO="ZERO", NAN1="NAN1", **scalars
    )
    if ctype == "tl.float32":
        expr = expr.replace("DIV(", "tl.div_rn(").replace("SQRT(", "tl.sqrt_rn(")
        return expr.replace("FMA(", "tl.fma(")
    # float64 division and square root are correctly rounded as they are
    return _infix_division(expr).replace("SQRT(", "tl.sqrt(").replace("FMA(", "tl.fma(")


def _infix_division(expr: str) -> str:
    """``DIV(a, b)`` written ``((a) / (b))`` (a jit helper function for it would be a nested
    call, which the interpreter refuses once torch's dynamo is loaded)."""
    while "DIV(" in expr:
        start = expr.index("DIV(")
        depth, comma, k = 0, None, start + 4
        for k in range(start + 4, len(expr)):
            if expr[k] == "(":
                depth += 1
            elif expr[k] == ")":
                if depth == 0:
                    break
                depth -= 1
            elif expr[k] == "," and depth == 0 and comma is None:
                comma = k
        a, b = expr[start + 4 : comma].strip(), expr[comma + 1 : k].strip()
        expr = f"{expr[:start]}(({a}) / ({b})){expr[k + 1 :]}"
    return expr


def _hash_lines(target: str, source: str, indent: str = "    ") -> list[str]:
    """``target = hash32(source)`` (:func:`optimlab.core.precision.hash32`) in uint32
    arithmetic, whose products wrap as the reference's ``& 0xFFFFFFFF`` does."""
    first, second = HASH_MULTIPLIERS
    return [
        f"{indent}{target} = {source} ^ ({source} >> 16)",
        f"{indent}{target} = {target} * {first:#x}",
        f"{indent}{target} = {target} ^ ({target} >> 15)",
        f"{indent}{target} = {target} * {second:#x}",
        f"{indent}{target} = {target} ^ ({target} >> 16)",
    ]


def program_source(
    program: Program,
    dtype: torch.dtype,
    name: str,
    storage: torch.dtype | None = None,
    stochastic: bool = False,
    aligned: bool = False,
    state_storage: torch.dtype | None = None,
) -> str:
    """The Python source of the Triton kernel ``name`` of ``program`` for real ``dtype``.

    Arguments of the kernel: ``table`` (int64 ``[operands + 1, ntensors]``: data pointers, then
    sizes; then, with ``stochastic``, the tensors' rounding seeds), ``chunks`` (int64
    ``[nchunks, 2]``: tensor, first element), ``scalars`` (float64: the number of skipped
    steps the host knows of, then ``rows`` rows of the program's scalars, each ending, with
    ``stochastic``, in ``hash32(step)``), ``flag`` (float32: nonzero skips the step),
    ``skips`` (float64: the device's count of skipped steps), ``ntensors``, ``rows``,
    ``nscalars``.

    ``storage``, ``state_storage``: the dtype the parameter and gradient (operands 0 and 1),
    and the state buffers, are kept in where narrower than ``dtype`` (bfloat16 or float16,
    computing in float32; the state only in the parameters' dtype): read exactly, written
    back rounded to nearest even (see :data:`_NARROW_POINTERS`), or a bfloat16 parameter
    ``stochastic``-ally as :func:`optimlab.core.precision.stochastic_round_bf16`. The
    arithmetic between the loads and the stores is ``dtype``'s: one rounding per stored
    value, as torch's fused Adam keeps bfloat16 and float16 (not one per operation, as its
    per-tensor and foreach steps do).

    ``aligned``: the variant for tensors whose data pointers are all multiples of 16 bytes
    (:attr:`DeviceBucket.aligned`): it says so to the compiler (``tl.multiple_of``), and a
    whole chunk (``BLOCK`` elements inside its tensor) of a step the flag lets through reads
    and writes unmasked, so that each thread loads and stores 16 bytes per instruction (a
    chunk the flag stops reads nothing, as in the general variant); the arithmetic is the
    same.
    """
    ctype = TL_TYPES[dtype]
    n = len(program.operands)
    narrow = _narrow_operands(n, dtype, storage, state_storage)
    if stochastic and narrow.get(0) != torch.bfloat16:
        raise ValueError(f"the Triton kernels round {storage} parameters stochastically? no")
    loaded, written = set(program.read), set(program.written)
    first = "tl.load(chunks + 2 * pid + 1)"
    body = [
        "    pid = tl.program_id(0)",
        "    t = tl.load(chunks + 2 * pid)",
        f"    first = {f'tl.multiple_of({first}, BLOCK)' if aligned else first}",
        f"    size = tl.load(table + {n} * ntensors + t)",
        "    offs = first + tl.arange(0, BLOCK)",
        "    ZEROS_I = tl.zeros([BLOCK], tl.int32)",
        "    go = (ZEROS_I + (tl.load(flag) == 0).to(tl.int32)) != 0",
        "    mask = (offs < size) & go",
        # the row of scalars for the number of skipped steps the host did not know of
        "    unknown = (tl.load(skips) - tl.load(scalars)).to(tl.int32)",
        "    unknown = tl.minimum(tl.maximum(unknown, 0), rows - 1)",
        "    row = scalars + 1 + unknown * nscalars",
        f"    ONE = tl.full([BLOCK], 1.0, {ctype})",
        f"    ZERO = tl.zeros([BLOCK], {ctype})",
        f"    NAN1 = tl.full([BLOCK], -1, {'tl.int32' if dtype == torch.float32 else 'tl.int64'})"
        f".to({ctype}, bitcast=True)",
        *_scalar_lines(program, ctype),
    ]
    for i in range(n):
        if i in loaded or i in written:
            kind = _NARROW_POINTERS[narrow[i]] if i in narrow else ctype
            pointer = f"tl.load(table + {i} * ntensors + t).to(tl.pointer_type({kind}))"
            body.append(f"    a{i} = {f'tl.multiple_of({pointer}, 16)' if aligned else pointer}")

    if aligned:  # (the same for all of a program's threads)
        body.append("    if (first + BLOCK <= size) & (tl.load(flag) == 0):")
        body += ["    " + line for line in _update_lines(program, ctype, narrow, stochastic, False)]
        body.append("    else:")
        body += ["    " + line for line in _update_lines(program, ctype, narrow, stochastic, True)]
    else:
        body += _update_lines(program, ctype, narrow, stochastic, True)
    return (
        "import triton\nimport triton.language as tl\n\n\n"
        "@triton.jit\n"
        f"def {name}(table, chunks, scalars, flag, skips, ntensors, rows, nscalars, "
        "BLOCK: tl.constexpr):\n" + "\n".join(body) + "\n"
    )


#: how a kernel points at the operands it keeps narrower than it computes: bfloat16 as its
#: bits, converted in integer arithmetic (the interpreter's own conversion truncates),
#: float16 as itself (converted by Triton: exactly up, to nearest even down, in the
#: interpreter as on a GPU)
_NARROW_POINTERS = {torch.bfloat16: "tl.uint16", torch.float16: "tl.float16"}


def _narrow_operands(
    n: int, dtype: torch.dtype, storage: torch.dtype | None, state_storage: torch.dtype | None
) -> dict[int, torch.dtype]:
    """The operands (of ``n``) kept in bfloat16 or float16 while the kernel computes in
    ``dtype``, and their dtype: the parameter and gradient where ``storage`` is narrower,
    the state where ``state_storage`` is (then of the parameters' dtype)."""
    narrow: dict[int, torch.dtype] = {}
    for kept, operands in ((storage, range(2)), (state_storage, range(2, n))):
        if kept is None or kept == dtype:
            continue
        if kept not in _NARROW_POINTERS or dtype != torch.float32:
            raise ValueError(f"the Triton kernels keep {kept} tensors computing in {dtype}? no")
        narrow.update(dict.fromkeys(operands, kept))
    if narrow and (0 not in narrow or len(set(narrow.values())) > 1):
        raise ValueError(f"the Triton kernels keep {state_storage} state of {storage}? no")
    return narrow


def _update_lines(
    program: Program,
    ctype: str,
    narrow: dict[int, torch.dtype],
    stochastic: bool,
    masked: bool,
) -> list[str]:
    """The kernel's loads, arithmetic and stores (see :func:`program_source`); ``narrow``:
    the operands kept in bfloat16 or float16; ``masked``: only inside the tensor, where the
    flag is down (else the chunk is whole and the flag down: nothing to mask)."""
    n = len(program.operands)
    loads = stores = ", mask=mask" if masked else ""
    lines = []
    for i in sorted(set(program.read)):
        load = f"tl.load(a{i} + offs{loads})"
        if narrow.get(i) == torch.bfloat16:  # the high half of a float32, exactly
            lines.append(f"    v{i} = ({load}.to(tl.uint32) << 16).to(tl.float32, bitcast=True)")
        elif narrow.get(i) == torch.float16:
            lines.append(f"    v{i} = {load}.to(tl.float32)")
        else:
            lines.append(f"    v{i} = {load}")
    for op, result, args, slots in program.instructions:
        lines.append(f"    v{result} = {_expression(op, [f'v{a}' for a in args], slots, ctype)}")
    for i in sorted(set(program.written)):
        if narrow.get(i) == torch.bfloat16:  # (stochastically: the parameter only)
            lines += _round_to_bf16_lines(program, n, i, stochastic and i == 0)
            lines.append(f"    tl.store(a{i} + offs, b{i}.to(tl.uint16){stores})")
        elif narrow.get(i) == torch.float16:
            lines.append(f"    tl.store(a{i} + offs, v{i}.to(tl.float16){stores})")
        else:
            lines.append(f"    tl.store(a{i} + offs, v{i}{stores})")
    return lines


def _round_to_bf16_lines(program: Program, n: int, i: int, stochastic: bool) -> list[str]:
    """``b{i}``: the bfloat16 bits of the float32 operand ``v{i}``, rounded to nearest even
    as ``Tensor.copy_`` rounds (NaN: 0x7FC0), or (the parameter) stochastically with 16 bits
    of ``hash32(element ^ hash32(seed ^ hash32(step)))``."""
    lines = [f"    bits = v{i}.to(tl.uint32, bitcast=True)"]
    if stochastic:
        step_slot = 1 + max((k for *_, slots in program.instructions for k in slots), default=-1)
        lines += [
            f"    seed = tl.load(table + {n + 1} * ntensors + t).to(tl.uint32)",
            f"    key0 = seed ^ tl.load(row + {step_slot}).to(tl.int64).to(tl.uint32)",
            *_hash_lines("key", "key0"),
            "    h0 = offs.to(tl.uint32) ^ key",
            *_hash_lines("h", "h0"),
            "    finite = (bits & 0x7F800000) != 0x7F800000",
            "    b0 = tl.where(finite, (bits + (h & 0xFFFF)) >> 16, bits >> 16)",
        ]
    else:
        lines.append(f"    b{i} = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16")
    lines.append(f"    b{i} = tl.where(v{i} != v{i}, 0x7FC0, b{i})")
    return lines


def lint(source: str) -> list[str]:
    """What in a generated kernel's source would round differently from the C kernel: a
    division or square root that a GPU computes approximately in float32 (``/``, ``tl.sqrt``
    outside float64 kernels), or ``tl.math`` functions whose accuracy is the device's."""
    problems = []
    float32 = "tl.float32" in source and "tl.float64" not in source
    for number, line in enumerate(source.splitlines(), 1):
        code = line.split("#")[0]
        if float32 and ("tl.sqrt(" in code or " / " in code):
            problems.append(f"line {number}: approximate float32 division or root: {line}")
        if "tl.math." in code or "libdevice" in code:
            problems.append(f"line {number}: a device math function: {line}")
    return problems


#: in PTX: a floating-point add, subtract or multiply without a rounding mode (ptxas may fuse
#: such a multiply and add into one fma), an approximate or flush-to-zero instruction
_PTX_ROUNDS_DIFFERENTLY = re.compile(
    r"^\s*(?:@!?%?\w+\s+)?((?:add|sub|mul|mad)\.f(?:32|64)\b|\S*\.(?:approx|ftz|full)\b\S*)",
    re.MULTILINE,
)


def ptx_problems(ptx: str) -> list[str]:
    """What in a compiled kernel's PTX would round differently from the C kernel (see
    :data:`COMPILE_OPTIONS`): the instructions of :data:`_PTX_ROUNDS_DIFFERENTLY`."""
    return [
        f"line {ptx.count(chr(10), 0, m.start()) + 1}: {m.group(1)}"
        for m in _PTX_ROUNDS_DIFFERENTLY.finditer(ptx)
    ]


_lock = threading.RLock()
_kernels: dict[tuple[Any, ...], Any] = {}


def _define(source: str, name: str) -> Any:
    """Define the ``@triton.jit`` function ``name`` of ``source``: Triton reads a kernel's
    source back (``inspect.getsource``), so the text is registered with :mod:`linecache`
    under a name of its own, in memory: nothing is written to disk (Triton's own cache keeps
    what it compiles)."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    filename = f"<optimlab-triton-{digest}>"
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)
    namespace: dict[str, Any] = {"__name__": f"optimlab_triton_{digest}"}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our own generated code
    return namespace[name]


def kernel(
    program: Program,
    dtype: torch.dtype,
    storage: torch.dtype | None = None,
    stochastic: bool = False,
    aligned: bool = False,
    state_storage: torch.dtype | None = None,
) -> Any:
    """The Triton kernel of ``program`` for real ``dtype`` (generated once per process; see
    :func:`program_source`)."""
    key = (program, dtype, storage, stochastic, aligned, state_storage)
    found = _kernels.get(key)
    if found is None:
        with _lock:
            found = _kernels.get(key)
            if found is None:
                source = program_source(
                    program, dtype, "optimlab_step", storage, stochastic, aligned, state_storage
                )
                problems = lint(source)
                if problems:  # a generator bug: never run a kernel that rounds differently
                    raise AssertionError("\n".join(problems))
                found = _kernels[key] = _define(source, "optimlab_step")
                if os.environ.get("TRITON_INTERPRET") != "1":
                    _say_once(
                        "compiling Triton kernels for this GPU in the first steps that need "
                        "them (a few seconds each, once: Triton keeps them in its cache)"
                    )
    return found


_NONFINITE_SOURCE = '''import triton
import triton.language as tl


@triton.jit
def optimlab_nonfinite(
    table, chunks, row, sizes, flags, first_flag, ntensors, BLOCK: tl.constexpr,
    BITS: tl.constexpr, EXPONENT: tl.constexpr, ALIGNED: tl.constexpr
):
    """Set ``flags[0]`` and ``flags[1 + first_flag + t]`` where tensor ``t`` of the pointer
    table's row ``row`` (its sizes in row ``sizes``) holds NaN or an infinity: all exponent
    bits set, read as unsigned integers of type ``BITS`` (no floating-point arithmetic).
    ``ALIGNED``: the table's pointers are multiples of 16 bytes, and a whole chunk is read
    unmasked, 16 bytes per instruction."""
    pid = tl.program_id(0)
    t = tl.load(chunks + 2 * pid)
    first = tl.load(chunks + 2 * pid + 1)
    size = tl.load(table + sizes * ntensors + t)
    pointer = tl.load(table + row * ntensors + t).to(tl.pointer_type(BITS))
    if ALIGNED:
        first = tl.multiple_of(first, BLOCK)
        pointer = tl.multiple_of(pointer, 16)
    offs = first + tl.arange(0, BLOCK)
    if ALIGNED:
        if first + BLOCK <= size:
            x = tl.load(pointer + offs)
        else:
            x = tl.load(pointer + offs, mask=offs < size, other=0)
    else:
        x = tl.load(pointer + offs, mask=offs < size, other=0)
    found = tl.max(((x & EXPONENT) == EXPONENT).to(tl.int32), axis=0) > 0
    tl.store(flags, 1.0, mask=found)
    tl.store(flags + 1 + first_flag + t, 1.0, mask=found)
'''

#: the unsigned type and exponent mask of each dtype the check reads
_EXPONENTS = {
    torch.float32: ("uint32", 0x7F800000),
    torch.float64: ("uint64", 0x7FF0000000000000),
    torch.bfloat16: ("uint16", 0x7F80),
    torch.float16: ("uint16", 0x7C00),
}


def nonfinite_kernel() -> Any:
    """The Triton kernel of the non-finite check (generated once per process)."""
    key = ("nonfinite",)
    found = _kernels.get(key)
    if found is None:
        with _lock:
            found = _kernels[key] = _define(_NONFINITE_SOURCE, "optimlab_nonfinite")
    return found


# --- launching ----------------------------------------------------------------------------


def host_buffer(values: np.ndarray, device: torch.device) -> Tensor:
    """``values`` on ``device``, copied without making the host wait: through pinned memory
    (torch's caching host allocator keeps it until the copy is done) on CUDA."""
    source = torch.from_numpy(np.ascontiguousarray(values))
    if device.type == "cuda":
        pinned = torch.empty(source.shape, dtype=source.dtype, pin_memory=True)
        pinned.copy_(source)
        return pinned.to(device, non_blocking=True)
    return source.clone()


class DeviceBucket:
    """A bucket of a fused plan (:class:`optimlab.fused.plan.Bucket`) on its device: the
    pointer table (with a row of sizes) and the chunk table, built once.

    Where every pointer of the table is a multiple of 16 bytes (:attr:`aligned`; PyTorch's
    allocations are, a view with an offset may not be), the update takes the kernel variant
    that reads and writes whole chunks 16 bytes per instruction (see :func:`program_source`).
    """

    def __init__(
        self,
        table: np.ndarray,
        starts: np.ndarray,
        device: torch.device,
        seeds: Sequence[int] | None = None,
    ) -> None:
        sizes = np.diff(starts)
        self.rows = table.shape[0]
        self.ntensors = table.shape[1]
        self.device = device
        rows = [table, sizes[None, :]]
        if seeds is not None:  # the tensors' stochastic rounding seeds
            rows.append(np.array(seeds, np.int64)[None, :])
        self.host_table = np.concatenate(rows).astype(np.int64)
        self.table = host_buffer(self.host_table, device)
        chunks = [(t, first) for t, size in enumerate(sizes) for first in range(0, size, BLOCK)]
        self.chunks = host_buffer(np.array(chunks, np.int64).reshape(-1, 2), device)
        self.nchunks = len(chunks)
        self.aligned = self._aligned()
        self.captured = False  # whether a CUDA graph captured a step of this bucket
        self.graph_pointers: list[Tensor] = []  # the gradient pointers each graph copies
        # (made now: allocating pinned memory in the middle of a capture is not safe)
        self.spare: Tensor | None = self._pinned()

    def _aligned(self) -> bool:
        """Whether every data pointer of the table is a multiple of 16 bytes."""
        return not (self.host_table[: self.rows] % 16).any()

    def _pinned(self) -> Tensor:
        return torch.empty(self.ntensors, dtype=torch.int64, pin_memory=self.device.type == "cuda")

    def set_grads(self, pointers: np.ndarray, capturing: bool = False) -> None:
        """Point the table's gradient row (row 1) at this step's gradients, if they moved.

        In CUDA graph capture the copy is captured too: each replay copies the pointers again
        from a pinned buffer kept for that graph (written once, here), which points the row
        at the graph's gradients; the steps after such a replay copy their own row again,
        whatever the host last wrote. A step outside capture sets a pinned buffer aside for
        the next capture (allocating pinned memory during one is not allowed)."""
        if capturing:
            kept = self.spare if self.spare is not None else self._pinned()
            self.spare = None
            kept.numpy()[:] = pointers
            self.graph_pointers.append(kept)
            self.table[1].copy_(kept, non_blocking=True)
            self.host_table[1] = pointers
            self.aligned = self._aligned()
            self.captured = True
        else:
            if self.spare is None:  # for the next capture
                self.spare = self._pinned()
            if self.captured or not np.array_equal(self.host_table[1], pointers):
                self.host_table[1] = pointers
                self.aligned = self._aligned()
                self.table[1].copy_(host_buffer(self.host_table[1], self.device), non_blocking=True)

    def check(self, flags: Tensor, first_flag: int, dtype: torch.dtype) -> None:
        """Raise ``flags`` where a gradient holds NaN or an infinity."""
        dtype = _element(dtype)
        if self.nchunks:
            nonfinite_kernel()[(self.nchunks,)](
                self.table,
                self.chunks,
                1,
                self.rows,
                flags,
                first_flag,
                self.ntensors,
                BLOCK=BLOCK,
                BITS=_tl_type(_EXPONENTS[dtype][0]),
                EXPONENT=_EXPONENTS[dtype][1],
                ALIGNED=self.aligned and ALIGNED_LOADS,
                **COMPILE_OPTIONS,
            )

    def run(
        self,
        program: Program,
        dtype: torch.dtype,
        scalars: Tensor,
        rows: int,
        flag: Tensor,
        skips: Tensor,
        storage: torch.dtype | None = None,
        stochastic: bool = False,
        state_storage: torch.dtype | None = None,
    ) -> None:
        """The update: ``scalars`` as :func:`program_source` takes them."""
        if self.nchunks:
            nscalars = (scalars.numel() - 1) // rows
            aligned = self.aligned and ALIGNED_LOADS
            storage, state_storage = _element(storage), _element(state_storage)
            chosen = kernel(program, dtype, storage, stochastic, aligned, state_storage)
            chosen[(self.nchunks,)](
                self.table,
                self.chunks,
                scalars,
                flag,
                skips,
                self.ntensors,
                rows,
                max(nscalars, 1),
                BLOCK=BLOCK,
                **COMPILE_OPTIONS,
            )


def _element(dtype: torch.dtype | None) -> torch.dtype | None:
    """The dtype of the numbers a tensor of ``dtype`` holds (the real and imaginary parts of
    a complex one: the tables count them as pairs of reals)."""
    return REAL_DTYPE.get(dtype, dtype) if dtype is not None else None


def _tl_type(name: str) -> Any:
    import triton.language as tl

    return getattr(tl, name)
