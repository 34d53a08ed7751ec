"""Bad input gets a clear error naming the argument and the value; nothing is silently changed."""

from __future__ import annotations

import pytest
import torch
from registry import BAD_INPUTS, CLASSES

import optimlab


def _param(*shape):
    return torch.zeros(*shape or (2,), requires_grad=True)


@pytest.mark.parametrize(
    "cls, kwargs, error, message",
    BAD_INPUTS,
    ids=[
        f"{c.__name__}-{'-'.join(f'{k}={v!r}' for k, v in kw.items())}"
        for c, kw, _, _ in BAD_INPUTS
    ],
)
def test_bad_hyperparameters(cls, kwargs, error, message):
    kwargs = {"lr": 0.1, **kwargs}
    with pytest.raises(error, match=message):
        cls([_param()], **kwargs)
    # The same check guards groups added later and per-group values.
    opt = cls([_param()], lr=0.1)
    group = {"params": [_param()], **kwargs}
    group.pop("nonfinite_grads", None)
    if "nonfinite_grads" not in kwargs:
        with pytest.raises(error, match=message):
            opt.add_param_group(group)
        assert len(opt.param_groups) == 1


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_bad_params(cls):
    w = _param()
    with pytest.raises(
        TypeError,
        match=r"params argument given to the optimizer should be an iterable of Tensors or dicts, "
        r"but got a Tensor of shape \(2,\)",
    ):
        cls(w, lr=0.1)
    with pytest.raises(TypeError, match=r"Invalid params: a set; its order changes"):
        cls({w}, lr=0.1)
    # each message begins in torch's words (code that matches torch's messages matches ours)
    with pytest.raises(ValueError, match=r"^optimizer got an empty parameter list \(Invalid"):
        cls([], lr=0.1)
    with pytest.raises(ValueError, match=r"^optimizer got an empty parameter list"):
        cls(iter([]), lr=0.1)
    with pytest.raises(
        TypeError,
        match=r"^optimizer can only optimize Tensors, but one of the params is str \(Invalid "
        r"params\[1\] of group 0: a str",
    ):
        cls([w, "weights"], lr=0.1)
    with pytest.raises(TypeError, match=r"Invalid params\[0\] of group 0: a float"):
        cls([1.5], lr=0.1)
    non_leaf = _param() * 2
    with pytest.raises(
        ValueError,
        match=r"^can't optimize a non-leaf Tensor \(Invalid params\[0\] of group 0: a Tensor "
        r"of shape \(2,\)",
    ):
        cls([non_leaf], lr=0.1)
    with pytest.warns(
        UserWarning, match=r"params\[1\] of group 0 \(shape \(2,\)\) repeats params\[0\]"
    ):
        cls([w, w], lr=0.1)  # torch warns, and steps it twice
    with pytest.raises(
        ValueError,
        match=r"^some parameters appear in more than one parameter group \(Invalid params of "
        r"group 1: params\[0\], shape \(2,\), is already in group 0",
    ):
        cls([{"params": [w]}, {"params": [w]}], lr=0.1)
    with pytest.raises(TypeError, match=r"^optimizer parameters need to be organized in ordered"):
        cls([{"params": {w}}], lr=0.1)
    with pytest.raises(TypeError, match=r"Invalid params: a dict"):
        cls({"params": [w]}, lr=0.1)


def test_named_parameters_are_accepted_and_used_in_messages():
    model = torch.nn.Linear(3, 2)
    opt = optimlab.Adam(model.named_parameters(), lr=0.1)
    assert opt.param_groups[0]["param_names"] == ["weight", "bias"]
    model(torch.ones(1, 3)).sum().backward()
    model.bias.grad[0] = float("nan")
    with pytest.raises(
        optimlab.NonFiniteGradientError, match=r"The gradient of 'bias' \(shape \(2,\)\) holds NaN"
    ):
        opt.step()


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=str)
def test_nonfinite_gradient_raises_and_changes_nothing(cls, bad):
    a, b = _param(3), _param(4)
    opt = cls([a, b], lr=0.1)
    (a.sum() + b.sum()).backward()
    opt.step()
    before = [a.detach().clone(), b.detach().clone()]
    state_before = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in opt.state[b].items()}
    b.grad[2] = bad
    kind = "NaN" if bad != bad else "Inf"
    with pytest.raises(
        optimlab.NonFiniteGradientError,
        match=rf"parameter 1 of group 0 \(shape \(4,\)\) holds {kind}",
    ):
        opt.step()
    assert torch.equal(a, before[0]) and torch.equal(b, before[1])
    for key, value in state_before.items():
        now = opt.state[b][key]
        assert torch.equal(now, value) if torch.is_tensor(value) else now == value


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_nonfinite_gradient_skip_policy(cls):
    w = _param(3)
    opt = cls([w], lr=0.1, nonfinite_grads="skip")
    w.grad = torch.tensor([1.0, float("nan"), 2.0])
    opt.step()
    assert torch.equal(w, torch.zeros(3)) and opt.skipped_steps == 1
    # no state, or (Adagrad's, made at construction as torch's) the first
    assert len(opt.state[w]) == 0 or int(opt.state[w]["step"]) == 0
    w.grad = torch.tensor([1.0, 1.0, 2.0])
    opt.step()
    assert opt.state[w]["step"] == 1 and (w < 0).all()


def test_ignore_policy_is_torchs_behaviour():
    w = _param(2)
    opt = optimlab.SGD([w], lr=0.1, nonfinite_grads="ignore")
    w.grad = torch.tensor([float("inf"), 1.0])
    opt.step()
    assert torch.isinf(w[0]) and w[1].item() == pytest.approx(-0.1)


def test_lr_written_by_a_schedule_is_checked_at_step():
    w = _param(2)
    opt = optimlab.Adam([w], lr=0.1)
    opt.param_groups[0]["lr"] = float("nan")
    w.grad = torch.ones(2)
    with pytest.raises(ValueError, match=r"Invalid learning rate: nan \(lr\)"):
        opt.step()
    assert torch.equal(w, torch.zeros(2))


def test_sparse_gradients_are_refused():
    # by optimizers without a sparse step (SGD and Adagrad have one: tests/test_sparse.py)
    emb = torch.nn.Embedding(5, 2, sparse=True)
    opt = optimlab.Adam(emb.parameters(), lr=0.1)
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match=r"Sparse gradients are not supported"):
        opt.step()


def _stepped(cls, *shapes, **kwargs):
    params = [_param(*s) for s in shapes]
    opt = cls(params, lr=0.1, **kwargs)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    return opt


def test_load_state_dict_refuses_a_different_number_of_groups():
    saved = _stepped(optimlab.Adam, (2,)).state_dict()
    opt = optimlab.Adam([{"params": [_param()]}, {"params": [_param()]}], lr=0.1)
    with pytest.raises(
        ValueError, match=r"state_dict has 1 parameter groups but this optimizer has 2"
    ):
        opt.load_state_dict(saved)


def test_load_state_dict_refuses_a_group_of_different_size():
    saved = _stepped(optimlab.Adam, (2,), (3,)).state_dict()
    opt = optimlab.Adam([_param()], lr=0.1)
    with pytest.raises(
        ValueError,
        match=r"state_dict's group 0 has 2 parameters but this optimizer's group 0 has 1",
    ):
        opt.load_state_dict(saved)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_load_state_dict_refuses_a_state_of_the_wrong_shape(cls):
    kwargs = {"momentum": 0.9} if cls is optimlab.SGD else {}
    saved = _stepped(cls, (2, 3), **kwargs).state_dict()
    target = _param(3, 2)
    opt = cls([target], lr=0.1, **kwargs)
    with pytest.raises(
        ValueError,
        match=r"\(parameter 0 of group 0\)\['\w+'\] has shape \(\d+, \d+\) but this optimizer keeps "
        r"it with shape \(\d+, \d+\) for a parameter of shape \(3, 2\)",
    ):
        opt.load_state_dict(saved)
    # nothing loaded: no state, or (Adagrad's, made at construction as torch's) the first
    assert len(opt.state) == 0 or int(opt.state[target]["step"]) == 0
    assert all(t.shape in ((), target.shape) for t in opt.state[target].values())


def test_load_state_dict_refuses_state_of_another_configuration():
    saved = _stepped(optimlab.Adam, (2,), amsgrad=True).state_dict()
    saved["param_groups"][0]["amsgrad"] = False  # the state still holds max_exp_avg_sq
    with pytest.raises(
        ValueError, match=r"has entries \['exp_avg', 'exp_avg_sq', 'max_exp_avg_sq', 'step'\] but"
    ):
        optimlab.Adam([_param()], lr=0.1).load_state_dict(saved)


def test_load_state_dict_refuses_invalid_hyperparameters():
    saved = _stepped(optimlab.Adam, (2,)).state_dict()
    saved["param_groups"][0]["lr"] = -1.0
    with pytest.raises(ValueError, match=r"Invalid learning rate: -1\.0 \(lr\)"):
        optimlab.Adam([_param()], lr=0.1).load_state_dict(saved)


def test_loaded_state_is_not_shared_with_the_source():
    source = _stepped(optimlab.Adam, (2,))
    target = optimlab.Adam([_param()], lr=0.1)
    target.load_state_dict(source.state_dict())
    (p,) = source.param_groups[0]["params"]
    (q,) = target.param_groups[0]["params"]
    assert torch.equal(source.state[p]["exp_avg"], target.state[q]["exp_avg"])
    assert source.state[p]["exp_avg"].data_ptr() != target.state[q]["exp_avg"].data_ptr()


def test_repr_names_the_hyperparameters():
    opt = optimlab.Adam([{"params": [_param(3)]}, {"params": [_param(2, 2)], "lr": 0.5}], lr=0.1)
    text = repr(opt)
    assert text.startswith("Adam(2 group(s), 2 tensor(s), 7 parameters")
    assert "group 0 (1 tensor(s)): lr=0.1, betas=(0.9, 0.999), eps=1e-08" in text
    assert "group 1 (1 tensor(s)): lr=0.5" in text
