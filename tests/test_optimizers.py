"""Generic tests, run over every optimizer configuration in the registry."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from conftest import make_mlp
from registry import CASES
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

import optimlab

TWINS = [c for c in CASES if c.torch_twin is not None]


def varying_lr(step: int, base: float) -> float:
    # Changes every step, so any difference in where lr enters the update shows.
    return base * (1.0 + 0.5 * math.sin(step / 7.0))


def train(model, optimizer, X, y, steps, base_lr, lr_changes=True):
    for t in range(steps):
        if lr_changes:
            for group in optimizer.param_groups:
                group["lr"] = varying_lr(t, base_lr)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        optimizer.step()


@pytest.mark.parametrize("case", TWINS, ids=str)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "per_tensor"])
def test_parity_with_torch_optim(case, dtype, foreach, digits):
    X, y = digits
    X = X.to(dtype)
    ours, theirs = make_mlp(dtype), make_mlp(dtype)
    twin_cls, twin_kwargs = case.torch_twin
    opt_ours = case.make(ours.parameters(), lr=0.01, foreach=foreach)
    opt_theirs = twin_cls(theirs.parameters(), lr=0.01, **twin_kwargs)
    train(ours, opt_ours, X, y, 120, 0.01)
    train(theirs, opt_theirs, X, y, 120, 0.01)
    # Bitwise: both sides call the same ATen operations in the same order (torch.optim's
    # per-tensor loop on the CPU, ours per tensor or through the _foreach_ ops, which on the
    # CPU run those same kernels tensor by tensor), so whatever vector unit ATen picks, both
    # round alike. (It was rtol 1e-12 / 1e-6, a margin tuned to nothing: the parameters agreed
    # to the bit in every case under ATEN_CPU_CAPABILITY=default and avx2.)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_per_tensor_path_equals_multi_tensor_path(case, digits):
    X, y = digits
    models = [make_mlp(), make_mlp()]
    opts = [case.make(m.parameters(), lr=0.01, foreach=f) for m, f in zip(models, (True, False))]
    for m, o in zip(models, opts):
        train(m, o, X, y, 30, 0.01)
    for a, b in zip(*(m.parameters() for m in models)):
        assert torch.equal(a, b)
    for pa, pb in zip(*(m.parameters() for m in models)):
        for key, value in opts[0].state[pa].items():
            other = opts[1].state[pb][key]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_tensor_lr_steps_alike_on_every_path_and_saves(case, digits):
    """lr=torch.tensor(0.01), torch's form (schedules write it in place): every path takes it
    (the schedule-free optimizers and Prodigy crashed on the multi-tensor path, which the
    fused ones fall back to), alike to the bit, and the state saves for weights_only loading."""
    X, y = digits
    models = [make_mlp() for _ in range(3)]
    paths = [{"foreach": False}, {"foreach": True}, {}]
    try:
        case.make(make_mlp().parameters(), lr=torch.tensor(0.01), foreach=True)
    except ValueError as error:  # torch's own refusal, which the twins keep
        assert "lr as a Tensor is not supported for capturable=False and foreach=True" in str(error)
        paths[1] = {"foreach": False}
    opts = [case.make(m.parameters(), lr=torch.tensor(0.01), **kw) for m, kw in zip(models, paths)]
    for m, o in zip(models, opts):
        train(m, o, X, y, 6, 0.01, lr_changes=False)
    for a, b in zip(*(m.parameters() for m in models[:2])):
        assert torch.equal(a, b)
    buffer = io.BytesIO()
    torch.save(opts[2].state_dict(), buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_state_dict_round_trip_continues_bitwise(case, digits, tmp_path):
    X, y = digits
    whole, first = make_mlp(), make_mlp()
    opt_whole = case.make(whole.parameters(), lr=0.01)
    opt_first = case.make(first.parameters(), lr=0.01)
    train(whole, opt_whole, X, y, 10, 0.01, lr_changes=False)
    train(first, opt_first, X, y, 10, 0.01, lr_changes=False)
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": first.state_dict(), "optimizer": opt_first.state_dict()}, path)
    del first, opt_first

    saved = torch.load(path, weights_only=True)
    resumed = make_mlp(seed=123)  # different initial weights: everything comes from the file
    resumed.load_state_dict(saved["model"])
    opt_resumed = case.make(resumed.parameters(), lr=0.5)  # lr comes from the file too
    opt_resumed.load_state_dict(saved["optimizer"])
    train(whole, opt_whole, X, y, 10, 0.01, lr_changes=False)
    train(resumed, opt_resumed, X, y, 10, 0.01, lr_changes=False)
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_deepcopy_is_independent_and_identical(case, digits):
    X, y = digits
    model = make_mlp()
    opt = case.make(model.parameters(), lr=0.01)
    train(model, opt, X, y, 3, 0.01)
    twin_model = copy.deepcopy(model)
    twin_opt = case.make(twin_model.parameters(), lr=0.01)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    clone = copy.deepcopy(opt)
    assert type(clone) is type(opt)
    assert clone.param_groups[0]["params"][0] is not opt.param_groups[0]["params"][0]
    train(model, opt, X, y, 3, 0.01)
    train(twin_model, twin_opt, X, y, 3, 0.01)
    for a, b in zip(model.parameters(), twin_model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_groups_with_different_hyperparameters(case, digits):
    X, y = digits
    model, split = make_mlp(), make_mlp()
    first, second = list(model[0].parameters()), list(model[2].parameters())
    opt = case.make([{"params": first, "lr": 0.03}, {"params": second}], lr=0.01)
    # The same as two separate optimizers, one per group.
    opt_a = case.make(list(split[0].parameters()), lr=0.03)
    opt_b = case.make(list(split[2].parameters()), lr=0.01)
    for _ in range(5):
        for m, opts in ((model, [opt]), (split, [opt_a, opt_b])):
            for o in opts:
                o.zero_grad()
            torch.nn.functional.cross_entropy(m(X), y).backward()
            for o in opts:
                o.step()
    for a, b in zip(model.parameters(), split.parameters()):
        assert torch.equal(a, b)
    assert opt.param_groups[0]["lr"] == 0.03 and opt.param_groups[1]["lr"] == 0.01


@pytest.mark.parametrize("case", CASES, ids=str)
def test_lr_zero_group_and_gradless_parameter_stay_unchanged(case, digits):
    X, y = digits
    model = make_mlp()
    frozen = [p.detach().clone() for p in model[0].parameters()]
    extra = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))  # never gets a gradient
    extra_before = extra.detach().clone()
    opt = case.make(
        [{"params": model[0].parameters(), "lr": 0.0}, {"params": [*model[2].parameters(), extra]}],
        lr=0.01,
    )
    moving = [p.detach().clone() for p in model[2].parameters()]
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    if "lr_is_initial_step_size" not in case.tags:  # Rprop: lr = 0 still moves by step_sizes[0]
        for before, p in zip(frozen, model[0].parameters()):
            assert torch.equal(before, p)
    assert torch.equal(extra_before, extra)
    # no step taken: no state, or (Adagrad's, made at construction as torch's) the first
    assert len(opt.state[extra]) == 0 or int(opt.state[extra]["step"]) == 0
    assert any(not torch.equal(b, p) for b, p in zip(moving, model[2].parameters()))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_maximize_f_equals_minimize_minus_f(case, digits):
    X, y = digits
    up, down = make_mlp(), make_mlp()
    kwargs = {k: v for k, v in case.kwargs.items() if k != "maximize"}
    opt_up = case.cls(up.parameters(), lr=0.01, maximize=True, **kwargs)
    opt_down = case.cls(down.parameters(), lr=0.01, maximize=False, **kwargs)
    losses = []
    for _ in range(5):
        for model, opt, sign in ((up, opt_up, 1.0), (down, opt_down, -1.0)):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X), y)
            (sign * loss).backward()
            opt.step()
            if sign > 0:
                losses.append(loss.item())
    for a, b in zip(up.parameters(), down.parameters()):
        assert torch.equal(a, b)
    assert losses[-1] > losses[0]  # maximize goes uphill


@pytest.mark.parametrize("case", CASES, ids=str)
def test_complex_parameters_are_pairs_of_reals(case):
    torch.manual_seed(0)
    z = torch.randn(3, 4, dtype=torch.complex128, requires_grad=True)
    r = torch.view_as_real(z.detach()).clone().requires_grad_(True)
    target = torch.randn(3, 4, dtype=torch.complex128)
    opt_z, opt_r = case.make([z], lr=0.01), case.make([r], lr=0.01)
    for _ in range(10):
        opt_z.zero_grad()
        opt_r.zero_grad()
        (z - target).abs().pow(2).sum().backward()
        r.grad = torch.view_as_real(z.grad).clone()
        opt_z.step()
        opt_r.step()
    if not opt_z._complex_arithmetic:
        assert torch.equal(torch.view_as_real(z.detach()), r.detach())
    else:  # SGD, as torch's: complex numbers, whose scaled sums (up to 3 a step) round twice
        eps = torch.finfo(torch.float64).eps  # (bitwise torch's: tests/test_sgd.py)
        torch.testing.assert_close(torch.view_as_real(z.detach()), r, rtol=40 * eps, atol=40 * eps)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_closure_and_step_hooks(case):
    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = case.make([w], lr=0.01)
    calls = []
    opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre"))
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post"))

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 5.0
    assert calls == ["pre", "post"]
    assert opt.state[w]["step"] == 1


def _hook_trace(cls, **kwargs):
    """What the hooks of an optimizer of ``cls`` see around one step, global ones included: the
    order they run in, and a pre-hook that replaces the step's arguments (the closure)."""
    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = cls([w], lr=0.1, **kwargs)
    calls = []

    def replaced():
        calls.append("replaced closure")
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    def pre(o, args, kw):
        calls.append(("pre", o is opt, len(args)))
        return (args[0], replaced), kw

    handles = [
        register_optimizer_step_pre_hook(lambda o, a, k: calls.append("global pre")),
        register_optimizer_step_post_hook(lambda o, a, k: calls.append("global post")),
        opt.register_step_pre_hook(pre),
        opt.register_step_post_hook(lambda o, a, k: calls.append(("post", a[1] is replaced))),
    ]
    try:
        loss = opt.step(lambda: None)
    finally:
        for handle in handles:
            handle.remove()
    return calls, loss.item(), w.detach().tolist()


def test_step_hooks_run_as_torchs():
    """optimlab wraps step as torch does (hooks, order, replaced arguments), without opening a
    profiler range when no profiler records: the same trace as torch.optim.SGD's."""
    assert _hook_trace(optimlab.SGD) == _hook_trace(torch.optim.SGD)
    assert _hook_trace(optimlab.Adam, eps=1e-8) == _hook_trace(torch.optim.Adam, eps=1e-8)


def test_step_hook_bad_return_is_torchs_error():
    w = torch.zeros(2, requires_grad=True)
    for cls in (optimlab.SGD, torch.optim.SGD):
        opt = cls([w], lr=0.1)
        opt.register_step_pre_hook(lambda o, a, k: "bad")
        with pytest.raises(RuntimeError, match="must return None or a tuple"):
            opt.step()


def test_step_is_a_profiler_range_while_profiling():
    """Under torch.profiler a step shows as torch names it, ``Optimizer.step#Adam.step``."""
    w = torch.zeros(2, requires_grad=True)
    opt = optimlab.Adam([w], lr=0.1)
    w.grad = torch.ones(2)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step()
    names = [event.name for event in prof.events()]
    assert "Optimizer.step#Adam.step" in names


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bfloat16_parameters(case):
    w = torch.tensor([1.0, 1.0], dtype=torch.bfloat16, requires_grad=True)
    opt = case.make([w], lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        (w.float() ** 2).sum().backward()
        opt.step()
    assert w.dtype == torch.bfloat16 and torch.isfinite(w).all()
    assert all(
        t.dtype == torch.bfloat16
        for k, t in opt.state[w].items()
        if torch.is_tensor(t) and t.dim() > 0  # buffers; not the 0-dim step count or scalars
    )
    if "tiny_first_steps" in case.tags:
        return  # Prodigy: its first steps, d0 * lr, are below bfloat16's resolution at 1
    moved = (w.detach().float() - 1).abs().max().item()
    assert moved > 0
    if "maximize" not in case.tags:
        assert (w.detach().float() < 1).all()


@pytest.mark.parametrize("case", CASES, ids=str)
def test_added_param_group_gets_defaults_and_is_checked(case):
    a = torch.zeros(2, requires_grad=True)
    b = torch.zeros(3, requires_grad=True)
    opt = case.make([a], lr=0.01)
    opt.add_param_group({"params": [b]})
    assert opt.param_groups[1]["lr"] == 0.01
    for name, value in case.kwargs.items():
        assert opt.param_groups[1][name] == value
    # (torch's words: Adafactor's and Muon's say "Learning rate should be >= 0 but is")
    with pytest.raises(
        ValueError, match=r"(Invalid learning rate|Learning rate should .*): -0\.5 \(lr\)"
    ):
        opt.add_param_group({"params": [torch.zeros(1, requires_grad=True)], "lr": -0.5})
    assert len(opt.param_groups) == 2


def test_state_dict_of_torch_adam_loads_into_optimlab_adam(digits):
    # Drop-in migration: a checkpoint written with torch.optim.Adam resumes with optimlab.Adam.
    X, y = digits
    theirs, ours = make_mlp(), make_mlp()
    opt_theirs = torch.optim.Adam(theirs.parameters(), lr=0.01)
    train(theirs, opt_theirs, X, y, 5, 0.01, lr_changes=False)
    buffer = io.BytesIO()
    torch.save({"model": theirs.state_dict(), "opt": opt_theirs.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    ours.load_state_dict(saved["model"])
    saved_group = saved["opt"]["param_groups"][0]
    opt_ours = optimlab.Adam(ours.parameters(), lr=0.01, fused="exact")
    # torch's groups carry torch-only options; optimlab's carry its own: keep the shared ones.
    for key in set(saved_group) - set(opt_ours.param_groups[0]):
        del saved_group[key]
    for key in set(opt_ours.param_groups[0]) - set(saved_group):
        saved_group[key] = opt_ours.param_groups[0][key]
    opt_ours.load_state_dict(saved["opt"])
    train(theirs, opt_theirs, X, y, 5, 0.01, lr_changes=False)
    train(ours, opt_ours, X, y, 5, 0.01, lr_changes=False)
    for a, b in zip(theirs.parameters(), ours.parameters()):
        assert torch.equal(a, b)


def test_mixed_precision_options_that_would_do_nothing_are_refused():
    # stochastic rounding takes float32 updates to bfloat16 parameters: elsewhere it would
    # silently round to nearest, so it is refused, naming the parameter and what is valid
    bf16 = torch.zeros(3, dtype=torch.bfloat16, requires_grad=True)
    half = torch.zeros(3, dtype=torch.float16, requires_grad=True)
    with pytest.raises(ValueError, match=r"Invalid stochastic_rounding=True without state_dtype"):
        optimlab.Adam([bf16], stochastic_rounding=True)
    with pytest.raises(
        ValueError,
        match=r"Invalid stochastic_rounding=True for a torch.float16 parameter \(shape \(3,\)\) "
        r"with state_dtype=torch.float32: .* leave it off",
    ):
        optimlab.Adam([half], state_dtype=torch.float32, stochastic_rounding=True)
    with pytest.raises(
        ValueError,
        match=r"Invalid stochastic_rounding=True with state_dtype=torch.float64: .* "
        r"pass state_dtype=torch.float32",
    ):
        optimlab.Adam([bf16], state_dtype=torch.float64, stochastic_rounding=True)
    # float32 parameters beside the bfloat16 ones need no rounding
    float32 = torch.zeros(3, requires_grad=True)
    opt = optimlab.Adam([bf16, float32], state_dtype=torch.float32, stochastic_rounding=True)
    with pytest.raises(ValueError, match=r"torch.float16 parameter"):  # (added groups too)
        opt.add_param_group({"params": [half]})
