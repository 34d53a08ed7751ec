"""The fused path's one entry point: what an optimizer asks of it, group by group.

An :class:`~optimlab.optim.base.Optimizer` holds one :class:`FusedSteps` (made on first use,
never saved or copied: it holds pointers) and talks to the fused path only through it:

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

from typing import Any

import torch
from torch import Tensor
from torch.autograd.graph import increment_version

from . import native, plancheck
from .plan import FusedPlan, fusable_subset
from .tape import NotRecordable, Tape


class FusedSteps:
    """The fused path of one optimizer (see the module docstring)."""

    def __init__(self, optimizer: Any) -> None:
        self.optimizer = optimizer
        #: the plan of each group, by ``id(group)``
        self.plans: dict[int, FusedPlan] = {}

    def wanted(self, group: dict[str, Any]) -> bool:
        """Whether ``group`` steps on the fused path (see the optimizer's docstring)."""
        fused = group.get("fused")
        if fused is False or (fused is None and group.get("foreach") is not None):
            return False
        if group.get("differentiable"):
            return False  # autograd through the step: the per-tensor path
        if torch.compiler.is_compiling():
            return False  # torch.compile traces PyTorch operations, not the compiled loop
        if self.optimizer._unfusable_reason is not None:
            return False
        return native.available()

    def ready(self, group: dict[str, Any]) -> FusedPlan | None:
        """``group``'s plan, if it has one that still holds (and the optimizer accepts)."""
        plan = self.plans.get(id(group))
        if plan is None or not plan.ready(self.optimizer, group):
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

        def kernel(dtype: torch.dtype, state: dict[str, Any], step: int) -> Any:
            arguments = self.optimizer._arguments(group, state, step)
            return self.kernel(arguments, plan.names, dtype)

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
        found = self.kernel(arguments, names, native.REAL_DTYPE[taken[0].dtype])
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
        self.plans.clear()

    def kernel(
        self, arguments: dict[str, Any], names: tuple[str, ...], dtype: torch.dtype
    ) -> tuple[native.Kernel, list[float]] | None:
        """The compiled kernel of the rule with these ``arguments`` (a group's hyperparameters,
        the step count, ...), and the scalars to call it with.

        The rule's Python runs as on the plain path (its branches and scalar arithmetic); a
        :class:`~optimlab.fused.tape.Tape` keeps the elementwise operations it asks for, and
        the kernel compiled for that program (once per configuration) applies them all in one
        pass over the tensors, in place. None when the kernel cannot be built and the group
        did not insist on ``fused=True``: then the plain path takes the step (``"exact"``
        kernels compute what it does, so falling back changes nothing).
        """
        insist = arguments.get("fused") is True
        try:
            tape = self.record(arguments, names)
        except NotRecordable as error:
            if insist:
                raise RuntimeError(
                    f"fused=True, but {type(self.optimizer).__name__}'s rule cannot be fused: "
                    f"{error}"
                ) from None
            return None
        try:
            kernel = native.tape_kernel(tape, dtype, exact=arguments.get("fused") == "exact")
        except native.NativeUnavailable:
            if insist:
                raise
            return None
        return kernel, tape.scalars

    def record(self, arguments: dict[str, Any], names: tuple[str, ...]) -> Tape:
        """The rule with these ``arguments``, recorded on a :class:`~.tape.Tape` over one
        parameter, its gradient and its buffers ``names`` (NotRecordable if it cannot be)."""
        tape = Tape(("param", "grad", *names))
        recorded = {name: [tape[name]] for name in names}
        self.optimizer._apply(tape.ops, arguments, [tape["param"]], [tape["grad"]], recorded)
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
