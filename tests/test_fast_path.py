"""The fused path (one compiled loop per rule) gives the plain path's results.

Every optimizer configuration of the registry is run fused and on the multi-tensor path side by
side, on the same model and data: with ``fused="exact"`` they must end with bitwise equal
parameters and state; with the default kernel (correctly rounded square roots) within the
documented tolerance, and bitwise where the rule takes no root. Then
the cases the fused path treats specially: groups added later, frozen parameters, gradients
that are None on some steps, mixed dtypes and layouts, state saved on one path and resumed on
the other, non-finite gradients, and changes behind the plan's back. Timing is never asserted
(the benchmarks measure it).
"""

from __future__ import annotations

import collections
import copy
import io
import math

import pytest
import torch
from conftest import make_mlp
from registry import CASES

import optimlab
from optimlab.fused import native, plancheck
from optimlab.fused.steps import FusedSteps

STEPS = 50


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # `make test` runs two xdist workers on two cores: two OpenMP pools of two threads each
    # spin against each other and make these small steps several times slower. One thread per
    # worker here (the test that needs two threads sets them itself); restored afterwards.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


needs_native = pytest.mark.skipif(
    not native.available(), reason=f"fused path unavailable: {native.unavailable_reason()}"
)


@pytest.fixture(params=["c++", "python"])
def plan_checks(request, monkeypatch):
    """A fused plan's per-step checks: the compiled C++ ones, and the Python ones that serve
    until they are built (or where they cannot be); both must give the same answers."""
    if request.param == "c++":
        # Wherever the fused path runs, the C++ checks must build too (a C++ compiler and the
        # Python headers): fail, with the reason, rather than test one path only.
        assert plancheck.build() is not None, plancheck.unavailable_reason()
    else:
        monkeypatch.setattr(plancheck, "checker", lambda: None)
    return request.param


def assert_planned_with(opt, plan_checks):
    """The last step of ``opt`` ran on plans checked by ``plan_checks``."""
    plans = opt._fused.plans.values()
    assert plans and all(plan.native_checked == (plan_checks == "c++") for plan in plans)


def lr_at(step: int, base: float = 0.01) -> float:
    # Changes every step, so a learning rate baked into a compiled kernel would show.
    return base * (1.0 + 0.5 * math.sin(step / 7.0))


def train(model, optimizer, X, y, steps, start=0):
    for t in range(start, start + steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(t, group.get("base_lr", 0.01))
        optimizer.zero_grad()  # set_to_none: new gradient tensors every step
        torch.nn.functional.cross_entropy(model(X), y).backward()
        optimizer.step()


def assert_same(opt_a, opt_b, params_a, params_b):
    params_a, params_b = list(params_a), list(params_b)
    assert len(params_a) == len(params_b)
    for a, b in zip(params_a, params_b):
        assert torch.equal(a, b)
        state_a, state_b = opt_a.state[a], opt_b.state[b]
        assert state_a.keys() == state_b.keys()
        for key, value in state_a.items():
            if torch.is_tensor(value):
                assert torch.equal(value, state_b[key]), key
            else:
                assert value == state_b[key], key


# Optimizers whose rules need reductions (norms, matrix products) have no fused path.
FUSABLE = [c for c in CASES if c.cls._unfusable_reason is None]
UNFUSABLE_CLASSES = sorted({c.cls for c in CASES} - {c.cls for c in FUSABLE}, key=str)


def uses_square_root(opt) -> bool:
    """Whether the optimizer's recorded rule takes a square root (fused=True rounds it apart)."""
    group = opt.param_groups[0]
    names = opt._buffer_names(group)
    state = opt._init_state(group["params"][0], group)
    for step in (1, 2, 10, 1000):  # some rules take roots only later (RAdam from step 6)
        tape = FusedSteps(opt).record(opt._arguments(group, state, step), names)
        if any(op in ("sqrt", "sqrt_") for op, *_ in tape.program.instructions):
            return True
    return False


@pytest.mark.parametrize("cls", UNFUSABLE_CLASSES, ids=lambda c: c.__name__)
def test_optimizers_without_a_fused_path_refuse_fused_true_and_step_plainly(cls):
    w = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match=rf"Invalid fused=True: {cls.__name__} has no fused path"):
        cls([w], lr=0.1, fused=True)
    opt = cls([w], lr=0.1)
    assert not opt._fused.wanted(opt.param_groups[0])


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("case", FUSABLE, ids=str)
def test_exact_fused_equals_plain_for_every_optimizer(case, dtype, digits):
    X, y = digits
    X = X.to(dtype)
    fused_model, plain_model = make_mlp(dtype), make_mlp(dtype)
    fused = case.make(fused_model.parameters(), lr=0.01, fused="exact")
    plain = case.make(plain_model.parameters(), lr=0.01, fused=False)
    train(fused_model, fused, X, y, STEPS)
    train(plain_model, plain, X, y, STEPS)
    assert_same(fused, plain, fused_model.parameters(), plain_model.parameters())
    # The fused run really ran fused: the plan of its only group is in place.
    assert fused._fused.ready(fused.param_groups[0]) is not None
    assert not torch.equal(fused_model[0].weight, make_mlp(dtype)[0].weight)


MIXED_STEPS = 8


@needs_native
@pytest.mark.parametrize("stochastic", [False, True], ids=["nearest", "stochastic"])
@pytest.mark.parametrize("case", FUSABLE, ids=str)
def test_bfloat16_with_float32_state_fused_equals_plain(case, stochastic, digits, plan_checks):
    # bfloat16 parameters and gradients, float32 state: the plain path steps float32 copies
    # and rounds them back (to nearest even as Tensor.copy_, or core.precision's stochastic
    # rounding); the kernel widens, runs the float32 loop and rounds alike, bit for bit
    X, y = digits
    X = X.to(torch.bfloat16)
    runs = []
    for fused in ("exact", False):
        model = make_mlp(torch.bfloat16)
        opt = case.make(
            model.parameters(), lr=0.01, fused=fused, state_dtype=torch.float32,
            stochastic_rounding=stochastic,
        )  # fmt: skip
        train(model, opt, X, y, MIXED_STEPS)
        runs.append((model, opt))
    (fused_model, fused), (plain_model, plain) = runs
    assert_same(fused, plain, fused_model.parameters(), plain_model.parameters())
    plan = fused._fused.ready(fused.param_groups[0])
    assert plan is not None and len(plan.fused) == 4 and plan.buckets[0].storage == torch.bfloat16
    assert_planned_with(fused, plan_checks)
    assert not torch.equal(fused_model[0].weight, make_mlp(torch.bfloat16)[0].weight)


@needs_native
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_bfloat16_gradients_on_the_fused_path(bad, plan_checks):
    w = torch.ones(100_000, dtype=torch.bfloat16, requires_grad=True)
    opt = optimlab.Adam([w], lr=0.1, state_dtype=torch.float32)
    for _ in range(2):  # the second step is planned
        w.grad = torch.full_like(w, 3.0e38)  # large, finite: no alarm
        opt.step()
    assert opt._fused.ready(opt.param_groups[0]) is not None
    before = [w.detach().clone(), opt.state[w]["exp_avg"].clone()]
    w.grad[77_777] = bad
    with pytest.raises(optimlab.NonFiniteGradientError, match=r"parameter 0 of group 0"):
        opt.step()
    assert all(torch.equal(x, y) for x, y in zip(before, [w, opt.state[w]["exp_avg"]]))
    assert native.any_nonfinite([w.grad]) and not native.any_nonfinite([w.detach()])


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("case", FUSABLE, ids=str)
def test_fused_is_within_the_documented_tolerance(case, dtype, digits):
    # The fused path (fused=None, the default, and fused=True: the same kernel) computes square
    # roots with the CPU's correctly rounded instruction; the plain
    # CPU path's (MKL's vector sqrt) is within 1 ulp of it. Documented tolerance: each step,
    # taken from the same state, gives every element of the parameters and state within
    # 8 eps * (the tensor's largest magnitude) + 64 eps * lr of the plain path's; 50 steps in a
    # row agree within rtol 1e-3, atol 1e-4 (float32) / 1e-10, 1e-12 (float64). Without a
    # square root (SGD, Momentum, ...): bitwise.
    X, y = digits
    X = X.to(dtype)
    eps = torch.finfo(dtype).eps
    models = two_models(dtype)
    fast = case.make(models[0].parameters(), lr=0.01, fused=True)
    plain = case.make(models[1].parameters(), lr=0.01, fused=False)
    drift = two_models(dtype)
    drift_opts = [
        case.make(drift[0].parameters(), lr=0.01, fused=True),
        case.make(drift[1].parameters(), lr=0.01, fused=False),
    ]
    for t in range(STEPS):
        lr = lr_at(t)
        for model, opt in [*zip(models, (fast, plain)), *zip(drift, drift_opts)]:
            opt.param_groups[0]["lr"] = lr
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(X), y).backward()
            opt.step()
        exact = not uses_square_root(plain)
        for a, b in zip(models[0].parameters(), models[1].parameters()):
            pairs = [(a, b)] + [
                (fast.state[a][k], plain.state[b][k])
                for k in fast.state[a]
                if torch.is_tensor(fast.state[a][k])
            ]
            scalars = [k for k in fast.state[a] if not torch.is_tensor(fast.state[a][k])]
            assert all(fast.state[a][k] == plain.state[b][k] for k in scalars)
            for x, z in pairs:
                if exact:
                    assert torch.equal(x, z)
                else:
                    scale = float(z.detach().abs().max())
                    torch.testing.assert_close(
                        x, z, rtol=8 * eps, atol=8 * eps * scale + 64 * eps * lr
                    )
            # Resynchronize: the next step starts from the same state again.
            with torch.no_grad():
                for x, z in pairs:
                    x.copy_(z)
    rtol, atol = (1e-10, 1e-12) if dtype == torch.float64 else (1e-3, 1e-4)
    for a, b in zip(drift[0].parameters(), drift[1].parameters()):
        if not uses_square_root(plain):
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


@needs_native
def test_default_is_fused_and_naming_foreach_asks_for_the_plain_path():
    w = torch.zeros(3, requires_grad=True)
    for kwargs, fused in [
        ({}, True),
        ({"foreach": True}, False),
        ({"foreach": False}, False),
        ({"fused": False}, False),
        ({"fused": True}, True),
        ({"fused": "exact"}, True),
        ({"fused": "exact", "foreach": False}, True),
    ]:
        opt = optimlab.Adam([w], lr=0.1, **kwargs)
        assert opt._fused.wanted(opt.param_groups[0]) is fused, kwargs


@needs_native
@pytest.mark.parametrize("case", CASES, ids=str)
def test_complex_parameters_fused(case):
    torch.manual_seed(0)
    z_fused = torch.randn(3, 4, dtype=torch.complex128, requires_grad=True)
    z_plain = z_fused.detach().clone().requires_grad_(True)
    target = torch.randn(3, 4, dtype=torch.complex128)
    opts = [
        case.make([z_fused], lr=0.01, fused="exact"),
        case.make([z_plain], lr=0.01, fused=False),
    ]
    for _ in range(20):
        for z, opt in zip((z_fused, z_plain), opts):
            opt.zero_grad()
            (z - target).abs().pow(2).sum().backward()
            opt.step()
    assert_same(*opts, [z_fused], [z_plain])


def two_models(dtype=torch.float64):
    return make_mlp(dtype), make_mlp(dtype)


@needs_native
@pytest.mark.parametrize("name", ["sgd-momentum", "rmsprop-centered-momentum", "adam-amsgrad"])
def test_added_param_group(name, digits, plan_checks):
    case = next(c for c in CASES if c.id == name)
    X, y = digits
    models = two_models()
    opts = [
        case.make(list(m[0].parameters()), lr=0.01, fused=f)
        for m, f in zip(models, ("exact", False))
    ]
    for model, opt in zip(models, opts):
        train(model, opt, X, y, 10)
        opt.add_param_group({"params": list(model[2].parameters()), "base_lr": 0.03})
        train(model, opt, X, y, STEPS - 10, start=10)
    assert_same(*opts, *(m.parameters() for m in models))
    assert opts[0].state[models[0][2].weight]["step"] == STEPS - 10
    assert_planned_with(opts[0], plan_checks)


@needs_native
@pytest.mark.parametrize("name", ["sgd-momentum", "momentum-ema-bias_correction", "adam", "asgd"])
def test_frozen_parameters_and_gradients_missing_on_some_steps(name, digits, plan_checks):
    # A frozen layer, a parameter that never gets a gradient, and a layer whose gradient is
    # dropped on every third step: step counts diverge, so the fused path sees several buckets.
    case = next(c for c in CASES if c.id == name)
    X, y = digits
    models = two_models()
    extras = [torch.nn.Parameter(torch.ones(4, dtype=torch.float64)) for _ in models]
    opts = []
    for model, extra, fused in zip(models, extras, ("exact", False)):
        model[0].bias.requires_grad_(False)
        opts.append(case.make([*model.parameters(), extra], lr=0.01, fused=fused))
    frozen = models[0][0].bias.detach().clone()
    for t in range(STEPS):
        for model, opt in zip(models, opts):
            opt.param_groups[0]["lr"] = lr_at(t)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(X), y).backward()
            if t % 3 == 1:
                model[2].weight.grad = None
            opt.step()
    assert_same(*opts, [*models[0].parameters(), extras[0]], [*models[1].parameters(), extras[1]])
    assert torch.equal(models[0][0].bias, frozen)
    assert len(opts[0].state[extras[0]]) == 0 and len(opts[0].state[models[0][0].bias]) == 0
    steps = {int(opts[0].state[p]["step"]) for p in models[0].parameters() if p.requires_grad}
    assert steps == {STEPS, STEPS - len(range(1, STEPS, 3))}


@needs_native
@pytest.mark.parametrize("name", ["sgd-nesterov", "rmsprop", "adamw", "asgd"])
def test_mixed_dtypes_and_layouts_in_one_group(name, plan_checks):
    # float32, float64 and complex64 are fused; bfloat16 and a transposed (non-contiguous)
    # parameter take the multi-tensor path within the same step.
    case = next(c for c in CASES if c.id == name)
    torch.manual_seed(0)

    def make():
        g = torch.Generator().manual_seed(1)
        return [
            torch.randn(70, generator=g).requires_grad_(True),
            torch.randn(5, 3, generator=g, dtype=torch.float64).requires_grad_(True),
            torch.randn(6, generator=g, dtype=torch.complex64).requires_grad_(True),
            torch.randn(8, generator=g).to(torch.bfloat16).requires_grad_(True),
            torch.randn(4, 9, generator=g).t().requires_grad_(True),
        ]

    runs = []
    for fused in ("exact", False):
        params = make()
        opt = case.make(params, lr=0.01, fused=fused)
        for t in range(30):
            opt.param_groups[0]["lr"] = lr_at(t)
            opt.zero_grad()
            sum((p.abs() ** 2).sum().float() * (i + 1) for i, p in enumerate(params)).backward()
            opt.step()
        runs.append((opt, params))
    (opt_f, params_f), (opt_p, params_p) = runs
    assert not params_f[4].is_contiguous()
    assert_same(opt_f, opt_p, params_f, params_p)
    plan = opt_f._fused.ready(opt_f.param_groups[0])
    assert plan is not None and len(plan.fused) == 3 and len(plan.others) == 2


@needs_native
@pytest.mark.parametrize("name", ["sgd-momentum", "rmsprop-centered-momentum", "adam"])
@pytest.mark.parametrize("direction", ["fused-to-plain", "plain-to-fused"])
def test_state_dict_resumes_on_the_other_path(name, direction, digits):
    case = next(c for c in CASES if c.id == name)
    first, second = ("exact", False) if direction == "fused-to-plain" else (False, "exact")
    X, y = digits
    whole, part = two_models()
    opt_whole = case.make(whole.parameters(), lr=0.01, fused=second)
    opt_part = case.make(part.parameters(), lr=0.01, fused=first)
    train(whole, opt_whole, X, y, 20)
    train(part, opt_part, X, y, 20)
    buffer = io.BytesIO()
    torch.save({"model": part.state_dict(), "optimizer": opt_part.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = make_mlp(seed=7)
    resumed.load_state_dict(saved["model"])
    opt_resumed = case.make(resumed.parameters(), lr=0.5, fused=second)
    opt_resumed.load_state_dict(saved["optimizer"])
    assert opt_resumed.param_groups[0]["fused"] == second  # the dispatch choice stays ours
    train(whole, opt_whole, X, y, STEPS - 20, start=20)
    train(resumed, opt_resumed, X, y, STEPS - 20, start=20)
    assert_same(opt_whole, opt_resumed, whole.parameters(), resumed.parameters())


@needs_native
def test_loading_state_mid_run_replaces_what_the_plan_held(digits, plan_checks):
    X, y = digits
    models = two_models()
    opts = [
        optimlab.Adam(m.parameters(), lr=0.01, fused=f) for m, f in zip(models, ("exact", False))
    ]
    for model, opt in zip(models, opts):
        train(model, opt, X, y, 5)
    snapshot = copy.deepcopy(opts[1].state_dict())
    for model, opt in zip(models, opts):
        opt.load_state_dict(snapshot)
        train(model, opt, X, y, 5, start=5)
    assert_same(*opts, *(m.parameters() for m in models))


@needs_native
def test_changes_behind_the_plans_back_are_seen(digits, plan_checks):
    # Replacing a parameter's data, a state buffer, a state dict, or the whole state between
    # steps must be honoured as on the plain path, never update stale memory.
    X, y = digits
    models = two_models()
    opts = [
        optimlab.Adam(m.parameters(), lr=0.01, fused=f) for m, f in zip(models, ("exact", False))
    ]
    changes = [
        lambda m, o: setattr(m[0].weight, "data", m[0].weight.data.clone()),
        lambda m, o: o.state[m[2].weight].__setitem__(
            "exp_avg", o.state[m[2].weight]["exp_avg"] * 0.5
        ),
        lambda m, o: o.state.__setitem__(m[2].bias, dict(o.state[m[2].bias])),
        lambda m, o: o.state[m[0].bias].__setitem__("step", 1),  # one step count reset
        lambda m, o: setattr(o, "state", collections.defaultdict(dict, o.state)),
    ]
    for k, change in enumerate(changes):
        for model, opt in zip(models, opts):
            train(model, opt, X, y, 3, start=3 * k)
            change(model, opt)
    for model, opt in zip(models, opts):
        train(model, opt, X, y, 3, start=15)
    assert_same(*opts, *(m.parameters() for m in models))


@needs_native
@pytest.mark.parametrize("name", ["sgd-momentum", "adam", "rmsprop-centered-momentum"])
def test_parameters_on_another_device_share_the_step(name, plan_checks):
    # CPU parameters take the fused loop; one on another device (a GPU where there is one,
    # else the meta device, which has shapes but no data) takes the multi-tensor path in the
    # same step. The CPU ones must end as on the plain path.
    case = next(c for c in CASES if c.id == name)
    other = "cuda" if torch.cuda.is_available() else "meta"
    g = torch.Generator().manual_seed(5)
    start = [torch.randn(40, generator=g), torch.randn(3, 7, generator=g)]
    grads = [[torch.randn(t.shape, generator=g) for t in start] for _ in range(12)]
    runs = []
    for fused in ("exact", False):
        params = [t.clone().requires_grad_(True) for t in start]
        far = torch.ones(6, device=other, requires_grad=True)
        policy = "raise" if other == "cuda" else "ignore"  # a meta tensor has no values to check
        opt = case.make([*params, far], lr=0.01, fused=fused, nonfinite_grads=policy)
        for step_grads in grads:
            for p, grad in zip(params, step_grads):
                p.grad = grad.clone()
            far.grad = torch.full((6,), 0.5, device=other)
            opt.step()
        assert opt.state[far]["step"] == len(grads)
        runs.append((opt, params, far))
    (opt_f, params_f, far_f), (opt_p, params_p, far_p) = runs
    plan = opt_f._fused.ready(opt_f.param_groups[0])
    assert plan is not None and plan.others == [far_f] and len(plan.fused) == 2
    for a, b in zip(params_f, params_p):
        assert torch.equal(a, b)
    if other == "cuda":
        assert torch.equal(far_f, far_p)


@needs_native
def test_gradients_the_kernel_cannot_read_are_seen(plan_checks):
    # Between planned steps a gradient turns non-contiguous, lazily conjugated or negated,
    # sparse, None, or appears where there was none: each step must still be what the plain
    # path computes (the plan is dropped, the general path steps).
    g = torch.Generator().manual_seed(3)
    shapes = [(6, 5), (4,), (3, 3)]
    start = [
        torch.randn(s, generator=g, dtype=torch.complex128 if k == 2 else torch.float64)
        for k, s in enumerate(shapes)
    ]
    grads = [
        [torch.randn(s, generator=g, dtype=t.dtype) for t, s in zip(start, shapes)]
        for _ in range(16)
    ]
    runs = []
    for fused in ("exact", False):
        params = [t.clone().requires_grad_(True) for t in start]
        opt = optimlab.Adam(params, lr=0.05, fused=fused)
        for k, step_grads in enumerate(grads):
            for p, grad in zip(params, step_grads):
                p.grad = grad.clone()
            if k == 3:
                params[0].grad = params[0].grad.t().contiguous().t()  # same values, transposed
            if k == 5:
                params[2].grad = params[2].grad.conj().conj_physical().conj()  # conj bit set
            if k == 7:
                params[1].grad = None
            if k == 11:
                params[1].grad = params[1].grad.to_sparse()
                with pytest.raises(RuntimeError, match="Sparse gradients are not supported"):
                    opt.step()
                params[1].grad = params[1].grad.to_dense()
            if k == 13:
                params[1].grad = (-params[1].grad * 1j).conj().imag  # same values, negated bit
                assert params[1].grad.is_neg()
            opt.step()
            if k in (2, 15):
                assert fused != "exact" or opt._fused.ready(opt.param_groups[0]) is not None
        runs.append((opt, params))
    assert params[0].grad.is_contiguous() and not runs[0][1][2].grad.is_conj()
    assert_same(runs[0][0], runs[1][0], runs[0][1], runs[1][1])
    assert_planned_with(runs[0][0], plan_checks)


@needs_native
@pytest.mark.parametrize("threads", [1, 2])
def test_large_tensors_split_over_threads(threads, plan_checks):
    # Tensors large enough that each step is split over threads, with sizes that are not
    # multiples of the vector width or of the split.
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        runs = []
        for fused in ("exact", False):
            g = torch.Generator().manual_seed(0)
            params = [
                torch.randn(n, generator=g).requires_grad_(True) for n in (150_001, 3, 77_777)
            ]
            opt = optimlab.RMSprop(params, lr=0.01, centered=True, momentum=0.9, fused=fused)
            for _ in range(5):
                for p in params:
                    p.grad = torch.randn(p.shape, generator=g)
                opt.step()
            runs.append((opt, params))
        assert_same(runs[0][0], runs[1][0], runs[0][1], runs[1][1])
    finally:
        torch.set_num_threads(previous)


@needs_native
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_gradients_on_the_fused_path(bad, plan_checks):
    w = torch.ones(100_000, requires_grad=True)
    b = torch.ones(3, requires_grad=True)
    opt = optimlab.Adam([{"params": [w]}, {"params": [b]}], lr=0.1)
    for _ in range(2):  # the second step is planned
        w.grad, b.grad = torch.ones_like(w), torch.ones_like(b)
        opt.step()
    before = [w.detach().clone(), b.detach().clone(), opt.state[w]["exp_avg"].clone()]
    w.grad[77_777] = bad
    with pytest.raises(
        optimlab.NonFiniteGradientError, match=r"parameter 0 of group 0 \(shape \(100000,\)\)"
    ):
        opt.step()
    opt.nonfinite_grads = "skip"
    opt.step()
    assert opt.skipped_steps == 1
    assert all(torch.equal(x, y) for x, y in zip(before, [w, b, opt.state[w]["exp_avg"]]))
    assert opt.state[w]["step"] == 2


def test_bad_fused_arguments():
    w = torch.zeros(2, requires_grad=True)
    expected = r"expected None, True, False, 'exact' or 'triton'"
    with pytest.raises(ValueError, match=rf"Invalid fused value: 'yes'; {expected}"):
        optimlab.SGD([w], fused="yes")
    with pytest.raises(TypeError, match=rf"Invalid fused value: 1; {expected}"):
        optimlab.SGD([w], fused=1)
    with pytest.raises(RuntimeError, match=r"Invalid fused=True with foreach=True"):
        optimlab.Adam([w], fused=True, foreach=True)
    with pytest.raises(RuntimeError, match=r"Invalid fused='exact' with foreach=True"):
        optimlab.Adam([w], fused="exact", foreach=True)


def test_without_a_compiler_the_default_falls_back_and_fused_true_says_why(monkeypatch):
    monkeypatch.setattr(native, "unavailable_reason", lambda: "no C compiler found")
    w = torch.zeros(2, requires_grad=True)
    opt = optimlab.Adam([w], lr=0.1)
    w.grad = torch.ones(2)
    opt.step()
    opt.step()
    assert (
        not opt._fused.wanted(opt.param_groups[0]) and opt._fused.ready(opt.param_groups[0]) is None
    )
    with pytest.raises(RuntimeError, match=r"fused=True, but the fused path cannot run here: no C"):
        optimlab.Adam([w], lr=0.1, fused=True)
    # "exact" promises the plain path's bits, which the plain path gives: no error.
    exact = optimlab.Adam([w], lr=0.1, fused="exact")
    exact.step()
    assert exact._fused.ready(exact.param_groups[0]) is None


@needs_native
def test_deepcopy_of_a_fused_optimizer_steps_on_its_own(digits, plan_checks):
    X, y = digits
    model = make_mlp()
    opt = optimlab.Adam(model.parameters(), lr=0.01, nonfinite_grads="skip")
    train(model, opt, X, y, 3)
    twin_model = copy.deepcopy(model)
    twin = optimlab.Adam(twin_model.parameters(), lr=0.01)
    twin.load_state_dict(copy.deepcopy(opt).state_dict())
    clone = copy.deepcopy(opt)
    assert clone.nonfinite_grads == "skip" and clone._fused is not opt._fused
    assert clone._fused.plans == {}  # (its plans hold the original's pointers: not copied)
    train(model, opt, X, y, 3, start=3)
    train(twin_model, twin, X, y, 3, start=3)
    assert_same(opt, twin, model.parameters(), twin_model.parameters())


@needs_native
def test_in_place_writes_are_seen_by_autograd_as_on_the_plain_path(plan_checks):
    # The fused kernel writes through raw pointers; it bumps the version counters as PyTorch's
    # in-place operations do, so a parameter saved for backward and then stepped is reported.
    for fused in (None, False):
        w = torch.ones(3, requires_grad=True)
        opt = optimlab.Adam([w], lr=0.1, fused=fused)
        for _ in range(3):  # the second and third steps are planned
            before = w._version
            loss = (w * w).sum()  # saves w for backward
            w.grad = torch.ones(3)
            opt.step()
            assert w._version > before
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                loss.backward()


@needs_native
def test_a_group_s_changed_dispatch_choice_takes_effect_at_the_next_step(plan_checks):
    # `fused` and `foreach` are the group's to change between steps: a plan made for one
    # choice is not taken under another (the general path steps and plans afresh)
    params = [torch.randn(100, requires_grad=True) for _ in range(2)]
    opt = optimlab.Adam(params, lr=0.01)
    for fused, foreach in ((None, None), (False, None), (None, None), (None, True), (None, None)):
        opt.param_groups[0].update(fused=fused, foreach=foreach)
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
        planned = opt._fused.ready(opt.param_groups[0]) is not None
        assert planned == (fused is None and foreach is None), (fused, foreach)


def _edited_step_error(cls, edit, **options):
    """What the step after ``edit`` to the group (after one step) raises: (type, message)."""
    params = [torch.randn(100, requires_grad=True) for _ in range(2)]
    opt = cls(params, lr=0.01, **options)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    opt.param_groups[0].update(edit)
    with pytest.raises(Exception) as raised:
        opt.step()
    return type(raised.value), str(raised.value)


@needs_native
@pytest.mark.parametrize(
    "name, edit",
    [
        ("Adam", {"amsgrad": True}),  # a buffer the state lacks: torch's KeyError
        ("RMSprop", {"momentum": 0.9}),
        ("RMSprop", {"centered": True}),
        ("Adam", {"betas": (0.9, 1.5)}),  # a complex bias correction: torch's RuntimeError
    ],
)
def test_a_group_edited_between_steps_raises_what_torch_raises(name, edit, plan_checks):
    # (the plan of the first step took other buffers, or real scalars: the general path
    # takes the step, and raises as fused=False does)
    expected = _edited_step_error(getattr(torch.optim, name), edit, foreach=False)
    assert _edited_step_error(getattr(optimlab, name), edit, fused=False) == expected
    assert _edited_step_error(getattr(optimlab, name), edit) == expected
    for fused in (True, "triton"):
        error, message = _edited_step_error(getattr(optimlab, name), edit, fused=fused)
        if "betas" not in edit:  # the same missing buffer
            assert (error, message) == expected
        else:  # insisting on a kernel: why there is none
            assert error is RuntimeError and "cannot be fused: it computes a complex" in message
