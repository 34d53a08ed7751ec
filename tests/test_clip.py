import math

import numpy as np
import pytest
import torch

from optimlab.train.clip import (
    clip_grad_norm,
    clip_grad_value,
    first_nonfinite_grad,
    grads_are_finite,
)


def _param(grad, shape=None):
    g = torch.as_tensor(grad, dtype=torch.float32)
    if shape is not None:
        g = g.reshape(shape)
    p = torch.zeros_like(g, requires_grad=True)
    p.grad = g.clone()
    return p


def test_clip_3_4_to_unit_norm():
    p = _param([3.0, 4.0])
    norm = clip_grad_norm([p], max_norm=1.0)
    assert isinstance(norm, float)
    # 9 + 16 = 25 and its root are exact in float32, so is 5; the scale 1 / (5 + 1e-6) and
    # the products round in float32 (2**-24 = 6e-8 each) around 0.6 and 0.8, which float32
    # holds to 3e-8: within 2e-7, and rtol=1e-5 leaves room for the 1e-6 in the denominator
    assert norm == pytest.approx(5.0, rel=1e-7)
    torch.testing.assert_close(p.grad, torch.tensor([0.6, 0.8]), rtol=1e-5, atol=0)
    assert torch.linalg.vector_norm(p.grad).item() == pytest.approx(1.0, rel=1e-5)


def test_norm_over_several_tensors_matches_float64_concatenation():
    gen = torch.Generator().manual_seed(0)
    shapes = [(7,), (3, 5), (2, 2, 4), (1,)]
    params = [_param(torch.randn(s, generator=gen) * 3) for s in shapes]
    flat = torch.cat([p.grad.detach().double().flatten() for p in params])
    expected = math.sqrt(sum(float(x) ** 2 for x in flat.tolist()))
    before = [p.grad.clone() for p in params]
    norm = clip_grad_norm(params, max_norm=1.0)
    # float32 (u = 2**-24 = 6e-8): the largest tensor's 16 squares sum within 17 u, the root
    # halves that, and the norm of the 4 norms adds about 3 u: at most 1.3e-6 / 2 + 2e-7 < 1e-6
    assert norm == pytest.approx(expected, rel=1e-6)
    scale = 1.0 / (expected + 1e-6)
    # the scale inherits the norm's 1e-6 and rounds twice more: rtol=1e-5 is ten times that
    for p, b in zip(params, before, strict=True):
        torch.testing.assert_close(p.grad, b * scale, rtol=1e-5, atol=1e-7)
    total_after = torch.cat([p.grad.double().flatten() for p in params]).norm().item()
    assert total_after == pytest.approx(1.0, rel=1e-5)


def test_other_norm_orders_match_numpy():
    gen = torch.Generator().manual_seed(1)
    params = [_param(torch.randn(5, generator=gen)), _param(torch.randn(2, 3, generator=gen))]
    flat = np.concatenate([p.grad.double().numpy().ravel() for p in params])
    for p_ord in (1.0, 3.0):
        got = clip_grad_norm(params, max_norm=1e9, norm_type=p_ord)
        # float32: 6 powers of 1-2 ulp and their sum (7 u), the 1/p-th root divides that by
        # p and adds an ulp, then the norm of the 2 norms: below 1e-6 for p = 1 and 3
        assert got == pytest.approx(np.linalg.norm(flat, ord=p_ord), rel=1e-6)


def test_no_clipping_below_max_norm_is_bitwise_identity():
    gen = torch.Generator().manual_seed(2)
    params = [
        _param(torch.randn(4, 3, generator=gen) * 1e-3),
        _param(torch.randn(6, generator=gen)),
    ]
    params[0].grad[0, 0] = -0.0
    before = [p.grad.clone() for p in params]
    norm = clip_grad_norm(params, max_norm=100.0)
    assert norm < 100.0
    for p, b in zip(params, before, strict=True):
        assert torch.equal(p.grad.view(torch.int32), b.view(torch.int32))


def test_params_without_grad_are_skipped_and_empty_is_zero():
    with_grad = _param([3.0, 4.0])
    without = torch.zeros(3, requires_grad=True)
    assert clip_grad_norm([without, with_grad], max_norm=10.0) == pytest.approx(5.0)
    assert without.grad is None
    assert clip_grad_norm([without], max_norm=1.0) == 0.0
    assert clip_grad_norm([], max_norm=1.0) == 0.0


def test_single_tensor_generator_and_named_parameters():
    p = _param([3.0, 4.0])
    assert clip_grad_norm(p, 10.0) == pytest.approx(5.0)
    assert clip_grad_norm((q for q in [p]), 10.0) == pytest.approx(5.0)
    model = torch.nn.Linear(3, 2)
    model(torch.ones(1, 3)).sum().backward()
    expected = torch.cat([q.grad.flatten() for q in model.parameters()]).norm().item()
    # 8 float32 squares summed in two orders: within 9 u = 5e-7 before the root
    assert clip_grad_norm(model.named_parameters(), 1e6) == pytest.approx(expected, rel=1e-6)


def test_inf_norm():
    params = [_param([1.0, -7.0, 2.0]), _param([[3.0], [-0.5]])]
    norm = clip_grad_norm(params, max_norm=3.5, norm_type=float("inf"))
    assert norm == 7.0
    # 7 * 3.5 / (7 + 1e-6) is 3.5 (1 - 1.4e-7), rounded twice in float32 (1.2e-7): < 1e-6
    assert max(p.grad.abs().max().item() for p in params) == pytest.approx(3.5, rel=1e-6)
    params = [_param([1.0, -7.0, 2.0])]
    assert clip_grad_norm(params, max_norm=100.0, norm_type="inf") == 7.0


def test_max_norm_zero_zeroes_gradients():
    p = _param([3.0, 4.0])
    assert clip_grad_norm([p], max_norm=0.0) == pytest.approx(5.0)
    assert torch.count_nonzero(p.grad) == 0


def test_nonfinite_norm_error_names_the_parameter_and_leaves_grads():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model(torch.ones(1, 2)).sum().backward()
    model[1].weight.grad[0, 0] = float("nan")
    before = [q.grad.clone() for q in model.parameters()]
    with pytest.raises(RuntimeError, match=r"non-finite.*1\.weight"):
        clip_grad_norm(model.named_parameters(), 1.0, error_if_nonfinite=True)
    for q, b in zip(model.parameters(), before, strict=True):
        torch.testing.assert_close(q.grad, b, equal_nan=True)
    # without the flag, the norm is reported as NaN (torch's behaviour)
    assert math.isnan(clip_grad_norm(model.parameters(), 1.0))


@pytest.mark.parametrize(
    ("max_norm", "exc", "pattern"),
    [
        (-1.0, ValueError, r"max_norm must be a non-negative number, got -1\.0"),
        (float("nan"), ValueError, r"max_norm must be a non-negative number, got nan"),
        ("1.0", TypeError, r"max_norm must be a real number, got '1\.0'"),
        (None, TypeError, r"max_norm must be a real number, got None"),
        (True, TypeError, r"max_norm must be a real number, got True"),
    ],
)
def test_bad_max_norm(max_norm, exc, pattern):
    p = _param([3.0, 4.0])
    with pytest.raises(exc, match=pattern):
        clip_grad_norm([p], max_norm)
    assert torch.equal(p.grad, torch.tensor([3.0, 4.0]))


@pytest.mark.parametrize("norm_type", [0, -2.0, float("nan"), "two"])
def test_bad_norm_type(norm_type):
    with pytest.raises(ValueError, match="norm_type must be a positive number"):
        clip_grad_norm([_param([1.0])], 1.0, norm_type=norm_type)


def test_bad_parameters_item():
    with pytest.raises(TypeError, match=r"parameters\[1\]: expected a tensor"):
        clip_grad_norm([_param([1.0]), 3.0], 1.0)


def test_clip_grad_value():
    p = _param([-5.0, -0.5, 0.0, 0.25, 9.0])
    q = torch.zeros(2, requires_grad=True)
    assert clip_grad_value([p, q], 1.0) is None
    assert torch.equal(p.grad, torch.tensor([-1.0, -0.5, 0.0, 0.25, 1.0]))
    assert q.grad is None
    with pytest.raises(ValueError, match=r"clip_value must be a non-negative number, got -0\.1"):
        clip_grad_value([p], -0.1)
    with pytest.raises(ValueError, match=r"clip_value must be a non-negative number, got nan"):
        clip_grad_value([p], float("nan"))
    with pytest.raises(TypeError, match="clip_value must be a real number"):
        clip_grad_value([p], "1")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_detection_names_the_parameter(bad):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    model(torch.ones(2, 3)).sum().backward()
    assert grads_are_finite(model.parameters())
    assert first_nonfinite_grad(model.parameters()) is None
    assert first_nonfinite_grad(model.named_parameters()) is None

    model[1].bias.grad[1] = bad
    assert not grads_are_finite(model.parameters())
    assert not grads_are_finite(model.named_parameters())
    assert first_nonfinite_grad(model.named_parameters()) == "1.bias"
    names = [n for n, _ in model.named_parameters()]
    assert first_nonfinite_grad(model.parameters(), names=names) == "1.bias"
    assert first_nonfinite_grad(model.parameters()) == "parameters[3]"

    model[0].weight.grad[2, 1] = float("nan")
    assert first_nonfinite_grad(model.named_parameters()) == "0.weight"


def test_detection_skips_missing_grads_and_checks_names_length():
    a = torch.zeros(2, requires_grad=True)
    b = _param([1.0, float("inf")])
    assert grads_are_finite([a])
    assert grads_are_finite([])
    assert not grads_are_finite([a, b])
    assert first_nonfinite_grad([a, b], names=["a", "b"]) == "b"
    assert first_nonfinite_grad([a, b]) == "parameters[1]"
    with pytest.raises(ValueError, match="names has 1 entries but there are 2 parameters"):
        first_nonfinite_grad([a, b], names=["a"])


def test_detection_on_sparse_grad():
    emb = torch.nn.Embedding(5, 2, sparse=True)
    emb(torch.tensor([1, 3])).sum().backward()
    assert emb.weight.grad.is_sparse
    assert grads_are_finite(emb.parameters())
    emb.weight.grad = torch.sparse_coo_tensor(
        torch.tensor([[2]]), torch.tensor([[float("nan"), 0.0]]), (5, 2), check_invariants=True
    )
    assert not grads_are_finite(emb.parameters())
    assert first_nonfinite_grad(emb.named_parameters()) == "weight"
