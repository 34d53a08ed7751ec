"""Sparse (COO) gradients, as ``nn.Embedding(sparse=True)`` makes them (issue 16).

optimlab.SGD and optimlab.Adagrad take them as torch.optim.SGD and torch.optim.Adagrad do: run
side by side with the torch class on the same gradients (an embedding's, and hand-made ones
with repeated, uncoalesced indices), the parameters and every state entry (sparse momentum
buffers included) are bitwise torch's after every step, in float32 and float64. Where torch
refuses (weight decay, ``fused=True``), optimlab refuses with torch's exception type, before
anything changes. A model with a sparse embedding and dense layers steps the dense part on the
default (fused) path, within its documented tolerance (bitwise for SGD). optimlab's own
policies hold for sparse gradients too: non-finite values are refused or skipped, and a
checkpoint resumes in torch and back. Optimizers without a sparse step refuse sparse gradients.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

import optimlab
from optimlab.fused import native

needs_native = pytest.mark.skipif(
    not native.available(), reason=f"fused path unavailable: {native.unavailable_reason()}"
)
STEPS = 5
ROWS, WIDTH = 20, 3
DTYPES = [torch.float32, torch.float64]
KINDS = ["embedding", "rows", "elements"]

CONFIGS = {
    "SGD": {
        "lr": dict(lr=0.05),
        "momentum": dict(lr=0.05, momentum=0.9),
        "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
        "dampening": dict(lr=0.05, momentum=0.8, dampening=0.3),
        "maximize": dict(lr=0.05, maximize=True),
        "maximize-momentum": dict(lr=0.05, momentum=0.9, nesterov=True, maximize=True),
    },
    "Adagrad": {
        "defaults": dict(),
        "lr_decay": dict(lr_decay=0.1),
        "initial_accumulator_value": dict(initial_accumulator_value=0.3),
        "eps": dict(eps=1e-2),
        "maximize": dict(lr_decay=0.05, maximize=True),
    },
}
CASES = [
    pytest.param(name, kwargs, id=f"{name}-{label}")
    for name, configs in CONFIGS.items()
    for label, kwargs in configs.items()
]
# optimlab's dispatch choices: each must take the same sparse step
DISPATCH = {"default": {}, "foreach": {"foreach": True}, "per-tensor": {"foreach": False}}
# where torch.optim refuses a sparse gradient
REFUSED = [
    pytest.param("SGD", dict(lr=0.05, weight_decay=0.01), "weight_decay", id="SGD-weight_decay"),
    pytest.param(
        "SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01), "weight_decay", id="SGD-momentum"
    ),
    pytest.param("SGD", dict(lr=0.05, fused=True), "fused", id="SGD-fused", marks=needs_native),
    pytest.param("Adagrad", dict(weight_decay=0.01), "weight_decay", id="Adagrad-weight_decay"),
    pytest.param("Adagrad", dict(fused=True), "fused", id="Adagrad-fused", marks=needs_native),
]


def lr_at(step: int, base: float) -> float:
    # changes every step, as a schedule would
    return base * (1.0 + 0.5 * math.sin(step / 2.0))


# --- gradients -------------------------------------------------------------------------------


class Embedding:
    """An ``nn.Embedding(sparse=True)`` and a loss over a batch that repeats rows."""

    def __init__(self, dtype, generator):
        self.module = torch.nn.Embedding(ROWS, WIDTH, sparse=True).to(dtype)
        with torch.no_grad():
            self.module.weight.copy_(torch.randn(ROWS, WIDTH, generator=generator, dtype=dtype))

    @property
    def param(self):
        return self.module.weight

    def backward(self, batch):
        indices, targets = batch
        ((self.module(indices) - targets) ** 2).sum().backward()


class HandMade:
    """A parameter given hand-made sparse gradients: repeated, unsorted indices, uncoalesced."""

    def __init__(self, param):
        self.param = param

    def backward(self, batch):
        self.param.grad = batch.clone()


def batches(kind, dtype, steps=STEPS, seed=1, nan_at=None):
    """The data of each step: an embedding's batch (``"embedding"``), or a hand-made sparse
    gradient with repeated, unsorted indices, of rows as an embedding's (``"rows"``, hybrid)
    or of single elements (``"elements"``, fully sparse)."""
    g = torch.Generator().manual_seed(seed)
    nnz = 12
    for t in range(steps):
        if kind == "embedding":
            indices = torch.randint(0, ROWS, (4, 3), generator=g)
            yield indices, torch.randn(4, 3, WIDTH, generator=g, dtype=dtype)
            continue
        if kind == "rows":
            indices = torch.randint(0, ROWS, (1, nnz), generator=g)
            values = torch.randn(nnz, WIDTH, generator=g, dtype=dtype)
        else:
            rows = torch.randint(0, ROWS, (nnz,), generator=g)
            indices = torch.stack([rows, torch.randint(0, WIDTH, (nnz,), generator=g)])
            values = torch.randn(nnz, generator=g, dtype=dtype)
        indices[:, 1] = indices[:, 0]  # at least one index repeated
        if t == nan_at:
            values[2] = float("nan")
        grad = torch.sparse_coo_tensor(indices, values, (ROWS, WIDTH), check_invariants=True)
        assert not grad.is_coalesced()
        yield grad


def source(kind, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "embedding":
        return Embedding(dtype, g)
    return HandMade(torch.randn(ROWS, WIDTH, generator=g, dtype=dtype).requires_grad_(True))


# --- comparisons ------------------------------------------------------------------------------


def assert_bitwise(a, b, what):
    assert a.layout == b.layout and a.dtype == b.dtype and a.shape == b.shape, what
    if a.layout == torch.sparse_coo:
        assert a.is_coalesced() == b.is_coalesced(), what
        assert torch.equal(a._indices(), b._indices()), what
        a, b = a._values(), b._values()
    assert torch.equal(a, b), what


def assert_same(ours, theirs, p, q):
    """Parameters and state bitwise torch's; optimlab's state may add ``step`` (torch's SGD
    counts no steps: a ``step`` it loaded from optimlab stays as it was)."""
    assert_bitwise(p.detach(), q.detach(), "parameter")
    mine, torchs = ours.state[p], theirs.state[q]
    assert set(torchs) <= set(mine) and set(mine) - set(torchs) <= {"step"}
    for key, value in torchs.items():
        if not (key == "step" and isinstance(theirs, torch.optim.SGD)):
            assert_bitwise(mine[key], value, key)


def snapshot(opt, p):
    return p.detach().clone(), copy.deepcopy(dict(opt.state[p]))


def assert_unchanged(opt, p, before):
    param, state = before
    assert_bitwise(p.detach(), param, "parameter")
    assert set(opt.state[p]) == set(state)
    for key, value in state.items():
        assert_bitwise(opt.state[p][key], value, key)


def run(name, kwargs, kind, dtype, dispatch=None, steps=STEPS):
    """optimlab's and torch's class side by side; compared after every step."""
    ours_source, torch_source = source(kind, dtype), source(kind, dtype)
    base = kwargs.get("lr", 0.01)
    ours = getattr(optimlab, name)([ours_source.param], **{**kwargs, **(dispatch or {})})
    theirs = getattr(torch.optim, name)([torch_source.param], **kwargs)
    for t, batch in enumerate(batches(kind, dtype, steps)):
        for side, opt in ((ours_source, ours), (torch_source, theirs)):
            opt.param_groups[0]["lr"] = lr_at(t, base)
            opt.zero_grad()
            side.backward(batch)
            assert side.param.grad.is_sparse
            opt.step()
        assert_same(ours, theirs, ours_source.param, torch_source.param)
    return ours, theirs, ours_source, torch_source


# --- bitwise torch's ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name, kwargs", CASES)
def test_sparse_steps_are_torchs_bitwise(name, kwargs, kind, dtype):
    run(name, kwargs, kind, dtype)


@pytest.mark.parametrize("dispatch", DISPATCH.values(), ids=DISPATCH.keys())
@pytest.mark.parametrize("name, kwargs", CASES)
def test_every_dispatch_choice_takes_the_same_sparse_step(name, kwargs, dispatch):
    run(name, kwargs, "elements", torch.float64, dispatch)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        pytest.param("SGD", CONFIGS["SGD"]["maximize-momentum"], id="SGD"),
        pytest.param("Adagrad", CONFIGS["Adagrad"]["maximize"], id="Adagrad"),
    ],
)
def test_complex_sparse_steps_are_torchs_bitwise(name, kwargs):
    run(name, kwargs, "rows", torch.complex128)


def test_sgd_keeps_torchs_sparse_momentum_buffer():
    ours, _, source_, _ = run("SGD", CONFIGS["SGD"]["momentum"], "embedding", torch.float64)
    assert ours.state[source_.param]["momentum_buffer"].is_sparse
    assert int(ours.state[source_.param]["step"]) == STEPS


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name, kwargs, argument", REFUSED)
def test_what_torch_refuses_is_refused_with_its_type_and_nothing_changes(
    name, kwargs, argument, kind
):
    dtype = torch.float64
    ours_source, torch_source = source(kind, dtype), source(kind, dtype)
    ours = getattr(optimlab, name)([ours_source.param], **kwargs)
    theirs = getattr(torch.optim, name)([torch_source.param], **kwargs)
    batch = next(batches(kind, dtype))
    torch_source.backward(batch)
    with pytest.raises(Exception) as refused:
        theirs.step()
    ours_source.backward(batch)
    before = snapshot(ours, ours_source.param)
    with pytest.raises(refused.type, match=argument):
        ours.step()
    assert_unchanged(ours, ours_source.param, before)


def test_weight_decay_in_another_group_is_allowed():
    # The refusal is the sparse gradient's group's: a dense group may decay.
    dtype = torch.float64
    runs = []
    for library in (optimlab, torch.optim):
        model = mixed_model(dtype)
        opt = library.SGD(
            [
                {"params": model.embedding.parameters()},
                {"params": model.linear.parameters(), "weight_decay": 0.01},
            ],
            lr=0.05,
            momentum=0.9,
        )
        for batch in mixed_batches(dtype):
            opt.zero_grad()
            model.loss(batch).backward()
            opt.step()
        runs.append((opt, model))
    (ours, model_ours), (theirs, model_theirs) = runs
    for p, q in zip(model_ours.parameters(), model_theirs.parameters()):
        assert_same(ours, theirs, p, q)


# --- a model with sparse and dense parameters ---------------------------------------------------


class Mixed(torch.nn.Module):
    """A bag of embeddings, averaged, then a linear layer: one sparse gradient, two dense."""

    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(ROWS, 4, sparse=True)
        self.linear = torch.nn.Linear(4, 3)

    def loss(self, batch):
        indices, labels = batch
        logits = self.linear(self.embedding(indices).mean(1))
        return torch.nn.functional.cross_entropy(logits, labels)


def mixed_model(dtype):
    torch.manual_seed(0)
    return Mixed().to(dtype)


def mixed_batches(dtype, steps=STEPS):
    g = torch.Generator().manual_seed(2)
    for _ in range(steps):
        yield torch.randint(0, ROWS, (8, 5), generator=g), torch.randint(0, 3, (8,), generator=g)


def tolerance(name, dtype):
    """The dense fused path's documented tolerance (tests/test_fast_path.py): bitwise without
    a square root; with one, rtol 1e-3, atol 1e-4 (float32) / 1e-10, 1e-12 (float64)."""
    if name == "SGD":
        return dict(rtol=0, atol=0)
    return dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "name, kwargs",
    [
        pytest.param("SGD", CONFIGS["SGD"]["nesterov"], id="SGD"),
        pytest.param("Adagrad", CONFIGS["Adagrad"]["lr_decay"], id="Adagrad"),
    ],
)
def test_a_model_with_sparse_and_dense_parameters(name, kwargs, dtype):
    # In one group: the embedding's sparse step, the linear layer's on the default path
    # (fused where this machine compiles it). With fused="exact" everything is torch's
    # bitwise; by default within the fused path's documented tolerance.
    models = {key: mixed_model(dtype) for key in ("default", "exact", "torch")}
    opts = {
        "default": getattr(optimlab, name)(models["default"].parameters(), **kwargs),
        "exact": getattr(optimlab, name)(models["exact"].parameters(), fused="exact", **kwargs),
        "torch": getattr(torch.optim, name)(models["torch"].parameters(), **kwargs),
    }
    for batch in mixed_batches(dtype):
        for key, opt in opts.items():
            opt.zero_grad()
            models[key].loss(batch).backward()
            assert models[key].embedding.weight.grad.is_sparse
            opt.step()
        triples = zip(*(models[key].parameters() for key in ("default", "exact", "torch")))
        for p, e, q in triples:
            assert_same(opts["exact"], opts["torch"], e, q)
            torch.testing.assert_close(p, q, **tolerance(name, dtype))
            for key, value in opts["torch"].state[q].items():
                mine = opts["default"].state[p][key]
                if value.is_sparse:
                    assert_bitwise(mine._indices(), value._indices(), key)
                    mine, value = mine._values(), value._values()
                torch.testing.assert_close(mine, value, **tolerance(name, dtype))
    if native.available():  # the dense parameters really stepped fused
        plan = opts["default"]._fused.plans[id(opts["default"].param_groups[0])]
        weight = models["default"].embedding.weight
        assert any(p is weight for p in plan.others)
        assert {id(p) for p in plan.fused} == {id(p) for p in models["default"].linear.parameters()}


# --- optimlab's policies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kwargs",
    [
        pytest.param("SGD", CONFIGS["SGD"]["momentum"], id="SGD"),
        pytest.param("Adagrad", CONFIGS["Adagrad"]["lr_decay"], id="Adagrad"),
    ],
)
@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_a_sparse_gradient_holding_nan_is_refused_or_skipped(name, kwargs, policy):
    side = source("rows", torch.float64)
    opt = getattr(optimlab, name)([side.param], nonfinite_grads=policy, **kwargs)
    for t, grad in enumerate(batches("rows", torch.float64, steps=4, nan_at=2)):
        side.backward(grad)
        if t < 2:
            opt.step()
            continue
        before = snapshot(opt, side.param)
        if policy == "raise":
            with pytest.raises(optimlab.NonFiniteGradientError, match="holds NaN"):
                opt.step()
        else:
            opt.step()
            assert opt.skipped_steps == 1
        assert_unchanged(opt, side.param, before)
        break


def round_trip(state_dict):
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("direction", ["optimlab-to-torch", "torch-to-optimlab"])
@pytest.mark.parametrize(
    "name, kwargs",
    [
        pytest.param("SGD", CONFIGS["SGD"]["dampening"], id="SGD"),
        pytest.param("Adagrad", CONFIGS["Adagrad"]["lr_decay"], id="Adagrad"),
    ],
)
def test_a_checkpoint_after_sparse_steps_resumes_in_the_other_class(name, kwargs, direction):
    # Saved after sparse steps, loaded into the other library's class, stepped on: bitwise
    # what the saving optimizer computes when it goes on.
    dtype = torch.float32
    grads = list(batches("rows", dtype, steps=2 * STEPS))
    first, second = (optimlab, torch.optim)
    if direction == "torch-to-optimlab":
        first, second = second, first
    side = source("rows", dtype)
    saver = getattr(first, name)([side.param], **kwargs)
    for grad in grads[:STEPS]:
        side.backward(grad)
        saver.step()
    resumed = HandMade(side.param.detach().clone().requires_grad_(True))
    loader = getattr(second, name)([resumed.param], **kwargs)
    loader.load_state_dict(round_trip(saver.state_dict()))
    for grad in grads[STEPS:]:
        for s, opt in ((side, saver), (resumed, loader)):
            s.backward(grad)
            opt.step()
        ours, theirs = (saver, loader) if first is optimlab else (loader, saver)
        p, q = (side.param, resumed.param) if first is optimlab else (resumed.param, side.param)
        assert_same(ours, theirs, p, q)


# --- optimizers without a sparse step ------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adadelta", "Rprop", "ASGD"]
)
def test_optimizers_without_a_sparse_step_refuse_sparse_gradients(name):
    # torch.optim refuses too (with RuntimeError; optimlab's base class says TypeError).
    sides = [source("embedding", torch.float64) for _ in range(2)]
    batch = next(batches("embedding", torch.float64))
    theirs = getattr(torch.optim, name)([sides[1].param])
    sides[1].backward(batch)
    with pytest.raises(RuntimeError, match="sparse"):
        theirs.step()
    ours = getattr(optimlab, name)([sides[0].param])
    sides[0].backward(batch)
    before = snapshot(ours, sides[0].param)
    with pytest.raises(RuntimeError, match="Sparse gradients are not supported"):
        ours.step()
    assert_unchanged(ours, sides[0].param, before)
