"""The fused path's one entry point: what an optimizer asks of it, group by group.

An :class:`~optimlab.optim.base.Optimizer` holds one :class:`FusedSteps` (made with it, never
saved or copied: it holds pointers) and talks to the fused path only through it:

* :meth:`FusedSteps.wanted`: whether a group steps fused at all (its ``fused``/``foreach``
  choices, the rule, this machine);
* :meth:`FusedSteps.ready`: the group's plan if it still holds (see :mod:`.plan`), before the
  non-finite check reads the gradients through it;
* :meth:`FusedSteps.step`: the fused part of the step on that plan; returns the parameters it
  did not take, for the plain path, or None when it took nothing;
* :meth:`FusedSteps.update`: on the general path, the fused part of one bucket; returns the
  rest (the specification of :mod:`.plan` decides);
* :meth:`FusedSteps.replan`: after a general step, the plan for the next ones;
* :meth:`FusedSteps.stepped_states`: the states the last planned step advanced;
* :meth:`FusedSteps.forget`: drop every plan (``load_state_dict``).

The optimizer supplies its rule (``_update``), its buffers (``_buffer_names``), the
arguments of a step (``_arguments``) and the state entries a rule takes as arguments
(``_state_arguments``: ASGD's step sizes), which a plan's parameters must share.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.autograd.graph import increment_version

from ..core import precision
from . import native, plancheck, triton_kernels
from .device_scalars import DeviceScalar, NotCapturable, every_branch, selected
from .plan import FusedPlan, fusable_subset
from .tape import NotRecordable, Tape


class FusedSteps:
    """The fused path of one optimizer (see the module docstring)."""

    def __init__(self, optimizer: Any) -> None:
        self.optimizer = optimizer
        #: the plan of each group, by ``id(group)``
        self.plans: dict[int, FusedPlan] = {}
        #: the fused path on a GPU (or in Triton's interpreter)
        self.device_steps = DeviceSteps(optimizer, self)

    def wanted(self, group: dict[str, Any]) -> bool:
        """Whether ``group`` steps on the fused path (see the optimizer's docstring)."""
        fused = group.get("fused")
        if fused is False or (fused is None and group.get("foreach") is not None):
            return False
        if group.get("differentiable") or fused == "triton":
            return False  # autograd through the step: the per-tensor path; Triton: DeviceSteps
        if torch.compiler.is_compiling():
            return False  # torch.compile traces PyTorch operations, not the compiled loop
        if self.optimizer._unfusable_reason is not None:
            return False
        return native.available()

    def ready(self, group: dict[str, Any]) -> FusedPlan | None:
        """``group``'s plan, if it has one that still holds (and the optimizer accepts)."""
        plan = self.plans.get(id(group))
        # (a plan of the Triton kernels, left by a step that then went to the general path,
        # is not the C kernels': their plan is made afresh)
        if plan is None or plan.triton or not plan.ready(self.optimizer, group):
            return None
        if (
            self.optimizer._state_arguments
            and len(set(map(self.optimizer._state_key, plan.states))) != 1
        ):
            return None  # the general path steps each set of parameters on its own
        return plan

    def step(self, group: dict[str, Any], plan: FusedPlan) -> list[Tensor] | None:
        """Take the fused part of ``group``'s step on its ready ``plan``: the parameters left
        for the plain path, or None, with nothing changed, when a kernel cannot be had."""

        def kernel(bucket: Any, step: int) -> Any:
            arguments = self.optimizer._arguments(group, bucket.states[0], step)
            if bucket.storage != torch.bfloat16:
                complex_numbers = bucket.storage.is_complex
                return self.kernel(
                    arguments, plan.names, bucket.dtype, None, False, complex_numbers
                )
            stochastic = _stochastic(group, bucket)
            found = self.kernel(arguments, plan.names, bucket.dtype, bucket.storage, stochastic)
            if found is None or not stochastic:
                return found
            return found[0], [*found[1], float(precision.hash32(step))]  # (the rounding key's)

        if not plan.step(kernel):
            return None
        return plan.others

    def update(
        self,
        group: dict[str, Any],
        arguments: dict[str, Any],
        names: tuple[str, ...],
        params: list[Tensor],
    ) -> list[Tensor]:
        """Step the parameters of one bucket the fused kernel can take (the rule's
        ``arguments`` as the optimizer's ``_arguments`` gives them); return the others."""
        taken, rest = fusable_subset(self.optimizer, group, params, names)
        if not taken:
            return rest
        dtype = taken[0].dtype
        found = self.kernel(
            arguments, names, native.REAL_DTYPE[dtype], None, False, dtype.is_complex
        )
        if found is None:
            return params
        kernel, scalars = found
        state = self.optimizer.state
        buffers = [[state[p][name] for p in taken] for name in names]
        kernel.run(*native.pointer_table([taken, [p.grad for p in taken], *buffers]), scalars)
        # Written behind PyTorch's back: bump the parameters' autograd version counters, as
        # in-place PyTorch operations do (a parameter saved for backward reports the change).
        # State buffers are the optimizer's own and never in a graph: theirs are left alone
        # (bumping them costs about 0.3 µs per tensor, cache misses on their counters).
        increment_version(taken)
        return rest

    def replan(self, group: dict[str, Any], fused: bool) -> None:
        """After a step on the general path: the plan of ``group``'s next steps (if fused)."""
        self.plans.pop(id(group), None)
        if fused:
            plan = FusedPlan(self.optimizer, group, self.optimizer._buffer_names(group))
            if plan.fused:
                self.plans[id(group)] = plan

    def stepped_states(self, group: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The states of the parameters ``group``'s last planned step advanced (those with
        gradients), or None when the group has no plan."""
        plan = self.plans.get(id(group))
        if plan is None:
            return None
        return plan.states + [self.optimizer.state[p] for p in plan.others]

    def advance_steps(self, states: list[dict[str, Any]]) -> list[int] | None:
        """Advance the step counts of ``states`` (distinct dicts) by one in C++ (about 0.05 µs
        each, where a PyTorch in-place add costs about 2 µs), returning the new counts; None,
        with nothing changed, where the checker is not built or a count is not a plain 0-dim
        float tensor."""
        checker = plancheck.checker()
        return None if checker is None or not states else checker.advance_steps(states)

    def forget(self) -> None:
        """Drop every plan, and the device path's state arguments kept by step count (a
        loaded state starts its own)."""
        self.plans.clear()
        self.device_steps.host_values.clear()
        self.device_steps.host_inputs.clear()

    def settle(self) -> None:
        """Read every launched device step's skip flag (waiting for them): the step counts
        are exact after it (``state_dict``, ``check_finite``)."""
        self.device_steps.settle()

    def kernel(
        self,
        arguments: dict[str, Any],
        names: tuple[str, ...],
        dtype: torch.dtype,
        storage: torch.dtype | None = None,
        stochastic: bool = False,
        complex_numbers: bool = False,
    ) -> tuple[native.Kernel, list[float]] | None:
        """The compiled kernel of the rule with these ``arguments`` (a group's hyperparameters,
        the step count, ...), and the scalars to call it with (``storage``, ``stochastic``:
        see :class:`~optimlab.fused.native.Kernel`).

        The rule's Python runs as on the plain path (its branches and scalar arithmetic); a
        :class:`~optimlab.fused.tape.Tape` keeps the elementwise operations it asks for, and
        the kernel compiled for that program (once per configuration) applies them all in one
        pass over the tensors, in place. None when the kernel cannot be built and the group
        did not insist on ``fused=True``: then the plain path takes the step (``"exact"``
        kernels compute what it does, so falling back changes nothing).
        """
        insist = arguments.get("fused") is True
        try:
            tape = self.record(arguments, names, complex_numbers)
        except NotRecordable as error:
            if insist:
                raise RuntimeError(
                    f"fused=True, but {type(self.optimizer).__name__}'s rule cannot be fused: "
                    f"{error}"
                ) from None
            return None
        try:
            exact = arguments.get("fused") == "exact"
            kernel = native.tape_kernel(tape, dtype, exact, storage, stochastic)
        except native.NativeUnavailable:
            if insist:
                raise
            return None
        return kernel, tape.scalars

    def record(
        self, arguments: dict[str, Any], names: tuple[str, ...], complex_numbers: bool = False
    ) -> Tape:
        """The rule with these ``arguments``, recorded on a :class:`~.tape.Tape` over one
        parameter, its gradient and its buffers ``names`` (NotRecordable if it cannot be);
        ``complex_numbers``: for complex parameters (see ``Optimizer._ops``)."""
        tape = Tape(("param", "grad", *names))
        recorded = {name: [tape[name]] for name in names}
        ops = self.optimizer._ops(tape.ops, complex_numbers)
        self.optimizer._apply(ops, arguments, [tape["param"]], [tape["grad"]], recorded)
        return tape


def traffic(optimizer: Any, step: int = 10) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What a fused step of ``optimizer``'s first group at ``step`` reads and writes, per
    element: the operands' names (``param``, ``grad``, buffers). The bytes per parameter a step
    must move are their total count times the element size; NotRecordable where the rule is
    not elementwise.

    >>> import torch, optimlab
    >>> traffic(optimlab.Adam([torch.zeros(1, requires_grad=True)]))
    (('param', 'grad', 'exp_avg', 'exp_avg_sq'), ('param', 'exp_avg', 'exp_avg_sq'))
    """
    group = optimizer.param_groups[0]
    names = optimizer._buffer_names(group)
    state = optimizer._init_state(group["params"][0], group)
    program = FusedSteps(optimizer).record(optimizer._arguments(group, state, step), names).program
    return (
        tuple(program.operands[i] for i in program.read),
        tuple(program.operands[i] for i in program.written),
    )


#: at most this many steps launched on a device whose skip flags the host has not read yet;
#: past it, the host waits for the oldest (normally long finished)
MAX_UNRESOLVED = 4


class _Launched:
    """A device step whose skip flag the host has not read yet."""

    __slots__ = (
        "snapshot",
        "event",
        "stepped",
        "names",
        "checked",
        "host",
        "counted",
        "last",
        "plans",
    )

    def __init__(
        self,
        snapshot: Tensor,
        event: Any,
        stepped: list[Tensor],
        names: list[str],
        checked: bool,
        host: list[tuple[dict[str, Any], list[dict[str, Any]]]],
        counted: bool = False,
        last: bool = False,
        plans: tuple[Any, ...] | None = None,
    ) -> None:
        self.snapshot = snapshot  # host copy of [skips, flags...], filled asynchronously
        self.event = event  # recorded after the copy (None on the CPU: done already)
        self.stepped = stepped  # the step counts this step advanced, optimistically
        self.names = names  # each flagged tensor's name, for the error message
        self.checked = checked  # whether the flag is optimlab's check (else GradScaler's)
        self.host = host  # (group, its plan's states) whose host state this step advanced
        self.counted = counted  # whether the device counted the steps (capturable=True)
        self.last = last  # whether a skip here skips every later step ("raise")
        self.plans = plans  # the plans this step launched (None: counted on the device)

    def done(self) -> bool:
        return self.event is None or bool(self.event.query())


class DeviceSteps:
    """The fused path on a GPU (or in Triton's interpreter): one Triton kernel per bucket and
    step, and no host synchronisation (see :mod:`.triton_kernels`).

    Taken by :meth:`optimlab.optim.base.Optimizer.step` when every group with gradients
    chooses the Triton kernels (``fused="triton"``, or the default on CUDA tensors where
    Triton is installed) and they can take all its parameters. A step whose gradients hold
    NaN or an infinity (``nonfinite_grads`` other than ``"ignore"``), or that GradScaler
    found an infinity in, writes nothing on the device; the host counts each step when it
    launches it and takes a skipped one back when it reads the device's skip counter, which
    it copies without blocking after every step and reads at a later step (at most
    :data:`MAX_UNRESOLVED` steps later), in ``state_dict()`` and in
    :meth:`~optimlab.optim.base.Optimizer.check_finite`. Until then ``state[p]["step"]`` and
    ``skipped_steps`` may count a skipped step; the kernels compute with the true count.
    With ``nonfinite_grads="raise"`` the flag stays raised, so that no later step applies
    either, until the host reads it and raises :class:`NonFiniteGradientError`, naming the
    parameter and saying that the step (and any launched after it) was not applied.

    Optimizers that keep state on the host that their rule reads (NAdam's momentum product,
    ASGD's step sizes, the schedule-free average's weights; see
    ``Optimizer._after_step_inputs``) advance it on the host after each launch, as the step
    counts, and keep its values by step count: a kernel's rows of scalars for ``j`` unread
    skips take those after ``n - j`` steps, and a skip read later puts back those of the true
    count. With ``nonfinite_grads="raise"`` (the default) a skipped step is the last one
    applied: every later one is skipped too, so ``j`` skips are the last ``j`` steps, and the
    values kept after ``n - j`` steps are those of the true history whatever the inputs of
    ``_after_step`` were. A step skipped otherwise ("skip", GradScaler) may be any of the
    unread ones: the values after ``n`` steps then depend on ``n`` alone only while those
    inputs stay the same, and a step where they changed (ASGD's lr under a schedule) with
    such flags unread first reads them (a wait, on a GPU; ASGD with ``capturable=True``
    keeps its state on the device and does not). Parameters at different step counts (a
    bucket of each) keep their host state by bucket (the schedule-free one, the group's, by
    the group's count: ``Optimizer._host_key``). The rows for ``j`` unread skips stand for
    launches that advanced the same parameters: a step of other plans (a parameter that
    gained or lost its gradient, counts taken back) reads the flags first, as does a step that
    a flag "raise" raised would not keep from applying (GradScaler's, or one under another
    policy) and a step that leaves this path (``Optimizer.step``).

    With ``capturable=True`` the host counts nothing: the step counts live on the device and
    advance there unless the flag is raised, and the rule's scalars are computed there from
    them (:meth:`_capturable_step`), so a CUDA graph that captured one step replays the next
    ones; the host reads the skip counter later, or in :meth:`settle` after replays.
    """

    #: keep this many launched steps unread even when they are done (tests: exercises the
    #: rows of scalars the kernels choose from, which a CPU, where every copy is done at once,
    #: otherwise never needs)
    lag = 0

    def __init__(self, optimizer: Any, fused: FusedSteps) -> None:
        self.optimizer = optimizer
        self.fused = fused
        self.launched: deque[_Launched] = deque()
        self.known_skips = 0  # the skipped steps the host has read
        self.device: torch.device | None = None
        self.flags: Tensor | None = None  # [any, tensor 0, tensor 1, ...] on the device
        self.skips: Tensor | None = None  # the device's count of skipped steps
        self.no_flag: Tensor | None = None
        self._why_not: Any = _UNKNOWN
        #: by ``id(group)``: the host state after each recent step count (see above)
        self.host_values: dict[int, dict[tuple[int, int], tuple[Any, ...]]] = {}
        #: by ``id(group)``: the inputs of ``_after_step`` at the group's last launch
        self.host_inputs: dict[int, tuple[Any, ...]] = {}
        #: after a capturable step that checks flags: the names of its flags, and whether
        #: they are optimlab's check's (else GradScaler's), for reading the counter later
        self.counted: tuple[list[str], bool] | None = None
        #: the device memory of every captured step outside the graph's own pool (the
        #: buckets' tables, the flags, the skip counter): a graph replays reads and writes
        #: of it, so it lives as long as this optimizer, whatever plans replace it
        self.held_for_graphs: dict[int, Any] = {}

    # -- choosing ------------------------------------------------------------------------

    def takes(self, groups: list[dict[str, Any]]) -> torch.device | None:
        """The device whose Triton kernels take this step, or None (another path takes it)."""
        # Every step of every optimizer asks: on the CPU, unless a group names Triton, the
        # answer is no after looking at one parameter (about 1 µs)
        if not any(group.get("fused") == "triton" for group in groups):
            first = next((p for g in groups for p in g["params"] if p.grad is not None), None)
            if first is None or not first.is_cuda:
                return None
        if torch.compiler.is_compiling():
            return None
        why_not = self._why_not
        if why_not is _UNKNOWN:  # a property of the class: asked once
            why_not = self._why_not = self.optimizer._host_steps_reason()
        device = None
        for group in groups:
            first = next((p for p in group["params"] if p.grad is not None), None)
            if first is None:
                continue
            if device is None:
                device = first.device
            if why_not is not None:
                if group.get("fused") == "triton":
                    raise RuntimeError(
                        f"fused='triton': {why_not}; pass fused=None (the multi-tensor path on "
                        "a GPU, the C kernels on the CPU)"
                    )
                return None
            if first.device != device or not self._wants_triton(group, device):
                return None
        return device

    @staticmethod
    def _wants_triton(group: dict[str, Any], device: torch.device) -> bool:
        fused = group.get("fused")
        if group.get("differentiable") or fused is False:
            return False
        if fused is None and group.get("foreach") is not None:
            return False
        if fused == "triton":
            reason = triton_kernels.unavailable_reason(device)
            if reason is not None:
                raise RuntimeError(f"fused='triton': {reason}")
            return True
        if device.type != "cuda":
            return False
        reason = triton_kernels.unavailable_reason(device)
        if reason is not None:
            native._say_once(
                f"on {device.type}: {reason}; stepping with PyTorch's multi-tensor operations "
                "instead"
            )
        return reason is None

    # -- stepping ------------------------------------------------------------------------

    def step(
        self, device: torch.device, found_inf: Tensor | None, grad_scale: Tensor | None
    ) -> bool:
        """Take the step on ``device``; False, with nothing changed, where a parameter with a
        gradient is one the kernels cannot take (the general path then takes the step)."""
        with on_device(device):
            return self._step(device, found_inf, grad_scale)

    def _step(
        self, device: torch.device, found_inf: Tensor | None, grad_scale: Tensor | None
    ) -> bool:
        capturing = capturing_on(device)
        capturable = self._capturable()
        if capturing and not capturable:
            raise RuntimeError(
                capture_refusal(self.optimizer, "its groups are not all capturable=True")
            )
        if not capturing:
            self.resolve(wait=False)
        plans = self._plans(device, capturable, capturing)
        if plans is None:
            if capturing:
                raise RuntimeError(
                    capture_refusal(
                        self.optimizer,
                        "a parameter with a gradient is one the Triton kernels "
                        "cannot take (see optimlab.fused.plan)",
                    )
                )
            return False
        if not plans:
            return True
        if capturable:
            self._capturable_step(plans, device, found_inf, grad_scale, capturing)
            return True
        host_stepped = self.optimizer._after_step_inputs is not None
        if (
            host_stepped
            and self.optimizer._host_state_in_group
            and len(plans) != len(self.optimizer.param_groups)
        ):
            return False  # a group without gradients advances too: the host path's to take
        prepared = self._prepared(plans, device, found_inf, grad_scale is not None)
        if prepared is None:
            return False
        plans, checking, flag, runs, names = prepared
        if not plans:
            return True
        if checking:
            for bucket, device_bucket, first, _, _ in runs:
                device_bucket.check(self.flags, first, bucket.storage)
        for bucket, device_bucket, _, (program, rows, scalars), stochastic in runs:
            values = triton_kernels.host_buffer(scalars, device)
            if grad_scale is not None:  # GradScaler's inverse scale, read on the device
                values[1:].view(rows, -1)[:, 0] = _inverse_scale(grad_scale)
            device_bucket.run(
                program,
                bucket.dtype,
                values,
                rows,
                flag,
                self.skips,
                bucket.storage,
                stochastic,
                bucket.state_storage,
            )
        stepped: list[Tensor] = []
        host: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        for group, plan in plans:  # counted now; a skip is taken back when it is read
            for step in plan.step_tensors:
                step += 1
            plan.steps += 1
            stepped += plan.step_tensors
            increment_version(plan.fused)
            if host_stepped:  # the state arguments for the next step, as counted
                self.optimizer._after_step(group, plan.states)
                self._keep_host_values(group, plan)
                host += [(group, bucket.states) for bucket in plan.buckets]
        if found_inf is not None or checking:
            self.skips += flag[:1]
            self._launch_read(stepped, names, checking, host, plans=tuple(p for _, p in plans))
        return True

    def _prepared(
        self,
        plans: list[tuple[dict[str, Any], FusedPlan]],
        device: torch.device,
        found_inf: Tensor | None,
        scaled: bool,
    ) -> tuple[list[tuple[dict[str, Any], FusedPlan]], bool, Tensor, list, list[str]] | None:
        """:meth:`_prepare`; None also where the rule cannot be recorded for this step (a
        hyperparameter out of range: the general path then computes, or raises, what
        ``fused=False`` does), unless a group insists on ``fused="triton"``."""
        try:
            return self._prepare(plans, device, found_inf, scaled)
        except NotRecordable as error:  # (nothing launched yet)
            if any(group.get("fused") == "triton" for group, _ in plans):
                raise RuntimeError(
                    f"fused='triton', but {type(self.optimizer).__name__}'s rule cannot be "
                    f"fused: {error}"
                ) from None
            return None

    def _prepare(
        self,
        plans: list[tuple[dict[str, Any], FusedPlan]],
        device: torch.device,
        found_inf: Tensor | None,
        scaled: bool,
    ) -> tuple[list[tuple[dict[str, Any], FusedPlan]], bool, Tensor, list, list[str]] | None:
        """Everything a launch needs: the plans, whether the step checks its gradients, the
        flag its kernels read, and :meth:`_runs`; None where the general path must take the
        step. Where the host reads the flags of launched steps first (see :meth:`_host_inputs`,
        :meth:`_buffers`, :meth:`_runs`) and finds a step skipped, the counts it takes back
        make the plans anew, and this starts again with them (once: nothing is unread then)."""
        host_stepped = self.optimizer._after_step_inputs is not None
        # (a step that a raised flag skips: one that checks and raises, as all before it)
        raising = found_inf is None and self.optimizer.nonfinite_grads == "raise"
        while True:
            if any(not _launched_with(launched, plans) for launched in self.launched):
                self.resolve(wait=True)  # (the rows for unread skips stand for these plans')
            self._read_if_unguarded(raising)
            if self._current(plans):
                if host_stepped:
                    self._host_inputs(plans, raising)
                checking, flag = self._flag(plans, device, found_inf)
                runs, names = self._runs(plans, device, scaled)
                if self._current(plans):
                    return plans, checking, flag, runs, names
            again = self._plans(device)
            if again is None:
                return None
            plans = again

    def _read_if_unguarded(self, raising: bool) -> None:
        """Read the flags first where one that "raise" raised may be up and this step does
        not read it (``raising`` False: GradScaler's flag, another policy), so would apply."""
        if not raising and any(launched.last for launched in self.launched):
            self.resolve(wait=True)

    def _current(self, plans: list[tuple[dict[str, Any], FusedPlan]]) -> bool:
        """Whether ``plans`` are still the groups' (a skip read takes them away)."""
        return all(self.fused.plans.get(id(group)) is plan for group, plan in plans)

    def _flag(
        self,
        plans: list[tuple[dict[str, Any], FusedPlan]],
        device: torch.device,
        found_inf: Tensor | None,
    ) -> tuple[bool, Tensor]:
        """Whether this step checks its gradients (else GradScaler did, or the policy is
        "ignore"), and the device flag its kernels read: nonzero skips the step."""
        policy = self.optimizer.nonfinite_grads
        self._buffers(device, sum(len(plan.fused) for _, plan in plans))
        checking = found_inf is None and policy != "ignore"
        if checking and policy == "skip":
            self.flags.zero_()  # ("raise": the flag stays up until the host reads it)
        if found_inf is not None:
            return checking, found_inf.reshape(-1)[:1].float()
        return checking, self.flags if checking else self.no_flag

    def _capturable(self) -> bool:
        """Whether this step counts on the device (every group with gradients
        ``capturable=True``); raises where the optimizer cannot."""
        groups = [
            g for g in self.optimizer.param_groups if any(p.grad is not None for p in g["params"])
        ]
        if not groups or not all(g.get("capturable") for g in groups):
            return False
        reason = self.optimizer._capturable_reason()
        if reason is not None:
            raise RuntimeError(
                f"capturable=True: {reason}; pass capturable=False (its steps then read "
                "nothing on the host either, but cannot be captured in a CUDA graph)"
            )
        return True

    def _capturable_step(
        self,
        plans: list[tuple[dict[str, Any], FusedPlan]],
        device: torch.device,
        found_inf: Tensor | None,
        grad_scale: Tensor | None,
        capturing: bool,
    ) -> None:
        """The step of ``capturable=True``: everything that changes from step to step is
        computed on the device, so that a CUDA graph capturing it replays every later step.
        The check's flag decides on the device whether the step counts advance; the rule's
        scalars are computed from them there (see :mod:`.device_scalars`); the update
        kernel reads them, and the flag, from device memory. The host reads the skip counter
        later, as in the other steps, or (after replays it did not see) in :meth:`settle`."""
        if not capturing:
            self._read_if_unguarded(found_inf is None and self.optimizer.nonfinite_grads == "raise")
        checking, flag = self._flag(plans, device, found_inf)
        runs = []
        names: list[str] = []
        for group, plan in plans:
            for bucket in plan.buckets:
                device_bucket = self._device_bucket(group, bucket, device)
                device_bucket.set_grads(bucket.table[1], capturing)
                if checking:
                    device_bucket.check(self.flags, len(names), bucket.storage)
                runs.append((group, plan, bucket, device_bucket))
                names += self._names(group, plan, bucket)
        taken = 1.0 - flag[0]  # the step counts advance where the step is taken
        steps: dict[torch.dtype, list[Tensor]] = {}
        for _, plan in plans:
            for step in plan.step_tensors:
                steps.setdefault(step.dtype, []).append(step)
        for dtype, tensors in steps.items():  # (a list: a 0-dim tensor as the scalar operand
            # would be read on the host on the CPU)
            torch._foreach_add_(tensors, [taken.to(dtype)] * len(tensors))
        inverse = None if grad_scale is None else DeviceScalar(_inverse_scale(grad_scale))
        for group, plan, bucket, device_bucket in runs:
            for program, values, met in self._device_scalars(group, plan, bucket, inverse):
                device_bucket.run(
                    program,
                    bucket.dtype,
                    values,
                    1,
                    flag if not met else flag[:1] + _mismatch(met),  # (applies where all hold)
                    self.skips,
                    bucket.storage,
                    _stochastic(group, bucket),
                    bucket.state_storage,
                )
        if self.optimizer._state_arguments:  # as _after_step, where the step was taken
            for group, plan in plans:
                for bucket in plan.buckets:
                    count = DeviceScalar(bucket.states[0]["step"].to(torch.float64))
                    new = self._advanced_state(group, count, device, bucket.states[0])
                    for name, value in zip(self.optimizer._state_arguments, new):
                        tensors = [s[name] for s in bucket.states]
                        value = torch.where(taken > 0, value, tensors[0].double())
                        torch._foreach_copy_(tensors, [value.to(tensors[0].dtype)] * len(tensors))
        for _, plan in plans:
            increment_version(plan.fused)
        if found_inf is not None or checking:
            self.skips += flag[:1]
            self.counted = (names, checking)
            if not capturing:
                self._launch_read([], names, checking, [], counted=True)
        if capturing:
            held = [run[3] for run in runs] + [self.flags, self.skips, self.no_flag]
            self.held_for_graphs.update((id(x), x) for x in held)

    def _device_scalars(
        self, group: dict[str, Any], plan: FusedPlan, bucket: Any, inverse: DeviceScalar | None
    ) -> list[tuple[Any, Tensor, list[tuple[Tensor, bool]]]]:
        """The program of ``bucket``'s rule and its scalars computed on the device, from the
        step count of its first parameter (a plan's counts advance together), laid out as
        the kernel takes them (one row); one of each for every way the rule's branches on
        device numbers go, with the conditions that way took (see
        :func:`.device_scalars.every_branch`)."""
        count = DeviceScalar(bucket.states[0]["step"].to(torch.float64))
        zero = torch.zeros((), dtype=torch.float64, device=plan.device)
        found = []
        state = bucket.states[0]
        recorded = self._record_on_device(
            group, plan.names, count, inverse, plan.device, state, bucket.storage.is_complex
        )
        for tape, met in recorded:
            row = [
                s.tensor.reshape(()).to(zero.dtype)
                if isinstance(s, DeviceScalar)
                else torch.full_like(zero, s)
                for s in tape.scalars
            ]
            if _stochastic(group, bucket):  # the step's share of the rounding bits' key
                key = count.tensor.to(torch.int64) & precision.MASK32
                row.append(precision._hash32_tensor(key).to(torch.float64))
            found.append((tape.program, torch.stack([zero, *(row or [zero])]), met))
        return found

    def _record_on_device(
        self,
        group: dict[str, Any],
        names: tuple[str, ...],
        count: DeviceScalar,
        inverse: DeviceScalar | None,
        device: torch.device,
        state: dict[str, Any],
        complex_numbers: bool = False,
        update: bool = False,
    ) -> list[tuple[Tape, list[tuple[Tensor, bool]]]]:
        """The rule recorded with its scalars computed on ``device`` from ``count`` (and the
        state arguments of ``state``), once for every way its branches on them go; a clear
        error where it reads one on the host (``update``: also where the state arguments'
        update does)."""
        optimizer = self.optimizer

        def record() -> Tape:
            optimizer._grad_unscale = inverse
            try:
                arguments = optimizer._device_arguments(group, count, device, state)
            finally:
                optimizer._grad_unscale = None
            return self.fused.record(arguments, names, complex_numbers)

        try:
            if update and optimizer._state_arguments:
                self._advanced_state(group, count, device, state)
            return every_branch(record)
        except NotCapturable as error:
            raise RuntimeError(
                f"capturable=True: {type(optimizer).__name__}'s rule, as configured, cannot "
                f"step without the host: {error}; pass capturable=False"
            ) from None
        except NotRecordable as error:
            raise RuntimeError(
                f"capturable=True: {type(optimizer).__name__}'s rule cannot be fused: {error}"
            ) from None

    def _advanced_state(
        self, group: dict[str, Any], count: DeviceScalar, device: torch.device, state: Any
    ) -> list[Tensor]:
        """The state arguments after a step to ``count`` from those of ``state``, computed on
        the device (``Optimizer._state_update``)."""
        optimizer = self.optimizer
        arguments = optimizer._device_arguments(group, count, device, state)
        return selected(lambda: optimizer._state_update(arguments), device)

    def _device_bucket(
        self, group: dict[str, Any], bucket: Any, device: torch.device
    ) -> triton_kernels.DeviceBucket:
        """``bucket``'s tables on the device (made once per plan)."""
        device_bucket = bucket.device_bucket
        if device_bucket is None:
            seeds = None
            if _stochastic(group, bucket):  # (host tensors, read once per plan)
                seeds = [int(s["rounding_seed"].numpy()) for s in bucket.states]
            device_bucket = bucket.device_bucket = triton_kernels.DeviceBucket(
                bucket.table, bucket.starts, device, seeds
            )
        return device_bucket

    def settle(self) -> None:
        """Read every launched step's skip flag, waiting for them, and the skip counter as
        it is now (replays of a captured step the host did not see may have skipped)."""
        if self.counted is not None and self.skips is not None:
            names, checked = self.counted
            with on_device(self.skips.device):
                self._launch_read([], names, checked, [], counted=True)
        self.resolve(wait=True)

    def _host_inputs(self, plans: list[tuple[dict[str, Any], FusedPlan]], raising: bool) -> None:
        """Before a launch (``raising``: of a step a raised flag skips): read the flags first
        where the inputs of ``_after_step`` changed since the last one and an unread skip may
        be followed by an applied step (the values kept by step count then hold for the old
        inputs only), and keep the host state of each plan's count if it is not kept yet."""
        optimizer = self.optimizer
        changed = False
        for group, plan in plans:
            numbers = optimizer._numbers(group)
            inputs = tuple(numbers[name] for name in optimizer._after_step_inputs)
            if self.host_inputs.get(id(group), inputs) != inputs:
                changed = True
            self.host_inputs[id(group)] = inputs
            self._keep_host_values(group, plan, replace=False)
        if changed and not (raising and all(launched.last for launched in self.launched)):
            self.resolve(wait=True)  # (see the class docstring)

    def _keep_host_values(
        self, group: dict[str, Any], plan: FusedPlan, replace: bool = True
    ) -> None:
        """Keep the host state of each bucket of ``plan`` (its parameters' shared state
        arguments, see :meth:`_plans`, or the group's) under their step count (``replace``:
        also where one is kept), with those of the last few counts."""
        kept = self.host_values.setdefault(id(group), {})
        for bucket in plan.buckets:
            state = bucket.states[0]
            key = self.optimizer._host_key(group, state)
            if not replace and key in kept:
                continue
            kept.pop(key, None)  # (the newest last: the oldest go first)
            kept[key] = self.optimizer._host_state(group, state)
        while len(kept) > (2 * MAX_UNRESOLVED + self.lag + 2) * len(plan.buckets):
            del kept[next(iter(kept))]

    def _plans(
        self, device: torch.device, capturable: bool = False, capturing: bool = False
    ) -> list[tuple[dict[str, Any], FusedPlan]] | None:
        """Each group with gradients and its plan (kept between steps); None where a
        parameter with a gradient is one the kernels cannot take."""
        optimizer = self.optimizer
        plans = []
        for group in optimizer.param_groups:
            if not any(p.grad is not None for p in group["params"]):
                continue
            plan = self.fused.plans.get(id(group))
            if (
                plan is None
                or not plan.triton
                or plan.device != device
                or plan.capturable != capturable
                or not plan.ready(optimizer, group)
            ):
                if capturing:  # a plan reads the step counts once, on the host
                    raise RuntimeError(
                        capture_refusal(
                            optimizer,
                            "its plan of this step is new (a first step, new gradients' "
                            "shapes or a loaded state): take a step with these parameters and "
                            "gradients before capturing, as torch's CUDA graph guide warms up",
                        )
                    )
                # A new plan waits for the launched steps (their plans differ: see _prepare);
                # it waits now, before it makes any state, so that a flag that "raise" raises
                # for leaves this step without a trace, as the general path's check does.
                if self.launched:
                    self.resolve(wait=True)
                names = optimizer._buffer_names(group)
                if capturable:  # a rule that cannot step so says it before anything changes
                    one = torch.ones((), dtype=torch.float64, device=device)
                    trial = {name: one for name in optimizer._state_arguments}
                    self._record_on_device(
                        group, names, DeviceScalar(one), None, device, trial, update=True
                    )
                for p in group["params"]:
                    if p.grad is not None and not optimizer.state[p]:
                        optimizer.state[p].update(optimizer._new_state(p, group))
                    if p.grad is not None:
                        optimizer._place_on_device(optimizer.state[p], p, group)
                plan = FusedPlan(
                    optimizer, group, names, device, triton=True, capturable=capturable
                )
                if (
                    plan.others
                    or not plan.fused
                    or not plan.ready(optimizer, group)
                    or not _one_host_state(optimizer, plan)
                ):
                    self.fused.plans.pop(id(group), None)
                    return None
                self.fused.plans[id(group)] = plan
            plans.append((group, plan))
        return plans

    def _runs(
        self, plans: list[tuple[dict[str, Any], FusedPlan]], device: torch.device, scaled: bool
    ) -> tuple[list[tuple[Any, ...]], list[str]]:
        """Per bucket: the bucket, its tables on the device, its first flag, its program and
        scalars, and whether it rounds stochastically; and the names of all tensors in flag
        order (for the error message)."""
        # the rows of scalars: one per number of launched steps, not yet read, that may have
        # been skipped
        unread = len(self.launched)
        runs = []
        names: list[str] = []
        for group, plan in plans:
            for bucket in plan.buckets:
                count = int(plan.steps[bucket.index[0]])
                stochastic = _stochastic(group, bucket)
                found = self._rows(group, plan, bucket, count, unread, scaled, stochastic)
                if found is None:  # the rows' programs differ (a first step): read first
                    self.resolve(wait=True)
                    found = self._rows(group, plan, bucket, count, 0, scaled, stochastic)
                device_bucket = self._device_bucket(group, bucket, device)
                device_bucket.set_grads(bucket.table[1])
                runs.append((bucket, device_bucket, len(names), found, stochastic))
                names += self._names(group, plan, bucket)
        return runs, names

    def _names(self, group: dict[str, Any], plan: FusedPlan, bucket: Any) -> list[str]:
        """The names of a bucket's parameters, for the error message (worked out once)."""
        found = bucket.names
        if found is None:
            optimizer = self.optimizer
            # (by identity: list.index compares groups with ==, their tensors elementwise)
            group_index = next(i for i, g in enumerate(optimizer.param_groups) if g is group)
            index = {id(p): j for j, p in enumerate(group["params"])}
            found = bucket.names = [
                optimizer._param_name(group_index, index[id(plan.fused[i])]) for i in bucket.index
            ]
        return found

    def _rows(
        self,
        group: dict[str, Any],
        plan: FusedPlan,
        bucket: Any,
        count: int,
        unread: int,
        scaled: bool,
        stochastic: bool = False,
    ) -> tuple[Any, int, np.ndarray] | None:
        """The program and its scalars for this step at count ``count + 1 - j`` for each
        ``j`` of ``0..unread`` (row ``j``: ``j`` of the unread steps were skipped), laid out
        as the kernel takes them; None where the rows' programs differ."""
        optimizer = self.optimizer
        program = None
        rows = []
        for j in range(min(unread, count) + 1):
            if scaled:
                optimizer._grad_unscale = 1.0  # a placeholder: the device's value replaces it
            state, as_of = bucket.states[0], group
            if j and optimizer._after_step_inputs is not None:  # as after j steps fewer
                owner, now = optimizer._host_key(group, state)
                kept = self.host_values.get(id(group), {}).get((owner, now - j))
                if kept is None:
                    return None
                as_of, state = optimizer._with_host_state(group, state, kept)
            try:
                arguments = optimizer._arguments(as_of, state, count + 1 - j)
            finally:
                optimizer._grad_unscale = None
            tape = self.fused.record(arguments, plan.names, bucket.storage.is_complex)
            if program is None:
                program = tape.program
                if scaled and program.instructions[0][0] != "mul":
                    raise AssertionError("the rule's first operation must unscale the gradients")
            elif tape.program != program:
                return None
            row = list(tape.scalars)
            if stochastic:  # the step's share of the rounding bits' key
                row.append(float(precision.hash32(count + 1 - j)))
            rows.append(row or [0.0])
        scalars = np.concatenate([[float(self.known_skips)], np.array(rows, np.float64).ravel()])
        return program, len(rows), scalars

    def _buffers(self, device: torch.device, tensors: int) -> None:
        if self.device != device or self.flags is None or self.flags.numel() < 1 + tensors:
            if self.launched:
                self.resolve(wait=True)
            self.device = device
            self.flags = torch.zeros(1 + tensors, dtype=torch.float32, device=device)
            self.no_flag = torch.zeros(1, dtype=torch.float32, device=device)
            if self.skips is None or self.skips.device != device:
                self.skips = torch.full(
                    (1,), float(self.known_skips), dtype=torch.float64, device=device
                )

    def _launch_read(
        self,
        stepped: list[Tensor],
        names: list[str],
        checked: bool,
        host: list[tuple[dict[str, Any], list[dict[str, Any]]]],
        counted: bool = False,
        plans: tuple[Any, ...] | None = None,
    ) -> None:
        """Copy the skip counter and the flags to the host without waiting."""
        values = torch.cat([self.skips, self.flags[: 1 + len(names)].double()])
        if values.device.type == "cuda":
            snapshot = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            snapshot.copy_(values, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            snapshot, event = values, None
        last = checked and self.optimizer.nonfinite_grads == "raise"
        self.launched.append(
            _Launched(snapshot, event, stepped, names, checked, host, counted, last, plans)
        )

    # -- reading the flags -----------------------------------------------------------------

    def resolve(self, wait: bool) -> None:
        """Read the skip flags of the launched steps that are done (``wait``: of all): take
        back the counts of skipped steps; with ``nonfinite_grads="raise"``, raise for one."""
        failed: list[str] = []
        skipped_here = 0
        while self.launched:
            first = self.launched[0]
            keep = len(self.launched) <= self.lag and not wait
            if keep or not first.done():
                if not wait and len(self.launched) <= MAX_UNRESOLVED:
                    break
                if first.event is not None:
                    first.event.synchronize()
            self.launched.popleft()
            values = first.snapshot.numpy()
            total = int(values[0])
            if total > self.known_skips:
                # (more than one where replays of a captured step skipped some)
                new = total - self.known_skips
                self.known_skips = total
                skipped_here += new
                if not first.counted:  # counted optimistically on the host: take it back
                    # (each host state once: a group's own is every bucket's)
                    host = {
                        self.optimizer._host_key(g, states[0]): (g, states)
                        for g, states in first.host
                    }
                    for step in first.stepped:
                        step -= 1
                    for (owner, count), (group, states) in host.items():  # the true count's
                        self._restore_host_values(group, states, (owner, count - 1))
                    self.fused.plans.clear()  # their cached step counts are off by one now
                # (a step GradScaler skipped is its own to count; one that raises is not
                # skipped but refused, as on every other path)
                if first.checked and not first.last:
                    self.optimizer.skipped_steps += new
                if first.last and not failed:  # (raised under "raise", at its launch)
                    failed = [n for n, v in zip(first.names, values[2:]) if v != 0] or ["?"]
                    wait = True  # every later step was skipped too: read them all
        if failed:
            self.flags.zero_()
            later = skipped_here - 1
            raise self.optimizer._NonFiniteError(
                f"The gradient of {failed[0]} holds NaN or Inf; the step was not applied"
                + (f" (nor the {later} launched after it)" if later else "")
                + (f"; also non-finite: {', '.join(failed[1:])}" if failed[1:] else "")
                + ". Pass nonfinite_grads='skip' to skip such steps instead."
            )

    def _restore_host_values(
        self, group: dict[str, Any], states: list[dict[str, Any]], key: tuple[int, int]
    ) -> None:
        kept = self.host_values.get(id(group), {}).get(key)
        if kept is None:  # (kept for the last counts; a step is read at most a few late)
            raise AssertionError("the host state of a skipped step's count was not kept")
        self.optimizer._restore_host_state(group, states, kept)


_UNKNOWN = object()


def _launched_with(launched: _Launched, plans: list[tuple[dict[str, Any], FusedPlan]]) -> bool:
    """Whether ``launched`` stepped with ``plans`` (the same objects): the rows of scalars for
    ``j`` unread skips (:meth:`DeviceSteps._rows`) hold where every unread step advanced the
    same parameters, counted on the host."""
    return (
        launched.plans is not None
        and len(launched.plans) == len(plans)
        and all(a is b for a, (_, b) in zip(launched.plans, plans))
    )


def _one_host_state(optimizer: Any, plan: FusedPlan) -> bool:
    """Whether the parameters of each bucket of ``plan`` (those of one step count) share
    their state arguments, where the optimizer keeps host state (one row of scalars for a
    bucket, one host state to keep by count; they do unless loaded so, or stepped apart under
    changing hyperparameters), checked when the plan is made."""
    if optimizer._after_step_inputs is None:
        return True
    return all(len(set(map(optimizer._state_key, b.states))) == 1 for b in plan.buckets)


def _stochastic(group: dict[str, Any], bucket: Any) -> bool:
    """Whether ``bucket``'s parameters round stochastically (bfloat16 ones, in float32)."""
    return bool(group.get("stochastic_rounding")) and bucket.storage == torch.bfloat16


def _mismatch(met: list[tuple[Tensor, bool]]) -> Tensor:
    """1 where the device finds a condition other than a recording took it, else 0 (float32,
    shape ``(1,)``: added to the step's flag, it keeps that recording's launch from writing)."""
    return torch.stack([condition != answer for condition, answer in met]).any().float()[None]


def _inverse_scale(grad_scale: Tensor) -> Tensor:
    """GradScaler's inverse scale as its own unscaling computes it (float32, from float64),
    on the device, as a 0-dim float64 tensor."""
    return grad_scale.reshape(-1)[0].double().reciprocal().float().double()


def on_device(device: torch.device) -> Any:
    """Make ``device`` the current CUDA device while a step runs there: Triton launches on the
    current device, and the events and streams of the step are the current device's (the
    parameters may live on ``cuda:1`` while ``cuda:0`` is current)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def capturing_on(device: torch.device) -> bool:
    """Whether the current CUDA stream is capturing a graph (for a step on ``device``)."""
    return (
        device.type == "cuda"
        and torch.cuda.is_initialized()
        and torch.cuda.is_current_stream_capturing()
    )


def capture_refusal(optimizer: Any, why: str) -> str:
    """The error of a step called in CUDA graph capture that cannot be captured."""
    return (
        f"{type(optimizer).__name__}.step() called during CUDA graph capture, which it cannot "
        f"be: {why}. A captured step must count its steps and compute its learning rate and "
        "bias corrections on the device, or a replay would repeat this step's: that is "
        "capturable=True on the Triton path (optimlab's kernels on CUDA tensors, Triton "
        "installed); call step() outside the captured region otherwise"
    )
