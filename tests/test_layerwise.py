"""Adafactor, Muon, LAMB and LARS beyond the generic tests: what only these optimizers do.

Muon against torch.optim.Muon (matrices) and torch.optim.AdamW (the rest), its Newton-Schulz
iteration against a float64 transcription and against what the quintic does to singular
values; Adafactor's factored state for any number of dimensions, and migration from torch;
LAMB's and LARS's trust ratios per tensor, against float64 transcriptions of the papers.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import references_layerwise as ref
import torch
from conftest import make_mlp
from rounding import EPS, assert_path_close

import optimlab
import optimlab.core.layerwise
import optimlab.optim.layerwise
from optimlab.core.layerwise import MUON_COEFFICIENTS, newton_schulz

A, B, C = MUON_COEFFICIENTS


def varying_lr(step: int, base: float) -> float:
    return base * (1.0 + 0.5 * math.sin(step / 7.0))


def train(model, optimizers, X, y, steps, base_lr):
    """``steps`` steps of full-batch training, every optimizer's lr changing every step."""
    for t in range(steps):
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = varying_lr(t, base_lr)
            opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        for opt in optimizers:
            opt.step()


def three_layer_mlp(dtype):
    # wide (8 x 64), tall (24 x 8) and wide (10 x 24) weights: both orientations of the
    # iteration and both branches of the learning-rate adjustment
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 8),
        torch.nn.Tanh(),
        torch.nn.Linear(8, 24),
        torch.nn.Tanh(),
        torch.nn.Linear(24, 10),
    )
    return model.to(dtype)


# --- Muon ----------------------------------------------------------------------------------

MUON_CONFIGS = {
    "defaults": ({}, {}, dict(betas=(0.9, 0.95), eps=1e-10, weight_decay=0.0)),
    "options": (
        dict(
            weight_decay=0.05,
            momentum=0.9,
            nesterov=False,
            ns_steps=3,
            adjust_lr_fn="match_rms_adamw",
            adamw_betas=(0.8, 0.99),
            adamw_eps=1e-8,
            adamw_weight_decay=0.01,
        ),
        dict(
            weight_decay=0.05,
            momentum=0.9,
            nesterov=False,
            ns_steps=3,
            adjust_lr_fn="match_rms_adamw",
        ),
        dict(betas=(0.8, 0.99), eps=1e-8, weight_decay=0.01),
    ),
}


@pytest.mark.parametrize("config", MUON_CONFIGS, ids=str)
@pytest.mark.parametrize(
    # the two paths are bitwise equal (test_optimizers.py): one dtype each keeps this short
    "dtype, foreach",
    [(torch.float64, True), (torch.float32, False)],
    ids=["float64-foreach", "float32-per_tensor"],
)
def test_muon_is_torch_muon_for_matrices_and_torch_adamw_for_the_rest(
    config, dtype, foreach, digits
):
    ours_kwargs, muon_kwargs, adamw_kwargs = MUON_CONFIGS[config]
    X, y = digits
    X = X.to(dtype)
    ours, theirs = three_layer_mlp(dtype), three_layer_mlp(dtype)
    opt = optimlab.Muon(ours.parameters(), lr=0.02, foreach=foreach, **ours_kwargs)
    matrices = [p for p in theirs.parameters() if p.ndim == 2]
    others = [p for p in theirs.parameters() if p.ndim != 2]
    torch_muon = torch.optim.Muon(matrices, lr=0.02, **muon_kwargs)
    torch_adamw = torch.optim.AdamW(others, lr=0.02, **adamw_kwargs)
    train(ours, [opt], X, y, 25, 0.02)
    train(theirs, [torch_muon, torch_adamw], X, y, 25, 0.02)
    # The same operations in the same order, bfloat16 iteration included: bitwise equal.
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(ours[0].weight, three_layer_mlp(dtype)[0].weight)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        torch_state = (torch_muon if q.ndim == 2 else torch_adamw).state[q]
        assert set(opt.state[p]) == set(torch_state) | {"step"}  # torch's Muon keeps no step
        for key, value in opt.state[p].items():
            if key != "step":
                assert torch.equal(value, torch_state[key])


def test_muon_adamw_lr_and_use_muon(digits):
    # adamw_lr fixes the AdamW part's rate while a schedule moves lr; use_muon=False gives a
    # group's matrices the AdamW step too (the reference's advice for embeddings and heads).
    X, y = digits
    ours, theirs = three_layer_mlp(torch.float64), three_layer_mlp(torch.float64)
    head = list(ours[4].parameters())
    opt = optimlab.Muon(
        [
            {"params": [*ours[0].parameters(), *ours[2].parameters()]},
            {"params": head, "use_muon": False},
        ],
        lr=0.02,
        adamw_lr=3e-3,
    )
    matrices = [theirs[0].weight, theirs[2].weight]
    others = [theirs[0].bias, theirs[2].bias, *theirs[4].parameters()]
    torch_muon = torch.optim.Muon(matrices, lr=0.02)
    torch_adamw = torch.optim.AdamW(others, lr=3e-3, betas=(0.9, 0.95), eps=1e-10, weight_decay=0)
    for t in range(20):
        lr = varying_lr(t, 0.02)
        opt.param_groups[0]["lr"] = opt.param_groups[1]["lr"] = lr
        torch_muon.param_groups[0]["lr"] = lr
        for model, opts in ((ours, [opt]), (theirs, [torch_muon, torch_adamw])):
            for o in opts:
                o.zero_grad()
            torch.nn.functional.cross_entropy(model(X), y).backward()
            for o in opts:
                o.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)
    assert sorted(opt.state[ours[4].weight]) == ["exp_avg", "exp_avg_sq", "step"]
    # Turning a stepped group's matrices back to Muon is refused, not silently mis-stepped.
    opt.param_groups[1]["use_muon"] = True
    torch.nn.functional.cross_entropy(ours(X), y).backward()
    with pytest.raises(ValueError, match=r"holds \['exp_avg', 'exp_avg_sq', 'step'\], but it"):
        opt.step()


def test_muon_gives_other_shapes_the_adamw_step():
    # A conv filter (4-D), a scalar and a complex matrix (a (3, 4, 2) real tensor) take AdamW.
    torch.manual_seed(1)
    params = [
        torch.randn(2, 3, 3, 3, dtype=torch.float64),
        torch.randn((), dtype=torch.float64),
        torch.randn(3, 4, dtype=torch.complex128),
    ]
    ours = [p.clone().requires_grad_(True) for p in params]
    theirs = [p.clone().requires_grad_(True) for p in params]
    opt = optimlab.Muon(ours, lr=0.01, adamw_weight_decay=0.1)
    adamw = torch.optim.AdamW(theirs, lr=0.01, betas=(0.9, 0.95), eps=1e-10, weight_decay=0.1)
    for _ in range(5):
        for ps, o in ((ours, opt), (theirs, adamw)):
            o.zero_grad()
            sum((p.abs() ** 2).sum() for p in ps).backward()
            o.step()
    for a, b in zip(ours, theirs):
        # rtol=1e-13 (450 ulp): 5 steps of AdamW, about ten roundings each, on entries of
        # order 1 that move by lr = 0.01 per step (no cancellation), computed in another order
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)
    assert all("exp_avg_sq" in opt.state[p] for p in ours)


def newton_schulz_tolerance(shape, steps=5):
    """How far two float64 runs of the iteration may differ in an entry (entries are at most 1).

    Each iteration rounds three matrix products (n = the inner dimension, at most the longer
    side: up to n ulp each, in whatever order this CPU's BLAS sums) and three elementwise
    operations; what an iteration inherits is scaled by at most the quintic's slope on the
    singular values' range [0, 1.2], max |a + 3 b s^2 + 5 c s^4| = 3.88. So at most
    (3 n + 3) eps * (1 + 3.88 + ... + 3.88**(steps - 1)).
    """
    s = np.linspace(0.0, 1.2, 1201)
    slope = np.abs(A + 3 * B * s**2 + 5 * C * s**4).max()
    return (3 * max(shape) + 3) * EPS * sum(slope**k for k in range(steps))


@pytest.mark.parametrize("shape", [(8, 20), (20, 8), (12, 12)], ids=str)
def test_newton_schulz_is_the_float64_transcription_of_the_reference(shape):
    rng = np.random.default_rng(sum(shape))
    g = rng.normal(size=shape)
    ours = newton_schulz(torch.from_numpy(g), steps=5, eps=0.0, dtype=torch.float64)
    assert ours.dtype == torch.float64 and ours.shape == shape
    expected = ref.newton_schulz(g, A, B, C, steps=5, eps=0.0)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=newton_schulz_tolerance(shape))


@pytest.mark.parametrize("shape", [(8, 20), (20, 8), (12, 12)], ids=str)
def test_newton_schulz_orthogonalizes_within_the_quintics_band(shape):
    # The iteration maps G = U S V^T to U q(S / |G|_F) V^T, with q the quintic applied 5
    # times: same singular vectors, singular values pushed into q's band around 1 (Keller
    # Jordan: "S' ~ Uniform(0.5, 1.5)"; for s/|G|_F >= 0.01, q(s) lies in [0.68, 1.14]).
    rng = np.random.default_rng(10 + sum(shape))
    g = rng.normal(size=shape)
    u, s, vt = np.linalg.svd(g, full_matrices=False)
    scaled = s / np.linalg.norm(g)
    assert scaled.min() > 0.01  # a well-conditioned draw: the band below applies
    ours = newton_schulz(torch.from_numpy(g), eps=0.0, dtype=torch.float64).numpy()
    q = ref.quintic(scaled, A, B, C, 5)
    # the iteration's rounding, and as much again for the SVD (backward stable: a few n ulp)
    # and the two products that rebuild the matrix from it
    tolerance = 2 * newton_schulz_tolerance(shape)
    np.testing.assert_allclose(ours, u @ np.diag(q) @ vt, rtol=0, atol=tolerance)
    singular = np.linalg.svd(ours, compute_uv=False)
    assert singular.min() > 0.68 and singular.max() < 1.14
    # within that band of the orthogonal polar factor U V^T, and far closer than G's scale
    assert np.linalg.norm(ours - u @ vt, 2) < 0.32
    # the same in bfloat16 (the default, as torch), to bfloat16's precision
    low = newton_schulz(torch.from_numpy(g), eps=0.0).double().numpy()
    assert np.abs(low - ours).max() < 0.05


def test_newton_schulz_in_bfloat16_is_torchs_and_a_zero_matrix_stays_zero():
    from torch.optim._muon import _zeropower_via_newtonschulz

    torch.manual_seed(0)
    for shape in [(8, 20), (20, 8)]:
        g = torch.randn(shape, dtype=torch.float64)
        ours = newton_schulz(g, MUON_COEFFICIENTS, 5, 1e-7)
        assert ours.dtype == torch.bfloat16
        assert torch.equal(ours, _zeropower_via_newtonschulz(g, MUON_COEFFICIENTS, 5, 1e-7))
    g = torch.randn(6, 4, dtype=torch.bfloat16)
    before = g.clone()
    newton_schulz(g)
    assert torch.equal(g, before)  # never in place, even in the iteration's own dtype
    zero = newton_schulz(torch.zeros(3, 5, dtype=torch.float64), dtype=torch.float64)
    assert torch.equal(zero, torch.zeros(3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"newton_schulz takes a matrix; got shape \(2, 3, 4\)"):
        newton_schulz(torch.zeros(2, 3, 4))


# --- Adafactor -----------------------------------------------------------------------------


@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "per_tensor"])
def test_adafactor_factors_the_last_two_dimensions_of_any_tensor_as_torch(foreach):
    torch.manual_seed(0)
    shapes = [(3, 4, 5), (), (6,), (5, 2)]
    targets = [torch.randn(s, dtype=torch.float64) for s in shapes]
    starts = [torch.randn(s, dtype=torch.float64) for s in shapes]
    ours = [s.clone().requires_grad_(True) for s in starts]
    theirs = [s.clone().requires_grad_(True) for s in starts]
    opt = optimlab.Adafactor(ours, lr=0.05, weight_decay=0.01, foreach=foreach)
    torch_opt = torch.optim.Adafactor(theirs, lr=0.05, weight_decay=0.01)
    for _ in range(15):
        for ps, o in ((ours, opt), (theirs, torch_opt)):
            o.zero_grad()
            sum(((p - t) ** 4).sum() for p, t in zip(ps, targets)).backward()
            o.step()
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    state = opt.state[ours[0]]
    assert state["row_var"].shape == (3, 4, 1) and state["col_var"].shape == (3, 1, 5)
    assert set(opt.state[ours[1]]) == set(opt.state[ours[2]]) == {"step", "variance"}
    for p, q in zip(ours, theirs):
        for key, value in opt.state[p].items():
            if key != "step":
                assert torch.equal(value, torch_opt.state[q][key])


def test_adafactor_resumes_from_a_torch_adafactor_checkpoint(digits):
    # The state has torch's entries (row_var, col_var, variance), so torch's checkpoint loads.
    X, y = digits
    theirs, ours = make_mlp(), make_mlp()
    torch_opt = torch.optim.Adafactor(theirs.parameters(), lr=0.01)
    train(theirs, [torch_opt], X, y, 5, 0.01)
    saved = torch_opt.state_dict()
    ours.load_state_dict(theirs.state_dict())
    opt = optimlab.Adafactor(ours.parameters(), lr=0.01)
    group = saved["param_groups"][0]
    for key in set(group) - set(opt.param_groups[0]):
        del group[key]
    for key in set(opt.param_groups[0]) - set(group):
        group[key] = opt.param_groups[0][key]
    opt.load_state_dict(saved)
    train(theirs, [torch_opt], X, y, 5, 0.01)
    train(ours, [opt], X, y, 5, 0.01)
    for a, b in zip(theirs.parameters(), ours.parameters()):
        assert torch.equal(a, b)


# --- LAMB and LARS: the trust ratio is per tensor -----------------------------------------

_rng = np.random.default_rng(3)
# Two layers of very different scales: a 3 x 4 matrix near 10 and a 5-vector near 0.1, each
# in a least-squares problem of its own, so a ratio taken over both at once would differ.
LAYER_STARTS = [10 * _rng.normal(size=(3, 4)), 0.1 * _rng.normal(size=5)]
LAYER_TARGETS = [_rng.normal(size=(3, 4)), _rng.normal(size=5)]
LAYER_SCALES = [np.array([1.0, 3.0, 0.5, 2.0]), np.array([1.0, 0.2, 4.0, 1.0, 2.0])]


def layer_grads(ws):
    return [s * (w - t) for w, t, s in zip(ws, LAYER_TARGETS, LAYER_SCALES)]


def run_layers(cls, lrs, **kwargs):
    ws = [torch.tensor(w, requires_grad=True) for w in LAYER_STARTS]
    opt = cls(ws, lr=lrs[0], **kwargs)
    for lr in lrs:
        opt.param_groups[0]["lr"] = lr
        grads = layer_grads([w.detach().numpy() for w in ws])
        for w, g in zip(ws, grads):
            w.grad = torch.from_numpy(g)
        opt.step()
    return [w.detach().numpy() for w in ws]


def concatenated(step_tensors, lrs, **kwargs):
    """The same rule with one ratio for both layers (their entries as one vector)."""
    sizes = [w.size for w in LAYER_STARTS]

    def grad(ws):
        parts = np.split(ws[0], [sizes[0]])
        parts = [parts[0].reshape(3, 4), parts[1]]
        return [np.concatenate([g.ravel() for g in layer_grads(parts)])]

    start = [np.concatenate([w.ravel() for w in LAYER_STARTS])]
    (flat,) = step_tensors(start, grad, lrs, **kwargs)
    return [flat[: sizes[0]].reshape(3, 4), flat[sizes[0] :]]


LRS = [0.05 * (1 + 0.5 * math.sin(t / 4)) for t in range(40)]
TRUST_CASES = {
    "lamb": (optimlab.LAMB, dict(weight_decay=0.01), ref.lamb_tensors, dict(weight_decay=0.01)),
    "lamb-clamp": (
        optimlab.LAMB,
        dict(weight_norm_clamp=(0.5, 5.0)),
        ref.lamb_tensors,
        dict(phi_bounds=(0.5, 5.0)),
    ),
    "lars": (
        optimlab.LARS,
        dict(trust_coefficient=0.2, weight_decay=0.01),
        ref.lars_tensors,
        dict(eta=0.2, weight_decay=0.01),
    ),
    "lars-exclude_1d": (
        optimlab.LARS,
        dict(trust_coefficient=0.2, weight_decay=0.01, exclude_1d=True),
        ref.lars_tensors,
        dict(eta=0.2, weight_decay=0.01, exclude_1d=True),
    ),
}


@pytest.mark.parametrize("name", TRUST_CASES, ids=str)
def test_trust_ratio_is_per_tensor(name):
    cls, kwargs, reference, ref_kwargs = TRUST_CASES[name]
    ours = run_layers(cls, LRS, **kwargs)
    # each layer's end point, within the tolerance of its sensitivity (rounding.py)
    assert_path_close(
        tuple(ours),
        lambda grad: tuple(reference(LAYER_STARTS, grad, LRS, **ref_kwargs)),
        layer_grads,
        final_after=len(LRS),
    )
    for a, start in zip(ours, LAYER_STARTS):
        assert np.linalg.norm(a - start) > 0.01  # every layer moved
    # One ratio over both layers gives another path: the comparison tells them apart.
    if "exclude_1d" not in ref_kwargs:
        single = concatenated(reference, LRS, **ref_kwargs)
        assert max(np.abs(a - b).max() for a, b in zip(ours, single)) > 1e-3


@pytest.mark.parametrize(
    "cls, kwargs",
    [(optimlab.LAMB, {}), (optimlab.LARS, {"momentum": 0.0, "trust_coefficient": 0.5})],
    ids=["LAMB", "LARS"],
)
def test_zero_weights_or_gradient_take_the_plain_step(cls, kwargs):
    # A zero-initialized bias would never move with a ratio of 0; a zero gradient without
    # weight decay must not divide by zero. Both take ratio 1.
    bias = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    still = torch.ones(2, dtype=torch.float64, requires_grad=True)
    opt = cls([bias, still], lr=0.1, **kwargs)
    bias.grad = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    still.grad = torch.zeros(2, dtype=torch.float64)
    opt.step()
    assert torch.isfinite(bias).all() and torch.isfinite(still).all()
    assert torch.equal(still, torch.ones(2, dtype=torch.float64))
    if cls is optimlab.LARS:  # plain SGD step: lr * g
        expected = torch.tensor([-0.1, 0.2, -0.05], dtype=torch.float64)
    else:  # Adam's first step, r = g / (|g| + eps) elementwise, times lr
        g = bias.grad
        expected = -0.1 * g / (g.abs() + 1e-6)
    # rtol=1e-14 (45 ulp): one step, a handful of roundings
    torch.testing.assert_close(bias.detach(), expected, rtol=1e-14, atol=1e-15)


def test_lars_zero_gradient_with_weight_decay_follows_the_paper():
    # A dead layer (or .grad zeroed, not set to None) with weight decay: the paper's
    # local_lr = eta |w| / (0 + beta |w|) = eta / beta, not 1, so the step is lr * eta * w.
    w0 = torch.tensor([[3.0, -4.0], [1.0, 2.0]], dtype=torch.float64)
    w = w0.clone().requires_grad_(True)
    opt = optimlab.LARS([w], lr=0.5, momentum=0.0, weight_decay=0.05, trust_coefficient=0.1)
    w.grad = torch.zeros_like(w)
    opt.step()
    torch.testing.assert_close(w.detach(), w0 * (1 - 0.5 * 0.1), rtol=1e-15, atol=0)

    # With momentum, over a path, next to a live layer: against the float64 transcription.
    def grads(ws):
        return [layer_grads(ws[:1])[0], np.zeros_like(ws[1])]

    starts = [LAYER_STARTS[0], 0.1 * LAYER_STARTS[0][:2]]  # the dead layer is a matrix too
    kwargs = dict(momentum=0.8, weight_decay=0.05)
    ws = [torch.tensor(x, requires_grad=True) for x in starts]
    opt = optimlab.LARS(ws, lr=LRS[0], trust_coefficient=0.2, **kwargs)
    for lr in LRS:
        opt.param_groups[0]["lr"] = lr
        for x, g in zip(ws, grads([x.detach().numpy() for x in ws])):
            x.grad = torch.from_numpy(g)
        opt.step()
    assert_path_close(
        tuple(x.detach().numpy() for x in ws),
        lambda grad: tuple(ref.lars_tensors(starts, grad, LRS, eta=0.2, **kwargs)),
        grads,
        final_after=len(LRS),
    )


@pytest.mark.parametrize(
    "module", [optimlab.optim.layerwise, optimlab.core.layerwise], ids=lambda m: m.__name__
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
