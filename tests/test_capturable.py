"""``capturable=True``: a step a CUDA graph can capture, proven without a GPU.

A captured graph replays the device work of one ``step()`` (its kernels, with the same
arguments and memory) and none of its host work. So a capturable step must compute on the
device everything that changes from step to step: the step counts (advanced unless the step
is skipped), the learning rate a schedule writes into a tensor, the bias corrections. Here the
Triton kernels run in Triton's interpreter, and :class:`Graph` stands for the capture: it
records every PyTorch operation and kernel launch of one step, and replays them in order,
writing each result into the tensor the capture produced (as a graph writes the same memory),
without running any of the step's Python. A replay must then give what an eager step gives,
bit for bit; a step that computes a scalar on the host fails this (a control checks it).
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"  # (conftest.py sets it before anything imports Triton)

import pytest  # noqa: E402
import torch  # noqa: E402
from registry import CASES  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import optimlab  # noqa: E402
from optimlab.fused import native, steps, triton_kernels  # noqa: E402
from optimlab.fused.device_scalars import DeviceScalar, NotCapturable, every_branch  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
#: the reference every capturable run is compared with: the same Triton kernels stepped from
#: scalars computed on the host (``capturable=False``), which test_triton.py proves bitwise
#: equal to the C kernel, and so to PyTorch, where that runs; here it runs on any CPU
HOST = dict(fused="triton", capturable=False)

SIZES = (5, 1500, 33, 1024)
#: the registry's configurations of the classes that take ``capturable`` (torch's set)
CAPTURABLE = [
    c for c in CASES if "capturable" in c.cls.__init__.__code__.co_varnames and c.cls._rule
]


class Graph(TorchDispatchMode):
    """Records the device work of a step (PyTorch operations and the Triton launches), and
    replays it as a CUDA graph would: the same operations on the same tensors, results
    written into the tensors the recording produced; no Python of the step runs again."""

    def __init__(self):
        super().__init__()
        self.calls = []
        self.host_reads = []
        self._launching = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is torch.ops.aten._local_scalar_dense.default:
            self.host_reads.append(args[0])
        elif not self._launching:
            self.calls.append((func, args, kwargs, out))
        return out

    def __enter__(self):
        self._patches = [
            (triton_kernels.DeviceBucket, name, getattr(triton_kernels.DeviceBucket, name))
            for name in ("run", "check")
        ]
        for owner, name, method in self._patches:
            setattr(owner, name, self._launch(method))
        return super().__enter__()

    def __exit__(self, *exc):
        for owner, name, method in self._patches:
            setattr(owner, name, method)
        return super().__exit__(*exc)

    def _launch(self, method):
        def launch(*args, **kwargs):
            self.calls.append((method, args, kwargs, None))
            self._launching = True  # (the interpreter's own copies are not the step's)
            try:
                return method(*args, **kwargs)
            finally:
                self._launching = False

        return launch

    def replay(self):
        for func, args, kwargs, out in self.calls:
            if out is None or not isinstance(func, torch._ops.OpOverload):
                func(*args, **kwargs)  # a kernel launch
                continue
            schema = func._schema
            if any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments):
                func(*args, **kwargs)  # in place: again, on the same tensors
            elif any(r.alias_info is not None for r in schema.returns):
                continue  # a view: it still aliases what it viewed
            else:
                fresh = func(*args, **kwargs)
                outs, new = (out, fresh) if isinstance(out, (list, tuple)) else ([out], [fresh])
                for o, n in zip(outs, new):
                    if isinstance(o, torch.Tensor):
                        o.copy_(n)


def _capturing(monkeypatch, on):
    monkeypatch.setattr(steps, "capturing_on", lambda device: on)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: on)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: on)


def _setup(case, dtype, capturable=True, fused="triton", policy="raise"):
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(n, generator=generator, dtype=dtype).requires_grad_() for n in SIZES]
    grads = [torch.zeros_like(p) for p in params]  # static, as a graph's are
    for p, g in zip(params, grads):
        p.grad = g
    lr = torch.tensor(0.01, dtype=torch.float64)
    opt = case.make(params, lr=lr, fused=fused, capturable=capturable, nonfinite_grads=policy)
    return params, grads, lr, opt


def _feed(grads, lr, k, nan_at=None):
    """Step ``k``'s gradients and learning rate, written in place (what a graph reads)."""
    generator = torch.Generator().manual_seed(100 + k)
    for j, g in enumerate(grads):
        g.copy_(torch.randn(g.shape, generator=generator, dtype=g.dtype))
        if k == nan_at and j == 1:
            g[7] = float("nan")
    lr.fill_(0.01 * (1 + k) / 8)


def _eager(case, dtype, n, nan_at=None, **options):
    params, grads, lr, opt = _setup(case, dtype, **options)
    for k in range(n):
        _feed(grads, lr, k, nan_at)
        opt.step()
    opt.check_finite()
    return params, opt


def _captured(case, dtype, n, monkeypatch, nan_at=None, capturable=True, policy="raise"):
    """Two eager steps, one captured, the rest replays of it."""
    params, grads, lr, opt = _setup(case, dtype, capturable=capturable, policy=policy)
    for k in range(2):
        _feed(grads, lr, k, nan_at)
        opt.step()
    _feed(grads, lr, 2, nan_at)
    _capturing(monkeypatch, True)
    with Graph() as graph:
        opt.step()
    _capturing(monkeypatch, False)
    assert graph.host_reads == []
    for k in range(3, n):
        _feed(grads, lr, k, nan_at)
        graph.replay()
    return params, opt


def _same_run(a, b):
    (params_a, opt_a), (params_b, opt_b) = a, b
    state_a, state_b = opt_a.state_dict(), opt_b.state_dict()  # (counts the replays' skips)
    for p, q in zip(params_a, params_b):
        if not native._same_bits(p.detach(), q.detach()):
            return False
    for key, entries in state_a["state"].items():
        for name, value in entries.items():
            if not native._same_bits(value, state_b["state"][key][name]):
                return False
    return opt_a.skipped_steps == opt_b.skipped_steps


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("case", CAPTURABLE, ids=str)
def test_replays_of_a_captured_step_are_the_steps_from_host_scalars(case, dtype, monkeypatch):
    # the learning rate a schedule writes into its tensor reaches every replay
    want = _eager(case, dtype, 7, **HOST)
    assert _same_run(_captured(case, dtype, 7, monkeypatch), want)
    assert _same_run(_eager(case, dtype, 7), want)  # and eager capturable steps too


@pytest.mark.parametrize(
    "name",
    ["adam", "rmsprop-centered-momentum", "nadam", "asgd-averaging-lambd-alpha-weight_decay"],
)
def test_a_replay_with_a_nonfinite_gradient_is_skipped_and_not_counted(name, monkeypatch):
    case = next(c for c in CASES if c.id == name)
    got = _captured(case, torch.float32, 7, monkeypatch, nan_at=4, policy="skip")
    want = _eager(case, torch.float32, 7, nan_at=4, policy="skip", **HOST)
    assert _same_run(got, want)
    params, opt = got
    assert opt.skipped_steps == 1 and int(opt.state[params[0]]["step"]) == 6


def test_with_raise_the_error_comes_at_check_finite_after_the_replays(monkeypatch):
    case = next(c for c in CASES if c.id == "adam")
    params, opt = _captured(case, torch.float32, 7, monkeypatch, nan_at=4)
    with pytest.raises(optimlab.NonFiniteGradientError, match="parameter 1 of group 0"):
        opt.check_finite()
    # the flag stayed raised: no replay after the bad one applied anything
    assert int(opt.state[params[0]]["step"]) == 4


def test_the_control_a_host_computed_step_replays_stale_scalars(monkeypatch):
    # the same capture of a step that computes its scalars on the host (capturable=False,
    # which refuses real capture) replays the captured step's bias corrections and lr: the
    # emulation sees the difference a GPU would
    case = next(c for c in CASES if c.id == "adam")
    want = _eager(case, torch.float32, 7, **HOST)
    params, opt = _captured_host(case)
    assert not all(native._same_bits(p.detach(), q.detach()) for p, q in zip(params, want[0]))


def _captured_host(case):
    params, grads, lr, opt = _setup(case, torch.float32, capturable=False)
    for k in range(2):
        _feed(grads, lr, k)
        opt.step()
    _feed(grads, lr, 2)
    with Graph() as graph:
        opt.step()
    for k in range(3, 7):
        _feed(grads, lr, k)
        graph.replay()
    return params, opt


def test_an_optimizer_whose_state_update_is_not_declared_refuses_capturable_saying_why():
    class HostOnly(optimlab.ASGD):
        """Advances eta and mu on the host only (no _state_update for the device)."""

        _state_update = optimlab.optim.base.Optimizer._state_update

    case = next(c for c in CASES if c.id == "asgd")
    params, grads, lr, opt = _setup(case, torch.float32)
    opt = HostOnly(params, lr=lr, fused="triton", capturable=True)
    _feed(grads, lr, 0)
    before = [p.detach().clone() for p in params]
    with pytest.raises(RuntimeError, match="capturable=True: HostOnly advances the state"):
        opt.step()
    assert all(torch.equal(p, b) for p, b in zip(params, before))


def test_capture_before_a_first_step_is_refused_saying_to_warm_up(monkeypatch):
    case = next(c for c in CASES if c.id == "adam")
    params, grads, lr, opt = _setup(case, torch.float32)
    _feed(grads, lr, 0)
    _capturing(monkeypatch, True)
    with pytest.raises(RuntimeError, match="during CUDA graph capture.*before capturing"):
        opt.step()
    assert not any(opt.state[p] for p in params)


@pytest.mark.parametrize("options", [{"capturable": False}, {"fused": None}], ids=str)
def test_capture_off_the_capturable_triton_path_is_refused_saying_why(options, monkeypatch):
    # capturable=False; or CPU tensors off the Triton path (a GPU without Triton, foreach=...)
    w = torch.zeros(3, requires_grad=True)
    opt = optimlab.Adam([w], **{"capturable": True, "fused": "triton", **options})
    w.grad = torch.ones(3)
    opt.step()
    _capturing(monkeypatch, True)
    with pytest.raises(RuntimeError, match="during CUDA graph capture.*capturable=True on the"):
        opt.step()


def test_device_scalars_compute_as_python_floats_and_refuse_host_reads():
    t = DeviceScalar(torch.tensor(3.0, dtype=torch.float64))
    for beta in (0.9, 0.999, 0.5):
        lr = 1e-3
        assert (-(lr / (1.0 - beta**t))).tensor.item() == -(lr / (1.0 - beta**3))
        assert ((1.0 - beta**t) ** 0.5).tensor.item() == (1.0 - beta**3) ** 0.5
        assert (lr / (1 + (t - 1) * 0.01)).tensor.item() == lr / (1 + (3 - 1) * 0.01)
    for read in (bool, float, int, lambda x: bool(x == 1), lambda x: min(x, 2.0)):
        with pytest.raises(NotCapturable):
            read(t)  # outside every_branch: a branch on the device value has no answer


def test_every_branch_records_each_way_with_the_conditions_it_took():
    t = DeviceScalar(torch.tensor(3.0, dtype=torch.float64))

    def rule():  # two branch points, the second only on one way of the first
        if t > 5:
            return "late"
        return "first" if t == 1 else "early"

    found = every_branch(rule)
    assert sorted(result for result, _ in found) == ["early", "first", "late"]
    # exactly one way holds on the device: the one whose conditions all came out as taken
    holding = [result for result, met in found if all(bool(c) == a for c, a in met)]
    assert holding == ["early"]
    assert every_branch(lambda: (t * 2).tensor.item())[0][1] == []  # no branch: one way


def test_grad_scaler_with_capturable_unscales_and_skips_on_the_device():
    from test_triton import _train_scaled

    got = _train_scaled("triton", capturable=True)
    want = _train_scaled(**HOST)
    params, opt = got
    for p, q in zip(params, want[0]):
        assert native._same_bits(p.detach(), q.detach())
        for key, value in opt.state[p].items():
            assert native._same_bits(value, want[1].state[q][key]), key
    assert int(opt.state[params[0]]["step"]) == 5  # the step with an Inf is not counted


@pytest.mark.parametrize(
    "dtype, mixed",
    [
        (torch.bfloat16, dict(state_dtype=torch.float32)),
        (torch.bfloat16, dict(state_dtype=torch.float32, stochastic_rounding=True)),
        (torch.bfloat16, {}),  # bfloat16 state
        (torch.float16, dict(state_dtype=torch.float32)),
        (torch.float16, {}),  # float16 state
    ],
    ids=[
        "bfloat16-float32-state-nearest",
        "bfloat16-float32-state-stochastic",
        "bfloat16-state",
        "float16-float32-state",
        "float16-state",
    ],
)
def test_half_precision_and_capturable_is_the_host_scalars_step(dtype, mixed):
    # the rounding key's share of the step, hash32(step), computed on the device too
    runs = []
    for fused, capturable in (("triton", True), ("triton", False)):
        generator = torch.Generator().manual_seed(0)
        params = [torch.randn(n, generator=generator).to(dtype).requires_grad_() for n in SIZES]
        opt = optimlab.AdamW(
            params,
            lr=0.01,
            fused=fused,
            capturable=capturable,
            **mixed,
        )
        for _ in range(4):
            for p in params:
                p.grad = torch.randn(p.shape, generator=generator).to(dtype)
            opt.step()
        opt.check_finite()
        runs.append((params, opt))
    (plan,) = runs[0][1]._fused.plans.values()  # (the kernels took every parameter)
    assert len(plan.fused) == len(SIZES) and plan.capturable
    for p, q in zip(runs[0][0], runs[1][0]):
        assert native._same_bits(p.detach().float(), q.detach().float())
        state_dtype = mixed.get("state_dtype", dtype)
        assert runs[0][1].state[p]["exp_avg_sq"].dtype == state_dtype
        assert native._same_bits(
            runs[0][1].state[p]["exp_avg_sq"].float(), runs[1][1].state[q]["exp_avg_sq"].float()
        )


def test_a_resumed_capturable_run_continues_exactly_and_tensor_betas_are_read_there():
    def run(opt, params, generator, count):
        for _ in range(count):
            for p in params:
                p.grad = torch.randn(p.shape, generator=generator)
            opt.step()

    def make(params, capturable, fused):
        betas = (torch.tensor(0.8), torch.tensor(0.95))
        return optimlab.Adam(params, lr=0.01, betas=betas, capturable=capturable, fused=fused)

    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(n, generator=generator).requires_grad_() for n in SIZES]
    reference = [p.detach().clone().requires_grad_() for p in params]
    opt = make(params, True, "triton")
    run(opt, params, torch.Generator().manual_seed(1), 3)
    resumed_params = [p.detach().clone().requires_grad_() for p in params]
    resumed = make(resumed_params, True, "triton")
    resumed.load_state_dict(opt.state_dict())
    run(resumed, resumed_params, torch.Generator().manual_seed(2), 3)
    whole = make(reference, False, "triton")  # from host scalars, uninterrupted
    run(whole, reference, torch.Generator().manual_seed(1), 3)
    run(whole, reference, torch.Generator().manual_seed(2), 3)
    resumed.check_finite()
    for p, q in zip(resumed_params, reference):
        assert native._same_bits(p.detach(), q.detach())
        assert int(resumed.state[p]["step"]) == 6


def test_what_a_captured_step_uses_outside_the_graph_outlives_its_plan(monkeypatch):
    # A replay reads the buckets' tables and writes the flags and the skip counter: memory
    # allocated before the capture, outside the graph's pool. A new plan (new gradients, a
    # loaded state) must not free it while the graph may still be replayed.
    import gc
    import weakref

    params, grads, lr, opt = _setup(next(c for c in CASES if c.id == "adam"), torch.float32)
    for k in range(2):
        _feed(grads, lr, k)
        opt.step()
    (plan,) = opt._fused.plans.values()
    bucket = plan.buckets[0].device_bucket
    _capturing(monkeypatch, True)
    with Graph():
        opt.step()
    _capturing(monkeypatch, False)
    assert bucket.spare is None  # the pinned buffer set aside for the capture went into it
    opt.step()
    assert bucket.spare is not None  # ... and one is set aside again for the next capture
    device_steps = opt._fused.device_steps
    # (the flags and the skip counter are held where the step keeps them, as long as it
    # has as many tensors; held for the graph when it has more)
    held_ids = {id(x) for x in device_steps.held_for_graphs.values()}
    assert {id(device_steps.flags), id(device_steps.skips)} <= held_ids
    held = [weakref.ref(bucket)]
    del bucket, plan
    opt.load_state_dict(opt.state_dict())  # every plan dropped
    assert opt._fused.device_steps is device_steps  # (the books, and what they hold, kept)
    for p in params:
        p.grad = p.grad.clone()  # new gradients: the next step makes a new plan
    opt.step()
    gc.collect()
    assert all(ref() is not None for ref in held)
