"""Momentum beyond the generic tests: its coefficient under torch's name, ``momentum``.

torch's schedulers that cycle momentum (``OneCycleLR``, ``CyclicLR`` with
``cycle_momentum=True``) look for ``momentum`` in ``optimizer.defaults`` and write
``group["momentum"]``: they must drive Momentum's coefficient exactly as they drive
``torch.optim.SGD``'s, and the step must use what they write. The notes' name ``beta`` stays
accepted, and a checkpoint saved when the group key was ``beta`` loads with its value.
"""

from __future__ import annotations

import pytest
import torch
from torch.optim import lr_scheduler as tl

import optimlab

SCHEDULERS = {
    "OneCycleLR": lambda o: tl.OneCycleLR(
        o, max_lr=0.5, total_steps=30, base_momentum=0.8, max_momentum=0.95
    ),
    "OneCycleLR-three_phase-linear": lambda o: tl.OneCycleLR(
        o, max_lr=0.5, total_steps=25, three_phase=True, anneal_strategy="linear"
    ),
    "CyclicLR": lambda o: tl.CyclicLR(
        o, base_lr=0.01, max_lr=0.1, step_size_up=4, base_momentum=0.7, max_momentum=0.9
    ),
    "CyclicLR-exp_range": lambda o: tl.CyclicLR(
        o, base_lr=0.01, max_lr=0.1, step_size_up=3, mode="exp_range", gamma=0.9
    ),
}


def drive(optimizer, make_scheduler, steps):
    """The (lr, momentum) torch's scheduler leaves in the group, at construction and after
    each step."""
    scheduler = make_scheduler(optimizer)
    group = optimizer.param_groups[0]
    seen = [(group["lr"], group["momentum"])]
    w = group["params"][0]
    for t in range(steps):
        w.grad = torch.full_like(w, 1.0 + t)
        optimizer.step()
        scheduler.step()
        seen.append((group["lr"], group["momentum"]))
    return seen


@pytest.mark.parametrize("name", SCHEDULERS)
@pytest.mark.parametrize("form", ["ema", "heavy_ball"])
def test_torch_schedulers_cycle_momentum_as_they_do_sgds(name, form):
    make = SCHEDULERS[name]
    theirs = torch.optim.SGD([torch.zeros(3, requires_grad=True)], lr=0.1, momentum=0.9)
    ours = optimlab.Momentum([torch.zeros(3, requires_grad=True)], lr=0.1, form=form)
    expected = drive(theirs, make, 20)
    assert len({m for _, m in expected}) >= 5  # the momentum does cycle
    assert drive(ours, make, 20) == expected  # the same floats, exactly


def test_the_step_uses_the_momentum_the_scheduler_wrote():
    # The notes' average with the coefficients torch wrote: v1 = (1 - m0) g1 at the momentum
    # set at construction, then v2 = m1 v1 + (1 - m1) g2 at the one set after step 1.
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = optimlab.Momentum([w], lr=0.1)
    scheduler = SCHEDULERS["CyclicLR"](opt)
    m0 = opt.param_groups[0]["momentum"]
    g1 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    g2 = torch.tensor([0.5, 3.0], dtype=torch.float64)
    w.grad = g1
    opt.step()
    scheduler.step()
    m1 = opt.param_groups[0]["momentum"]
    assert m0 == 0.9 and 0.7 < m1 < m0  # CyclicLR starts at max_momentum, then goes down
    w.grad = g2
    opt.step()
    expected = m1 * ((1 - m0) * g1) + (1 - m1) * g2
    # rtol=1e-14 (45 ulp): two steps of a few roundings each
    torch.testing.assert_close(opt.state[w]["velocity"], expected, rtol=1e-14, atol=0)


def test_beta_is_accepted_for_momentum():
    a, b, c = (torch.zeros(2, requires_grad=True) for _ in range(3))
    assert optimlab.Momentum([a], beta=0.5).param_groups[0]["momentum"] == 0.5
    opt = optimlab.Momentum([{"params": [b], "beta": 0.3}, {"params": [c]}], momentum=0.6)
    assert [g["momentum"] for g in opt.param_groups] == [0.3, 0.6]
    assert all("beta" not in g for g in opt.param_groups) and "beta" not in opt.defaults
    # torch's contract: the defaults are constructor arguments
    assert optimlab.Momentum([a], **opt.defaults).defaults == opt.defaults
    with pytest.raises(
        ValueError, match=r"Invalid beta value: 1\.0; expected a number in \[0, 1\)"
    ):
        optimlab.Momentum([a], beta=1.0)
    with pytest.raises(ValueError, match=r"Invalid momentum=0\.5 with beta=0\.8; pass only one"):
        optimlab.Momentum([a], momentum=0.5, beta=0.8)


def test_a_checkpoint_saved_under_beta_loads_with_its_value():
    w = torch.ones(3, requires_grad=True)
    before = optimlab.Momentum([w], lr=0.1, momentum=0.7)
    w.grad = torch.ones(3)
    before.step()
    saved = before.state_dict()
    for group in saved["param_groups"]:  # as optimlab saved it while the key was "beta"
        group["beta"] = group.pop("momentum")
    after = optimlab.Momentum([w], lr=0.1)  # momentum 0.9 by default
    after.load_state_dict(saved)
    assert after.param_groups[0]["momentum"] == 0.7 and "beta" not in after.param_groups[0]
    assert "beta" in saved["param_groups"][0]  # the caller's dict is left as it was
    assert torch.equal(after.state[w]["velocity"], before.state[w]["velocity"])


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128], ids=str)
@pytest.mark.parametrize(
    "options",
    [{}, dict(momentum=0.9, dampening=0.1, weight_decay=0.01), dict(momentum=0.9, nesterov=True)],
)
@pytest.mark.parametrize(
    "path", [{}, {"fused": "exact"}, {"foreach": True}, {"foreach": False}], ids=str
)
def test_complex_parameters_step_as_torchs_bitwise(dtype, options, path):
    # torch's SGD computes on the complex numbers, where x + a*y rounds the product a*y apart
    # (on real numbers, one fused rounding): optimlab's does the same on every path
    steps = 10
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(64, dtype=dtype, generator=generator)
    grads = [torch.randn(64, dtype=dtype, generator=generator) for _ in range(steps)]
    results = []
    for make in (
        lambda p: torch.optim.SGD([p], lr=0.1, foreach=False, **options),
        lambda p: torch.optim.SGD([p], lr=0.1, foreach=True, **options),
        lambda p: optimlab.SGD([p], lr=0.1, **path, **options),
    ):
        p = start.clone().requires_grad_()
        optimizer = make(p)
        for grad in grads:
            p.grad = grad.clone()
            optimizer.step()
        results.append(torch.view_as_real(p.detach()))
    assert torch.equal(results[2], results[0]) and torch.equal(results[2], results[1])
    assert not torch.equal(results[2], torch.view_as_real(start))
