"""Schedule-free SGD/AdamW and Prodigy beyond the generic tests: train/eval modes, checkpoints
in either mode, group-level sums over several tensors, and Prodigy with its default d0 against
the float64 NumPy transcriptions of ``references_tuning_free.py``."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import references_tuning_free as ref
import torch
from conftest import make_mlp
from rounding import EPS, assert_path_close

import optimlab
import optimlab.core.tuning_free
import optimlab.optim.tuning_free
from optimlab.fused import native

SCHEDULE_FREE = [optimlab.ScheduleFreeSGD, optimlab.ScheduleFreeAdamW]

# A least-squares problem in float64: f(w) = |A w - b|^2 / (2 n).
_rng = np.random.default_rng(1)
A = _rng.normal(size=(30, 5)) * np.array([1.0, 2.0, 0.5, 3.0, 0.3])
B = _rng.normal(size=30)
W0 = _rng.normal(size=5)


def grad_numpy(w):
    return A.T @ (A @ w - B) / len(B)


def lrs_around(base, steps):
    return [base * (1 + 0.5 * math.sin(t / 5)) for t in range(steps)]


def run(opt, w, lrs, grad=grad_numpy):
    """Step ``opt`` on the float64 tensor ``w`` with NumPy gradients; the points, then w."""
    points = []
    for lr in lrs:
        opt.param_groups[0]["lr"] = lr
        points.append(w.detach().numpy().copy())
        w.grad = torch.from_numpy(grad(w.detach().numpy()))
        opt.step()
    return np.array(points + [w.detach().numpy().copy()])


def fresh(cls, lr=0.02, **kwargs):
    w = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
    return w, cls([w], lr=lr, **kwargs)


def sf_reference(cls, lrs, grad=grad_numpy, **kwargs):
    if cls is optimlab.ScheduleFreeSGD:
        return ref.schedule_free_sequences(
            W0, grad, lrs, adam=False, beta=kwargs.pop("momentum", 0.9), **kwargs
        )
    beta1, beta2 = kwargs.pop("betas", (0.9, 0.999))
    return ref.schedule_free_sequences(W0, grad, lrs, adam=True, beta=beta1, beta2=beta2, **kwargs)


# --- schedule-free: train and eval modes ---------------------------------------------------


@pytest.mark.parametrize("cls", SCHEDULE_FREE, ids=lambda c: c.__name__)
def test_eval_holds_x_and_train_gives_y_back(cls):
    lrs = lrs_around(0.05, 40)
    kwargs = dict(weight_decay=0.01, warmup_steps=5)
    w, opt = fresh(cls, **kwargs)
    points = run(opt, w, lrs)
    y = w.detach().clone()
    opt.eval()
    assert opt.param_groups[0]["train_mode"] is False

    # y's path and the x eval() gives, within the tolerances of rounding.py
    def reference(grad):
        return sf_reference(cls, lrs, grad, **kwargs)[:2]

    assert_path_close((points, w.detach().numpy()), reference, grad_numpy)
    assert np.abs(w.detach().numpy() - y.numpy()).max() > 1e-3  # x really differs from y
    x = w.detach().clone()
    opt.eval()  # already in eval mode: nothing happens
    assert torch.equal(w, x)
    z = opt.state[w]["z"].clone()
    opt.train()
    assert opt.param_groups[0]["train_mode"] is True
    # y -> x -> y is two interpolations, lerp(a, b, c) = a + c (b - a): each rounds its
    # difference, product and sum to half an ulp of the operands, which may be far larger than
    # y (|1 - 1/beta| |z - y| in the first), so a few ulp of |x| + |y| + |z| per coordinate,
    # not of |y|: 8 eps times that sum.
    bound = 8 * EPS * (x.abs() + y.abs() + z.abs())
    assert ((w.detach() - y).abs() <= bound).all(), ((w.detach() - y).abs() / bound).max()
    y_again = w.detach().clone()
    opt.train()  # already in train mode: nothing happens
    assert torch.equal(w, y_again)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("cls", SCHEDULE_FREE, ids=lambda c: c.__name__)
def test_eval_and_train_of_narrow_parameters_compute_in_the_state_dtype(cls, dtype):
    # with float32 state (z) for bfloat16 or float16 parameters (y), eval() computes
    # x = (y - (1 - beta) z) / beta in float32 and rounds it to the parameters' dtype once,
    # as a step does (it once refused to interpolate between the two dtypes): within the
    # rounding to ``dtype`` plus test_eval_holds_x_and_train_gives_y_back's float32 bound
    generator = torch.Generator().manual_seed(0)
    w = torch.randn(300, generator=generator).to(dtype).requires_grad_()
    opt = cls([w], lr=0.02, state_dtype=torch.float32)
    for _ in range(5):
        w.grad = torch.randn(w.shape, generator=generator).to(dtype)
        opt.step()
    y, z = w.detach().double(), opt.state[w]["z"].double()
    beta = opt._interpolation(opt.param_groups[0])
    opt.eval()
    x = (y - (1 - beta) * z) / beta
    assert w.dtype == dtype and opt.state[w]["z"].dtype == torch.float32
    bound = torch.finfo(dtype).eps * x.abs() + 8 * EPS * (x.abs() + y.abs() + z.abs())
    assert ((w.detach().double() - x).abs() <= bound).all()
    assert not torch.equal(w.detach().double(), y)
    opt.train()  # y again, within the roundings of both ways
    bound = 2 * torch.finfo(dtype).eps * (x.abs() + y.abs() + z.abs())
    assert ((w.detach().double() - y).abs() <= bound).all()


@pytest.mark.parametrize("cls", SCHEDULE_FREE, ids=lambda c: c.__name__)
def test_step_in_eval_mode_is_refused_and_changes_nothing(cls):
    w, opt = fresh(cls)
    run(opt, w, [0.02] * 3)
    opt.eval()
    before = w.detach().clone()
    state = {k: v.clone() if torch.is_tensor(v) else v for k, v in opt.state[w].items()}
    group = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    w.grad = torch.ones_like(w)
    with pytest.raises(
        RuntimeError,
        match=rf"{cls.__name__}\.step\(\) called in eval mode \(parameter group 0\).*"
        r"Call optimizer\.train\(\) before training steps",
    ):
        opt.step()
    assert torch.equal(w, before)
    for key, value in state.items():
        assert torch.equal(opt.state[w][key], value) if torch.is_tensor(value) else True
    assert {k: v for k, v in opt.param_groups[0].items() if k != "params"} == group
    opt.train()
    opt.step()
    assert opt.param_groups[0]["k"] == 4


@pytest.mark.parametrize("cls", SCHEDULE_FREE, ids=lambda c: c.__name__)
def test_modes_before_the_first_step_and_for_added_groups(cls):
    w, opt = fresh(cls)
    opt.eval()  # no state yet: x = y = z, nothing to move
    assert torch.equal(w.detach(), torch.from_numpy(W0))
    extra = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt.add_param_group({"params": [extra]})
    assert opt.param_groups[1]["train_mode"] is False  # follows the optimizer's mode
    assert opt.param_groups[1]["k"] == 0 and opt.param_groups[1]["weight_sum"] == 0.0
    opt.train()
    assert all(g["train_mode"] for g in opt.param_groups)
    run(opt, w, [0.02] * 2)
    assert opt.param_groups[1]["k"] == 2  # the weights advance per group, gradient or not
    assert torch.equal(extra, torch.zeros(3, dtype=torch.float64))


def _digits_run(cls, model, opt, X, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()


@pytest.mark.parametrize("cls", SCHEDULE_FREE, ids=lambda c: c.__name__)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_checkpoint_in_either_mode_resumes_exactly(cls, mode, digits):
    X, y = digits
    kwargs = dict(lr=0.05, weight_decay=1e-3, warmup_steps=4)
    whole = make_mlp()
    opt_whole = cls(whole.parameters(), **kwargs)
    _digits_run(cls, whole, opt_whole, X, y, 6)
    ys = [p.detach().clone() for p in whole.parameters()]
    if mode == "eval":
        opt_whole.eval()  # as before an evaluation or a save
    buffer = io.BytesIO()
    torch.save({"model": whole.state_dict(), "optimizer": opt_whole.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    assert saved["optimizer"]["param_groups"][0]["train_mode"] is (mode == "train")
    # In eval mode the saved model is the average x (the point to use), not y.
    same = [
        torch.equal(y_, saved["model"][name]) for y_, (name, _) in zip(ys, whole.named_parameters())
    ]
    assert all(same) if mode == "train" else not any(same)

    resumed = make_mlp(seed=5)
    resumed.load_state_dict(saved["model"])
    opt_resumed = cls(resumed.parameters(), lr=1.0)
    opt_resumed.load_state_dict(saved["optimizer"])
    assert opt_resumed.param_groups[0]["train_mode"] is (mode == "train")
    for model, opt in ((whole, opt_whole), (resumed, opt_resumed)):
        opt.train()
        _digits_run(cls, model, opt, X, y, 6)
        opt.eval()
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert opt_whole.param_groups[0]["k"] == opt_resumed.param_groups[0]["k"] == 12


@pytest.mark.skipif(
    not native.available(),
    reason=f"the fused C loop does not run here: {native.unavailable_reason()}",
)
@pytest.mark.parametrize("cls", SCHEDULE_FREE, ids=lambda c: c.__name__)
def test_fused_steps_and_mode_switches_equal_the_plain_path(cls, digits):
    X, y = digits
    models = [make_mlp(), make_mlp()]
    opts = [cls(m.parameters(), lr=0.05, fused=f) for m, f in zip(models, ("exact", False))]
    for model, opt in zip(models, opts):
        for _ in range(3):
            _digits_run(cls, model, opt, X, y, 4)
            opt.eval()
            opt.train()
    assert opts[0]._fused.ready(opts[0].param_groups[0]) is not None  # it ran fused
    for a, b in zip(*(m.parameters() for m in models)):
        assert torch.equal(a, b)
        for key in ("z", "exp_avg_sq") if cls is optimlab.ScheduleFreeAdamW else ("z",):
            assert torch.equal(opts[0].state[a][key], opts[1].state[b][key])


@pytest.mark.parametrize("cls", SCHEDULE_FREE, ids=lambda c: c.__name__)
def test_a_skipped_step_does_not_advance_the_average(cls):
    w, opt = fresh(cls, nonfinite_grads="skip")
    run(opt, w, [0.02] * 3)
    group = dict(opt.param_groups[0])
    w.grad = torch.full_like(w, float("nan"))
    opt.step()
    assert opt.skipped_steps == 1
    for key in ("k", "weight_sum", "lr_max"):
        assert opt.param_groups[0][key] == group[key]


@pytest.mark.parametrize("cls", SCHEDULE_FREE, ids=lambda c: c.__name__)
def test_a_step_grad_scaler_skips_does_not_advance_the_average(cls):
    # GradScaler hands the step found_inf; a step it skips is not taken, and the average's
    # count stays the number of steps taken (each parameter's own count)
    w, opt = fresh(cls)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    for k in range(4):
        opt.zero_grad()
        loss = (w**2).sum() * (float("inf") if k == 2 else 1.0)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    assert int(opt.state[w]["step"]) == 3 and opt.param_groups[0]["k"] == 3


def test_schedule_free_weights_follow_the_largest_learning_rate():
    # Warmup, then a learning rate that falls: the average keeps weighing steps by the largest
    # rate so far (and by t**r), as the authors' code does; checked against the reference.
    lrs = [0.1] * 10 + [0.05] * 10 + [0.2] * 10
    kwargs = dict(warmup_steps=6, r=1.5, weight_lr_power=3.0)
    w, opt = fresh(optimlab.ScheduleFreeSGD, momentum=0.7, **kwargs)
    points = run(opt, w, lrs)
    assert opt.param_groups[0]["lr_max"] == 0.2
    opt.eval()

    def reference(grad):
        return sf_reference(optimlab.ScheduleFreeSGD, lrs, grad, momentum=0.7, **kwargs)[:2]

    assert_path_close((points, w.detach().numpy()), reference, grad_numpy)  # rounding.py


# --- group-level quantities span every tensor of the group -----------------------------------

# f(W, b) = |X W^T + b - T|^2 / (2 n) over a 2x3 matrix and a bias of 2: two tensors, and one
# flat vector of 8 for the NumPy transcriptions.
_X = _rng.normal(size=(20, 3)) * np.array([1.0, 3.0, 0.3])
_T = _rng.normal(size=(20, 2))
_V0 = _rng.normal(size=8)


def _flat_grad(v):
    W, b = v[:6].reshape(2, 3), v[6:]
    residual = _X @ W.T + b - _T
    return np.concatenate([(residual.T @ _X).ravel(), residual.sum(0)]) / len(_T)


def _two_tensor_run(make, lrs):
    W = torch.tensor(_V0[:6].reshape(2, 3), requires_grad=True)
    b = torch.tensor(_V0[6:], requires_grad=True)
    opts = make(W, b)
    points = []
    for lr in lrs:
        flat = np.concatenate([W.detach().numpy().ravel(), b.detach().numpy()])
        points.append(flat)
        g = _flat_grad(flat)
        W.grad, b.grad = torch.from_numpy(g[:6].reshape(2, 3).copy()), torch.from_numpy(g[6:])
        for opt in opts:
            opt.param_groups[0]["lr"] = lr
            opt.step()
    return np.array(points + [np.concatenate([W.detach().numpy().ravel(), b.detach().numpy()])])


@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "per_tensor"])
def test_prodigy_estimate_sums_over_all_tensors_of_the_group(foreach):
    lrs = lrs_around(1.0, 60)
    together = _two_tensor_run(lambda W, b: [optimlab.Prodigy([W, b], foreach=foreach)], lrs)
    # tolerance: the path's sensitivity to one ulp per step (rounding.py)
    assert_path_close(together, lambda grad: ref.prodigy(_V0, grad, lrs), _flat_grad)
    # One optimizer per tensor estimates two d's from partial sums: another path.
    apart = _two_tensor_run(lambda W, b: [optimlab.Prodigy([W]), optimlab.Prodigy([b])], lrs)
    assert np.abs(apart[-1] - together[-1]).max() > 1e-3


@pytest.mark.parametrize("cls", SCHEDULE_FREE, ids=lambda c: c.__name__)
def test_schedule_free_weights_are_shared_by_all_tensors_of_the_group(cls):
    lrs = lrs_around(0.05, 40)
    together = _two_tensor_run(lambda W, b: [cls([W, b], warmup_steps=3)], lrs)
    adam = cls is optimlab.ScheduleFreeAdamW

    def reference(grad):
        return ref.schedule_free_sequences(_V0, grad, lrs, adam=adam, beta=0.9, warmup_steps=3)[0]

    assert_path_close(together, reference, _flat_grad)  # tolerance: see rounding.py


def test_schedule_free_adamw_uses_the_groups_step_count_for_a_late_tensor():
    # A tensor whose first gradient comes at step 6 joins the group's average with the
    # group's weight c = 1/6 and bias correction 1 - beta2**6, as in the authors' code.
    a = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    late = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    lr, beta1, beta2, eps = 0.1, 0.9, 0.999, 1e-8
    opt = optimlab.ScheduleFreeAdamW([a, late], lr=lr)
    for _ in range(5):
        a.grad = torch.ones(2, dtype=torch.float64)
        opt.step()
    g = np.array([0.5, 3.0])
    a.grad, late.grad = torch.ones(2, dtype=torch.float64), torch.from_numpy(g.copy())
    opt.step()
    c = 1 / 6
    u = g / (np.sqrt((1 - beta2) * g * g / (1 - beta2**6)) + eps)
    y0 = np.array([1.0, -2.0])  # = z0 = x0
    expected = (1 - c) * y0 + c * y0 + lr * (beta1 * (1 - c) - 1) * u
    # rtol=1e-14 (45 ulp): one step of about ten roundings of numbers no larger than |y0|
    np.testing.assert_allclose(late.detach().numpy(), expected, rtol=1e-14)
    assert opt.state[late]["step"] == 1 and opt.param_groups[0]["k"] == 6


# --- Prodigy with its defaults (lr = 1, d0 = 1e-6) against the transcription -----------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        dict(safeguard_warmup=True, growth_rate=1.3, use_bias_correction=True),
        dict(weight_decay=0.1, decouple=False, betas=(0.8, 0.99), beta3=0.95, d_coef=0.5),
        # no first average: the authors' code steps with the new d (see ref.prodigy)
        dict(betas=(0.0, 0.999)),
        dict(betas=(0.0, 0.999), weight_decay=0.05),
    ],
    ids=[
        "defaults",
        "safeguard_warmup-growth_rate-bias_correction",
        "coupled_decay-betas",
        "beta1_0",
        "beta1_0-decoupled_decay",
    ],
)
def test_prodigy_defaults_against_the_transcription(kwargs):
    lrs = lrs_around(1.0, 80)
    w, opt = fresh(optimlab.Prodigy, lr=1.0, **kwargs)
    points = run(opt, w, lrs)
    # tolerance: the path's sensitivity to one ulp per step (rounding.py)
    assert_path_close(points, lambda grad: ref.prodigy(W0, grad, lrs, **kwargs), grad_numpy)
    group = opt.param_groups[0]
    assert group["d"] > 1e4 * 1e-6  # the estimate grew from d0 by orders of magnitude
    assert np.linalg.norm(points[-1] - W0) > 0.5


def test_prodigy_d_grows_monotonically_within_the_growth_rate():
    w, opt = fresh(optimlab.Prodigy, lr=1.0, growth_rate=1.1)
    ds = [opt.param_groups[0]["d"]]
    for _ in range(60):
        w.grad = torch.from_numpy(grad_numpy(w.detach().numpy()))
        opt.step()
        ds.append(opt.param_groups[0]["d"])
    # Once d has left d0 (its first move is free: d jumps to the first positive estimate).
    ratios = np.array([b / a for a, b in zip(ds, ds[1:]) if a != ds[0]])
    assert ds[-1] > 100 * ds[0] and len(ratios) > 50
    # 1e-15 (4.5 ulp): d * 1.1 then the ratio's division, each rounding by half an ulp
    assert (ratios >= 1).all() and (ratios <= 1.1 * (1 + 1e-15)).all()


def test_prodigy_takes_no_step_on_zero_gradients():
    # |s|_1 = 0: nothing is known about the distance; the authors' code returns untouched.
    w, opt = fresh(optimlab.Prodigy, lr=1.0)
    w.grad = torch.zeros_like(w)
    opt.step()
    assert torch.equal(w.detach(), torch.from_numpy(W0))
    assert opt.param_groups[0]["k"] == 0 and opt.param_groups[0]["d"] == 1e-6


def test_prodigy_state_and_estimate_survive_a_checkpoint():
    w, opt = fresh(optimlab.Prodigy, lr=1.0)
    run(opt, w, [1.0] * 20)
    saved = opt.state_dict()
    assert saved["param_groups"][0]["d"] > 1e-6 and saved["param_groups"][0]["k"] == 20
    w2 = w.detach().clone().requires_grad_(True)
    opt2 = optimlab.Prodigy([w2], lr=1.0)
    opt2.load_state_dict(saved)
    a, b = run(opt, w, [1.0] * 10), run(opt2, w2, [1.0] * 10)
    assert np.array_equal(a, b)


def test_prodigy_bfloat16_moves_when_its_steps_are_representable():
    # From the default d0 = 1e-6 the first steps are far below bfloat16's resolution at 1 (the
    # generic bf16 test's setting); with d0 = 1e-2 they are not, and the run is sound.
    w = torch.tensor([1.0, -1.0], dtype=torch.bfloat16, requires_grad=True)
    opt = optimlab.Prodigy([w], d0=1e-2)
    for _ in range(20):
        opt.zero_grad()
        (w.float() ** 2).sum().backward()
        opt.step()
    buffers = [t for k, t in opt.state[w].items() if torch.is_tensor(t) and k != "step"]
    assert all(t.dtype == torch.bfloat16 for t in buffers)
    assert w.detach().float().abs().max() < 0.9 and opt.param_groups[0]["d"] >= 1e-2


def test_schedule_free_and_prodigy_are_listed():
    assert optimlab.optim.BEYOND_NOTES["schedule_free_adamw"] is optimlab.ScheduleFreeAdamW
    assert optimlab.optim.BEYOND_NOTES["schedule_free_sgd"] is optimlab.ScheduleFreeSGD
    assert optimlab.optim.BEYOND_NOTES["prodigy"] is optimlab.Prodigy
    assert optimlab.Prodigy._unfusable_reason is not None
    assert optimlab.ScheduleFreeSGD._unfusable_reason is None
    assert optimlab.ScheduleFreeAdamW._unfusable_reason is None
