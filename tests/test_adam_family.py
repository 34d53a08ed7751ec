"""NAdam, RAdam, Adamax and Lion beyond the generic registry tests: papers, torch's rounding,
the authors' code, and the claims their docstrings make."""

from __future__ import annotations

import numpy as np
import pytest
import references_adam_family as ref
import torch
from rounding import EPS, assert_path_close, path_tolerance, sensitivity
from test_notes import W0, grad_numpy, lr_sequence, run_optimlab

import optimlab
import optimlab.core.adam_family
import optimlab.optim.adam_family
from optimlab.core import adam_family as rules
from optimlab.fused.steps import FusedSteps


@pytest.fixture
def float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


class _Case:  # the part of registry's Case that run_optimlab uses
    def __init__(self, cls, **kwargs):
        self.cls, self.kwargs = cls, kwargs

    def make(self, params, lr):
        return self.cls(params, lr=lr, **self.kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{}, dict(momentum_decay=0.02, betas=(0.8, 0.99), eps=1e-6), dict(momentum_decay=0.0)],
    ids=["defaults", "momentum_decay-betas-eps", "constant_momentum"],
)
def test_nadam_matches_dozats_algorithm_in_float64(kwargs, float64_default):
    # With float64 as the default dtype torch (and so optimlab) keeps the momentum product in
    # float64: then NAdam is the paper's rule to rounding.
    lrs = lr_sequence(80, constant=False)
    paper = {"betas": "beta", "eps": "epsilon"}
    args = {paper.get(k, k): v for k, v in kwargs.items()}
    if "beta" in args:
        args["beta1"], args["beta2"] = args.pop("beta")
    actual = run_optimlab(_Case(optimlab.NAdam, **kwargs), lrs)
    # tolerance: the path's sensitivity to one ulp per step (rounding.py)
    assert_path_close(actual, lambda grad: ref.nadam(W0, grad, lrs, **args), grad_numpy)
    assert np.linalg.norm(actual[-1] - W0) > 0.1


def test_nadam_under_float32_default_dtype_rounds_the_product_as_torch_does():
    # The same run under the usual float32 default: torch's float32 product moves the path
    # away from the exact one by far more than rounding, and optimlab follows torch.
    lrs = lr_sequence(80, constant=False)
    actual = np.array(run_optimlab(_Case(optimlab.NAdam), lrs))
    (expected,), (spread,) = sensitivity(lambda grad: ref.nadam(W0, grad, lrs), grad_numpy)
    gap = np.abs(actual - expected)
    # Farther than float64 rounding can take the path (its tolerance from its sensitivity, see
    # rounding.py; here the gap is thousands of times that) ...
    assert (gap > 10 * path_tolerance(expected, spread)).any()
    # ... and no farther than float32 rounding at every step could: eps32 per step, times the
    # steps, times the largest coordinate.
    assert gap.max() < len(lrs) * np.finfo(np.float32).eps * np.abs(expected).max()


@pytest.mark.parametrize("default", [torch.float32, torch.float64], ids=str)
def test_nadam_momentum_product_is_torchs_state_bit_for_bit(default):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.NAdam([w], lr=1e-3, betas=(0.95, 0.999), momentum_decay=0.01)
        single = default == torch.float32
        for t in range(1, 121):
            w.grad = torch.ones(1, dtype=torch.float64)
            opt.step()
            theirs = opt.state[w]["mu_product"].item()
            ours = rules.nadam_momentum_product(0.95, 0.01, t, single_precision=single)
            # below 2**-60 optimlab returns 0: 1 - product is exactly 1 either way
            assert ours == theirs or (ours == 0.0 and theirs < 2.0**-60), t
            assert 1.0 - ours == 1.0 - theirs
    finally:
        torch.set_default_dtype(previous)
    # and the rounding matters: float32 and float64 products differ
    assert rules.nadam_momentum_product(
        0.9, 0.004, 3, single_precision=True
    ) != rules.nadam_momentum_product(0.9, 0.004, 3, single_precision=False)


def test_nadam_momentum_product_cache_answers_in_any_order():
    def fresh(step):
        product = 1.0
        for i in range(1, step + 1):
            product *= rules.nadam_momentum(0.7, 0.02, i)
        return product if product >= 2.0**-60 else 0.0

    rules._PRODUCTS.clear()
    for step in (40, 3, 0, 41, 500, 7):
        assert rules.nadam_momentum_product(0.7, 0.02, step, single_precision=False) == fresh(step)
    for beta1 in np.linspace(0.5, 0.9, 20):  # many configurations: the cache stays small
        rules.nadam_momentum_product(float(beta1), 0.004, 10, single_precision=True)
    assert len(rules._PRODUCTS) <= rules._PRODUCTS_KEPT


def test_a_torch_nadam_checkpoint_resumes_in_optimlab_nadam(digits):
    # Drop-in migration: torch's state holds mu_product as well, which optimlab keeps too.
    from conftest import make_mlp
    from test_optimizers import train

    X, y = digits
    theirs, ours = make_mlp(), make_mlp()
    opt_theirs = torch.optim.NAdam(theirs.parameters(), lr=0.01, decoupled_weight_decay=True)
    train(theirs, opt_theirs, X, y, 5, 0.01, lr_changes=False)
    saved = opt_theirs.state_dict()
    assert "mu_product" in saved["state"][0]
    ours.load_state_dict(theirs.state_dict())
    opt_ours = optimlab.NAdam(ours.parameters(), lr=0.5, fused="exact")
    group = saved["param_groups"][0]  # keep the hyperparameters both have, and ours
    for key in set(group) - set(opt_ours.param_groups[0]):
        del group[key]
    opt_ours.load_state_dict(saved)
    assert opt_ours.param_groups[0]["decoupled_weight_decay"] is True
    entries = sorted(opt_ours.state[next(ours.parameters())])
    assert entries == ["exp_avg", "exp_avg_sq", "mu_product", "step"]
    train(theirs, opt_theirs, X, y, 5, 0.01, lr_changes=False)
    train(ours, opt_ours, X, y, 5, 0.01, lr_changes=False)
    for a, b in zip(theirs.parameters(), ours.parameters()):
        assert torch.equal(a, b)


def test_radam_rectification_switches_on_after_five_steps_and_rises_to_one():
    assert [rules.radam_rectification(0.999, t) is None for t in range(1, 8)] == [True] * 5 + [
        False
    ] * 2
    values = [rules.radam_rectification(0.999, t) for t in (6, 10, 100, 1000, 100_000)]
    assert all(a < b for a, b in zip(values, values[1:]))
    assert 0.99 < values[-1] <= 1.0
    assert rules.radam_rectification(0.0, 10**6) is None  # beta2 = 0: never rectified


def test_radam_takes_plain_momentum_steps_first():
    # Steps 1 to 5 with beta2 = 0.999: w -= lr * m / (1 - beta1**t), whatever v is.
    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = optimlab.RAdam([w], lr=0.1)
    m, expected = np.zeros(2), np.array([1.0, -2.0])
    for t in range(1, 6):
        w.grad = 2 * w.detach().clone()
        g = 2 * expected
        m = 0.9 * m + 0.1 * g
        expected = expected - 0.1 * m / (1 - 0.9**t)
        opt.step()
        # rtol=1e-14 (45 ulp): at most 5 steps of 4 roundings of numbers no larger than |w|
        # (w shrinks and keeps its sign: no cancellation), with room to spare
        np.testing.assert_allclose(w.detach().numpy(), expected, rtol=1e-14)


def test_adamax_without_eps_is_the_papers_rule():
    lrs = lr_sequence(80, constant=False)
    actual = run_optimlab(_Case(optimlab.Adamax, eps=0.0), lrs)
    # tolerance: the path's sensitivity to one ulp per step (rounding.py)
    assert_path_close(actual, lambda grad: ref.adamax(W0, grad, lrs, epsilon=0.0), grad_numpy)


def authors_lion_step(p, grad, exp_avg, lr, beta1, beta2, weight_decay):
    """One step of the authors' PyTorch Lion (google/automl, lion/lion_pytorch.py), as written
    there: decay, interpolate with mul/add, signed step, then the momentum with mul_/add_."""
    p.mul_(1 - lr * weight_decay)
    update = exp_avg * beta1 + grad * (1 - beta1)
    p.add_(update.sign_(), alpha=-lr)
    exp_avg.mul_(beta2).add_(grad, alpha=1 - beta2)


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_lion_agrees_with_the_authors_pytorch_code(weight_decay, digits):
    from conftest import make_mlp

    X, y = digits
    ours, theirs = make_mlp(), make_mlp()
    opt = optimlab.Lion(ours.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=weight_decay)
    momenta = [torch.zeros_like(p) for p in theirs.parameters()]
    steps = 40
    for _ in range(steps):
        for model in (ours, theirs):
            model.zero_grad()
            torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
        with torch.no_grad():
            for p, m in zip(theirs.parameters(), momenta):
                authors_lion_step(p, p.grad, m, 1e-3, 0.9, 0.99, weight_decay)
    for p, q, m in zip(ours.parameters(), theirs.parameters(), momenta):
        # The interpolations are a lerp here, a mul-add there: each step they may differ by an
        # ulp or two of the larger term, carried on (times beta2 < 1) by the momentum, so at
        # most 2 ulp per step of its largest value. The parameter takes +-lr and the decay:
        # two roundings per step; the momenta's last bits move it only where sign(c) flips
        # (c within rounding of 0: that chance is about an ulp over |c| per coordinate).
        largest = max(m.abs().max().item(), opt.state[p]["exp_avg"].abs().max().item())
        m_tol = 2 * steps * EPS * largest
        torch.testing.assert_close(opt.state[p]["exp_avg"], m, rtol=0, atol=m_tol)
        torch.testing.assert_close(p, q, rtol=0, atol=2 * steps * EPS * q.abs().max().item())


def test_lion_moves_every_coordinate_by_exactly_lr():
    w = torch.tensor([3.0, -1e-30, 0.0, 2e6], dtype=torch.float64, requires_grad=True)
    before = w.detach().clone()
    opt = optimlab.Lion([w], lr=0.25)
    w.grad = torch.tensor([1e-20, -5.0, 0.0, 7.0], dtype=torch.float64)
    opt.step()
    assert (w.detach() - before).tolist() == [-0.25, 0.25, 0.0, -0.25]


def test_lion_with_a_fixed_lr_ends_in_a_limit_cycle_of_radius_about_lr():
    # The claim behind the registry's small Lion learning rates (and the docstring's advice to
    # decay lr): on 0.5 (x^2 + 100 y^2), once its momentum's overshoots have died out (about
    # 500 steps here), it keeps moving within sqrt(2) lr of the minimum.
    lr = 1e-2
    w = torch.tensor([1.5, -0.7], dtype=torch.float64, requires_grad=True)
    opt = optimlab.Lion([w], lr=lr)
    distances = []
    for _ in range(800):
        w.grad = torch.stack([w.detach()[0], 100 * w.detach()[1]])
        opt.step()
        distances.append(float(torch.linalg.vector_norm(w.detach())))
    tail = distances[-200:]
    assert max(tail) <= 2**0.5 * lr * (1 + 1e-9)
    assert max(tail) > 0.5 * lr  # it does not settle


def test_keyword_only_dispatch_arguments():
    w = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(TypeError):
        optimlab.Adamax(w, 2e-3, (0.9, 0.999), 1e-8, 0.0, True)  # torch's positional foreach
    opt = optimlab.NAdam(w, 2e-3, (0.9, 0.999), 1e-8, 0.0, 4e-3, True)  # torch's positional args
    assert opt.param_groups[0]["decoupled_weight_decay"] is True


@pytest.mark.parametrize(
    "cls, buffers",
    [
        (optimlab.NAdam, ["exp_avg", "exp_avg_sq", "mu_product", "step"]),
        (optimlab.RAdam, ["exp_avg", "exp_avg_sq", "step"]),
        (optimlab.Adamax, ["exp_avg", "exp_inf", "step"]),
        (optimlab.Lion, ["exp_avg", "step"]),
    ],
    ids=lambda x: getattr(x, "__name__", None),
)
def test_state_holds_the_buffers_the_docstrings_name(cls, buffers):
    w = torch.zeros(3, requires_grad=True)
    opt = cls([w], lr=0.1)
    w.grad = torch.ones(3)
    opt.step()
    assert sorted(opt.state[w]) == buffers


@pytest.mark.parametrize("cls", [optimlab.NAdam, optimlab.RAdam, optimlab.Adamax, optimlab.Lion])
@pytest.mark.parametrize("step", [1, 2, 6, 1000])
def test_rules_are_elementwise_and_record_on_the_tape(cls, step):
    # What makes them fusable: each rule records as one elementwise program (RAdam has two,
    # before and after rectification starts), with no reduction and nothing the tape refuses.
    opt = cls([torch.zeros(2, requires_grad=True)], lr=0.1, weight_decay=0.1)
    group = opt.param_groups[0]
    names = opt._buffer_names(group)
    state = opt._init_state(group["params"][0], group)
    tape = FusedSteps(opt).record(opt._arguments(group, state, step), names)
    assert tape.program.instructions
    assert cls._unfusable_reason is None
