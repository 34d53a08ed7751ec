"""Adagrad, Adadelta, Rprop and ASGD beyond the generic tests: torch's arguments, the cases the
generic parity test does not reach (parameters skipping steps, complex parameters, torch's
default dtype, torch's checkpoints), and ASGD's averaged weights against a direct average."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch

import optimlab

NAMES = ["Adagrad", "Adadelta", "Rprop", "ASGD"]
# Settings under which every part of each rule is exercised (ASGD averages from step 3 on).
KWARGS = {
    "Adagrad": dict(lr_decay=0.05, initial_accumulator_value=0.2, weight_decay=0.01),
    "Adadelta": dict(rho=0.8, eps=1e-3, weight_decay=0.01),
    "Rprop": dict(etas=(0.4, 1.3), step_sizes=(1e-3, 0.5)),
    "ASGD": dict(lambd=0.1, alpha=0.6, t0=2, weight_decay=0.01),
}


def lr_at(step: int) -> float:
    return 0.05 * (1 + 0.5 * math.sin(step / 3))  # changes every step


def quadratic_loss(params):
    # An ill-conditioned quadratic; its gradient flips sign often enough for Rprop's branches.
    return sum((k + 1.0) * (p.abs() ** 2).sum() - p.real.sum() for k, p in enumerate(params))


def run_side_by_side(name, params_ours, params_theirs, steps, has_grad=None, **extra):
    kwargs = dict(KWARGS[name], **extra)
    if kwargs.get("foreach") is None:
        kwargs.setdefault("fused", "exact")  # torch's bits, square roots included
    ours = getattr(optimlab, name)(params_ours, lr=lr_at(0), **kwargs)
    kwargs.pop("foreach", None)
    kwargs.pop("fused", None)
    theirs = getattr(torch.optim, name)(params_theirs, lr=lr_at(0), **kwargs)
    for t in range(steps):
        for opt, params in ((ours, params_ours), (theirs, params_theirs)):
            opt.param_groups[0]["lr"] = lr_at(t)
            opt.zero_grad()
            quadratic_loss(params).backward()
            if has_grad is not None:
                for p, keep in zip(params, has_grad(t)):
                    if not keep:
                        p.grad = None
            opt.step()
    return ours, theirs


def fresh(dtype=torch.float64, shapes=((3, 4), (5,), (2,))):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(s, generator=g, dtype=dtype).requires_grad_(True) for s in shapes]


def copies(params):
    return [p.detach().clone().requires_grad_(True) for p in params]


def assert_same_state(ours, theirs, params_ours, params_theirs):
    for p, q in zip(params_ours, params_theirs):
        assert torch.equal(p, q)
        mine, torchs = ours.state[p], theirs.state[q]
        assert set(mine) == set(torchs)  # torch's state entries, under torch's names
        for key, value in torchs.items():
            if key == "step":
                assert mine[key] == int(value.item())
            elif value.dim() == 0:  # ASGD's eta and mu: torch's 0-d tensors, our floats
                assert mine[key] == value.item(), key
            else:
                assert torch.equal(mine[key], value), key


@pytest.mark.parametrize("name", NAMES)
def test_arguments_and_defaults_are_torchs(name):
    ours = inspect.signature(getattr(optimlab, name)).parameters
    theirs = inspect.signature(getattr(torch.optim, name)).parameters
    for argument, parameter in theirs.items():
        if argument in ("params", "differentiable", "capturable"):
            continue  # autograd through the step and CUDA graphs: not offered
        assert argument in ours, argument
        assert ours[argument].default == parameter.default, argument
    assert ours["nonfinite_grads"].default == "raise"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("path", [{}, {"foreach": True}, {"foreach": False}], ids=str)
def test_parameters_that_skip_steps_match_torch(name, path):
    # Parameters without a gradient on some steps have their own step counts, and for ASGD
    # their own eta: the first two parameters reach their 2nd step together at step 4, one
    # with the eta of step 2's learning rate, the other with step 3's (two calls of the rule).
    pattern = {0: (1, 1, 1), 1: (1, 0, 1), 2: (0, 1, 0)}
    params = fresh()
    ours, theirs = run_side_by_side(
        name, params, copies(params), 12, lambda t: pattern.get(t, (1, 1, t % 3)), **path
    )
    assert_same_state(ours, theirs, *(o.param_groups[0]["params"] for o in (ours, theirs)))


@pytest.mark.parametrize("name", NAMES)
def test_complex_parameters_match_torch(name):
    params = fresh(torch.complex128)
    start = copies(params)
    ours, theirs = run_side_by_side(name, params, copies(params), 10)
    for p, q, p0 in zip(params, theirs.param_groups[0]["params"], start):
        # torch steps Adadelta's complex weights by a complex product: equal up to rounding,
        # rtol=1e-13 (450 ulp) over 10 steps of about ten roundings each (the product's own
        # four), on entries of order 1 that do not cancel
        torch.testing.assert_close(p, q, rtol=1e-13, atol=1e-15)
        assert (p - p0).abs().min() > 1e-3  # real and imaginary parts both moved


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("default", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_torchs_default_dtype_is_honoured(name, default, dtype):
    # torch keeps per-parameter scalars (ASGD's eta and mu) in its default scalar dtype:
    # float32 values unless the default dtype is float64, whatever the parameters' dtype.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        params = fresh(dtype)
        ours, theirs = run_side_by_side(name, params, copies(params), 15)
    finally:
        torch.set_default_dtype(previous)
    assert_same_state(ours, theirs, *(o.param_groups[0]["params"] for o in (ours, theirs)))
    if name == "ASGD":
        eta = ours.state[ours.param_groups[0]["params"][0]]["eta"]
        assert (eta == float(np.float32(eta))) is (default == torch.float32)


@pytest.mark.parametrize("name", NAMES)
def test_a_torch_checkpoint_resumes(name):
    # Drop-in migration: the state torch.optim wrote (0-d tensor steps and scalars) loads and
    # continues exactly as torch continues.
    params = fresh()
    mine = copies(params)
    _, theirs = run_side_by_side(name, copies(params), params, 6)
    saved = theirs.state_dict()
    with torch.no_grad():
        for p, q in zip(mine, params):
            p.copy_(q)
    ours = getattr(optimlab, name)(mine, lr=1.0, fused="exact", **KWARGS[name])
    group = saved["param_groups"][0]
    for key in set(group) - set(ours.param_groups[0]):
        del group[key]  # torch-only options (differentiable, capturable, ...)
    for key in set(ours.param_groups[0]) - set(group):
        group[key] = ours.param_groups[0][key]
    ours.load_state_dict(saved)
    for t in range(6, 12):
        for opt, ps in ((ours, mine), (theirs, params)):
            opt.param_groups[0]["lr"] = lr_at(t)
            opt.zero_grad()
            quadratic_loss(ps).backward()
            opt.step()
    assert_same_state(ours, theirs, mine, params)


def test_rprop_reads_lr_only_as_the_initial_step_size():
    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = optimlab.Rprop([w], lr=0.0, step_sizes=(1e-4, 1.0))
    w.grad = torch.tensor([1.0, 1.0], dtype=torch.float64)
    opt.step()  # a step size of 0 is raised to the minimum: lr = 0 still moves
    assert w.tolist() == [1.0 - 1e-4, -2.0 - 1e-4]
    opt.param_groups[0]["lr"] = 10.0  # no effect: the step sizes are the state's
    w.grad = torch.tensor([1.0, -1.0], dtype=torch.float64)
    opt.step()
    # The first sign held: 1.2 times the step; the second flipped: halved (to the minimum),
    # no step, and the gradient is remembered as 0.
    # rel=1e-15: 1.2 * 1e-4 rounds once (half an ulp), as does the literal 1.2e-4
    assert opt.state[w]["step_size"].tolist() == pytest.approx([1.2e-4, 1e-4], rel=1e-15)
    assert w[1].item() == -2.0 - 1e-4
    assert opt.state[w]["prev"].tolist() == [1.0, 0.0]


def test_adadelta_with_rho_one_is_gradient_descent():
    # torch accepts rho = 1: the averages stay 0, and the step is sqrt(eps) / sqrt(eps) * g.
    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = optimlab.Adadelta([w], lr=0.1, rho=1.0)
    for _ in range(3):
        opt.zero_grad()
        (w**2).sum().backward()
        opt.step()
    # rel=1e-15: sqrt(eps) / sqrt(eps) is exactly 1; each step rounds 0.1 * g and the
    # difference (at most 1 ulp of w), so 3 ulp, and 0.8**3 rounds twice: 4 ulp < 1e-15
    assert w.tolist() == pytest.approx([0.8**3, -2 * 0.8**3], rel=1e-15)


# --- ASGD's averaged weights ---------------------------------------------------------------


def asgd_run(steps, t0, **kwargs):
    """ASGD on a noisy quadratic; the iterates after each step, as float64 arrays."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(4, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    opt = optimlab.ASGD([w], lr=0.1, t0=t0, **kwargs)
    iterates = []
    for _ in range(steps):
        w.grad = 2 * w.detach() + torch.randn(w.shape, generator=g, dtype=torch.float64)
        opt.step()
        iterates.append(w.detach().numpy().copy())
    return opt, w, iterates


@pytest.mark.parametrize(
    "default, rtol", [(torch.float64, 1e-13), (torch.float32, 1e-6)], ids=["float64", "float32"]
)
def test_asgd_average_is_the_mean_of_the_iterates_after_t0(default, rtol):
    # mu = 1 / max(1, t - t0) after step t: the average restarts at the iterate until step
    # t0 + 2, then is the plain mean of the iterates of steps t0 + 2, ..., T. In float64
    # arithmetic (default dtype float64) exactly so up to rounding; with float32 mu (torch's
    # default) up to float32's rounding of 1/k.
    # Tolerances, relative to the iterates' scale: in float64, 34 averaging steps of three
    # roundings each and NumPy's mean of 34 terms, about 140 ulp = 3e-14 < 1e-13. With mu_k =
    # (1 + d_k) / k, |d_k| <= 2**-24, the average's error is (1/K) sum d_k (w_k - ax_{k-1}),
    # at most 2**-24 * 2 = 1.2e-7 times the scale < 1e-6.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        t0, steps = 5, 40
        opt, w, iterates = asgd_run(steps, t0)
    finally:
        torch.set_default_dtype(previous)
    (average,) = opt.averaged_parameters()
    expected = np.mean(iterates[t0 + 1 :], axis=0)  # steps t0 + 2 ... T (1-based)
    scale = np.abs(iterates).max()
    np.testing.assert_allclose(average.numpy(), expected, rtol=rtol, atol=rtol * scale)
    assert np.abs(expected - iterates[-1]).max() > 0.05  # the average is not the last iterate
    assert average.data_ptr() != opt.state[w]["ax"].data_ptr()  # a copy


def test_asgd_average_is_the_iterate_before_t0():
    opt, w, iterates = asgd_run(8, t0=1e6)
    (average,) = opt.averaged_parameters()
    assert np.array_equal(average.numpy(), iterates[-1])


def test_asgd_averaged_parameters_of_unstepped_parameters_are_the_parameters():
    a = torch.ones(2, requires_grad=True)
    b = torch.full((3,), 2.0, requires_grad=True)
    opt = optimlab.ASGD([a, b], lr=0.1, t0=0)
    a.grad = torch.ones(2)
    opt.step()
    first, second = opt.averaged_parameters()
    assert torch.equal(first, a.detach()) and torch.equal(second, b.detach())


def test_asgd_eval_puts_the_averages_in_and_train_takes_them_out():
    opt, w, iterates = asgd_run(20, t0=3)
    training = w.detach().clone()
    (average,) = opt.averaged_parameters()
    with optimlab.evaluation_weights(opt):  # what the lab and fit use
        assert torch.equal(w, average)
        opt.eval()  # twice is harmless
        with pytest.raises(RuntimeError, match=r"call train\(\) first"):
            opt.step()
    assert torch.equal(w, training)
    opt.train()  # harmless outside eval
    assert torch.equal(w, training)
    w.grad = torch.ones_like(w)
    opt.step()
    assert opt.state[w]["step"] == 21
