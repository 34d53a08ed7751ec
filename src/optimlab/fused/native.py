"""The fused path: one compiled C loop per update rule, over the tensors where they already are.

A rule recorded on a :class:`~optimlab.fused.tape.Tape` becomes a C function whose loop body is
the rule's elementwise arithmetic, one element at a time: each operand (parameter, gradient,
state buffer) is read once and each modified one written once, so a step moves the fewest
bytes it can (Adam: 28 per fp32 parameter) and allocates nothing. The loop runs over a table of
data pointers, one entry per tensor, so parameters, gradients and state stay ordinary tensors
(``optimizer.state[p]`` is unchanged, ``.grad`` may be replaced every step) and a thousand small
tensors cost one call, not a thousand. The elements are split evenly over PyTorch's own OpenMP
threads (``torch.get_num_threads()``; the library links to the libgomp PyTorch loaded).

**Same results as the plain path, bit for bit, but for square roots.** Each
operation is written in C as the expression PyTorch's CPU kernels evaluate for it
(:data:`C_EXPRESSIONS`): where ATen's vectorized kernels use a fused multiply-add (``add``
with ``alpha``, ``lerp``, ``addcmul``), the C code calls ``fma``; elsewhere it is compiled with
``-ffp-contract=off`` so that no other multiply-add is fused; scalars are rounded to the
tensor's type as ATen rounds them. Square roots are where the two may differ: PyTorch's CPU
``sqrt`` is MKL's vector square root, accurate to about 1 ulp but not correctly rounded (about
1 in 5 float32 results differ from the IEEE root). Kernels (``exact=False``: ``fused=None`` and
``fused=True``) use the CPU's correctly rounded ``sqrt`` instruction, as PyTorch's own fused CPU
kernels and CUDA do: within 1 ulp of the plain path per root, and as fast as memory allows.
Exact kernels (``exact=True``: ``fused="exact"``) call MKL's very function (found in
libtorch_cpu) on blocks of 512 elements kept in the L1 cache, which gives the plain path's
results bit for bit; it costs about 3 cycles per element, which makes Adam and RMSprop
compute-bound on a machine with few cores per memory channel. Rules without a root (SGD,
momentum) compile to the same kernel either way.

One more place where "what PyTorch computes" depends on where an element sits: ATen's
elementwise CPU loops apply a vector function to blocks of 16 floats or 8 doubles (AVX2) and a
scalar function to the rest of each thread's chunk of a tensor, and for ``maximum`` the two
differ (``max(-0, +0)`` is +0 in one and -0 in the other; a NaN comes out with all bits set or
as the quiet NaN). Kernels of programs with ``maximum`` therefore cut each tensor where ATen
would (its chunks over ``torch.get_num_threads()`` threads; the last ``len % 16`` floats or
``len % 8`` doubles of each) and run those elements through a second loop
(:data:`C_TAIL_EXPRESSIONS`). Every other operation computes the same in both of ATen's loops.

A self-test (:func:`available`) runs every operation fused and through PyTorch on random values,
odd sizes and specials (zeros of both signs, infinities, NaN, subnormals) in float32 and
float64, once per process; any difference in any bit (for NaN: in where they are) turns the
fused path off. It is enabled only on x86-64 CPUs on which ATen runs its AVX2 or AVX-512
kernels (whose fused multiply-adds the C code reproduces).

**Compiling.** Kernels are compiled by the system C compiler (``$OPTIMLAB_CC``, ``$CC``, or the
first of ``cc``, ``gcc``, ``clang``), about 0.2 s each, once per configuration and machine: the
shared libraries are kept in ``$OPTIMLAB_KERNEL_CACHE`` (default
``$XDG_CACHE_HOME/optimlab/kernels``, else ``~/.cache/optimlab/kernels``) under a hash of their
source, compiler and flags. ``optimlab build`` (part of ``make run`` and ``make test``) compiles
the kernels of every optimizer's default configuration ahead of time; a configuration it did
not foresee is compiled in the step that first needs it, synchronously, saying so once on
stderr. Every compilation (:func:`compile_library`) holds the build lock (one compiler on the
machine at a time), runs the compiler so that it dies with the process that started it, and
renames the finished library into place; a build killed half-way leaves files that the next
process to open the cache removes. The cache refuses folders and files owned by another user
or writable by others (it says so once). Without a compiler, :func:`available` is false and
the optimizers take the plain path; ``OPTIMLAB_FUSED=0`` in the environment does the same on
purpose and compiles nothing.

Why not ``torch.compile``? It works here (C++ code generation on CPU), but the first compile in
a process takes 8 to 20 s and each further configuration about 1 s; it cannot take a list of a
thousand tensors without compiling for that list (so parameters and gradients would have to be
copied into flat buffers every step, or parameters re-pointed into one); and its arithmetic
differs from eager PyTorch in the last bit (``lerp`` without a fused multiply-add, ``addcmul``
associated differently, the IEEE ``sqrt``), so it could not be the bitwise-equal default.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .tape import SIGNATURES, Program

#: real dtype -> (C type, suffix of the C math functions)
C_TYPES = {torch.float32: ("float", "f"), torch.float64: ("double", "")}
#: the dtypes the fused path updates (complex ones as pairs of reals, as the plain path does)
REAL_DTYPE = {
    torch.float32: torch.float32,
    torch.float64: torch.float64,
    torch.complex64: torch.float32,
    torch.complex128: torch.float64,
}

#: Each operation as the C expression PyTorch's CPU kernel computes for one element.
#: ``{0}``, ``{1}``, ``{2}`` are the tensor arguments, ``{s}`` the scalar rounded to the element
#: type (``{s0}``, ``{s1}``, ``{s2}`` for operations taking several), ``{T}`` the element type;
#: ``FMA`` is a fused multiply-add with one rounding, ``FABS`` the absolute value (the sign bit
#: cleared, NaN included), ``{NAN1}`` the NaN with all bits set. References
#: (aten/src/ATen/native): ufunc/add.h (``fmadd(other, alpha, self)``), Lerp.h and
#: cpu/LerpKernel.cpp (``fmadd(weight or weight - 1, end - self, self or end)``),
#: cpu/PointwiseOpsKernel.cpp (``self + value * t1 * t2``, contracted to one fma;
#: ``self + value * t1 / t2``), cpu/BinaryOpsKernel.cpp (true division by the scalar, no
#: reciprocal, for float and double; ``a * b``, ``a / b``), vec256 ``maximum`` (NaN-propagating),
#: cpu/UnaryOpsKernel.cpp (``abs``; ``sign`` as ``(0 < a) - (a < 0)``: +0 for -0 and for NaN;
#: ``reciprocal`` as ``1 / a``), cpu/TensorCompareKernel.cpp (``clamp`` as
#: ``std::min(std::max(a, low), high)``, its vector form ``min_ps(high, max_ps(low, a))``
#: the same; TensorCompare.cpp: a NaN bound fills the tensor with NaN). ``sign_select`` is
#: ``full_like`` then two ``masked_fill_``: NaN and zeros of either sign select ``zero``.
#: The tests check each against ops.LOOP and ops.FOREACH bit for bit (NaN: where, not which).
C_EXPRESSIONS = {
    "neg": "-{0}",
    "add": "FMA({1}, {s}, {0})",
    "add_": "FMA({1}, {s}, {0})",
    "add_scalar_": "{0} + {s}",
    "add_scalar": "{0} + {s}",
    "div": "{0} / {s}",
    "div_": "{0} / {s}",
    "div_tensor_": "{0} / {1}",
    "lerp": "FMA({s}_coef, {1} - {0}, {s}_small ? {0} : {1})",
    "lerp_": "FMA({s}_coef, {1} - {0}, {s}_small ? {0} : {1})",
    "mul_": "{0} * {s}",
    "mul": "{0} * {s}",
    "mul_tensor_": "{0} * {1}",
    "mul_tensor": "{0} * {1}",
    "addcmul": "FMA({s} * {1}, {2}, {0})",
    "addcmul_": "FMA({s} * {1}, {2}, {0})",
    "addcdiv_": "{0} + {s} * {1} / {2}",
    "sqrt": "SQRT({0})",
    "sqrt_": "SQRT({0})",
    "abs": "FABS({0})",
    "sign": "{0} > 0 ? ({T})1 : ({0} < 0 ? ({T})-1 : ({T})0)",
    "sign_": "{0} > 0 ? ({T})1 : ({0} < 0 ? ({T})-1 : ({T})0)",
    "reciprocal_": "({T})1 / {0}",
    # vec::maximum: max_ps(a, b) (b when equal: max(-0, +0) is +0), or'ed with the unordered
    # mask (a NaN comes out with all bits set)
    "maximum_": "(({0} != {0}) | ({1} != {1})) ? {NAN1} : ({0} > {1} ? {0} : {1})",
    "maximum": "(({0} != {0}) | ({1} != {1})) ? {NAN1} : ({0} > {1} ? {0} : {1})",
    # {s0}_nan: -0 (adding it changes nothing, -0 and NaN included), or NaN for a NaN bound;
    # an addition, not a select on a flag, which would keep GCC from vectorizing long rules
    "clamp_": "({s1} < ({0} < {s0} ? {s0} : {0}) ? {s1} : ({0} < {s0} ? {s0} : {0})) + {s0}_nan",
    "sign_select": "{0} > 0 ? {s0} : ({0} < 0 ? {s1} : {s2})",
    "copy_": "{1}",
}
assert set(C_EXPRESSIONS) == set(SIGNATURES)

#: The operations whose ATen kernel computes differently in the scalar loop that finishes each
#: thread's chunk (the last ``len % OL_ATEN_STRIDE`` elements, see ``_aten_stride``) than in its
#: vector loop: there, ``maximum`` is ``a != a || b != b ? quiet NaN : std::max(a, b)``, and
#: ``std::max(a, b)`` is ``a < b ? b : a`` (``max(-0, +0)`` is -0). Kernels of programs that
#: use one of them run these elements through a second loop built from these expressions.
C_TAIL_EXPRESSIONS = {
    "maximum_": "(({0} != {0}) | ({1} != {1})) ? ({T})NAN : ({0} < {1} ? {1} : {0})",
    "maximum": "(({0} != {0}) | ({1} != {1})) ? ({T})NAN : ({0} < {1} ? {1} : {0})",
}

#: below this many elements per thread a step runs on the calling thread alone
MIN_ELEMENTS_PER_THREAD = 1 << 15

_PRELUDE = r"""
#include <math.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

struct ol_job;
typedef void (*ol_range_fn)(struct ol_job*);

/* One contiguous range [lo, hi) of the elements of all tensors laid end to end. */
typedef struct ol_job {
  const int64_t* ptrs;   /* [operands][nseg] data pointers */
  const int64_t* starts; /* [nseg + 1] offsets of each tensor in the concatenation */
  int64_t nseg;
  const double* scalars;
  int64_t lo, hi;
  int64_t result;        /* what the range reports (the nonfinite check: 1 if found) */
  int64_t aten_threads;  /* the threads ATen would split each tensor's operations over */
} ol_job;

/* The NaN with all bits set, which ATen's vector maximum returns for NaN. */
static const union { uint32_t u; float f; } ol_nan1_float = {0xffffffffu};
static const union { uint64_t u; double f; } ol_nan1_double = {0xffffffffffffffffull};

/* The length of the chunks ATen's parallel_for cuts an elementwise operation on an n-element
   tensor into (aten/src/ATen/ParallelOpenMP.h, GRAIN_SIZE 32768): all of it on one thread
   unless n > 32768, else divup(n, min(threads, divup(n, 32768))) per thread. */
static int64_t ol_aten_chunk(int64_t n, int64_t threads) {
  int64_t parts;
  if (threads <= 1 || n <= 32768) return n > 0 ? n : 1;
  parts = (n + 32767) / 32768;
  if (parts > threads) parts = threads;
  return (n + parts - 1) / parts;
}

/* The tensor holding element lo: the largest s with starts[s] <= lo. */
static int64_t ol_first(const int64_t* starts, int64_t nseg, int64_t lo) {
  int64_t a = 0, b = nseg;
  while (b - a > 1) {
    int64_t m = a + (b - a) / 2;
    if (starts[m] <= lo) a = m; else b = m;
  }
  return a;
}

/* Split [0, total) evenly, at multiples of 64 elements, over nthreads threads and return the
   OR of what the parts report. The threads are PyTorch's own OpenMP threads (this library
   links to the libgomp PyTorch loaded), so a step never competes with PyTorch's thread pool
   spinning after the backward pass. */
static int64_t ol_parallel(ol_range_fn fn, const int64_t* ptrs, const int64_t* starts,
                           int64_t nseg, const double* scalars, int64_t nthreads,
                           int64_t aten_threads) {
  int64_t total = starts[nseg];
  int64_t result = 0;
#ifdef _OPENMP
  if (omp_in_parallel()) aten_threads = 1; /* ATen too runs serially in a parallel region */
  if (nthreads > 1 && !omp_in_parallel()) {
#pragma omp parallel num_threads((int)nthreads) reduction(|:result)
    {
      int64_t k = omp_get_thread_num(), n = omp_get_num_threads();
      ol_job job = {ptrs, starts, nseg, scalars, 0, 0, 0, aten_threads};
      job.lo = (total / n * k) & ~(int64_t)63;
      job.hi = k + 1 == n ? total : ((total / n * (k + 1)) & ~(int64_t)63);
      fn(&job);
      result |= job.result;
    }
    return result;
  }
#endif
  {
    ol_job job = {ptrs, starts, nseg, scalars, 0, total, 0, aten_threads};
    fn(&job);
    result = job.result;
  }
  return result;
}
"""

_CHECK = r"""
/* Whether any element is NaN or infinite: the exponent bits all set. Integer arithmetic, so
   the loop vectorizes without reassociating floating-point sums; one forward stream per
   thread, which the hardware prefetcher follows at full read bandwidth. */
static void ol_nonfinite_range_%(suffix)s(ol_job* job) {
  int64_t s = ol_first(job->starts, job->nseg, job->lo);
  %(uint)s found = 0;
  for (; s < job->nseg && job->starts[s] < job->hi; s++) {
    int64_t a = job->lo > job->starts[s] ? job->lo - job->starts[s] : 0;
    int64_t e = (job->hi < job->starts[s + 1] ? job->hi : job->starts[s + 1]) - job->starts[s];
    const %(uint)s* restrict x = (const %(uint)s*)(intptr_t)job->ptrs[s];
    int64_t i;
    for (i = a; i < e; i++) found |= (x[i] & %(mask)s) == %(mask)s;
  }
  job->result = found ? 1 : 0;
}

int64_t ol_nonfinite_%(suffix)s(const int64_t* ptrs, const int64_t* starts, int64_t nseg,
                              int64_t nthreads) {
  return ol_parallel(ol_nonfinite_range_%(suffix)s, ptrs, starts, nseg, 0, nthreads, 1);
}
"""


def _usage(program: Program) -> tuple[set[int], set[int]]:
    """The operands the program reads before overwriting them, and those it writes."""
    return set(program.read), set(program.written)


def _scalar_lines(program: Program, ctype: str, fsuffix: str) -> list[str]:
    n_scalars = 1 + max((k for *_, slots in program.instructions for k in slots), default=-1)
    lines = [f"  const {ctype} s{k} = ({ctype})S[{k}];" for k in range(n_scalars)]
    for op, _, _, slots in program.instructions:
        if op in ("lerp", "lerp_"):  # ATen's lerp: which end to start from depends on |weight|
            s = f"s{slots[0]}"
            lines.append(f"  const int {s}_small = fabs{fsuffix}({s}) < ({ctype})0.5;")
            lines.append(f"  const {ctype} {s}_coef = {s}_small ? {s} : {s} - ({ctype})1;")
        elif op == "clamp_":  # a NaN bound: ATen fills the tensor with NaN
            low, high = f"S[{slots[0]}]", f"S[{slots[1]}]"
            lines.append(
                f"  const {ctype} s{slots[0]}_nan = ({low} != {low}) | ({high} != {high}) "
                f"? ({ctype})NAN : -({ctype})0;"
            )
    return lines


def _expression(
    op: str, args: Sequence[str], slots: Sequence[int], ctype: str, fsuffix: str, tail: bool
) -> str:
    """The C expression of one instruction; ``tail``: as ATen's scalar loop computes it."""
    template = (C_TAIL_EXPRESSIONS.get(op) if tail else None) or C_EXPRESSIONS[op]
    scalars = {f"s{k}": f"s{slot}" for k, slot in enumerate(slots)}
    expr = template.format(
        *args, s=scalars.get("s0", ""), T=ctype, NAN1=f"ol_nan1_{ctype}.f", **scalars
    )
    return (
        expr.replace("FMA(", f"fma{fsuffix}(")
        .replace("SQRT(", f"sqrt{fsuffix}(")
        .replace("FABS(", f"fabs{fsuffix}(")
    )


def _uses_tail(program: Program) -> bool:
    """Whether the program has an operation ATen computes differently in its scalar loop."""
    return any(op in C_TAIL_EXPRESSIONS for op, *_ in program.instructions)


def _simple_loop(program: Program, ctype: str, fsuffix: str, name: str, tail: bool) -> str:
    """One loop; every variable of the rule is a local of the loop body."""
    n = len(program.operands)
    loaded, written = _usage(program)
    params = ", ".join(
        f"{'' if i in written else 'const '}{ctype}* restrict a{i}" for i in range(n)
    )
    body = [f"      {ctype} v{i} = a{i}[i];" for i in sorted(loaded)]
    body += [f"      {ctype} v{i};" for i in sorted(written - loaded)]
    for op, result, args, slots in program.instructions:
        expr = _expression(op, [f"v{a}" for a in args], slots, ctype, fsuffix, tail)
        declare = "" if SIGNATURES[op][2] else f"{ctype} "
        body.append(f"      {declare}v{result} = {expr};")
    body += [f"      a{i}[i] = v{i};" for i in sorted(written)]
    lines = "\n".join(_scalar_lines(program, ctype, fsuffix))
    return f"""
static void {name}(int64_t n, {params}, const double* S) {{
{lines}
  int64_t i;
  for (i = 0; i < n; i++) {{
{chr(10).join(body)}
  }}
}}
"""


def _blocked_loop(program: Program, ctype: str, fsuffix: str, name: str, tail: bool) -> str:
    """Blocks of OL_BLOCK elements, cut at each square root, which the vector sqrt computes.

    PyTorch's CPU ``sqrt`` is MKL's vector square root (accurate to about 1 ulp, not always
    correctly rounded), so the kernel calls the same function, on blocks that stay in the L1
    cache: the arithmetic before a root runs over the block, the root over the block, then
    what follows. Operands are read and written in place; temporaries are block arrays.
    """
    n = len(program.operands)
    _, written = _usage(program)
    params = ", ".join(
        f"{'' if i in written else 'const '}{ctype}* restrict a{i}" for i in range(n)
    )

    def ref(v: int) -> str:
        return f"a{v}[i0 + j]" if v < n else f"t{v}[j]"

    temporaries = sorted({r for _, r, _, _ in program.instructions if r >= n})
    lines = _scalar_lines(program, ctype, fsuffix)
    lines += [f"  {ctype} t{v}[OL_BLOCK];" for v in temporaries]
    lines.append("  int64_t i0, j;")
    lines.append("  for (i0 = 0; i0 < n; i0 += OL_BLOCK) {")
    lines.append("    const int64_t m = n - i0 < OL_BLOCK ? n - i0 : OL_BLOCK;")
    phase: list[str] = []

    def flush() -> None:
        if phase:
            lines.append("    for (j = 0; j < m; j++) {")
            lines.extend(f"      {statement}" for statement in phase)
            lines.append("    }")
            phase.clear()

    for op, result, args, slots in program.instructions:
        if op in ("sqrt", "sqrt_"):
            flush()
            source = f"a{args[0]} + i0" if args[0] < n else f"t{args[0]}"
            target = f"a{result} + i0" if result < n else f"t{result}"
            lines.append(f"    OL_VSQRT_{ctype}(&m, {source}, {target}, &ol_vml_mode);")
        else:
            expr = _expression(op, [ref(a) for a in args], slots, ctype, fsuffix, tail)
            phase.append(f"{ref(result)} = {expr};")
    flush()
    lines.append("  }")
    return f"""
static void {name}(int64_t n, {params}, const double* S) {{
{chr(10).join(lines)}
}}
"""


def _rule_source(program: Program, ctype: str, fsuffix: str, name: str, blocked: bool) -> str:
    """The C source of one rule for one type: its loop, range function and entry point.

    A program with an operation of :data:`C_TAIL_EXPRESSIONS` gets a second loop for the
    elements ATen computes with its scalar function: the last ``len % OL_ATEN_STRIDE`` of each
    of the chunks ATen's threads take of a tensor.
    """
    make_loop = _blocked_loop if blocked else _simple_loop
    source = make_loop(program, ctype, fsuffix, f"{name}_loop", False)
    if _uses_tail(program):
        source += make_loop(program, ctype, fsuffix, f"{name}_tail_loop", True)
    run = _run_segment(program, ctype, name, _operand_pointers(program, ctype))
    return source + _range_and_entry(name, run, blocked)


def _operand_pointers(program: Program, ctype: str, staged: Sequence[int] = ()) -> list[str]:
    """Where each operand's elements from ``a`` on are: in its tensor, or for the ``staged``
    ones (a bfloat16 kernel's parameters and gradients) in the stage, which holds the
    elements from ``b`` on, widened."""
    _, written = _usage(program)
    return [
        f"w{i} + (a - b)"
        if i in staged
        else f"(({'' if i in written else 'const '}{ctype}*)(intptr_t)"
        f"job->ptrs[{i} * job->nseg + s]) + a"
        for i in range(len(program.operands))
    ]


def _run_segment(program: Program, ctype: str, name: str, operands: list[str]) -> str:
    """The code that steps elements ``[a, e)`` of tensor ``s``, its operands at ``operands``:
    the loop, or where ATen computes the last elements of each chunk with its scalar function
    (:data:`C_TAIL_EXPRESSIONS`), the vector loop and the tail loop in turn."""
    pointers = ", ".join(operands)
    if _uses_tail(program):
        return f"""    int64_t size = job->starts[s + 1] - job->starts[s];
    int64_t chunk = ol_aten_chunk(size, job->aten_threads);
    while (a < e) {{
      int64_t c0 = a / chunk * chunk, c1 = c0 + chunk < size ? c0 + chunk : size;
      int64_t t0 = c1 - (c1 - c0) % OL_ATEN_STRIDE_{ctype}, stop = e < c1 ? e : c1;
      if (a < t0) {{  /* ATen's vector loop */
        int64_t m = (stop < t0 ? stop : t0) - a;
        {name}_loop(m, {pointers}, job->scalars);
        a += m;
      }}
      if (a < stop) {{  /* ATen's scalar loop */
        int64_t m = stop - a;
        {name}_tail_loop(m, {pointers}, job->scalars);
        a += m;
      }}
    }}"""
    return f"    if (e > a) {name}_loop(e - a, {pointers}, job->scalars);"


def _range_and_entry(name: str, run: str, blocked: bool) -> str:
    """A kernel's range function (the elements ``[lo, hi)`` of one thread, tensor by tensor,
    each by ``run``) and its entry point."""
    # MKL's vector sqrt (blocked loops) on one thread, set once per range (see _VSQRT)
    mkl_one_thread, mkl_restore = "", ""
    if blocked:
        mkl_one_thread = "\n  const int previous = OL_THREADS_LOCAL ? OL_THREADS_LOCAL(1) : 0;"
        mkl_restore = "\n  if (OL_THREADS_LOCAL) OL_THREADS_LOCAL(previous);"
    return f"""
static void {name}_range(ol_job* job) {{
  int64_t s = ol_first(job->starts, job->nseg, job->lo);{mkl_one_thread}
  for (; s < job->nseg && job->starts[s] < job->hi; s++) {{
    int64_t a = job->lo > job->starts[s] ? job->lo - job->starts[s] : 0;
    int64_t e = (job->hi < job->starts[s + 1] ? job->hi : job->starts[s + 1]) - job->starts[s];
{run}
  }}{mkl_restore}
}}

int64_t {name}(const int64_t* ptrs, const int64_t* starts, int64_t nseg, const double* S,
              int64_t nthreads, int64_t aten_threads) {{
  return ol_parallel({name}_range, ptrs, starts, nseg, S, nthreads, aten_threads);
}}
"""


#: elements of a bfloat16 kernel's parameters and gradients widened at a time (on the stack)
BF16_STAGE = 1024


def _bf16_source(program: Program, blocked: bool, stochastic: bool) -> str:
    """The entry point for bfloat16 parameters and gradients with float32 state: stage by
    stage, the parameters and gradients widened to float32 (exactly), the float32 loop over
    them and the state in place, the parameters rounded back: to nearest even, as PyTorch's
    ``copy_`` rounds, or (``stochastic``) as :func:`optimlab.core.precision.stochastic_round_bf16`,
    keyed by a seed per tensor (the pointer table's last row) and the step (the last scalar,
    ``hash32(step)``). The plain path computes the same: the rule on widened copies, then
    rounded back."""
    name = "ol_step_bf16" + ("_sr" if stochastic else "")
    n = len(program.operands)
    pointers = _operand_pointers(program, "float", (0, 1))
    run = _run_segment(program, "float", "ol_step_float", pointers)
    n_scalars = 1 + max((k for *_, slots in program.instructions for k in slots), default=-1)
    if stochastic:
        key = (
            f"      const uint32_t key = ol_hash32((uint32_t)job->ptrs[{n} * job->nseg + s] ^ "
            f"(uint32_t)job->scalars[{n_scalars}]);\n"
        )
        store = "ol_bf16_stochastic(w0[j - b], ol_hash32((uint32_t)j ^ key))"
    else:
        key, store = "", "ol_bf16_nearest(w0[j - b])"
    staged = f"""    const int64_t e_all = e;
    uint16_t* restrict P = (uint16_t*)(intptr_t)job->ptrs[s];
    const uint16_t* restrict G = (const uint16_t*)(intptr_t)job->ptrs[job->nseg + s];
    int64_t b, j;
    for (b = a; b < e_all; b = e) {{
      e = b + OL_BF16_STAGE < e_all ? b + OL_BF16_STAGE : e_all;
{key}      for (j = b; j < e; j++) {{
        w0[j - b] = ol_bf16_widen(P[j]);
        w1[j - b] = ol_bf16_widen(G[j]);
      }}
      a = b;
{run.replace(chr(10), chr(10) + "  ")}
      for (j = b; j < e; j++) P[j] = {store};
    }}"""
    source = _range_and_entry(name, staged, blocked)
    # the stage lives in the range function, once per thread
    return source.replace(
        f"static void {name}_range(ol_job* job) {{",
        f"static void {name}_range(ol_job* job) {{\n  float w0[OL_BF16_STAGE], w1[OL_BF16_STAGE];",
    )


_BF16 = r"""
/* bfloat16: the high half of a float32's bits. */
#define OL_BF16_STAGE %(stage)d
static inline float ol_bf16_widen(uint16_t h) {
  union { uint32_t u; float f; } v;
  v.u = (uint32_t)h << 16;
  return v.f;
}
/* To nearest, ties to even, as c10::BFloat16 rounds (NaN: 0x7FC0). */
static inline uint16_t ol_bf16_nearest(float x) {
  union { uint32_t u; float f; } v;
  v.f = x;
  if (x != x) return 0x7FC0;
  return (uint16_t)((v.u + (((v.u >> 16) & 1u) + 0x7FFFu)) >> 16);
}
/* optimlab.core.precision.hash32 */
static inline uint32_t ol_hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x2C1B3C6Du;
  x ^= x >> 16;
  return x;
}
/* optimlab.core.precision.stochastic_round_bf16: 16 random bits added to the low half; NaN
   and infinities rounded to nearest (they pass unchanged). */
static inline uint16_t ol_bf16_stochastic(float x, uint32_t random) {
  union { uint32_t u; float f; } v;
  v.f = x;
  if (x - x != 0) return ol_bf16_nearest(x);
  return (uint16_t)((v.u + (random & 0xFFFFu)) >> 16);
}
"""


_VSQRT = r"""
/* The vector square root PyTorch's CPU sqrt calls (MKL VML, high-accuracy mode, denormals
   kept, errors ignored), found in libtorch_cpu at load time. Fortran ILP64 interface. */
#define OL_BLOCK 512
typedef void (*ol_vsqrt_float_fn)(const int64_t*, const float*, float*, const int64_t*);
typedef void (*ol_vsqrt_double_fn)(const int64_t*, const double*, double*, const int64_t*);
typedef int (*ol_threads_local_fn)(int);
static ol_vsqrt_float_fn OL_VSQRT_float = 0;
static ol_vsqrt_double_fn OL_VSQRT_double = 0;
/* MKL_Set_Num_Threads_Local: MKL called from several of our threads at once must not start
   its own threads for each block (it would, and oversubscribe the cores many times over). */
static ol_threads_local_fn OL_THREADS_LOCAL = 0;
/* VML_HA | VML_FTZDAZ_OFF | VML_ERRMODE_IGNORE: what ATen passes (aten/src/ATen/cpu/vml.h) */
static const int64_t ol_vml_mode = 0x2 | 0x140000 | 0x100;
void ol_set_vsqrt(void* f, void* d, void* threads_local) {
  OL_VSQRT_float = (ol_vsqrt_float_fn)f;
  OL_VSQRT_double = (ol_vsqrt_double_fn)d;
  OL_THREADS_LOCAL = (ol_threads_local_fn)threads_local;
}
"""


def _uses_sqrt(program: Program) -> bool:
    return any(op in ("sqrt", "sqrt_") for op, *_ in program.instructions)


def program_source(program: Program, vector_sqrt: bool) -> str:
    """The C source of a library with the rule's step function for float32 and float64.

    ``vector_sqrt``: square roots through PyTorch's vector sqrt (blocked loops), else ``sqrt``
    of the C library inside one loop.
    """
    blocked = vector_sqrt and _uses_sqrt(program)
    parts = [_PRELUDE, _BF16 % {"stage": BF16_STAGE}]
    if blocked:
        parts.append(_VSQRT)
    for dtype, (ctype, fsuffix) in C_TYPES.items():
        if _uses_tail(program):
            parts.append(f"#define OL_ATEN_STRIDE_{ctype} {_aten_stride(dtype)}")
        parts.append(_rule_source(program, ctype, fsuffix, f"ol_step_{ctype}", blocked))
    for stochastic in (False, True):
        parts.append(_bf16_source(program, blocked, stochastic))
    return "\n".join(parts)


_aten_strides: dict[torch.dtype, int] = {}


def _aten_stride(dtype: torch.dtype) -> int:
    """How many elements of ``dtype`` one pass of ATen's vectorized elementwise loop takes.

    ATen's ``cpu_kernel_vec`` applies its vector function to blocks of two vectors and its
    scalar function to the rest (``vectorized_loop`` in aten/src/ATen/native/cpu/Loops.h):
    16 floats or 8 doubles with AVX2 kernels, twice that with AVX-512 ones, whichever this
    build dispatches to. Found by asking ``torch.maximum``, whose two functions order zeros of
    opposite signs differently.
    """
    stride = _aten_strides.get(dtype)
    if stride is None:
        n = 127  # leaves a different remainder for each candidate width
        got = torch.maximum(torch.full((n,), -0.0, dtype=dtype), torch.zeros(n, dtype=dtype))
        negative = torch.signbit(got).tolist()
        candidates = [(8, n % 8), (16, n % 16), (32, n % 32), (64, n % 64)]
        # A build whose two functions agree: all elements as the vector one (stride 1), or
        # all as the scalar one (a stride no tensor reaches); the self-test checks the rest.
        candidates += [(1, 0), (1 << 62, n)]
        found = [
            width
            for width, tail in candidates
            if not any(negative[: n - tail]) and all(negative[n - tail :])
        ]
        if not found:
            raise NativeUnavailable(
                f"PyTorch's maximum for {dtype} does not have the vector and scalar parts the "
                "fused kernels reproduce; the fused path is off"
            )
        stride = _aten_strides[dtype] = found[0]
    return stride


def _support_source() -> str:
    parts = [_PRELUDE]
    parts.append(_CHECK % {"suffix": "float", "uint": "uint32_t", "mask": "0x7f800000u"})
    parts.append(_CHECK % {"suffix": "double", "uint": "uint64_t", "mask": "0x7ff0000000000000ull"})
    parts.append(_CHECK % {"suffix": "bf16", "uint": "uint16_t", "mask": "0x7f80u"})
    return "\n".join(parts)


# --- compiling and loading ------------------------------------------------------------------


class NativeUnavailable(RuntimeError):
    """The fused path cannot run here (no C compiler, or a platform it is not verified on)."""


_lock = threading.RLock()
_libraries: dict[str, ctypes.CDLL] = {}
_kernels: dict[tuple[Any, ...], Kernel] = {}
_failed: dict[tuple[Any, ...], str] = {}
_toolchain: tuple[str, list[str], str] | None = None
_unavailable: str | None = None
_checked = False


def _configured_cache_dir() -> Path:
    configured = os.environ.get("OPTIMLAB_KERNEL_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "optimlab" / "kernels"


_said: set[str] = set()


def _say_once(message: str) -> None:
    """One line on stderr, once per process: what optimlab does that the user should know."""
    if message not in _said:
        _said.add(message)
        print(f"optimlab: {message}", file=sys.stderr)


def _untrusted(path: Path) -> str | None:
    """Why a file or folder of the cache must not be used (its libraries are loaded into this
    process): owned by another user, or writable by others. None if it is ours alone."""
    info = path.stat()
    if info.st_uid != os.getuid():
        return f"it is owned by another user (uid {info.st_uid})"
    if info.st_mode & 0o022:
        return f"it is group- or world-writable (mode {stat.filemode(info.st_mode)})"
    return None


_caches: dict[Path, Path] = {}


def cache_dir() -> Path:
    """The kernel cache: ``$OPTIMLAB_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/optimlab/kernels``
    or ``~/.cache/optimlab/kernels``, if it is ours alone; else (said once) a private folder
    in the temporary directory. The first look in a process also removes what builds killed
    before they finished left behind (see :func:`compile_library`)."""
    configured = _configured_cache_dir()
    found = _caches.get(configured)
    if found is not None:
        return found
    fallback = Path(tempfile.gettempdir()) / f"optimlab-kernels-{os.getuid()}"
    for path in (configured, fallback):
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            why = _untrusted(path)
            if why is not None:
                _say_once(f"not using the kernel cache {path}: {why}")
                continue
            if not os.access(path, os.W_OK | os.X_OK):
                _say_once(f"not using the kernel cache {path}: it is not writable")
                continue
        except OSError as error:
            _say_once(f"not using the kernel cache {path}: {error}")
            continue
        with _build_lock(path, wait=False) as held:
            if held:
                _remove_leftovers(path)
        _caches[configured] = path
        return path
    raise NativeUnavailable(
        "no private writable directory for compiled kernels (set OPTIMLAB_KERNEL_CACHE to one)"
    )


def trusted_file(path: Path) -> bool:
    """Whether ``path`` is a library in the cache that may be loaded (it exists and is ours
    alone; a file that is not is said once, and built anew over)."""
    try:
        why = _untrusted(path)
    except FileNotFoundError:
        return False
    if why is not None:
        _say_once(f"not loading {path}: {why}; building it anew")
        return False
    return True


#: a prefix only unfinished builds' files have; a build holding the cache's lock removes any
BUILD_PREFIX = ".build-"


#: lock files of earlier versions (one per plan-check build), no longer used
_OLD_LOCKS = ".plancheck_*.lock"


def _remove_leftovers(directory: Path) -> None:
    for leftover in [*directory.glob(f"{BUILD_PREFIX}*"), *directory.glob(_OLD_LOCKS)]:
        try:
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        except OSError:
            pass


@contextmanager
def _build_lock(directory: Path, wait: bool = True) -> Iterator[bool]:
    """Hold the build lock of a cache folder and the machine's (yields whether it is held).

    Only a build that holds its cache's lock creates files there, so whoever holds it may
    remove any unfinished build's files. The machine's lock (in the temporary directory, where
    it can be had) keeps a second compiler from starting beside the first, whatever cache it
    builds into: one process compiles while the others wait, then find the library built.
    """
    with open(directory / ".build.lock", "a") as cache_lock:
        try:
            fcntl.flock(cache_lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        machine_lock = _open_machine_lock() if wait else None
        try:
            if machine_lock is not None:
                fcntl.flock(machine_lock, fcntl.LOCK_EX)
            yield True
        finally:
            if machine_lock is not None:
                os.close(machine_lock)
            fcntl.flock(cache_lock, fcntl.LOCK_UN)


def _open_machine_lock() -> int | None:
    path = os.path.join(tempfile.gettempdir(), "optimlab-compiler.lock")
    for flags in (os.O_RDONLY, os.O_RDONLY | os.O_CREAT | os.O_EXCL):
        try:
            descriptor = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            if flags & os.O_CREAT:
                os.fchmod(descriptor, 0o644)  # whatever the umask: others lock it too
            return descriptor
        except OSError:
            continue
    return None  # another user's, unreadable: the cache's own lock serves


#: Runs a compiler so that it cannot outlive the process that wants its result: the guard asks
#: the kernel for SIGTERM when its parent dies (however it dies, SIGKILL included), leads a
#: process group of its own, which the compiler joins (the driver and the cc1, as and ld it
#: starts), and on SIGTERM or SIGINT kills that whole group, itself included. The group is
#: the guard's from its first line, so a signal at any moment (even while the compiler is
#: being started, before the guard knows its pid) kills whatever was started.
_GUARD = r"""
import ctypes, os, signal, subprocess, sys
os.setpgid(0, 0)
def stop(*_):
    os.killpg(0, signal.SIGKILL)
    os._exit(128 + signal.SIGTERM)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
try:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
except AttributeError:
    pass  # elsewhere: still killed with the parent on Ctrl-C and on errors
if os.getppid() != int(sys.argv[1]):  # the parent died before prctl
    stop()
sys.exit(subprocess.call(sys.argv[2:]))
"""


def _run_guarded(command: list[str], timeout: float, scratch: Path) -> tuple[int, str]:
    """Run ``command`` under the guard, its temporary files in ``scratch`` (``TMPDIR``: the
    compiler's own, such as gcc's ``cc*.s``, which a killed compiler cannot remove); its
    return code and standard error."""
    guard = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _GUARD, str(os.getpid()), *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "TMPDIR": str(scratch), "TMP": str(scratch), "TEMP": str(scratch)},
    )
    try:
        _, stderr = guard.communicate(timeout=timeout)
    except BaseException:  # a time-out, Ctrl-C, ...: stop the compiler, then go on failing
        guard.terminate()
        guard.wait()
        raise
    return guard.returncode, stderr


def compile_library(
    compiler: str,
    flags: list[str],
    source: str,
    library: Path,
    suffix: str = ".c",
    libraries: tuple[str, ...] | list[str] = ("-lm",),
    what: str = "fused kernels",
) -> None:
    """Compile ``source`` into the shared library ``library`` in the cache.

    Under the build lock (one compiler at a time on the machine); the compiler runs guarded
    (it dies with this process); its output is renamed into place only when complete (other
    processes see all of it or nothing), and nothing else is left behind. Outside
    ``optimlab build`` the first compilation in a process says so, once, on stderr.
    """
    directory = library.parent
    with _build_lock(directory):
        if trusted_file(library):  # another process built it while this one waited
            return
        _remove_leftovers(directory)
        if not _building_ahead:
            _say_once(
                f"compiling {what} for this machine into {directory} (once; "
                "`optimlab build` does it ahead of time)"
            )
        # every file of the build in one folder, removed at the end (or, if this process was
        # killed, by the next build: _remove_leftovers)
        work = Path(tempfile.mkdtemp(prefix=BUILD_PREFIX, dir=directory))
        c_file, partial = work / f"kernels{suffix}", work / "kernels.so"
        try:
            c_file.write_text(source)
            code, stderr = _run_guarded(
                [compiler, *flags, str(c_file), "-o", str(partial), *libraries], 600, work
            )
            if code != 0:
                raise NativeUnavailable(
                    f"compiling {what} with {compiler} failed:\n{stderr[-2000:]}"
                )
            os.chmod(partial, 0o755)
            os.replace(partial, library)  # atomic: concurrent processes see all or nothing
        except (OSError, subprocess.SubprocessError) as error:
            raise NativeUnavailable(f"compiling {what} with {compiler} failed: {error}") from error
        finally:
            shutil.rmtree(work, ignore_errors=True)


#: set by ``optimlab build``, which prints its own progress
_building_ahead = False


def _find_toolchain() -> tuple[str, list[str], str]:
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        raise NativeUnavailable(
            f"the fused path is verified bitwise only on x86-64 CPUs; this is {machine}"
        )
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512"):
        raise NativeUnavailable(
            f"the fused path matches ATen's AVX2/AVX-512 kernels; this CPU runs ATen's "
            f"{capability} kernels"
        )
    candidates = [os.environ.get("OPTIMLAB_CC"), os.environ.get("CC"), "cc", "gcc", "clang"]
    for candidate in candidates:
        if candidate and shutil.which(candidate):
            compiler = shutil.which(candidate)
            break
    else:
        raise NativeUnavailable("no C compiler found (set OPTIMLAB_CC or CC, or install gcc)")
    flags = [
        "-O3",
        "-std=c11",
        "-shared",
        "-fPIC",
        "-fopenmp",
        "-fno-math-errno",  # sqrt as one instruction, vectorized
        "-fno-trapping-math",  # selects (maximum, lerp) if-converted into vector blends
        "-ffp-contract=off",  # no multiply-add fused unless the source says fma
        "-fno-strict-aliasing",
        "-mavx2",
        "-mfma",
    ]
    try:
        version = subprocess.run(
            [compiler, "--version"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise NativeUnavailable(f"the C compiler {compiler} does not run: {error}") from error
    return compiler, flags, version


def _load(source: str) -> ctypes.CDLL:
    """Compile ``source`` into a shared library (or find it in the cache) and load it."""
    global _toolchain
    if _toolchain is None:
        _toolchain = _find_toolchain()
    compiler, flags, version = _toolchain
    key = hashlib.sha256("\0".join([source, compiler, *flags, version]).encode()).hexdigest()
    if key in _libraries:
        return _libraries[key]
    library = cache_dir() / f"optimlab_{key[:32]}.so"
    if not trusted_file(library):
        try:
            compile_library(compiler, flags, source, library)
        except NativeUnavailable:
            if "-fopenmp" not in flags:
                raise
            # A compiler without OpenMP: the kernels run on the calling thread only.
            _toolchain = (compiler, [f for f in flags if f != "-fopenmp"], version)
            return _load(source)
    lib = ctypes.CDLL(str(library))
    _libraries[key] = lib
    return lib


def _support() -> ctypes.CDLL:
    return _load(_support_source())


def _find_vector_sqrt() -> tuple[int, int, int] | None:
    """The addresses of the float and double vector square roots PyTorch's ``sqrt`` calls.

    PyTorch built with MKL computes ``torch.sqrt`` on the CPU with MKL's VML (``vmsSqrt``,
    ``vmdSqrt``), linked into libtorch_cpu; None when this build does not (then ``sqrt`` is
    the correctly rounded instruction, as in the C library, and the self-test confirms it).
    """
    if not torch.backends.mkl.is_available():
        return None
    folder = Path(torch.__file__).parent / "lib"
    for path in sorted(folder.glob("libtorch_cpu*")):
        try:
            lib = ctypes.CDLL(str(path))
            return (
                ctypes.cast(lib.VMSSQRT_64_, ctypes.c_void_p).value,
                ctypes.cast(lib.VMDSQRT_64_, ctypes.c_void_p).value,
                ctypes.cast(lib.MKL_Set_Num_Threads_Local, ctypes.c_void_p).value,
            )
        except (OSError, AttributeError):
            continue
    return None


#: the scalars the self-test passes to an operation (one scalar: 0.37); lerp with a small and a
#: large weight (ATen starts from a different end for each), zeros of either sign as bounds
_TEST_SCALARS = {
    "lerp": (0.1,),
    "lerp_": (0.9,),
    "clamp_": (-0.0, 0.75),
    "sign_select": (1.25, -0.5, -0.0),
}


def _self_test() -> None:
    """Run every operation of :data:`C_EXPRESSIONS` fused and through PyTorch; all must agree.

    Random values, odd sizes (vector bodies and scalar tails), and zeros of both signs,
    infinities, NaN and subnormals, paired in both orders, at the start and at the end of the
    tensors, in float32 and float64, for both kinds of loop (with square roots, blocked around
    the vector sqrt; without, one loop). Results must agree in every bit, except which NaN
    (where NaN appear must agree). Any difference disables the fused path.
    """
    for with_sqrt in (True, False):
        ops = [op for op in SIGNATURES if with_sqrt or not op.startswith("sqrt")]
        _self_test_program(ops)


def _same_bits(got: Tensor, want: Tensor) -> bool:
    """Whether two float tensors agree bit for bit, NaN aside (NaN must be at the same places).

    Finer than ``torch.equal``: zeros of opposite signs differ.
    """
    if got.shape != want.shape or got.dtype != want.dtype:
        return False
    a, b = got.detach().cpu().numpy(), want.detach().cpu().numpy()
    nan = np.isnan(b)
    ints = np.int32 if b.dtype == np.float32 else np.int64
    return bool(
        np.array_equal(np.isnan(a), nan)
        and np.array_equal(np.where(nan, 0, a.view(ints)), np.where(nan, 0, b.view(ints)))
    )


def _self_test_program(op_names: list[str]) -> None:
    from ..core.ops import LOOP
    from .tape import METHODS, Tape

    tape = Tape(["x", "y", "z"] + [f"out_{op}_{k}" for op in op_names for k in range(2)])
    x, y, z = ([tape[n]] for n in ("x", "y", "z"))
    calls = []
    for op in op_names:
        n_tensors, n_scalars, in_place = SIGNATURES[op]
        method = METHODS[op]
        args = [x, y, z][:n_tensors]
        scalars = _TEST_SCALARS.get(op, (0.37,))[:n_scalars]
        for k in range(2):
            # k = 1: on temporaries (-(-x) is x exactly), as rules use them
            if k:
                args = [tape.ops.neg(tape.ops.neg(a)) for a in args]
            out = [tape[f"out_{op}_{k}"]]
            if in_place:
                target = args[0] if k else out
                if not k:
                    tape.ops.copy_(out, args[0])
                getattr(tape.ops, method)(target, *args[1:], *scalars)
                if k:
                    tape.ops.copy_(out, target)
            else:
                tape.ops.copy_(out, getattr(tape.ops, method)(*args, *scalars))
            calls.append((op, method, n_tensors, scalars, in_place))
    recorded = {op for op, *_ in tape.program.instructions} | {"neg", "copy_"}
    if recorded != set(op_names) | {"neg", "copy_"}:  # each method records what it should
        raise NativeUnavailable(f"the tape recorded {sorted(recorded)} for {op_names}")
    generator = torch.Generator().manual_seed(0)
    for dtype in C_TYPES:
        tiny = torch.finfo(dtype).tiny
        specials = torch.tensor(
            [0.0, -0.0, float("inf"), float("-inf"), float("nan"), tiny / 3, 3e38, -0.0, 0.0]
            + [1.0, -tiny / 5, float("nan"), -2.0, 0.0],
            dtype=dtype,
        )
        for size in (1, 13, 1000, 4093):
            inputs = [torch.randn(size, generator=generator, dtype=dtype) for _ in range(3)]
            inputs[2] = inputs[2].abs() + 0.25  # divisors and roots
            k = min(size, len(specials))
            # every special against others, zeros against zeros of the other sign, at the
            # start (ATen's vector loop) and at the end (its scalar loop)
            for part in (slice(0, k), slice(size - k, size)):
                inputs[0][part] = specials[:k]
                inputs[1][part] = specials.roll(1)[:k]
            outs = [torch.zeros(size, dtype=dtype) for _ in calls]
            operands = [[t.clone()] for t in inputs] + [[o] for o in outs]
            kernel(tape.program, dtype)(operands, tape.scalars)
            for (op, method, n_tensors, scalars, in_place), got in zip(calls, outs):
                tensors = [[t.clone()] for t in inputs[:n_tensors]]
                result = getattr(LOOP, method)(*tensors, *scalars)
                want = tensors[0][0] if in_place else result[0]
                if not _same_bits(got, want):
                    raise NativeUnavailable(
                        f"the fused kernel's {op} differs from PyTorch's for {dtype} on this "
                        "machine; the fused path is off"
                    )


def available() -> bool:
    """Whether fused kernels can be compiled and run here, and agree with PyTorch bitwise.

    Checked once per process: finds a compiler, compiles (or loads from the cache) and runs a
    kernel of every operation against PyTorch's own.
    """
    return unavailable_reason() is None


def unavailable_reason() -> str | None:
    """Why the fused path cannot run here, or None when it can."""
    global _checked, _unavailable
    if not _checked:
        with _lock:
            if not _checked:
                if os.environ.get("OPTIMLAB_FUSED", "1") == "0":
                    _unavailable = "turned off by the environment (OPTIMLAB_FUSED=0)"
                    _checked = True
                    return _unavailable
                try:
                    _support()
                    _self_test()
                except NativeUnavailable as error:
                    _unavailable = str(error)
                _checked = True
    return _unavailable


# --- running ----------------------------------------------------------------------------------

_ARGTYPES = [
    ctypes.c_void_p,  # pointer table
    ctypes.c_void_p,  # offsets
    ctypes.c_int64,  # number of tensors
    ctypes.POINTER(ctypes.c_double),  # scalars
    ctypes.c_int64,  # threads
    ctypes.c_int64,  # ATen's threads (where its scalar loops take over, for C_TAIL_EXPRESSIONS)
]


class Kernel:
    """A compiled rule: ``kernel(operands, scalars)`` updates the operands in place.

    ``exact``: square roots as PyTorch's CPU ``sqrt`` computes them (MKL's vector sqrt, in
    blocks), so that results equal the plain path's bit for bit; else the CPU's correctly
    rounded square root instruction inside one loop (faster: MKL's sqrt costs about 3 cycles
    per element, which makes Adam and RMSprop compute-bound on a 2-core machine).

    ``storage``: the parameters' and gradients' dtype where it is narrower than ``dtype``
    (bfloat16, with float32 state; see :func:`_bf16_source`); then ``stochastic`` rounds the
    parameters stochastically, and the pointer table carries a row of rounding seeds and the
    scalars end with ``hash32(step)``.
    """

    def __init__(
        self,
        program: Program,
        dtype: torch.dtype,
        exact: bool = True,
        storage: torch.dtype | None = None,
        stochastic: bool = False,
    ) -> None:
        self.program = program
        self.dtype = dtype
        self.exact = exact
        ctype = C_TYPES[dtype][0]
        if storage not in (None, dtype):
            if (storage, dtype) != (torch.bfloat16, torch.float32):
                raise NativeUnavailable(f"no C kernel for {storage} parameters in {dtype}")
            ctype = "bf16_sr" if stochastic else "bf16"
        vector_sqrt = _find_vector_sqrt() if exact and _uses_sqrt(program) else None
        library = _load(program_source(program, vector_sqrt is not None))
        if vector_sqrt is not None:
            library.ol_set_vsqrt.argtypes = [ctypes.c_void_p] * 3
            library.ol_set_vsqrt(*vector_sqrt)
        self._function = getattr(library, f"ol_step_{ctype}")
        self._function.argtypes = _ARGTYPES
        self._function.restype = ctypes.c_int64

    def __call__(self, operands: Sequence[Sequence[Tensor]], scalars: Sequence[float]) -> None:
        """Run the rule over ``operands``: one list of tensors per program operand, in order.

        The tensors must be contiguous, on the CPU, of this kernel's dtype (or its complex
        counterpart) and of equal size position by position (what
        :func:`optimlab.fused.plan.plain` checks).
        """
        self.run(*pointer_table(operands), scalars)

    def run(self, table: np.ndarray, starts: np.ndarray, scalars: Sequence[float]) -> None:
        """Run the rule over the tensors of a :func:`pointer_table`."""
        self.call(table.ctypes.data, starts.ctypes.data, table.shape[1], int(starts[-1]), scalars)

    def call(
        self, table: int, starts: int, tensors: int, elements: int, scalars: Sequence[float]
    ) -> None:
        """:meth:`run` given the addresses of the table and offsets (the fused plan keeps them)."""
        values = (ctypes.c_double * max(1, len(scalars)))(*scalars)
        threads = torch.get_num_threads()
        self._function(table, starts, tensors, values, _threads(elements, threads), threads)


def pointer_table(operands: Sequence[Sequence[Tensor]]) -> tuple[np.ndarray, np.ndarray]:
    """``(table, starts)``: the data pointers of each operand's tensors (one row per operand),
    and the offset of each tensor in the concatenation of all (in reals; sizes from the first
    operand)."""
    first = operands[0]
    sizes = [t.numel() * (2 if t.is_complex() else 1) for t in first]
    starts = np.zeros(len(first) + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    table = np.array([[t.data_ptr() for t in tensors] for tensors in operands], dtype=np.int64)
    return table.reshape(len(operands), len(first)), starts


def _threads(total: int, threads: int | None = None) -> int:
    if threads is None:
        threads = torch.get_num_threads()
    return max(1, min(threads, total // MIN_ELEMENTS_PER_THREAD))


def kernel(
    program: Program,
    dtype: torch.dtype,
    exact: bool = True,
    storage: torch.dtype | None = None,
    stochastic: bool = False,
) -> Kernel:
    """The compiled kernel of ``program`` for real ``dtype`` (compiled once, then cached);
    ``storage``, ``stochastic``: see :class:`Kernel`."""
    key = (program, dtype, exact, storage, stochastic)
    found = _kernels.get(key)
    if found is None:
        with _lock:
            found = _kernels.get(key)
            if found is None:
                if key in _failed:
                    raise NativeUnavailable(_failed[key])
                try:
                    found = _kernels[key] = Kernel(program, dtype, exact, storage, stochastic)
                except NativeUnavailable as error:
                    _failed[key] = str(error)  # do not try again on every step
                    raise
    return found


def tape_kernel(
    tape: Any,
    dtype: torch.dtype,
    exact: bool = True,
    storage: torch.dtype | None = None,
    stochastic: bool = False,
) -> Kernel:
    """:func:`kernel` for the program a tape recorded, found by its cheaper :attr:`Tape.key`."""
    key = (tape.key, dtype, exact, storage, stochastic)
    found = _kernels_by_tape.get(key)
    if found is None:
        found = _kernels_by_tape[key] = kernel(tape.program, dtype, exact, storage, stochastic)
    return found


_kernels_by_tape: dict[tuple[Any, ...], Kernel] = {}
_nonfinite_functions: dict[torch.dtype, Any] = {}


def any_nonfinite(tensors: Sequence[Tensor]) -> bool:
    """Whether any element of these contiguous CPU tensors of one dtype (a real or complex
    one of :data:`REAL_DTYPE`, or bfloat16) is NaN or infinite.

    One read of each tensor on all threads, no temporaries (complex tensors count as their
    pairs of reals).
    """
    if not tensors:
        return False
    table, starts = pointer_table([tensors])
    dtype = tensors[0].dtype
    return any_nonfinite_table(table[0], starts, REAL_DTYPE.get(dtype, dtype))


def any_nonfinite_table(pointers: np.ndarray, starts: np.ndarray, dtype: torch.dtype) -> bool:
    """:func:`any_nonfinite` over tensors given by their data pointers and offsets."""
    pointers = np.ascontiguousarray(pointers)
    return any_nonfinite_at(
        pointers.ctypes.data, starts.ctypes.data, len(pointers), int(starts[-1]), dtype
    )


def any_nonfinite_at(
    pointers: int, starts: int, tensors: int, elements: int, dtype: torch.dtype
) -> bool:
    """:func:`any_nonfinite_table` given the addresses of the pointers and offsets."""
    function = _nonfinite_functions.get(dtype)
    if function is None:
        suffix = "bf16" if dtype == torch.bfloat16 else C_TYPES[dtype][0]
        function = getattr(_support(), f"ol_nonfinite_{suffix}")
        function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64]
        function.restype = ctypes.c_int64
        _nonfinite_functions[dtype] = function
    return bool(function(pointers, starts, tensors, _threads(elements)))
