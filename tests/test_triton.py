"""The Triton kernels, proven without a GPU: in Triton's interpreter, on CPU tensors.

The interpreter runs the generated source with NumPy, operation by operation, in the types the
source names, so it checks what the generator wrote: each operation and each fusable
configuration must give the C kernel's results bit for bit (the C kernel is itself checked
against PyTorch's own kernels, see test_fast_path.py); a step whose gradients hold NaN or an
infinity, or that GradScaler found an infinity in, must leave everything untouched; and a
step must read nothing from the device on the host. A GPU adds the compiler's arithmetic,
which ``scripts/gpu_check.py`` checks against the interpreter where one is available.
"""

from __future__ import annotations

import copy
import os

os.environ["TRITON_INTERPRET"] = "1"  # (conftest.py sets it before anything imports Triton)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from registry import CASES  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import optimlab  # noqa: E402
from optimlab.fused import native, triton_kernels  # noqa: E402
from optimlab.fused.plan import kernel_dtypes  # noqa: E402
from optimlab.fused.steps import DeviceSteps, FusedSteps  # noqa: E402
from optimlab.fused.tape import METHODS, SIGNATURES, Tape  # noqa: E402

# masked-off lanes of a block divide by zero in the interpreter (never stored)
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
#: the tests that compare with the C kernel need it (it runs where ATen's AVX2 or AVX-512
#: kernels do, whose fused multiply-adds it reproduces); the others run anywhere
needs_c_kernel = pytest.mark.skipif(
    not native.available(), reason=f"the C kernel is the reference: {native.unavailable_reason()}"
)

FUSABLE = [c for c in CASES if c.cls._unfusable_reason is None]


def _host_stepped(case) -> bool:
    """Whether the optimizer updates state on the host after each step in a way the Triton
    path does not take (the schedule-free ones; NAdam's and ASGD's it takes, DeviceSteps)."""
    opt = case.make([torch.zeros(1, requires_grad=True)], lr=0.1)
    return opt._host_steps_reason() is not None


ON_DEVICE = [c for c in FUSABLE if not _host_stepped(c)]
HOST_STEPPED = sorted({c.cls for c in FUSABLE if _host_stepped(c)}, key=lambda c: c.__name__)
SIZES = (5, 1500, 33, 1024)  # a few thousand elements, blocks cut inside and at the edges


def test_both_generators_cover_the_same_operations():
    assert set(triton_kernels.TRITON_EXPRESSIONS) == set(native.C_EXPRESSIONS) == set(SIGNATURES)


def _all_operations() -> Tape:
    """One program applying every operation, each to fresh copies of x, y, z."""
    ops = list(SIGNATURES)
    tape = Tape(["x", "y", "z"] + [f"out_{op}" for op in ops])
    x, y, z = ([tape[n]] for n in ("x", "y", "z"))
    for op in ops:
        n_tensors, n_scalars, in_place = SIGNATURES[op]
        args = [tape.ops.neg(tape.ops.neg(a)) for a in [x, y, z][:n_tensors]]
        scalars = native._TEST_SCALARS.get(op, (0.37,))[:n_scalars]
        out = [tape[f"out_{op}"]]
        if in_place:
            getattr(tape.ops, METHODS[op])(args[0], *args[1:], *scalars)
            tape.ops.copy_(out, args[0])
        else:
            tape.ops.copy_(out, getattr(tape.ops, METHODS[op])(*args, *scalars))
    return tape


def _run_triton(program, dtype, operands, scalars, flag=None):
    table, starts = native.pointer_table(operands)
    bucket = triton_kernels.DeviceBucket(table, starts, torch.device("cpu"))
    values = torch.tensor([0.0, *scalars], dtype=torch.float64)
    flag = torch.zeros(1) if flag is None else flag
    bucket.run(program, dtype, values, 1, flag, torch.zeros(1, dtype=torch.float64))


@needs_c_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_every_operation_is_bitwise_the_c_kernels(dtype):
    tape = _all_operations()
    ops = list(SIGNATURES)
    generator = torch.Generator().manual_seed(0)
    tiny = torch.finfo(dtype).tiny
    specials = torch.tensor(
        [0.0, -0.0, float("inf"), float("-inf"), float("nan"), tiny / 3, 3e38, -0.0, 0.0, 1.0]
        + [-tiny / 5, float("nan"), -2.0, 0.0],
        dtype=dtype,
    )
    inputs = [[torch.randn(n, generator=generator, dtype=dtype) for n in SIZES] for _ in "xyz"]
    for t in inputs[2]:
        t.abs_().add_(0.25)  # divisors and roots
    for k in (1, 3):  # specials against each other, where the C kernel runs its vector loop
        inputs[0][k][: len(specials)] = specials
        inputs[1][k][: len(specials)] = specials.roll(1)
    c_outs = [[torch.zeros(n, dtype=dtype) for n in SIZES] for _ in ops]
    t_outs = [[torch.zeros(n, dtype=dtype) for n in SIZES] for _ in ops]
    copies = [[t.clone() for t in ts] for ts in inputs]
    native.kernel(tape.program, dtype, exact=False)(copies + c_outs, tape.scalars)
    copies = [[t.clone() for t in ts] for ts in inputs]
    _run_triton(tape.program, dtype, copies + t_outs, tape.scalars)
    for op, want, got in zip(ops, c_outs, t_outs):
        for w, g in zip(want, got):
            assert native._same_bits(g, w), op


def test_the_generated_source_rounds_as_the_c_kernel():
    tape = _all_operations()
    source = triton_kernels.program_source(tape.program, torch.float32, "k")
    assert triton_kernels.lint(source) == []
    assert "tl.fma(" in source and "tl.div_rn(" in source and "tl.sqrt_rn(" in source
    assert triton_kernels.lint(source.replace("tl.sqrt_rn(", "tl.sqrt("))  # approximate
    assert triton_kernels.lint(source + "    v0 = v0 / v1\n")
    assert " / " in triton_kernels.program_source(tape.program, torch.float64, "k")


def _grads(params, generator, bad_at=None):
    grads = []
    for k, p in enumerate(params):
        g = torch.randn(p.shape, generator=generator, dtype=p.dtype)
        if bad_at is not None and k == 1:
            g.view(-1)[bad_at] = float("nan")
        grads.append(g)
    return grads


def _params(dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=generator, dtype=dtype).requires_grad_() for n in SIZES]


def _run(case, dtype, fused, steps=4, nonfinite_at=(), policy="raise", lag=0, **extra):
    params = _params(dtype)
    opt = case.make(params, lr=0.01, fused=fused, nonfinite_grads=policy, **extra)
    opt._fused.device_steps.lag = lag
    generator = torch.Generator().manual_seed(1)
    for k in range(steps):
        for p, g in zip(params, _grads(params, generator, 7 if k in nonfinite_at else None)):
            p.grad = g
        opt.param_groups[0]["lr"] = 0.01 * (1 + k) / steps  # a changing lr recompiles nothing
        opt.step()
    opt.check_finite()
    return params, opt


def _same(a, b):
    """Bit for bit (bfloat16 and float16 compared as the float32 values they widen to,
    exactly; complex numbers as their pairs of reals)."""
    if a.dtype == b.dtype and a.dtype in (torch.bfloat16, torch.float16):
        a, b = a.float(), b.float()
    if a.dtype == b.dtype and a.is_complex():
        a, b = torch.view_as_real(a.detach()), torch.view_as_real(b.detach())
    return native._same_bits(a.detach(), b.detach())


def _assert_same_run(a, b):
    (params_a, opt_a), (params_b, opt_b) = a, b
    for p, q in zip(params_a, params_b):
        assert _same(p, q)
        assert opt_a.state[p].keys() == opt_b.state[q].keys()
        for key, value in opt_a.state[p].items():
            assert _same(value, opt_b.state[q][key]), key
    assert opt_a.skipped_steps == opt_b.skipped_steps


@needs_c_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("case", ON_DEVICE, ids=str)
def test_every_fusable_configuration_is_bitwise_the_c_kernels(case, dtype):
    triton_run = _run(case, dtype, "triton")
    _assert_same_run(triton_run, _run(case, dtype, True))
    # ... and it ran on the Triton path: one plan per group, on the device path's books
    opt = triton_run[1]
    assert opt._fused.device_steps.takes(opt.param_groups) == torch.device("cpu")
    assert opt._fused.plans[id(opt.param_groups[0])].buckets[0].device_bucket is not None


@needs_c_kernel
@pytest.mark.parametrize("name", ["adam", "sgd-momentum", "rmsprop-centered-momentum"])
@pytest.mark.parametrize("lag", [0, 2])
def test_nonfinite_steps_are_skipped_on_the_device_and_uncounted(name, lag):
    case = next(c for c in CASES if c.id == name)
    # steps 1 and 2 are skipped; with lag 2 the host reads each flag two steps late, so the
    # kernels pick their scalars from rows for 0, 1 and 2 unread skips
    got = _run(case, torch.float32, "triton", steps=6, nonfinite_at=(1, 2), policy="skip", lag=lag)
    want = _run(case, torch.float32, True, steps=6, nonfinite_at=(1, 2), policy="skip")
    _assert_same_run(got, want)
    params, opt = got
    assert opt.skipped_steps == 2 and int(opt.state[params[0]]["step"]) == 4


@needs_c_kernel
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128], ids=str)
@pytest.mark.parametrize("name", ["adam", "sgd-momentum", "rmsprop-centered-momentum", "adagrad"])
def test_complex_parameters_are_bitwise_the_c_kernels(name, dtype):
    # the tables count a complex tensor's numbers as pairs of reals; the check reads their
    # exponents as the real dtype's (SGD's rule computes as on complex numbers: ComplexSums)
    case = next(c for c in CASES if c.id == name)
    got = _run(case, dtype, "triton", steps=5, nonfinite_at=(2,), policy="skip")
    want = _run(case, dtype, True, steps=5, nonfinite_at=(2,), policy="skip")
    _assert_same_run(got, want)
    params, opt = got
    assert opt.skipped_steps == 1 and int(opt.state[params[0]]["step"]) == 4
    with pytest.raises(optimlab.NonFiniteGradientError, match="parameter 1 of group 0"):
        _run(case, dtype, "triton", steps=3, nonfinite_at=(1,))


@needs_c_kernel
def test_a_skip_read_while_a_step_waits_for_its_flags_leaves_that_step_the_true_count():
    # RAdam's rule takes its other branch (the rectified step) from the 6th step on: rows for
    # unread skips on both sides of the switch record different programs, so such a step
    # reads the flags first; a skip read there takes the counts back, and the step is made
    # with the true count (it once kept the count cached before the read: one too many)
    case = next(c for c in CASES if c.id == "radam")
    skipped = (1, 2, 4, 6)
    got = _run(case, torch.float32, "triton", steps=10, nonfinite_at=skipped, policy="skip", lag=2)
    want = _run(case, torch.float32, True, steps=10, nonfinite_at=skipped, policy="skip")
    _assert_same_run(got, want)
    params, opt = got
    assert opt.skipped_steps == 4 and int(opt.state[params[0]]["step"]) == 6


def _random_run(cls, fused, schedule, lag=0):
    """Steps of ``schedule`` (per step: the parameters without a gradient, those with a NaN,
    a new lr or None) under "skip", flags read ``lag`` steps late."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(n, generator=generator).requires_grad_() for n in (5, 1500, 33)]
    opt = cls(params, lr=0.01, fused=fused, nonfinite_grads="skip")
    opt._fused.device_steps.lag = lag
    for without, nan, lr in schedule:
        for i, p in enumerate(params):
            p.grad = None if i in without else torch.randn(p.shape, generator=generator)
            if i in nan:
                p.grad[-1] = float("nan")
        if lr is not None:
            opt.param_groups[0]["lr"] = lr
        opt.step()
    opt.check_finite()
    return params, opt


@needs_c_kernel
@pytest.mark.parametrize(
    "cls",
    [optimlab.Adam, optimlab.RAdam, optimlab.NAdam, optimlab.ASGD, optimlab.ScheduleFreeAdamW],
    ids=lambda cls: cls.__name__,
)
def test_parameters_coming_and_going_with_skips_read_late_step_as_the_c_kernels(cls):
    # Random runs: a parameter without a gradient for a step (its count falls behind: a
    # bucket of each count), NaNs the device skips, a new lr now and then; the flags read two
    # steps late. The kernels' rows for unread skips stand for launches of the same plans
    # (a step of other plans reads the flags first), the host state is kept per bucket
    # (the schedule-free one per group) and put back by count: every run is the C kernels'
    # (a state the C kernels never made, its steps all skipped, is one no step applied to)
    rng = np.random.default_rng(7)
    for _ in range(6):
        schedule = []
        for _ in range(7):
            without = tuple(i for i in range(3) if rng.random() < 0.3)[:2]
            given = [i for i in range(3) if i not in without]
            nan = (int(rng.choice(given)),) if rng.random() < 0.3 else ()
            lr = float(rng.choice([0.01, 0.02])) if rng.random() < 0.3 else None
            schedule.append((without, nan, lr))
        (params, opt), (want, ref) = (
            _random_run(cls, "triton", schedule, 2),
            _random_run(cls, True, schedule),
        )
        assert opt.skipped_steps == ref.skipped_steps, schedule
        for p, q in zip(params, want):
            assert _same(p, q), schedule
            if not ref.state[q]:
                assert not opt.state[p] or int(opt.state[p]["step"]) == 0, schedule
                continue
            for key, value in ref.state[q].items():
                assert _same(opt.state[p][key], value), (schedule, key)
        for key in getattr(cls, "_running", ()):
            assert opt.param_groups[0][key] == ref.param_groups[0][key], (schedule, key)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_a_step_the_kernels_leave_to_the_general_path_is_the_plain_path_s(dtype):
    # The schedule-free optimizer with a group without gradients steps on the general path
    # (that group's average advances too); the plans the Triton path made for the other
    # group are not the C kernels' (it once ran them, reading bfloat16 state as float32)
    runs = []
    for fused in ("triton", False):
        generator = torch.Generator().manual_seed(0)
        a, b = (torch.randn(n, generator=generator).to(dtype).requires_grad_() for n in (4096, 3))
        opt = optimlab.ScheduleFreeAdamW([{"params": [a]}, {"params": [b]}], fused=fused)
        for _ in range(3):
            a.grad = torch.randn(a.shape, generator=generator).to(dtype)
            opt.step()
        runs.append(([a, b], opt))
    _assert_same_run(*runs)


@needs_c_kernel
@pytest.mark.parametrize("cls", [optimlab.Adam, optimlab.NAdam], ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_a_step_that_leaves_the_triton_path_reads_the_flags_first(cls, policy):
    # Two steps on the Triton kernels (a NaN in the second, its flag unread), then the group
    # chooses the C kernels: their first step reads the flags before it counts on the host,
    # so the run is the C kernels' all along ("raise": the error comes at that step, with the
    # NaN's step not applied)
    runs = []
    for fused in ("triton", True):
        params = _params(torch.float32)
        opt = cls(params, lr=0.01, fused=fused, nonfinite_grads=policy)
        opt._fused.device_steps.lag = 2
        generator = torch.Generator().manual_seed(1)
        for k in range(4):
            for p, g in zip(params, _grads(params, generator, 7 if k == 1 else None)):
                p.grad = g
            opt.param_groups[0]["fused"] = fused if k < 2 else True
            try:
                opt.step()
            except optimlab.NonFiniteGradientError:
                assert k == (2 if fused == "triton" else 1)
                break
        runs.append((params, opt))
    _assert_same_run(*runs)
    assert int(runs[0][1].state[runs[0][0][0]]["step"]) == (3 if policy == "skip" else 1)


@needs_c_kernel
@pytest.mark.parametrize("capturable", [False, True], ids=["host-counted", "capturable"])
def test_asgd_s_first_applied_step_takes_the_lr_of_its_moment(capturable):
    # The first step is skipped (a NaN): the device path made the state then, with eta = that
    # step's lr; the step that first applies, with another lr, takes its own lr as eta, as
    # the C kernels (which make the state then) do
    runs = []
    for fused in ("triton", True):
        params = _params(torch.float32)
        opt = optimlab.ASGD(params, lr=0.01, fused=fused, capturable=capturable)
        opt.nonfinite_grads = "skip"
        generator = torch.Generator().manual_seed(1)
        for k, lr in enumerate((0.01, 0.02, 0.03)):
            for p, g in zip(params, _grads(params, generator, 7 if k == 0 else None)):
                p.grad = g
            opt.param_groups[0]["lr"] = lr
            opt.step()
        opt.check_finite()
        runs.append((params, opt))
    _assert_same_run(*runs)


#: a configuration of each optimizer whose rule reads state kept on the host (NAdam's momentum
#: product, ASGD's step sizes, the schedule-free average's weights)
HOST_STATE_CASES = [
    "nadam-weight_decay",
    "asgd-averaging-lambd-alpha-weight_decay",
    "schedule_free_adamw-warmup-weight_decay-r",
]


class _RowsSeen:
    """Spies on DeviceSteps._rows: the most unread launches a step's rows were made for."""

    def __init__(self, monkeypatch):
        self.most = 0
        rows = DeviceSteps._rows

        def spy(steps, group, plan, bucket, count, unread, *args):
            found = rows(steps, group, plan, bucket, count, unread, *args)
            if found is not None:
                self.most = max(self.most, found[1] - 1)
            return found

        monkeypatch.setattr(DeviceSteps, "_rows", spy)


@needs_c_kernel
@pytest.mark.parametrize("name", HOST_STATE_CASES)
@pytest.mark.parametrize("schedule", [False, True], ids=["constant-lr", "scheduled-lr"])
@pytest.mark.parametrize("counts", ["one-count", "two-counts"])
def test_state_arguments_kept_on_the_host_follow_skips_read_late(
    name, schedule, counts, monkeypatch
):
    # NAdam's momentum product, ASGD's step sizes and the schedule-free average's weights
    # (group entries) advance on the host after each launch;
    # steps 1, 2 and 4 are skipped on the device, their flags read 2 steps late: the kernels
    # choose between rows made with the state arguments after n - j steps, and the host puts
    # back those of the true count when it reads a skip. "two-counts": the first parameter
    # has no gradient at the first step, and one count behind the others from then on (a
    # bucket of each count, the host state kept for each)
    case = next(c for c in CASES if c.id == name)
    seen = _RowsSeen(monkeypatch)

    def run(fused, lag=0):
        params = _params(torch.float32)
        opt = case.make(params, lr=0.01, fused=fused, nonfinite_grads="skip")
        opt._fused.device_steps.lag = lag
        generator = torch.Generator().manual_seed(1)
        for k in range(8):
            for p, g in zip(params, _grads(params, generator, 7 if k in (1, 2, 4) else None)):
                p.grad = g
            if k == 0 and counts == "two-counts":
                params[0].grad = None
            if schedule:
                opt.param_groups[0]["lr"] = 0.01 * (1 + k) / 8
            opt.step()
        opt.check_finite()
        return params, opt

    got = run("triton", lag=2)
    _assert_same_run(got, run(True))
    params, opt = got
    behind = int(counts == "two-counts")
    assert opt.skipped_steps == 3 and int(opt.state[params[-1]]["step"]) == 5
    assert int(opt.state[params[0]]["step"]) == 5 - behind
    (plan,) = opt._fused.plans.values()  # (the kernels took every parameter)
    assert len(plan.fused) == len(params) and len(plan.buckets) == 1 + behind
    # (ASGD's step sizes and the schedule-free weights depend on the lr: a step whose lr
    # changed reads the flags first)
    assert seen.most == (0 if schedule and case.cls is not optimlab.NAdam else 2)
    if case.cls is optimlab.ScheduleFreeAdamW:
        assert opt.param_groups[0]["k"] == 5


def _until_it_raises(case, fused, nan_at, steps, lag=0, before=lambda opt, k: None):
    """Steps with a new lr each and a NaN at step ``nan_at`` (``before(opt, k)`` ahead of
    step ``k``), until one raises: the parameters, the optimizer and that step."""
    params = _params(torch.float32)
    opt = case.make(params, lr=0.01, fused=fused)
    opt._fused.device_steps.lag = lag
    generator = torch.Generator().manual_seed(1)
    for k in range(steps):
        for p, g in zip(params, _grads(params, generator, 7 if k == nan_at else None)):
            p.grad = g
        opt.param_groups[0]["lr"] = 0.01 * (1 + k) / 8
        before(opt, k)
        try:
            opt.step()
            if k == steps - 1:
                opt.check_finite()
        except optimlab.NonFiniteGradientError:
            return params, opt, k
        finally:  # (GradScaler's protocol hands these to one step)
            opt.__dict__.pop("grad_scale", None)
            opt.__dict__.pop("found_inf", None)
    raise AssertionError("no error")


@needs_c_kernel
@pytest.mark.parametrize("name", HOST_STATE_CASES)
def test_with_raise_a_changing_lr_waits_for_no_flag_and_the_error_puts_all_back(name, monkeypatch):
    # With "raise" a skipped step is the last one applied, so the values kept by step count
    # are the true history's even while the lr changes every step: the rows are made for two
    # unread steps (no wait), and the error, read two steps late, leaves the optimizer as the
    # C kernel leaves it when it raises at once (the NaN's step and the two after it undone)
    case = next(c for c in CASES if c.id == name)
    seen = _RowsSeen(monkeypatch)
    *got, late = _until_it_raises(case, "triton", nan_at=4, steps=8, lag=2)
    *want, at = _until_it_raises(case, True, nan_at=4, steps=8)
    assert (at, late) == (4, 7)  # (the flag of step 4, read after steps 5 and 6)
    assert seen.most == 2
    _assert_same_run(got, want)
    params, opt = got
    assert int(opt.state[params[0]]["step"]) == 4


@needs_c_kernel
@pytest.mark.parametrize("name", ["adam", "radam", "nadam-weight_decay", *HOST_STATE_CASES[1:]])
@pytest.mark.parametrize("then", ["policy-skip", "grad-scaler"])
def test_a_step_the_raised_flag_would_not_skip_reads_the_flags_first(name, then):
    # The NaN of step 2 raises its flag under "raise"; step 3, with a new lr, is one that
    # flag would not keep from applying (the policy switched to "skip", or GradScaler's
    # protocol, whose own flag it reads): it reads the flags first, raises there, and leaves
    # the optimizer as the C kernel leaves it when it raises at step 2
    case = next(c for c in CASES if c.id == name)

    def then_at_3(opt, k):
        if k == 3 and then == "policy-skip":
            opt.nonfinite_grads = "skip"
        if k == 3 and then == "grad-scaler":  # (scale 1, nothing found)
            opt.grad_scale, opt.found_inf = torch.ones(()), torch.zeros(())

    *got, late = _until_it_raises(case, "triton", nan_at=2, steps=6, lag=2, before=then_at_3)
    *want, at = _until_it_raises(case, True, nan_at=2, steps=6)
    assert (at, late) == (2, 3)
    _assert_same_run(got, want)


@needs_c_kernel
def test_several_groups_step_in_one_launch_each_as_the_c_kernels():
    runs = []
    for fused in ("triton", True):
        params = _params(torch.float32)
        groups = [{"params": params[:2]}, {"params": params[2:], "lr": 0.003, "betas": (0.8, 0.9)}]
        opt = optimlab.Adam(groups, lr=0.01, fused=fused, nonfinite_grads="skip")
        generator = torch.Generator().manual_seed(1)
        for k in range(4):
            for p, g in zip(params, _grads(params, generator, 7 if k == 2 else None)):
                p.grad = g
            opt.step()
        opt.check_finite()
        runs.append((params, opt))
    _assert_same_run(*runs)
    assert runs[0][1].skipped_steps == 1


@needs_c_kernel
def test_schedule_free_with_a_group_without_gradients_advances_every_group():
    # the average's count advances in every group each step, gradients or not (as the
    # authors' step does): a step where a group has none is left to the host path (the
    # plain one: the reference takes it there too)
    runs = []
    for fused in ("triton", True):
        params = _params(torch.float32)
        opt = optimlab.ScheduleFreeAdamW(
            [{"params": params[:2]}, {"params": params[2:]}], lr=0.01, fused=fused
        )
        generator = torch.Generator().manual_seed(1)
        for k in range(4):
            for p, g in zip(params, _grads(params, generator)):
                p.grad = g if k != 2 or p is params[0] or p is params[1] else None
            for group in opt.param_groups:
                group["fused"] = fused if k != 2 or fused == "triton" else False
            opt.step()
        opt.check_finite()
        assert [g["k"] for g in opt.param_groups] == [4, 4]
        runs.append((params, opt))
    _assert_same_run(*runs)


@needs_c_kernel
def test_nadam_raising_at_the_next_step_puts_back_its_momentum_product():
    params = _params(torch.float32)
    opt = optimlab.NAdam(params, lr=0.01, fused="triton")
    generator = torch.Generator().manual_seed(1)
    for p, g in zip(params, _grads(params, generator)):
        p.grad = g
    opt.step()
    after_one = copy.deepcopy((params, opt.state_dict()))
    for p, g in zip(params, _grads(params, generator, bad_at=3)):
        p.grad = g
    opt.step()  # launched; the device skips it, the host advances the product for now
    assert int(opt.state[params[0]]["step"]) == 2
    with pytest.raises(optimlab.NonFiniteGradientError, match="not applied"):
        opt.step()
    saved = opt.state_dict()
    for p, q in zip(params, after_one[0]):
        assert torch.equal(p, q)
    for k, state in saved["state"].items():
        for key, value in state.items():
            assert torch.equal(value, after_one[1]["state"][k][key]), key
    assert int(saved["state"][0]["step"]) == 1


def test_raise_names_the_parameter_at_the_next_step_and_nothing_was_applied():
    params = _params(torch.float32)
    opt = optimlab.Adam(params, lr=0.01, fused="triton")
    generator = torch.Generator().manual_seed(1)
    for p, g in zip(params, _grads(params, generator)):
        p.grad = g
    opt.step()
    before = [p.detach().clone() for p in params]
    moments = [opt.state[p]["exp_avg"].clone() for p in params]
    for p, g in zip(params, _grads(params, generator, bad_at=3)):
        p.grad = g
    opt.step()  # launched; the device skips it
    with pytest.raises(optimlab.NonFiniteGradientError) as raised:
        opt.step()
    message = str(raised.value)
    assert "parameter 1 of group 0 (shape (1500,))" in message
    assert "not applied" in message and "nonfinite_grads='skip'" in message
    for p, b, m in zip(params, before, moments):
        assert torch.equal(p, b) and torch.equal(opt.state[p]["exp_avg"], m)
        assert int(opt.state[p]["step"]) == 1
    params[1].grad = torch.zeros_like(params[1])  # fixed: training goes on
    opt.step()
    opt.check_finite()
    assert int(opt.state[params[0]]["step"]) == 2


@pytest.mark.parametrize("name", ["Rprop", "ASGD", "Adam"])
@pytest.mark.parametrize("lag", [0, 2])
def test_a_step_that_raises_for_an_earlier_nan_makes_no_state(name, lag):
    """A NaN step launched and skipped on the device, then a step with a parameter new to it
    (a group added): that step raises and leaves no trace; it made the new parameter's state,
    with its own lr (Rprop's step size, ASGD's eta), when the host read the flags late."""
    w, v = torch.ones(8, requires_grad=True), torch.ones(8, requires_grad=True)
    opt = getattr(optimlab, name)([w], lr=0.01, fused="triton")
    opt._fused.device_steps.lag = lag  # (the host reads each step's flags lag steps late)
    w.grad = torch.ones(8)
    opt.step()
    w.grad = torch.full((8,), float("nan"))
    opt.step()
    opt.add_param_group({"params": [v], "lr": 0.5})
    w.grad, v.grad = torch.ones(8), torch.ones(8)
    with pytest.raises(optimlab.NonFiniteGradientError, match="parameter 0 of group 0"):
        opt.step()
    assert v not in opt.state or not opt.state[v]


def test_check_finite_raises_for_the_last_step():
    params = _params(torch.float64)
    opt = optimlab.SGD(params, lr=0.1, momentum=0.9, fused="triton")
    for p, g in zip(params, _grads(params, torch.Generator().manual_seed(0), bad_at=0)):
        p.grad = g
    opt.step()
    with pytest.raises(optimlab.NonFiniteGradientError, match="parameter 1 of group 0"):
        opt.check_finite()


class HostReads(TorchDispatchMode):
    """Records every value a step reads from a tensor on the host (``.item()``, ``bool()``:
    on a GPU each is a synchronisation)."""

    def __init__(self):
        super().__init__()
        self.read = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.read.append(args[0])
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "cls, dtype",
    [
        (optimlab.AdamW, torch.float32),
        (optimlab.NAdam, torch.float32),
        (optimlab.ASGD, torch.float32),
        (optimlab.AdamW, torch.bfloat16),  # (its state bfloat16 too: torch's default)
        (optimlab.AdamW, torch.float16),
    ],
    ids=["AdamW", "NAdam", "ASGD", "AdamW-bfloat16", "AdamW-float16"],
)
@pytest.mark.parametrize("policy", ["raise", "skip", "ignore"])
def test_a_step_reads_nothing_from_the_device_on_the_host(policy, cls, dtype):
    params = _params(dtype)
    opt = cls(params, lr=torch.tensor(0.01), fused="triton", nonfinite_grads=policy)
    generator = torch.Generator().manual_seed(0)
    for k in range(3):
        bad = 5 if k == 1 and policy != "raise" else None  # (raise: tested above)
        for p, g in zip(params, _grads(params, generator, bad_at=bad)):
            p.grad = g
        with HostReads() as reads:
            opt.step()
        # the step counts and state arguments (host tensors, as torch keeps them: NAdam's
        # mu_product, ASGD's eta and mu) and the lr the user gave as a CPU tensor are the
        # only values read; nothing the kernels wrote
        host = {
            opt.state[p][name].data_ptr()
            for p in params
            for name in ("step", *opt._state_arguments)
        }
        lr = opt.param_groups[0]["lr"].data_ptr()
        assert {t.data_ptr() for t in reads.read} <= host | {lr}
    if policy == "skip":
        opt.check_finite()
        assert opt.skipped_steps == 1


def _train_scaled(fused, steps=6, infinite_at=2, dtype=torch.bfloat16, **options):
    generator = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    opt = optimlab.Adam(model.parameters(), lr=0.01, fused=fused, **options)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=2)
    X, y = torch.randn(32, 8, generator=generator), torch.randn(32, 1, generator=generator)
    for k in range(steps):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=dtype):
            loss = ((model(X) - y) ** 2).mean()
        if k == infinite_at:
            loss = loss * float("inf")
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    opt.check_finite()
    return list(model.parameters()), opt


@needs_c_kernel
def test_grad_scaler_unscales_and_skips_in_the_kernel():
    got, want = _train_scaled("triton"), _train_scaled(True)
    _assert_same_run(got, want)
    params, opt = got
    assert int(opt.state[params[0]]["step"]) == 5  # the step with an Inf is not counted


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_grad_scaler_on_a_half_precision_model_is_torch_s_fused_adam(dtype):
    # a model kept in float16 (or bfloat16) under GradScaler, an Inf in one step: the kernels
    # unscale and skip as torch's fused Adam does (it takes grad_scale and found_inf too),
    # to the bit, and the scaler sees the same steps
    runs = []
    for module, fused in ((optimlab, "triton"), (torch.optim, True)):
        generator = torch.Generator().manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)
        ).to(dtype)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
        opt = module.Adam(model.parameters(), lr=0.01, fused=fused)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2)
        X = torch.randn(32, 8, generator=generator).to(dtype)
        y = torch.randn(32, 1, generator=generator).to(dtype)
        for k in range(6):
            opt.zero_grad()
            loss = ((model(X) - y) ** 2).mean()
            scaler.scale(loss * float("inf") if k == 2 else loss).backward()
            scaler.step(opt)
            scaler.update()
        runs.append((list(model.parameters()), opt, scaler.get_scale()))
    (ours, opt, scale), (theirs, ref, their_scale) = runs
    opt.check_finite()
    assert scale == their_scale
    for p, q in zip(ours, theirs):
        assert _same(p, q)
        for key, value in ref.state[q].items():
            assert _same(opt.state[p][key], value), key
    assert int(opt.state[ours[0]]["step"]) == 5  # the step with an Inf is not counted


def test_state_dict_counts_exactly_while_flags_are_unread():
    case = next(c for c in CASES if c.id == "adam")
    params, opt = _run(case, torch.float32, "triton", steps=5, nonfinite_at=(3,), policy="skip")
    opt._fused.device_steps.lag = 3
    saved = opt.state_dict()
    assert all(int(s["step"]) == 4 for s in saved["state"].values())


def test_triton_on_cpu_tensors_outside_the_interpreter_says_how(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    w = torch.zeros(3, requires_grad=True)
    opt = optimlab.Adam([w], fused="triton")
    w.grad = torch.ones(3)
    with pytest.raises(RuntimeError, match=r"fused='triton': .*CUDA tensors.*TRITON_INTERPRET=1"):
        opt.step()


def test_every_fusable_optimizer_takes_the_triton_path():
    # NAdam, ASGD and the schedule-free ones included: the host state their rules read is
    # kept by step count (see DeviceSteps)
    assert HOST_STEPPED == []


def test_an_optimizer_whose_host_state_is_not_declared_is_refused_saying_why():
    class Counting(optimlab.SGD):
        """Counts its steps in each group, in a way the device path cannot follow."""

        def _after_step(self, group, stepped):
            group["taken"] = group.get("taken", 0) + 1

    w = torch.zeros(3, requires_grad=True)
    opt = Counting([w], lr=0.1, fused="triton")
    w.grad = torch.ones(3)
    with pytest.raises(RuntimeError, match="state on the host after each step from more than"):
        opt.step()
    assert Counting([w], lr=0.1)._fused.device_steps.takes([{"params": [w], "fused": None}]) is None


def test_default_on_cpu_stays_on_the_c_kernels():
    w = torch.zeros(3, requires_grad=True)
    opt = optimlab.Adam([w])
    w.grad = torch.ones(3)
    assert opt._fused.device_steps.takes(opt.param_groups) is None
    opt.step()
    assert isinstance(opt._fused, FusedSteps) and isinstance(opt._fused.device_steps, DeviceSteps)


# --- mixed precision: bfloat16 parameters, float32 state ------------------------------------

MIXED = ["adam", "adamw", "sgd-momentum", "rmsprop-centered-momentum", "lion", "adagrad"]


def _bf16_params(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=generator).to(torch.bfloat16).requires_grad_() for n in SIZES]


#: narrow parameters as the Triton kernels keep them: (parameters, state, stochastic rounding)
NARROW = {
    "bfloat16-float32-state-nearest": (torch.bfloat16, torch.float32, False),
    "bfloat16-float32-state-stochastic": (torch.bfloat16, torch.float32, True),
    "bfloat16-state": (torch.bfloat16, torch.bfloat16, False),
    "float16-float32-state": (torch.float16, torch.float32, False),
    "float16-state": (torch.float16, torch.float16, False),
}


@needs_c_kernel
@pytest.mark.parametrize("narrow", list(NARROW))
@pytest.mark.parametrize("name", MIXED)
def test_narrow_parameters_are_the_float32_step_then_rounding(name, narrow):
    # The reference: the float32 step (the C kernel, which the tests above tie to the Triton
    # source and to PyTorch) on the parameters widened, then rounded to their dtype as
    # core.precision defines (to nearest even: Tensor.copy_; stochastic: its reference), the
    # state too where it is kept in their dtype (torch's default: the kernel computes in
    # float32 between its loads and stores, as torch's fused Adam). A step with a NaN under
    # "skip" changes nothing and is not counted.
    from optimlab.core.precision import stochastic_round_bf16

    dtype, state, stochastic = NARROW[narrow]
    case = next(c for c in CASES if c.id == name)
    params = [p.detach().to(dtype).requires_grad_() for p in _bf16_params()]
    wide = [p.detach().float().requires_grad_() for p in params]
    mixed = {}
    if state == torch.float32:
        mixed = dict(state_dtype=torch.float32, stochastic_rounding=stochastic)
    opt = case.make(params, lr=0.01, fused="triton", nonfinite_grads="skip", **mixed)
    ref = case.make(wide, lr=0.01, fused=True)
    generator = torch.Generator().manual_seed(1)
    for step in range(1, 5):
        for p, w in zip(params, wide):
            g = torch.randn(p.shape, generator=generator).to(dtype)
            p.grad, w.grad = g, g.float()
        opt.step()
        ref.step()
        with torch.no_grad():
            for p, w in zip(params, wide):
                if stochastic:
                    seed = int(opt.state[p]["rounding_seed"])
                    w.copy_(stochastic_round_bf16(w, seed, step).float())
                else:
                    w.copy_(w.to(dtype).float())
                if state == dtype:
                    for key, value in ref.state[w].items():
                        if key != "step":
                            value.copy_(value.to(dtype).float())
        if step == 2:  # (skipped: nothing written, not counted)
            params[-1].grad = torch.full_like(params[-1], float("nan"))
            opt.step()
    opt.check_finite()
    assert opt.skipped_steps == 1
    for p, w in zip(params, wide):
        assert p.dtype == dtype
        assert native._same_bits(p.detach().float(), w.detach())
        for key, value in opt.state[p].items():
            if key != "rounding_seed":
                assert value.dtype == (state if key != "step" else torch.float32)
                assert native._same_bits(value.float(), ref.state[w][key]), key


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize(
    "name, options",
    [
        ("Adam", {}),
        ("AdamW", {"weight_decay": 0.1}),
        ("Adam", {"amsgrad": True, "weight_decay": 0.1}),
        ("Adam", {"maximize": True}),
    ],
    ids=["adam", "adamw", "adam-amsgrad", "adam-maximize"],
)
def test_half_precision_adam_is_torch_s_fused_adam(name, options, dtype):
    # torch's fused Adam keeps bfloat16 and float16 parameters and state the same way:
    # loaded into float32, the float32 step, each stored value rounded once (on the CPU its
    # float32 operations are each correctly rounded, whatever the vector unit): the same bits
    runs = []
    for module, fused in ((optimlab, "triton"), (torch.optim, True)):
        generator = torch.Generator().manual_seed(0)
        params = [torch.randn(n, generator=generator).to(dtype).requires_grad_() for n in SIZES]
        opt = getattr(module, name)(params, lr=0.01, fused=fused, **options)
        for _ in range(6):
            for p in params:
                p.grad = torch.randn(p.shape, generator=generator).to(dtype)
            opt.step()
        runs.append((params, opt))
    (ours, opt), (theirs, ref) = runs
    opt.check_finite()
    for p, q in zip(ours, theirs):
        assert p.dtype == dtype and _same(p, q)
        for key, value in ref.state[q].items():
            assert opt.state[p][key].dtype == value.dtype, key
            assert _same(opt.state[p][key], value), key


def test_half_precision_state_takes_the_triton_kernels_and_the_plain_path_on_the_cpu():
    # bfloat16 and float16 parameters keep their state in their dtype by default, as torch's:
    # on a GPU the Triton kernels take them (computing in float32, as torch's fused Adam);
    # the C kernels leave them to the plain path (one rounding per operation, as torch's
    # foreach on the CPU)
    assert kernel_dtypes(torch.bfloat16, None, triton=True) == (torch.float32, torch.bfloat16)
    assert kernel_dtypes(torch.bfloat16, torch.bfloat16, triton=True) is not None
    assert kernel_dtypes(torch.bfloat16, None) is None
    # (float16 too, on a GPU only)
    assert kernel_dtypes(torch.float16, None, triton=True) == (torch.float32, torch.float16)
    assert kernel_dtypes(torch.float16, torch.float32, triton=True) == (torch.float32,) * 2
    assert kernel_dtypes(torch.float16, None) is None
    assert kernel_dtypes(torch.float16, torch.float32) is None


@needs_c_kernel  # (the plain path multiplies and adds as the kernels do only there)
@pytest.mark.parametrize("name", ["sgd-momentum", "lion"])
def test_bf16_on_the_plain_path_is_the_triton_kernels(name):
    # rules without a square root: the plain path (foreach, on widened copies) and the Triton
    # kernel compute the same float32 numbers, and round them alike
    case = next(c for c in CASES if c.id == name)
    runs = []
    for fused in ("triton", False):
        params = _bf16_params()
        opt = case.make(
            params, lr=0.01, fused=fused, state_dtype=torch.float32, stochastic_rounding=True
        )
        generator = torch.Generator().manual_seed(1)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, generator=generator).to(torch.bfloat16)
            opt.step()
        opt.check_finite()
        runs.append((params, opt))
    _assert_same_run(*runs)


@pytest.mark.parametrize(
    "fused",
    ["triton", pytest.param(True, marks=needs_c_kernel), False],
    ids=["triton", "c", "plain"],
)
def test_stochastic_rounding_is_unbiased(fused):
    # 1 + 2**-9 is a quarter of the way from bfloat16's 1 to the next value up (1 + 2**-7):
    # it must round up a quarter of the time, within 5 standard deviations of the binomial
    n = 40_000
    w = torch.ones(n, dtype=torch.bfloat16, requires_grad=True)
    opt = optimlab.SGD(
        [w], lr=1.0, fused=fused, state_dtype=torch.float32, stochastic_rounding=True
    )
    if fused is True:  # a first step plans the C kernel's (a zero step: w stays 1)
        w.grad = torch.zeros(n, dtype=torch.bfloat16)
        opt.step()
        assert opt._fused.ready(opt.param_groups[0]) is not None
    w.grad = torch.full((n,), -(2.0**-9), dtype=torch.bfloat16)
    opt.step()
    opt.check_finite()
    values = set(w.detach().float().unique().tolist())
    assert values <= {1.0, 1.0 + 2.0**-7}
    up = float((w.detach().float() > 1).double().mean())
    assert abs(up - 0.25) <= 5 * (0.25 * 0.75 / n) ** 0.5


@pytest.mark.parametrize(
    "fused", ["triton", pytest.param(True, marks=needs_c_kernel)], ids=["triton", "c"]
)
def test_a_resumed_mixed_precision_run_continues_exactly(fused):
    def steps(opt, params, generator, count):
        for _ in range(count):
            for p in params:
                p.grad = torch.randn(p.shape, generator=generator).to(torch.bfloat16)
            opt.step()

    mixed = dict(lr=0.01, fused=fused, state_dtype=torch.float32, stochastic_rounding=True)
    params = _bf16_params()
    opt = optimlab.Adam(params, **mixed)
    generator = torch.Generator().manual_seed(3)
    steps(opt, params, generator, 3)
    saved = copy.deepcopy(opt.state_dict())
    resumed_params = [p.detach().clone().requires_grad_() for p in params]
    resumed = optimlab.Adam(resumed_params, **mixed)
    resumed.load_state_dict(saved)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    steps(opt, params, g1, 2)
    steps(resumed, resumed_params, g2, 2)
    opt.check_finite()
    resumed.check_finite()
    _assert_same_run((params, opt), (resumed_params, resumed))


def test_a_step_runs_with_its_parameters_device_current(monkeypatch):
    # Triton launches on the current CUDA device, whichever device the tensors are on: a
    # step on cuda:1 while cuda:0 is current makes cuda:1 current for the step
    from optimlab.fused import steps

    guard = steps.on_device(torch.device("cuda", 1))
    assert isinstance(guard, torch.cuda.device) and guard.idx == 1
    entered = []
    real = steps.on_device
    monkeypatch.setattr(steps, "on_device", lambda device: entered.append(device) or real(device))
    w = torch.zeros(3, requires_grad=True)
    opt = optimlab.Adam([w], fused="triton")
    w.grad = torch.ones(3)
    opt.step()
    assert entered == [torch.device("cpu")]


@pytest.mark.parametrize(
    "cls, options, dtype",
    [
        (optimlab.NAdam, {}, torch.float32),
        (optimlab.ASGD, {}, torch.float32),
        (optimlab.Adam, dict(state_dtype=torch.float32, stochastic_rounding=True), torch.bfloat16),
        (optimlab.NAdam, dict(capturable=True), torch.float32),
    ],
    ids=["nadam", "asgd", "adam-bf16-stochastic", "nadam-capturable"],
)
def test_a_loaded_state_keeps_the_numbers_the_host_reads_on_the_host(cls, options, dtype):
    # "meta" stands for a GPU here. Buffers go to the parameter's device, as torch loads
    # them; the 0-dim entries a step reads on the host (NAdam's product, ASGD's eta and mu, a
    # rounding seed) stay there, as in a new state: on the GPU every step would wait for
    # them (and a seed there could not be read at all). With capturable=True they live on
    # the device, as torch keeps them.
    p = torch.randn(10).to(dtype).requires_grad_()
    opt = cls([p], lr=0.1, **options)
    p.grad = torch.randn(10).to(dtype)
    opt.step()
    q = torch.empty(10, device="meta", dtype=dtype).requires_grad_()
    resumed = cls([q], lr=0.1, **options)
    resumed.load_state_dict(opt.state_dict())
    for name, value in resumed.state[q].items():
        on_device = value.dim() > 0 or options.get("capturable")
        want = "meta" if on_device else "cpu"
        assert value.device.type == want, name


@pytest.fixture
def triton_version(monkeypatch):
    """Makes the installed Triton say another version (what optimlab asks of it is read once
    per process: asked again here, and after the test)."""
    import triton

    def pretend(version):
        monkeypatch.setattr(triton, "__version__", version)
        triton_kernels._installed_reason.cache_clear()
        triton_kernels._interpreter_reason.cache_clear()

    yield pretend
    triton_kernels._installed_reason.cache_clear()
    triton_kernels._interpreter_reason.cache_clear()


def _one_step_refused(match):
    w = torch.zeros(3, requires_grad=True)
    w.grad = torch.ones(3)
    with pytest.raises(RuntimeError, match=match):
        optimlab.Adam([w], fused="triton").step()


def test_a_triton_that_flushes_subnormals_is_refused_saying_why(triton_version, capsys):
    # Triton 3.2 to 3.5 compile tl.div_rn and tl.sqrt_rn to instructions that flush subnormals
    # to zero (test_triton_compile.py checks the PTX of the installed one): fused="triton"
    # refuses such a Triton, and a step on a GPU takes the multi-tensor path, saying so once
    triton_version("3.5.1")
    _one_step_refused(r"fused='triton': .*Triton 3\.6 or newer.*3\.5\.1")
    assert not DeviceSteps._wants_triton({"fused": None}, torch.device("cuda"))
    assert "stepping with PyTorch's multi-tensor operations" in capsys.readouterr().err


def test_an_interpreter_that_rounds_fma_twice_is_refused_saying_why(triton_version):
    # Triton 3.6 to 3.8 run tl.fma in the interpreter as a multiply and an add, each rounded:
    # not the GPU's numbers, so the interpreter stands for a GPU from 3.9 on (which the tests
    # need: pyproject's dev extra); on a GPU, 3.6 compiles a true fma and still runs
    triton_version("3.8.0")
    _one_step_refused(r"interpreter from Triton 3\.9 on, found 3\.8\.0")
    assert triton_kernels.unavailable_reason(torch.device("cuda")) is None


class _Launches:
    """Spies on the update kernel's launches: for each, the kernel's key (program, dtype,
    storage, stochastic, aligned, state storage), its number of programs and its compile
    options."""

    def __init__(self, monkeypatch):
        self.launched: list[tuple[tuple, int, dict]] = []
        real = triton_kernels.kernel
        launched = self.launched

        def spy(*key):
            compiled = real(*key)

            class Launch:
                def __getitem__(self, grid):
                    def launch(*args, **kwargs):
                        options = {k: v for k, v in kwargs.items() if k != "BLOCK"}
                        launched.append((key, grid[0], options))
                        return compiled[grid](*args, **kwargs)

                    return launch

            return Launch()

        monkeypatch.setattr(triton_kernels, "kernel", spy)

    def variants(self) -> list[tuple[bool, int]]:
        """(aligned variant?, number of programs) of each launch; forgets them."""
        found = [(key[4], programs) for key, programs, _ in self.launched]
        self.launched.clear()
        return found


def test_aligned_tensors_take_the_variant_of_16_byte_loads(monkeypatch):
    # SIZES: 5, 1500, 33 and 1024 elements, five chunks, two of them whole: one launch over
    # all of them. Where a pointer is not a multiple of 16 bytes (a view one float in) the
    # general variant takes the step, and so it does again after gradients move there.
    # (Both variants are bitwise the C kernel: the tests above run them.)
    launches = _Launches(monkeypatch)

    def step(params):
        opt = optimlab.Adam(params, lr=0.01, fused="triton")
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
        return opt

    aligned = _params(torch.float32)
    assert all(p.data_ptr() % 16 == 0 for p in aligned)
    opt = step(aligned)
    assert launches.variants() == [(True, 5)]
    step([torch.zeros(n + 1)[1:].requires_grad_() for n in SIZES])
    assert launches.variants() == [(False, 5)]
    aligned[1].grad = torch.ones(1501)[1:]  # a gradient 4 bytes past an allocation
    opt.step()
    assert launches.variants() == [(False, 5)]
    aligned[1].grad = torch.ones(1500)
    opt.step()
    assert launches.variants() == [(True, 5)]


@needs_c_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_misaligned_tensors_step_as_the_c_kernel(dtype):
    # the general variant, which aligned tensors no longer take: views one element in
    case = next(c for c in CASES if c.id == "adamw-amsgrad")

    def run(fused):
        generator = torch.Generator().manual_seed(0)
        params = [
            torch.randn(n + 1, generator=generator, dtype=dtype)[1:].requires_grad_() for n in SIZES
        ]
        opt = case.make(params, lr=0.01, fused=fused)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, generator=generator, dtype=dtype)
            opt.step()
        opt.check_finite()
        return params, opt

    _assert_same_run(run("triton"), run(True))


@pytest.mark.parametrize("aligned", [True, False], ids=["aligned", "misaligned"])
@pytest.mark.parametrize("where", [(1, 7), (1, 1400), (0, 3), (3, 1023), (2, 32)])
def test_the_check_finds_a_nan_in_whole_chunks_and_in_the_rest(where, aligned):
    # SIZES: 5, 1500, 33, 1024: (1, 7) and (3, 1023) lie in whole chunks, the others in
    # partial ones; a misaligned tensor (a view one element in) takes the general variant
    tensor, index = where
    params = _params(torch.float32)
    if not aligned:
        params = [torch.zeros(p.numel() + 1)[1:].copy_(p.detach()).requires_grad_() for p in params]
    before = [p.detach().clone() for p in params]
    opt = optimlab.Adam(params, lr=0.01, fused="triton", nonfinite_grads="skip")
    for p in params:
        p.grad = torch.ones_like(p)
    params[tensor].grad[index] = float("nan")
    opt.step()
    opt.check_finite()
    assert opt.skipped_steps == 1
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before))
    assert all(p.data_ptr() % 16 == 0 for p in params) == aligned
