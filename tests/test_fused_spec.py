"""No input makes the default (fused) path differ from the plain path: a property test.

Hypothesis draws parameter groups (dtypes, bfloat16 ones that the kernel does not take beside
ones it takes, shapes, zero-size tensors, parameters that share
one storage with or without overlap) and, between steps, what mixed-precision, gradient
compression and bucketing code does to gradients, parameters and state behind the optimizer's
back: ``.data`` swapped for a tensor of another size, dtype or layout, ``resize_``, ``set_``,
views, gradients that alias a parameter, a state buffer or each other, new and vanished
gradients, replaced or deleted state. The same world is built twice, stepped by the default
path (``fused=None``) and by the plain path (``fused=False``); after every step both must hold
the same bits, or both must have raised the same error. It runs with the C++ plan checks and
with the Python ones (as where the C++ ones are not built).

Rules: SGD with momentum on the default path (no square root: bitwise equal to the plain path)
and Adam with ``fused="exact"`` (the same plans and checks; its roots are the plain path's, so
bitwise too: the default kernel's rounding of roots is tested in test_fast_path.py).
"""

from __future__ import annotations

import collections

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import optimlab
from optimlab.fused import native, plancheck

pytestmark = pytest.mark.skipif(
    not native.available(), reason=f"fused path unavailable: {native.unavailable_reason()}"
)

EXAMPLES = 400  # per check path; about 10 s each on one core

DTYPES = [torch.float32, torch.float64, torch.complex64, torch.bfloat16]  # bf16: not fused
SHAPES = [(0,), (1,), (5,), (2, 3), (3, 1, 2)]
RULES = {
    "sgd-momentum": lambda params, fused: optimlab.SGD(params, lr=0.1, momentum=0.9, fused=fused),
    "adam": lambda params, fused: optimlab.Adam(
        params, lr=0.01, fused="exact" if fused is None else fused
    ),
}
GRAD_ACTIONS = ["fresh", "fresh", "fresh", "none", "keep"]
MUTATIONS = [
    "grad.data shorter",
    "grad.data other dtype",
    "grad.data empty",
    "grad.data other shape, same size",
    "grad non-contiguous",
    "grad aliases its parameter",
    "grad aliases a state buffer",
    "grad aliases another grad",
    "grad aliases another parameter",
    "grads are views of one flat buffer",
    "param.data new memory",
    "param.data other size",
    "param storage resized",
    "param set_",
    "buffer.data other size",
    "buffer replaced",
    "buffer resize_(0)",
    "buffer set_",
    "step is a float",
    "state deleted",
    "zero_grad",
]

seen = collections.Counter()  # what the examples exercised: shown if the property test fails


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 4))
    params = [(draw(st.sampled_from(DTYPES)), draw(st.sampled_from(SHAPES))) for _ in range(n)]
    sharing = draw(st.sampled_from(["none", "none", "views of one storage", "overlapping"]))
    steps = []
    for _ in range(draw(st.integers(2, 5))):
        grads = [draw(st.sampled_from(GRAD_ACTIONS)) for _ in range(n)]
        mutations = draw(
            st.lists(st.tuples(st.sampled_from(MUTATIONS), st.integers(0, n - 1)), max_size=2)
        )
        steps.append((grads, mutations))
    return draw(st.sampled_from(sorted(RULES))), params, sharing, steps


def build(rule, params, sharing, fused):
    generator = torch.Generator().manual_seed(0)
    tensors = []
    if sharing == "none":
        tensors = [torch.randn(shape, dtype=dtype, generator=generator) for dtype, shape in params]
    else:  # one storage for all (as float64: every dtype here fits its bytes)
        sizes = [_bytes(dtype, shape) for dtype, shape in params]
        aligned = [-(-size // 8) * 8 for size in sizes]
        base = torch.randn(
            sum(aligned) // 8 + len(params), dtype=torch.float64, generator=generator
        )
        offset = 0
        for (dtype, shape), size, room in zip(params, sizes, aligned):
            flat = base.view(torch.uint8)[offset : offset + size].view(dtype)
            tensors.append(flat.view(shape))
            offset += 8 if sharing == "overlapping" else room  # overlap: each starts 8 bytes on
    leaves = [torch.nn.Parameter(t) for t in tensors]
    return leaves, RULES[rule](leaves, fused)


def _bytes(dtype, shape):
    return torch.Size(shape).numel() * torch.empty(0, dtype=dtype).element_size()


def random_like(t, generator, shape=None, dtype=None):
    return torch.randn(
        t.shape if shape is None else shape,
        dtype=t.dtype if dtype is None else dtype,
        generator=generator,
    )


def prepare(params, optimizer, grads, mutations, generator, count=False):
    """Set this step's gradients and apply the mutations (identically in both worlds)."""
    for p, action in zip(params, grads):
        if action == "fresh":
            p.grad = random_like(p, generator)
        elif action == "none":
            p.grad = None
    for kind, i in mutations:
        seen[kind] += count
        try:
            mutate(kind, params[i], params, optimizer, generator)
        except RuntimeError:  # torch itself refuses it (e.g. a gradient of another size)
            seen["mutations torch refused"] += count


def mutate(kind, p, params, optimizer, generator):
    """One change behind the optimizer's back (see MUTATIONS)."""
    state = optimizer.state.get(p)
    buffers = sorted(k for k, v in (state or {}).items() if torch.is_tensor(v))
    if kind.startswith("grad") and kind != "grads are views of one flat buffer":
        if p.grad is None:
            p.grad = random_like(p, generator)
    if kind == "grad.data shorter":
        p.grad.data = random_like(p, generator, shape=(max(0, p.numel() - 1),))
    elif kind == "grad.data other dtype":
        other = torch.float64 if p.dtype != torch.float64 else torch.float32
        p.grad.data = random_like(p, generator, dtype=other)
    elif kind == "grad.data empty":
        p.grad.data = torch.ones(0, dtype=p.dtype)
    elif kind == "grad.data other shape, same size":
        p.grad.data = random_like(p, generator, shape=(p.numel(),))
    elif kind == "grad non-contiguous":
        p.grad = random_like(p, generator, shape=(*p.shape, 2))[..., 0]
    elif kind == "grad aliases its parameter":
        p.grad = p.detach()
    elif kind == "grad aliases a state buffer" and buffers:
        p.grad = state[buffers[0]].detach()
    elif kind == "grad aliases another grad":
        for q in params:
            if q is not p and q.grad is not None and q.grad.dtype == p.dtype:
                if q.grad.shape == p.shape:
                    p.grad = q.grad
                    break
    elif kind == "grad aliases another parameter":
        for q in params:
            if q is not p and q.dtype == p.dtype and q.shape == p.shape:
                p.grad = q.detach()
                break
    elif kind == "grads are views of one flat buffer":
        dtype = p.dtype
        members = [q for q in params if q.dtype == dtype]
        flat = torch.randn(sum(q.numel() for q in members), dtype=dtype, generator=generator)
        offset = 0
        for q in members:
            q.grad = flat[offset : offset + q.numel()].view(q.shape)
            offset += q.numel()
    elif kind == "param.data new memory":
        p.data = random_like(p, generator)
    elif kind == "param.data other size":
        p.data = random_like(p, generator, shape=(p.numel() + 1,))
    elif kind == "param storage resized":
        p.data.resize_(p.numel() * 4 + 64)  # the storage grows: new memory, same shape
    elif kind == "param set_":
        with torch.no_grad():
            p.set_(random_like(p, generator))
    elif kind == "buffer.data other size" and buffers:
        state[buffers[0]].data = torch.zeros(p.numel() + 1, dtype=p.dtype)
    elif kind == "buffer replaced" and buffers:
        state[buffers[0]] = state[buffers[0]].clone()
    elif kind == "buffer resize_(0)" and buffers:
        state[buffers[0]].resize_(0)
    elif kind == "buffer set_" and buffers:
        state[buffers[0]].set_(state[buffers[0]].clone())
    elif kind == "step is a float" and state:
        state["step"] = float(state["step"])
    elif kind == "state deleted" and state is not None:
        del optimizer.state[p]
    elif kind == "zero_grad":
        optimizer.zero_grad()


def outcome(params, optimizer):
    try:
        optimizer.step()
    except Exception as error:  # noqa: BLE001 - the two paths must raise alike
        return ("raised", type(error), str(error))
    fused = optimizer._fused.plans.values()
    seen["steps with a fused part"] += any(plan.fused for plan in fused)
    return ("stepped",)


def assert_same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    if a.is_complex():
        a, b = torch.view_as_real(a), torch.view_as_real(b)
    width = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    assert torch.equal(a.detach().contiguous().view(width), b.detach().contiguous().view(width))


def compare(world_a, world_b):
    (params_a, opt_a), (params_b, opt_b) = world_a, world_b
    for p, q in zip(params_a, params_b):
        assert_same_bits(p, q)
        state_a, state_b = opt_a.state.get(p, {}), opt_b.state.get(q, {})
        assert state_a.keys() == state_b.keys()
        for key, value in state_a.items():
            if torch.is_tensor(value):
                assert_same_bits(value, state_b[key])
            else:
                assert value == state_b[key] and type(value) is type(state_b[key])


def run_scenario(scenario):
    rule, params, sharing, steps = scenario
    worlds = [build(rule, params, sharing, fused) for fused in (None, False)]
    generators = [torch.Generator().manual_seed(1) for _ in worlds]
    for grads, mutations in steps:
        for (leaves, optimizer), generator, count in zip(worlds, generators, (True, False)):
            prepare(leaves, optimizer, grads, mutations, generator, count)
        results = [outcome(*world) for world in worlds]
        assert results[0] == results[1], (results, scenario)
        if results[0][0] == "raised":
            seen["steps that raised on both paths"] += 1
            return  # a failed step may leave either path half-way: no state to compare
        compare(*worlds)


@pytest.mark.parametrize("checks", ["c++", "python"])
def test_the_default_path_equals_the_plain_path_whatever_happens_between_steps(checks, monkeypatch):
    if checks == "c++":
        assert plancheck.build() is not None, plancheck.unavailable_reason()
    else:
        monkeypatch.setattr(plancheck, "checker", lambda: None)
    seen.clear()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(scenarios())
    def check(scenario):
        run_scenario(scenario)

    try:
        check()
    finally:
        torch.set_num_threads(previous)
    # Not vacuous: the examples fused, raised and mutated.
    assert seen["steps with a fused part"] > EXAMPLES
    assert seen["steps that raised on both paths"] > 0
    assert all(seen[kind] > 0 for kind in MUTATIONS), seen
    print(f"{checks} checks: {EXAMPLES} examples; {dict(seen)}")
