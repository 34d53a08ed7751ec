"""The fused kernels compute every recordable list operation exactly as ops.LOOP and ops.FOREACH.

Each operation (and a few programs chaining them, as update rules do) is recorded on a tape,
compiled, and run over lists of tensors whose sizes leave every remainder of ATen's vector
loops and reach its split over threads, filled with random values of which most are special:
zeros of both signs, NaN, infinities, subnormals, the largest finite value. The results must
agree with both plain backends in every bit, except which NaN: where NaN appear must agree,
and for operations whose NaN has a single source, the NaN's bits too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from optimlab.core.ops import FOREACH, LOOP
from optimlab.fused import native
from optimlab.fused.tape import NotRecordable, Tape

needs_native = pytest.mark.skipif(
    not native.available(), reason=f"fused path unavailable: {native.unavailable_reason()}"
)

DTYPES = [torch.float32, torch.float64]
# Remainders of ATen's vector loops (16 floats or 8 doubles per pass with AVX2, 32 or 16 with
# AVX-512) and tensors above its 32768-element grain, which it splits over threads.
SIZES = [1, 7, 15, 16, 17, 31, 33, 63, 100, 1023, 40_000, 70_001]
NAN, INF = float("nan"), float("inf")
INTS = {torch.float32: torch.int32, torch.float64: torch.int64}


@pytest.fixture(autouse=True)
def one_thread():
    # One thread unless a test asks for more: `make test` runs two xdist workers on two cores,
    # and OpenMP pools spinning against each other make small steps many times slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def specials(dtype: torch.dtype) -> torch.Tensor:
    info = torch.finfo(dtype)
    # zeros weigh most, so that zeros of opposite signs meet often in binary operations
    values = [0.0, -0.0, 0.0, -0.0, 0.0, -0.0, NAN, NAN, INF, -INF]
    values += [info.tiny / 3, -info.tiny / 7, info.max, -info.max, 1.0, -1.0, 0.5]
    return torch.tensor(values, dtype=dtype)


def make_list(seed: int, dtype: torch.dtype, sizes=SIZES, special=0.6) -> list[torch.Tensor]:
    """Random tensors of which a fraction ``special`` of the elements are special values."""
    g = torch.Generator().manual_seed(seed)
    table = specials(dtype)
    out = []
    for n in sizes:
        x = torch.randn(n, generator=g, dtype=dtype) * 2
        pick = torch.rand(n, generator=g) < special
        x = torch.where(pick, table[torch.randint(len(table), (n,), generator=g)], x)
        out.append(x)
    return out


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(INTS[t.dtype])


def assert_bitwise(got, want, what: str, nan_bits: bool = False) -> None:
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want)):
        where = f"{what}, tensor {k} (size {b.numel()})"
        assert a.dtype == b.dtype and a.shape == b.shape, where
        nan = b.isnan()
        assert torch.equal(a.isnan(), nan), f"{where}: NaN at other places"
        assert torch.equal(a.masked_fill(nan, 0), b.masked_fill(nan, 0)), f"{where}: values"
        # the same values can still differ in the sign of a zero (or, with nan_bits, the NaN)
        a_bits, b_bits = bits(a), bits(b)
        if not nan_bits:
            a_bits, b_bits = a_bits.masked_fill(nan, 0), b_bits.masked_fill(nan, 0)
        differ = (a_bits != b_bits).nonzero().flatten()[:5].tolist()
        assert not differ, (
            f"{where}: bits differ at {differ}: {a[differ].tolist()} vs {b[differ].tolist()}"
        )


# --- one operation at a time --------------------------------------------------------------


@dataclass(frozen=True)
class Single:
    """One list operation: ``run(ops, xs, ys, outs)`` leaves its result in ``outs``."""

    id: str
    run: Callable
    nan_bits: bool = False  # whether the NaN's bits are determined (one source)

    def __str__(self) -> str:
        return self.id


def out_of_place(name, *args, second=False):
    def run(ops, xs, ys, outs):
        operands = (xs, ys) if second else (xs,)
        ops.copy_(outs, getattr(ops, name)(*operands, *args))

    return run


def in_place(name, *args, second=False):
    def run(ops, xs, ys, outs):
        ops.copy_(outs, xs)
        getattr(ops, name)(outs, *((ys,) if second else ()), *args)

    return run


SINGLE = [
    Single("add_scalar", out_of_place("add_scalar", 0.3), nan_bits=True),
    Single("add_scalar-neg0", out_of_place("add_scalar", -0.0), nan_bits=True),
    Single("mul-scalar", out_of_place("mul", 0.7), nan_bits=True),
    Single("mul-scalar-neg0", out_of_place("mul", -0.0), nan_bits=True),
    Single("mul_-scalar", in_place("mul_", -1.3), nan_bits=True),
    Single("mul-tensor", out_of_place("mul", second=True)),
    Single("mul_-tensor", in_place("mul_", second=True)),
    Single("div_-tensor", in_place("div_", second=True)),
    Single("div_-scalar", in_place("div_", 3.0), nan_bits=True),
    Single("abs", out_of_place("abs"), nan_bits=True),
    Single("sign", out_of_place("sign"), nan_bits=True),
    Single("sign_", in_place("sign_"), nan_bits=True),
    Single("reciprocal_", in_place("reciprocal_"), nan_bits=True),
    Single("maximum", out_of_place("maximum", second=True)),
    Single("maximum_", in_place("maximum_", second=True)),
    Single("clamp_", in_place("clamp_", -0.5, 0.5), nan_bits=True),
    Single("clamp_-zero-bounds", in_place("clamp_", 0.0, -0.0), nan_bits=True),
    Single("clamp_-signed-zeros", in_place("clamp_", -0.0, INF), nan_bits=True),
    Single("clamp_-below", in_place("clamp_", -INF, 0.0), nan_bits=True),
    Single("clamp_-crossed", in_place("clamp_", 1.0, -1.0), nan_bits=True),
    Single("clamp_-nan-low", in_place("clamp_", NAN, 1.0)),
    Single("clamp_-nan-high", in_place("clamp_", 0.0, NAN)),
    # a subnormal bound in float32, a bound that rounds to zero in float32
    Single("clamp_-tiny", in_place("clamp_", 1e-40, 1e38), nan_bits=True),
    Single("clamp_-tinier", in_place("clamp_", 1e-46, 3.0), nan_bits=True),
    Single("sign_select", out_of_place("sign_select", 1.2, 0.5, 1.0), nan_bits=True),
    Single("sign_select-zeros", out_of_place("sign_select", -0.0, 0.0, -0.0), nan_bits=True),
    Single("sign_select-specials", out_of_place("sign_select", INF, NAN, -INF)),
]


def run_single(ops, case: Single, xs, ys) -> list[torch.Tensor]:
    outs = [torch.full_like(x, 7.0) for x in xs]
    case.run(ops, xs, ys, outs)
    return outs


@pytest.fixture(scope="module")
def fused_singles():
    """All single operations in one kernel (one compilation), run once per dtype."""
    tape = Tape(("x", "y", *(f"out {case}" for case in SINGLE)))
    for case in SINGLE:
        case.run(tape.ops, [tape["x"]], [tape["y"]], [tape[f"out {case}"]])
    done = {}

    def run(dtype):
        if dtype not in done:
            xs, ys = make_list(0, dtype), make_list(1, dtype)
            outs = [[torch.full_like(x, 7.0) for x in xs] for _ in SINGLE]
            native.kernel(tape.program, dtype)([xs, ys, *outs], tape.scalars)
            # the inputs are left as they were
            assert all(torch.equal(bits(a), bits(b)) for a, b in zip(xs, make_list(0, dtype)))
            done[dtype] = dict(zip((c.id for c in SINGLE), outs))
        return done[dtype]

    return run


@needs_native
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", SINGLE, ids=str)
def test_each_operation_fused_equals_loop_and_foreach(case, dtype, fused_singles):
    got = fused_singles(dtype)[case.id]
    for backend in (LOOP, FOREACH):
        want = run_single(backend, case, make_list(0, dtype), make_list(1, dtype))
        assert_bitwise(got, want, f"{case} on {backend.name}", nan_bits=case.nan_bits)


# --- maximum: ATen's vector and scalar loops differ --------------------------------------


@needs_native
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_maximum_follows_atens_vector_and_scalar_parts(dtype, n_threads):
    # torch.maximum(-0, +0) is +0 in ATen's vector loop and -0 in its scalar loop (the rest of
    # each thread's chunk), and a NaN has all bits set in one and is the quiet NaN in the
    # other: the kernel must place each element in the same part.
    sizes = [5, 16, 40, 4099, 32_768, 32_769, 70_001]
    torch.set_num_threads(n_threads)
    # pairs (-0, +0), (+0, -0), (NaN, 0), (0, NaN), in turn, so that each part sees all
    pairs = torch.tensor([[-0.0, 0.0], [0.0, -0.0], [NAN, 0.0], [0.0, NAN]], dtype=dtype)
    x = [pairs[torch.arange(n) % 4, 0] for n in sizes]
    y = [pairs[torch.arange(n) % 4, 1] for n in sizes]
    tape = Tape(("x", "y", "out", "acc"))
    ops = tape.ops
    ops.copy_([tape["out"]], ops.maximum([tape["x"]], [tape["y"]]))
    ops.maximum_([tape["acc"]], [tape["y"]])
    out, acc = [torch.empty_like(t) for t in x], [t.clone() for t in x]
    native.kernel(tape.program, dtype)([x, y, out, acc], tape.scalars)
    want = LOOP.maximum(x, y)
    assert_bitwise(out, want, "maximum", nan_bits=True)
    FOREACH.maximum_(x, y)
    assert_bitwise(acc, x, "maximum_", nan_bits=True)
    # the data do exercise both parts: ATen's results for (-0, +0) differ along the tensors
    signs = torch.signbit(want[-1][::4])
    assert bool(signs.any()) and not bool(signs.all())


# --- programs chaining operations, as rules do ------------------------------------------


def rprop_like(ops, p, g, prev, steps, _):
    factors = ops.sign_select(ops.mul(g, prev), 1.2, 0.5, 1.0)
    ops.mul_(steps, factors)
    ops.clamp_(steps, 1e-6, 50.0)
    direction = ops.sign(g)
    ops.addcmul_(p, direction, steps, -1.0)
    ops.copy_(prev, g)
    ops.sign_(prev)


def adamax_like(ops, p, g, m, u, _):
    ops.lerp_(m, g, 0.1)
    ops.mul_(u, 0.999)
    scaled = ops.abs(g)
    ops.add_scalar_(scaled, 1e-8)
    ops.maximum_(u, scaled)
    ops.addcdiv_(p, m, u, -0.002)


def lion_like(ops, p, g, m, _, __):
    ops.mul_(p, 1 - 0.01 * 0.1)
    update = ops.lerp(m, g, 0.1)
    ops.sign_(update)
    ops.add_(p, update, alpha=-0.01)
    ops.lerp_(m, g, 0.01)


def amsgrad_like(ops, p, g, m, v, vmax):
    # square roots (blocked loops, MKL's vector sqrt) together with maximum (two loops)
    ops.lerp_(m, g, 0.1)
    ops.mul_(v, 0.999)
    ops.addcmul_(v, g, g, 0.001)
    ops.maximum_(vmax, v)
    denom = ops.sqrt(vmax)
    ops.add_scalar_(denom, 1e-8)
    ops.addcdiv_(p, m, denom, -0.001)


def tensor_products(ops, p, g, a, b, c):
    # mul/div by tensors, reciprocals, out-of-place maximum of temporaries, clamps
    ratio = ops.mul(a, b)
    ops.div_(ratio, c)
    ops.reciprocal_(ratio)
    top = ops.maximum(ops.add_scalar(ratio, -0.0), ops.mul(g, 2.0))
    ops.clamp_(top, -3.0, 3.0)
    ops.mul_(p, top)
    ops.copy_(a, ops.abs(ops.mul(a, 0.5)))
    ops.mul_(b, [0.25])  # per-tensor scalars: one here (PerTensorScalars stretches the list)
    ops.div_(c, b)


PROGRAMS = [rprop_like, adamax_like, lion_like, amsgrad_like, tensor_products]


@needs_native
@pytest.mark.parametrize(
    "rule,dtype,threads",
    [(rule, dtype, 1) for rule in PROGRAMS for dtype in DTYPES]
    # two threads: the kernel's own split, and ATen's split of the large tensors (maximum), in
    # both kinds of loop (blocked around square roots, and not)
    + [(amsgrad_like, torch.float32, 2), (tensor_products, torch.float64, 2)],
    ids=lambda v: v.__name__ if callable(v) else str(v),
)
def test_programs_fused_equal_loop_and_foreach(rule, dtype, threads):
    torch.set_num_threads(threads)
    names = ("param", "grad", "a", "b", "c")
    tape = Tape(names)
    rule(tape.ops, *([tape[n]] for n in names))
    kernel = native.kernel(tape.program, dtype)
    operands = [make_list(seed, dtype) for seed in range(len(names))]
    fused = [[t.clone() for t in ts] for ts in operands]
    kernel(fused, tape.scalars)
    for backend in (LOOP, FOREACH):
        plain = [[t.clone() for t in ts] for ts in operands]
        rule(PerTensorScalars(backend), *plain)
        for name, a, b in zip(names, fused, plain):
            assert_bitwise(a, b, f"{rule.__name__}: {name} on {backend.name}")


class PerTensorScalars:
    """A plain backend given a rule written for the tape: a one-element list of scalars (one
    scalar per tensor of a one-tensor bucket) is stretched to one per tensor of the list."""

    def __init__(self, backend):
        self.backend = backend
        self.name = backend.name

    def __getattr__(self, name):
        method = getattr(self.backend, name)

        def call(*args, **kwargs):
            args = [
                a * len(args[0])
                if isinstance(a, list) and len(a) == 1 and not torch.is_tensor(a[0])
                else a
                for a in args
            ]
            return method(*args, **kwargs)

        return call


# --- what the tape records --------------------------------------------------------------


def test_the_tape_records_tensor_and_scalar_forms_as_different_instructions():
    tape = Tape(("x", "y"))
    x, y, ops = [tape["x"]], [tape["y"]], tape.ops
    ops.mul_(x, y)
    ops.mul_(x, 0.5)
    ops.mul_(x, [0.25])  # per-tensor scalars of a one-tensor bucket
    ops.div_(x, y)
    ops.div_(x, 2)
    product, scaled = ops.mul(x, y), ops.mul(x, 3.0)
    ops.clamp_(x, -1, 1)
    chosen = ops.sign_select(x, 1.5, -2.5, 0.0)
    ops.add_(x, ops.maximum(product, scaled))
    ops.add_(x, chosen)
    assert [op for op, *_ in tape.program.instructions] == [
        "mul_tensor_",
        "mul_",
        "mul_",
        "div_tensor_",
        "div_",
        "mul_tensor",
        "mul",
        "clamp_",
        "sign_select",
        "maximum",
        "add_",
        "add_",
    ]
    # scalar slots in order; clamp_ and sign_select take several
    slots = {op: s for op, _, _, s in tape.program.instructions}
    assert slots["clamp_"] == (4, 5) and slots["sign_select"] == (6, 7, 8)
    assert tape.scalars == [0.5, 0.25, 2.0, 3.0, -1.0, 1.0, 1.5, -2.5, 0.0, 1.0, 1.0]
    assert all(type(s) is float for s in tape.scalars)
    assert tape.program.written == (0,)


def test_the_tape_refuses_lists_of_several_operands():
    tape = Tape(("x", "y", "z"))
    with pytest.raises(TypeError, match="one-element lists of Var"):
        tape.ops.mul_([tape["x"]], [tape["y"], tape["z"]])
    with pytest.raises(TypeError, match="one scalar per operation"):
        tape.ops.mul_([tape["x"]], [0.5, 0.25])
    with pytest.raises(NotRecordable, match="scalars only"):
        tape.ops.add_scalar_([tape["x"]], [tape["y"]])
    with pytest.raises(NotRecordable, match="norm"):
        tape.ops.norm([tape["x"]])


def test_every_recordable_operation_has_its_c_expression():
    from optimlab.fused.tape import METHODS, SIGNATURES

    assert set(native.C_EXPRESSIONS) == set(SIGNATURES) == set(METHODS)
    assert set(native.C_TAIL_EXPRESSIONS) <= set(SIGNATURES)
