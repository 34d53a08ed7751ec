"""The parts of torch.optim's contract beyond the numbers, each against torch itself.

* ``differentiable=True``: the step is recorded by autograd, and its gradients with respect to
  the parameters, gradients and state are right: ``torch.autograd.gradcheck`` (finite
  differences in float64) on every twin, as torch's own TestDifferentiableOptimizer does;
* torch's GradScaler protocol (``_step_supports_amp_scaling``): under fp16 and bf16 autocast
  on the CPU, with a step the scaler skips (an Inf loss), the parameters, the scales and the
  step counts are the torch twin's (bitwise on the plain paths);
* tensor learning rates: torch's schedulers and optimlab's write them in place, and the steps
  follow them as the torch twin's do; tensor betas give Adam's and AdamW's steps bitwise; ``torch.compile(optimizer.step)`` compiles a fixed
  number of frames however often the rate changes.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounter
from torch.autograd import gradcheck

import optimlab
from optimlab.schedules import drive, step_decay

# twin -> (torch class, keyword arguments exercising its options, its buffers)
GRADCHECK = {
    "SGD": (dict(lr=0.9, momentum=0.9, weight_decay=0.1, nesterov=True), ["momentum_buffer"]),
    "Adam": (
        dict(lr=0.9, weight_decay=0.1, amsgrad=True),
        ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
    ),
    "AdamW": (
        dict(lr=0.9, amsgrad=True, maximize=True),
        ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
    ),
    "RMSprop": (
        dict(lr=0.9, momentum=0.9, centered=True, weight_decay=0.1),
        ["square_avg", "momentum_buffer", "grad_avg"],
    ),
    "NAdam": (
        dict(lr=0.9, weight_decay=0.1, decoupled_weight_decay=True),
        ["exp_avg", "exp_avg_sq"],
    ),
    "RAdam": (dict(lr=0.9, weight_decay=0.1), ["exp_avg", "exp_avg_sq"]),
    "Adamax": (dict(lr=0.9, weight_decay=0.1), ["exp_avg", "exp_inf"]),
    "Adagrad": (dict(lr=0.9, weight_decay=0.1, lr_decay=0.01), ["sum"]),
    "Adadelta": (dict(lr=0.9, weight_decay=0.1, rho=0.8), ["square_avg", "acc_delta"]),
    "Rprop": (dict(lr=0.9, maximize=True), ["prev", "step_size"]),
    "ASGD": (dict(lr=0.9, weight_decay=0.1, t0=5.0), ["ax"]),
}


def _step_through(p, grad, state, cls, kwargs, *ignored):
    """One differentiable step from ``state`` (torch's TestDifferentiableOptimizer's form):
    the parameter and the state tensors that require grad after it."""
    p = p.clone()
    p.grad = grad
    state = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
    optimizer = cls([p], **kwargs)
    optimizer.state[p].update(state)
    optimizer.step()
    after = optimizer.state[p].values()
    return (p, *(v for v in after if isinstance(v, torch.Tensor) and v.requires_grad))


def _state(name: str, buffers: list[str], generator: torch.Generator) -> dict:
    """A state after 10 steps with random buffers (positive where a root is taken of them)."""
    state = {
        "step": torch.tensor(10.0, dtype=torch.float64),
        **{b: torch.rand(10, dtype=torch.float64, generator=generator) + 0.5 for b in buffers},
    }
    if name == "RMSprop":  # centered: square_avg > grad_avg**2, else the root is NaN
        state["square_avg"] += 3
    if name == "Rprop":
        state["step_size"] = torch.full((10,), 0.01, dtype=torch.float64)
        state["prev"] = torch.randn(10, dtype=torch.float64, generator=generator)
    if name == "ASGD":
        state.update(
            eta=torch.tensor(0.9, dtype=torch.float64), mu=torch.ones((), dtype=torch.float64)
        )
    if name == "NAdam":
        state["mu_product"] = torch.tensor(0.3, dtype=torch.float64)
    for b in buffers:
        state[b].requires_grad_()
    return state


@pytest.mark.parametrize("name", sorted(GRADCHECK))
def test_differentiable_step_passes_gradcheck(name):
    kwargs, buffers = GRADCHECK[name]
    generator = torch.Generator().manual_seed(0)
    p = torch.rand(10, dtype=torch.float64, generator=generator, requires_grad=True)
    grad = torch.rand(10, dtype=torch.float64, generator=generator, requires_grad=True)
    state = _state(name, buffers, generator)
    cls = getattr(optimlab, name)
    arguments = (p, grad, state, cls, {**kwargs, "differentiable": True}, *state.values())
    assert gradcheck(_step_through, arguments)
    # and the recorded step computes what torch's differentiable step computes (torch's
    # differentiable path forms its bias corrections from the step tensor: a rounding apart)
    ours = _step_through(p, grad, state, cls, {**kwargs, "differentiable": True})
    twin = getattr(torch.optim, name)
    theirs = _step_through(p, grad, state, twin, {**kwargs, "differentiable": True})
    torch.testing.assert_close(ours, theirs, atol=0, rtol=8 * torch.finfo(torch.float64).eps)


def test_differentiable_refusals_are_torchs():
    w = torch.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="`fused` does not support `differentiable`"):
        optimlab.Adam([w], fused=True, differentiable=True)
    with pytest.raises(ValueError, match="Invalid foreach=True with differentiable=True"):
        optimlab.Adam([w], foreach=True, differentiable=True)
    optimizer = optimlab.Adam([w], differentiable=True)
    w.grad = torch.ones(2)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        optimizer.step()  # torch fails there too, in autograd's words


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_differentiable_step_with_a_tensor_lr(name):
    results = []
    for cls in (getattr(torch.optim, name), getattr(optimlab, name)):
        w = torch.ones(3, dtype=torch.float64, requires_grad=True).clone()
        w.grad = torch.full((3,), 0.5, dtype=torch.float64)
        cls([w], lr=torch.tensor(0.1, dtype=torch.float64), differentiable=True).step()
        results.append(w)
    # torch's differentiable Adam forms its bias corrections in the float32 step tensor, about
    # 1e-7 from its ordinary step, which optimlab's differentiable step computes
    tolerance = 0.0 if name == "SGD" else 1e-6
    torch.testing.assert_close(results[1], results[0], atol=0, rtol=tolerance)
    # a rate that requires grad: torch records its gradient, optimlab says it does not
    w = torch.ones(3, dtype=torch.float64, requires_grad=True).clone()
    w.grad = torch.ones(3, dtype=torch.float64)
    lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    optimizer = getattr(optimlab, name)([w], lr=lr, differentiable=True)
    with pytest.raises(NotImplementedError, match="Invalid lr of parameter group 0"):
        optimizer.step()


# --- GradScaler ------------------------------------------------------------------------------

AMP_TWINS = [
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("Adam", {}),
    ("AdamW", dict(weight_decay=0.1, amsgrad=True)),
    ("RMSprop", dict(centered=True)),
    ("NAdam", {}),
    ("RAdam", {}),
    ("Adamax", {}),
    ("Adagrad", {}),
    ("Adadelta", {}),
    ("Rprop", {}),
    ("ASGD", {}),
]


def _train_scaled(cls, kwargs, dtype, steps=7, infinite_at=3):
    generator = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    optimizer = cls(model.parameters(), **kwargs)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=2)
    X, y = torch.randn(32, 8, generator=generator), torch.randn(32, 1, generator=generator)
    scales, trajectory = [], []
    for k in range(steps):
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=dtype):
            loss = ((model(X) - y) ** 2).mean()
        if k == infinite_at:
            loss = loss * float("inf")  # the scaler finds an Inf and skips this step
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scales.append(scaler.get_scale())
        trajectory.append([p.detach().clone() for p in model.parameters()])
    counts = [int(s["step"]) for s in optimizer.state.values() if "step" in s]
    return trajectory, scales, counts


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name, kwargs", AMP_TWINS, ids=[n for n, _ in AMP_TWINS])
def test_grad_scaler_steps_as_with_the_torch_twin(name, kwargs, dtype):
    assert optimlab.Adam._step_supports_amp_scaling
    expected, scales, counts = _train_scaled(getattr(torch.optim, name), kwargs, dtype)
    for path, tolerance in [({"fused": False}, 0.0), ({"foreach": False}, 0.0), ({}, 1e-5)]:
        actual, our_scales, our_counts = _train_scaled(
            getattr(optimlab, name), {**kwargs, **path}, dtype
        )
        assert our_scales == scales  # the same steps found an Inf
        if counts:  # the skipped steps are not counted (torch's SGD counts none)
            skipped = sum(b < a for a, b in zip([2.0**16, *scales], scales))  # scale halved
            assert skipped >= 1 and our_counts == counts == [7 - skipped] * len(counts)
        for k, (a, e) in enumerate(zip(actual, expected)):
            torch.testing.assert_close(a, e, atol=tolerance, rtol=tolerance, msg=f"{path} step {k}")


# --- tensor learning rates -------------------------------------------------------------------


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def _train(model, optimizer, advance, steps=6):
    X = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        optimizer.zero_grad()
        model(X).pow(2).mean().backward()
        optimizer.step()
        advance()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize(
    "name", ["SGD", "Adam", "AdamW", "RMSprop", "NAdam", "Adagrad", "Rprop", "ASGD"]
)
def test_torchs_scheduler_drives_a_tensor_lr_in_place(name):
    results = []
    for cls in (getattr(torch.optim, name), getattr(optimlab, name)):
        model = _model()
        lr = torch.tensor(0.01)
        plain = {"fused": False} if cls.__module__.startswith("optimlab") else {}
        optimizer = cls(model.parameters(), lr=lr, **plain)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
        results.append(_train(model, optimizer, scheduler.step))
        assert optimizer.param_groups[0]["lr"] is lr  # written in place
        assert float(lr) == float(torch.tensor(0.01) * 0.5**3)
    torch.testing.assert_close(results[1], results[0], atol=0, rtol=0)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize(
    "options", [{}, dict(weight_decay=0.1), dict(amsgrad=True), dict(maximize=True)]
)
@pytest.mark.parametrize("fused", [False, "exact"])
@pytest.mark.parametrize("tensor_lr", [False, True])
def test_tensor_betas_step_as_torchs(name, options, fused, tensor_lr):
    # torch computes the bias corrections on the betas' float32 tensors: beta**t (ATen's
    # pow), 1 - beta**t, the square root, lr / correction (a reciprocal, then a product)
    results = []
    for cls in (getattr(torch.optim, name), getattr(optimlab, name)):
        model = _model()
        lr = torch.tensor(0.01) if tensor_lr else 0.01
        betas = (torch.tensor(0.9), torch.tensor(0.99))
        plain = {"fused": fused} if cls.__module__.startswith("optimlab") else {"foreach": False}
        optimizer = cls(model.parameters(), lr=lr, betas=betas, **options, **plain)
        results.append(_train(model, optimizer, lambda: None, steps=8))
    torch.testing.assert_close(results[1], results[0], atol=0, rtol=0)


def test_optimlabs_schedule_drives_a_tensor_lr_in_place():
    lr = torch.tensor(0.01)
    optimizer = optimlab.Adam(_model().parameters(), lr=lr, fused=False)
    driver = drive(optimizer, step_decay(0.01, gamma=0.5, step_size=2))
    model = _model()
    optimizer = optimlab.Adam(model.parameters(), lr=lr, fused=False)
    driver = drive(optimizer, step_decay(0.01, gamma=0.5, step_size=2))
    ours = _train(model, optimizer, driver.step)
    assert optimizer.param_groups[0]["lr"] is lr
    reference = _model()
    twin = torch.optim.Adam(reference.parameters(), lr=torch.tensor(0.01))
    scheduler = torch.optim.lr_scheduler.StepLR(twin, step_size=2, gamma=0.5)
    torch.testing.assert_close(ours, _train(reference, twin, scheduler.step), atol=0, rtol=0)


def _compiled_frames(lr, steps: int, **kwargs) -> tuple[int, list[torch.Tensor]]:
    torch._dynamo.reset()
    model = _model()
    optimizer = optimlab.Adam(model.parameters(), lr=lr, **kwargs)
    counter = CompileCounter()  # counts the frames dynamo compiles (eager backend: no codegen)
    step = torch.compile(optimizer.step, backend=counter)

    def decay():
        group = optimizer.param_groups[0]
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].mul_(0.5)
        else:
            group["lr"] *= 0.5

    X = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        optimizer.zero_grad()
        model(X).pow(2).mean().backward()
        step()
        decay()
    return counter.frame_count, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("kwargs", [{}, {"foreach": False}], ids=["default", "foreach=False"])
def test_compiled_step_does_not_recompile_when_a_tensor_lr_changes(kwargs):
    few, _ = _compiled_frames(torch.tensor(0.01), 3, **kwargs)
    many, compiled = _compiled_frames(torch.tensor(0.01), 9, **kwargs)
    assert many == few  # six more changes of the rate, no new compilation
    torch._dynamo.reset()
    model = _model()
    eager = optimlab.Adam(model.parameters(), lr=torch.tensor(0.01), fused=False)
    lr = eager.param_groups[0]["lr"]
    # traced, the rate's arithmetic is in float64 (eager: float32, as torch's): a rounding apart
    expected = _train(model, eager, lambda: lr.mul_(0.5), 9)
    torch.testing.assert_close(compiled, expected, atol=1e-7, rtol=1e-5)


# --- checkpoints of earlier optimlab versions --------------------------------------------------


def _as_older_optimlab_saved_it(saved: dict) -> dict:
    """``saved`` as optimlab saved it before it kept torch's format: int step counts, ASGD's
    step sizes as Python floats, no NAdam ``mu_product``."""
    older = {**saved, "state": {}}
    for key, entry in saved["state"].items():
        entry = {k: v for k, v in entry.items() if k != "mu_product"}
        entry["step"] = int(entry["step"])
        for name in ("eta", "mu"):
            if name in entry:
                entry[name] = entry[name].item()
        older["state"][key] = entry
    return older


@pytest.mark.parametrize("name", ["Adam", "NAdam", "ASGD", "SGD", "Rprop"])
def test_an_older_optimlab_checkpoint_still_resumes_exactly(name):
    kwargs = {"momentum": 0.9} if name == "SGD" else {}
    model = _model()
    optimizer = getattr(optimlab, name)(model.parameters(), lr=0.01, fused=False, **kwargs)
    _train(model, optimizer, lambda: None, steps=3)
    saved = _as_older_optimlab_saved_it(optimizer.state_dict())
    resumed_model = _model()
    resumed_model.load_state_dict(model.state_dict())
    resumed = getattr(optimlab, name)(resumed_model.parameters(), lr=0.5, fused=False, **kwargs)
    resumed.load_state_dict(saved)
    assert all(isinstance(s["step"], torch.Tensor) for s in resumed.state.values())
    expected = _train(model, optimizer, lambda: None, steps=3)
    torch.testing.assert_close(
        _train(resumed_model, resumed, lambda: None, steps=3), expected, atol=0, rtol=0
    )


def test_adagrad_makes_its_state_at_construction_and_shares_it_as_torchs():
    # torch's Adagrad makes step and sum in __init__ and has share_memory() for
    # torch.multiprocessing (Hogwild): the same state dict before any step, the sums shared
    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))]
    ours = optimlab.Adagrad(params, initial_accumulator_value=0.5)
    torchs = torch.optim.Adagrad(params, initial_accumulator_value=0.5)
    mine, theirs = ours.state_dict()["state"], torchs.state_dict()["state"]
    assert mine.keys() == theirs.keys()
    for index, state in theirs.items():
        assert mine[index].keys() == state.keys()
        for name, value in state.items():
            assert value.dtype == mine[index][name].dtype
            torch.testing.assert_close(mine[index][name], value, atol=0, rtol=0)
    ours.share_memory()
    assert all(ours.state[p]["sum"].is_shared() for p in params)


#: in bfloat16 and float16 (state in the same dtype) torch's per-tensor and foreach paths
#: round differently for most rules; the plain path is bitwise one of them: which one
HALF_PRECISION_TWIN = {
    "SGD": "foreach",
    "Adam": "foreach",
    "AdamW": "foreach",
    "RMSprop": "foreach",
    "Adadelta": "foreach",
    "Adamax": "foreach",
    "Rprop": "foreach",
    "Adagrad": "per-tensor",
}
HALF_OPTIONS = {"SGD": dict(lr=0.1, momentum=0.9), "RMSprop": dict(momentum=0.9, centered=True)}


@pytest.mark.parametrize(
    "name, dtype",
    [(name, dtype) for name in HALF_PRECISION_TWIN for dtype in (torch.bfloat16, torch.float16)]
    + [("NAdam", torch.bfloat16)],  # (float16 NAdam and RAdam: neither path's, README)
)
def test_half_precision_plain_steps_are_one_of_torchs_paths(name, dtype):
    foreach = HALF_PRECISION_TWIN.get(name, "per-tensor") == "foreach"
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(4096, generator=generator).to(dtype)
    grads = [torch.randn(4096, generator=generator).to(dtype) for _ in range(5)]
    results = []
    options = HALF_OPTIONS.get(name, {})
    for make in (
        lambda p: getattr(torch.optim, name)([p], foreach=foreach, **options),
        lambda p: getattr(optimlab, name)([p], fused=False, **options),
    ):
        p = start.clone().requires_grad_()
        optimizer = make(p)
        for grad in grads:
            p.grad = grad.clone()
            optimizer.step()
        results.append(p.detach())
    torch.testing.assert_close(results[1], results[0], atol=0, rtol=0)


def _cycled(cls, model, case):
    """An optimizer of ``cls`` and a torch scheduler that cycles its momentum or a beta."""
    plain = {"fused": False} if cls.__module__.startswith("optimlab") else {"foreach": False}
    if case == "nesterov":  # CyclicLR takes momentum to 0 at the peak of the rate
        optimizer = cls(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, **plain)
        return optimizer, torch.optim.lr_scheduler.CyclicLR(
            optimizer, 0.01, 0.1, step_size_up=2, base_momentum=0.0, max_momentum=0.9
        )
    betas = (torch.tensor(0.9), torch.tensor(0.999))  # OneCycleLR makes beta1 a float
    optimizer = cls(model.parameters(), lr=0.01, betas=betas, **plain)
    return optimizer, torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.01, total_steps=12)


@pytest.mark.parametrize("name, case", [("SGD", "nesterov"), ("Adam", "tensor_betas")])
def test_a_state_a_scheduler_wrote_loads_and_continues_as_torchs(name, case):
    """Values a scheduler writes that the constructor refuses (momentum 0 under nesterov, one
    float beta beside a tensor one), as torch's constructor does: torch's load takes them, and
    so does optimlab's (it refused them), and the run goes on as torch's uninterrupted one."""
    whole = _model()
    optimizer, scheduler = _cycled(getattr(torch.optim, name), whole, case)
    expected = _train(whole, optimizer, scheduler.step, steps=8)
    first = _model()
    optimizer, scheduler = _cycled(getattr(optimlab, name), first, case)
    _train(first, optimizer, scheduler.step, steps=2)
    saved = (optimizer.state_dict(), scheduler.state_dict(), first.state_dict())
    resumed = _model(seed=5)
    resumed.load_state_dict(saved[2])
    optimizer, scheduler = _cycled(getattr(optimlab, name), resumed, case)
    optimizer.load_state_dict(saved[0])
    scheduler.load_state_dict(saved[1])
    torch.testing.assert_close(
        _train(resumed, optimizer, scheduler.step, steps=6), expected, atol=0, rtol=0
    )
