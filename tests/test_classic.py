"""Adagrad, Adadelta, Rprop and ASGD beyond the generic tests: torch's arguments, the cases the
generic parity test does not reach (parameters skipping steps, complex parameters, torch's
default dtype, torch's checkpoints), ASGD's averaged weights against a direct average, and
ASGD's evaluation mode in checkpoints (by hand, in HF Trainer's order, in fit)."""

from __future__ import annotations

import copy
import inspect
import io
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
        assert eta.dtype == default  # a 0-dim tensor, as torch keeps it


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
        assert torch.equal(opt.state[w]["train_weight"], training)
        opt.eval()  # twice is harmless
        with pytest.raises(RuntimeError, match=r"call train\(\) first"):
            opt.step()
    assert torch.equal(w, training)
    assert "train_weight" not in opt.state[w]
    opt.train()  # harmless outside eval
    assert torch.equal(w, training)
    w.grad = torch.ones_like(w)
    opt.step()
    assert opt.state[w]["step"] == 21


# --- ASGD's evaluation mode in checkpoints -------------------------------------------------
# eval() puts the averages into the parameters and keeps the training weights in the state
# (``train_weight``), with the mode in each group (``train_mode``): a checkpoint taken in
# either mode resumes bitwise. The uninterrupted optimlab run is the reference for the
# weights; torch.optim.ASGD (no eval mode) for the training weights.

ASGD_KWARGS = dict(lr=0.05, fused="exact", **KWARGS["ASGD"])


def asgd_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
    ).double()


def asgd_batch(t):
    g = torch.Generator().manual_seed(100 + t)
    X = torch.randn(16, 5, generator=g, dtype=torch.float64)
    return X, X[:, :1] - 0.5 * X[:, 3:4] + 0.1 * torch.randn(16, 1, generator=g, dtype=X.dtype)


def asgd_loss(model, t):
    X, y = asgd_batch(t)
    return torch.nn.functional.mse_loss(model(X), y)


def asgd_steps(model, opt, start, stop):
    for t in range(start, stop):
        opt.zero_grad()
        asgd_loss(model, t).backward()
        opt.step()


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


def assert_same_weights(a, b):
    a, b = list(a), list(b)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def round_trip(payload):
    """What torch.save and torch.load(weights_only=True) give back, as a checkpoint would."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_asgd_checkpoint_in_either_mode_resumes_bitwise(mode):
    # By hand: (eval();) save the model and the optimizer; load both into new ones; train();
    # step on. Before the mode was saved, an eval-mode checkpoint resumed from the averages.
    whole = asgd_model()
    theirs = copy.deepcopy(whole)
    opt_whole = optimlab.ASGD(whole.parameters(), **ASGD_KWARGS)
    opt_theirs = torch.optim.ASGD(theirs.parameters(), lr=0.05, **KWARGS["ASGD"])
    asgd_steps(whole, opt_whole, 0, 6)
    asgd_steps(theirs, opt_theirs, 0, 6)
    training = weights(whole)
    assert_same_weights(training, theirs.parameters())
    averages = opt_whole.averaged_parameters()
    if mode == "eval":
        opt_whole.eval()
        assert_same_weights(whole.parameters(), averages)
    saved = round_trip({"model": whole.state_dict(), "optimizer": opt_whole.state_dict()})
    groups, states = saved["optimizer"]["param_groups"], saved["optimizer"]["state"]
    assert groups[0]["train_mode"] is (mode == "train")
    for key, p, q in zip(groups[0]["params"], training, theirs.parameters()):
        assert torch.equal(states[key]["ax"], opt_theirs.state[q]["ax"])
        if mode == "eval":  # the training weights are in the checkpoint, as torch's are
            assert torch.equal(states[key]["train_weight"], p)
        else:
            assert "train_weight" not in states[key]  # torch's entries only
    model_weights = list(saved["model"].values())
    assert_same_weights(model_weights, averages if mode == "eval" else training)
    assert any(not torch.equal(a, w) for a, w in zip(averages, training))  # they differ

    resumed = asgd_model(seed=7)  # other weights: everything comes from the checkpoint
    resumed.load_state_dict(saved["model"])
    opt_resumed = optimlab.ASGD(resumed.parameters(), lr=1.0, fused="exact")
    opt_resumed.load_state_dict(saved["optimizer"])
    assert opt_resumed.param_groups[0]["train_mode"] is (mode == "train")
    for model, opt in ((whole, opt_whole), (resumed, opt_resumed)):
        opt.train()
        assert_same_weights(model.parameters(), training)
        asgd_steps(model, opt, 6, 16)
    asgd_steps(theirs, opt_theirs, 6, 16)
    assert_same_weights(resumed.parameters(), whole.parameters())
    assert_same_weights(resumed.parameters(), theirs.parameters())
    assert_same_state(opt_resumed, opt_theirs, resumed.parameters(), theirs.parameters())
    for opt in (opt_whole, opt_resumed):
        opt.eval()
    assert_same_weights(resumed.parameters(), whole.parameters())


def hf_order(model, opt, start, stop, *, eval_every=2, save_at=None):
    """HF Trainer's order: train() before every step; after every eval_every steps, eval() and
    evaluate, then (at save_at) save the model and the optimizer in separate files."""
    saved = None
    for t in range(start, stop):
        model.train()
        opt.train()  # Trainer.training_step
        opt.zero_grad()
        asgd_loss(model, t).backward()
        opt.step()
        if (t + 1) % eval_every == 0:
            model.eval()
            opt.eval()  # Trainer.evaluation_loop
            with torch.no_grad():
                asgd_loss(model, 1000)
            if t + 1 == save_at:
                saved = round_trip(model.state_dict()), round_trip(opt.state_dict())
    return saved


@pytest.mark.parametrize("load_first", ["model", "optimizer"])
def test_asgd_checkpoint_in_hf_trainer_order_resumes_bitwise(load_first):
    whole = asgd_model()
    theirs = copy.deepcopy(whole)
    opt_whole = optimlab.ASGD(whole.parameters(), **ASGD_KWARGS)
    opt_theirs = torch.optim.ASGD(theirs.parameters(), lr=0.05, **KWARGS["ASGD"])
    model_state, opt_state = hf_order(whole, opt_whole, 0, 16, save_at=6)
    assert opt_state["param_groups"][0]["train_mode"] is False  # saved after evaluating
    assert opt_whole.param_groups[0]["train_mode"] is False  # and the run ends evaluated

    resumed = asgd_model(seed=7)
    opt_resumed = optimlab.ASGD(resumed.parameters(), lr=1.0, fused="exact")
    if load_first == "model":  # the Trainer's order: the model, then the optimizer
        resumed.load_state_dict(model_state)
        opt_resumed.load_state_dict(opt_state)
    else:
        opt_resumed.load_state_dict(opt_state)
        resumed.load_state_dict(model_state)
    hf_order(resumed, opt_resumed, 6, 16)
    assert_same_weights(resumed.parameters(), whole.parameters())  # the averages
    for opt in (opt_whole, opt_resumed):
        opt.train()
    assert_same_weights(resumed.parameters(), whole.parameters())
    asgd_steps(theirs, opt_theirs, 0, 16)
    assert_same_weights(resumed.parameters(), theirs.parameters())
    assert_same_state(opt_resumed, opt_theirs, resumed.parameters(), theirs.parameters())


def test_asgd_state_without_modes_loads_in_train_mode():
    # A state saved before the mode was saved (or by torch) has no train_mode: train mode,
    # whatever mode the optimizer loading it is in; its stale training weights are dropped.
    whole = asgd_model()
    opt_whole = optimlab.ASGD(whole.parameters(), **ASGD_KWARGS)
    asgd_steps(whole, opt_whole, 0, 6)
    saved = round_trip({"model": whole.state_dict(), "optimizer": opt_whole.state_dict()})
    for group in saved["optimizer"]["param_groups"]:
        del group["train_mode"]

    resumed = asgd_model(seed=7)
    opt_resumed = optimlab.ASGD(resumed.parameters(), lr=1.0, fused="exact")
    asgd_steps(resumed, opt_resumed, 0, 3)
    opt_resumed.eval()  # holds training weights of its own
    resumed.load_state_dict(saved["model"])
    opt_resumed.load_state_dict(saved["optimizer"])
    assert opt_resumed.param_groups[0]["train_mode"] is True
    assert all("train_weight" not in s for s in opt_resumed.state.values())
    opt_resumed.train()  # nothing to put back: the loaded weights stay
    assert_same_weights(resumed.parameters(), whole.parameters())
    asgd_steps(whole, opt_whole, 6, 12)
    asgd_steps(resumed, opt_resumed, 6, 12)
    assert_same_weights(resumed.parameters(), whole.parameters())


def test_asgd_loading_an_eval_mode_state_into_another_mode():
    # The loaded mode replaces the optimizer's: an eval-mode state into an optimizer in train
    # mode, and a train-mode state into one in eval mode.
    source = asgd_model()
    opt_source = optimlab.ASGD(source.parameters(), **ASGD_KWARGS)
    asgd_steps(source, opt_source, 0, 6)
    training = weights(source)
    opt_source.eval()
    eval_state = round_trip(opt_source.state_dict())
    opt_source.train()
    train_state = round_trip(opt_source.state_dict())

    target = asgd_model(seed=7)
    opt_target = optimlab.ASGD(target.parameters(), **ASGD_KWARGS)
    asgd_steps(target, opt_target, 0, 2)
    opt_target.load_state_dict(eval_state)  # the model not loaded: train() still restores
    assert opt_target.param_groups[0]["train_mode"] is False
    with pytest.raises(RuntimeError, match=r"in eval mode \(parameter group 0\)"):
        opt_target.step()
    opt_target.train()
    assert_same_weights(target.parameters(), training)
    opt_target.eval()
    opt_target.load_state_dict(train_state)
    assert opt_target.param_groups[0]["train_mode"] is True
    assert_same_weights(target.parameters(), opt_source.averaged_parameters())  # left as is


def test_asgd_deepcopy_in_eval_mode_keeps_the_training_weights():
    model = asgd_model()
    opt = optimlab.ASGD(model.parameters(), **ASGD_KWARGS)
    asgd_steps(model, opt, 0, 6)
    training = weights(model)
    opt.eval()
    twin_model, twin_opt = copy.deepcopy((model, opt))
    assert twin_opt.param_groups[0]["params"][0] is next(twin_model.parameters())
    clone = copy.deepcopy(opt)  # the optimizer alone: its own copies of the parameters
    assert clone.param_groups[0]["train_mode"] is False
    opt.train()
    assert twin_opt.param_groups[0]["train_mode"] is False  # independent
    twin_opt.train()
    clone.train()
    assert_same_weights(twin_model.parameters(), training)
    assert_same_weights(clone.param_groups[0]["params"], training)
    asgd_steps(model, opt, 6, 12)
    asgd_steps(twin_model, twin_opt, 6, 12)
    assert_same_weights(twin_model.parameters(), model.parameters())
    assert opt.state[next(model.parameters())]["step"] == 12


def test_asgd_mode_follows_in_added_groups_and_unstepped_parameters():
    a = torch.ones(2, dtype=torch.float64, requires_grad=True)
    b = torch.full((3,), 2.0, dtype=torch.float64, requires_grad=True)
    opt = optimlab.ASGD([{"params": [a]}, {"params": [b], "train_mode": False}], lr=0.1, t0=0)
    assert [g["train_mode"] for g in opt.param_groups] == [True, True]
    a.grad = torch.ones(2, dtype=torch.float64)
    opt.step()
    opt.eval()  # b has no state: no average, left as it is
    assert torch.equal(b, torch.full((3,), 2.0, dtype=torch.float64))
    assert "train_weight" in opt.state[a] and b not in opt.state
    c = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt.add_param_group({"params": [c]})
    assert opt.param_groups[2]["train_mode"] is False  # follows the optimizer's mode
    state = round_trip(opt.state_dict())
    fresh_opt = optimlab.ASGD([{"params": [a]}, {"params": [b]}, {"params": [c]}], t0=0)
    fresh_opt.load_state_dict(state)
    assert [g["train_mode"] for g in fresh_opt.param_groups] == [False] * 3
    opt.train()
    assert all(g["train_mode"] for g in opt.param_groups)
    assert "train_weight" not in opt.state[a]


def test_asgd_mode_mismatches_in_a_loaded_state_are_refused_clearly():
    model = asgd_model()
    opt = optimlab.ASGD(model.parameters(), **ASGD_KWARGS)
    asgd_steps(model, opt, 0, 3)
    opt.eval()
    eval_state = opt.state_dict()
    opt.train()  # leaves eval_state as it was (new state dicts)
    train_state = opt.state_dict()
    assert "train_weight" in eval_state["state"][0]
    assert "train_weight" not in train_state["state"][0]

    def changed(state, *, group=None, entry=None):
        state = copy.deepcopy(state)
        state["param_groups"][0].update(group or {})
        if entry is not None:
            entry(state["state"][0])
        return state

    target = asgd_model(seed=7)
    opt_target = optimlab.ASGD(target.parameters(), **ASGD_KWARGS)
    asgd_steps(target, opt_target, 0, 2)
    before = copy.deepcopy(opt_target.state_dict())
    cases = [
        (
            changed(eval_state, entry=lambda s: s.pop("train_weight")),
            ValueError,
            r"state_dict\['state'\]\[0\] \(parameter 0 of group 0\) has entries \['ax', 'eta', "
            r"'mu', 'step'\] but this optimizer's configuration needs \['ax', 'eta', 'mu', "
            r"'step', 'train_weight'\]",
        ),
        (
            changed(train_state, entry=lambda s: s.update(train_weight=s["ax"].clone())),
            ValueError,
            r"has entries \['ax', 'eta', 'mu', 'step', 'train_weight'\] but this optimizer's "
            r"configuration needs \['ax', 'eta', 'mu', 'step'\]",
        ),
        (
            changed(eval_state, entry=lambda s: s.update(train_weight=torch.zeros(2))),
            ValueError,
            r"\['train_weight'\] has shape \(2,\) but this optimizer keeps it with shape "
            r"\(8, 5\) for a parameter of shape \(8, 5\)",
        ),
        (
            changed(eval_state, group={"train_mode": "eval"}),
            TypeError,
            r"Invalid train_mode value: 'eval'; expected True or False",
        ),
        (
            {**eval_state, "param_groups": eval_state["param_groups"] * 2},
            ValueError,
            r"state_dict has 2 parameter groups but this optimizer has 1",
        ),
    ]
    for bad, error, message in cases:
        with pytest.raises(error, match=message):
            opt_target.load_state_dict(bad)
        after = opt_target.state_dict()  # refused: nothing changed
        assert after["param_groups"] == before["param_groups"]
        for key, entry in before["state"].items():
            assert set(after["state"][key]) == set(entry)
            for name, value in entry.items():
                now = after["state"][key][name]
                assert torch.equal(now, value) if torch.is_tensor(value) else now == value, name


def test_asgd_fit_resumes_bitwise_from_its_checkpoints_and_from_one_taken_after(tmp_path):
    # fit calls train() when it starts and eval() when it returns: it returns with the
    # averages in the model, and a checkpoint taken then (eval mode) resumes exactly.
    from optimlab.data import MiniBatches
    from optimlab.train import fit

    g = torch.Generator().manual_seed(3)
    X = torch.randn(60, 5, generator=g, dtype=torch.float64)
    y = (X[:, 0] - X[:, 2] > 0).long()

    def make():
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)
        ).double()
        return model, optimlab.ASGD(model.parameters(), **ASGD_KWARGS)

    def run(model, opt, epochs, seed=0, **kwargs):
        plan = MiniBatches(X, y, batch_size=20, seed=seed)
        fit(model, opt, plan, epochs=epochs, eval_data=(X, y), progress=False, **kwargs)
        assert opt.param_groups[0]["train_mode"] is False  # fit returns evaluated
        return weights(model)

    # fit's own checkpoints: 4 epochs straight, or 2 then resumed to 4
    straight = run(*make(), 4, checkpoint_dir=tmp_path / "straight")
    run(*make(), 2, checkpoint_dir=tmp_path / "split")
    assert_same_weights(run(*make(), 4, checkpoint_dir=tmp_path / "split", resume=True), straight)

    # a checkpoint taken by hand after fit returned (eval mode), then fit again
    model, opt = make()
    run(model, opt, 2)
    saved = round_trip({"model": model.state_dict(), "optimizer": opt.state_dict()})
    assert saved["optimizer"]["param_groups"][0]["train_mode"] is False
    on = run(model, opt, 2, seed=1)
    resumed_model, resumed_opt = make()
    resumed_model.load_state_dict(saved["model"])
    resumed_opt.load_state_dict(saved["optimizer"])
    assert_same_weights(run(resumed_model, resumed_opt, 2, seed=1), on)
    opt.train()
    resumed_opt.train()
    assert_same_weights(resumed_model.parameters(), model.parameters())
