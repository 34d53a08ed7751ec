"""The book-keeping every optimlab optimizer shares.

:class:`Optimizer` is a real :class:`torch.optim.Optimizer`: parameter groups, ``state[p]``,
``state_dict``/``load_state_dict``, ``zero_grad``, ``step(closure)``, ``add_param_group`` and
step hooks all behave as in torch. On top of torch it

* validates every hyperparameter of every group, naming the argument and the value;
* refuses bad ``params`` (one tensor, a set, nothing, repeats, non-leaf tensors, non-tensors);
* checks on ``load_state_dict`` that the saved state fits the parameters (torch loads a
  mismatched shape silently and fails later);
* has one policy for non-finite gradients (``nonfinite_grads``): raise an error naming the
  parameter (the default), skip the whole step, or ``"ignore"`` (torch's behaviour);
* hands the math to a rule of :mod:`optimlab.core.rules`, written once, on one of three
  backends:

  - the fused path (``fused=None``, the default, where this machine can compile it): the rule
    recorded on a :class:`~optimlab.fused.tape.Tape` and compiled into one C loop
    (:mod:`optimlab.fused.native`) that reads each parameter, gradient and state element once
    and writes each modified one once, over all tensors of a group at once, on PyTorch's
    threads, with no temporaries. Its square roots are the CPU's correctly rounded ones, within
    1 ulp of PyTorch's MKL vector sqrt; everything else is bitwise what the plain path computes.
    ``fused=True`` insists on it (an error where it cannot run); ``fused="exact"`` takes
    PyTorch's own square root too, so the step is bitwise the plain path's (and torch.optim's
    multi-tensor path's), at about 3 cycles per root. A :class:`~optimlab.fused.plan.FusedPlan`
    keeps what a group's step needs between steps and re-checks it in O(1) per tensor (in C++
    where ``optimlab build`` has built :mod:`optimlab.fused.plancheck`). What the kernel may
    take (CPU float32/float64 and complex tensors, contiguous, gradient and state of the
    parameter's dtype and shape, written memory overlapping nothing else) is specified in
    :mod:`optimlab.fused.plan`; the group's other parameters take the multi-tensor path in
    the same step;
  - on a GPU (``fused=None`` where Triton is installed, or ``fused="triton"``; on CPU
    tensors in Triton's interpreter, for tests): the same recorded rule as one Triton kernel
    per step and bucket (:mod:`optimlab.fused.triton_kernels`), bitwise the C loop's, with the
    non-finite check and GradScaler's flags read on the device, never on the host
    (:class:`~optimlab.fused.steps.DeviceSteps`);
  - the multi-tensor path (``foreach=True``, or ``fused=False``): ``torch._foreach_*``;
  - the per-tensor path (``foreach=False``): one PyTorch call per tensor and operation.

  ``fused`` and ``foreach`` are dispatch choices, not hyperparameters: ``load_state_dict``
  keeps this optimizer's, so a state saved on one path resumes on any other.

* keeps mixed precision in one place: ``state_dtype`` (a group key; None: the parameter's
  dtype, as torch) is the dtype of the state and of the step's arithmetic for narrower
  parameters, which are widened, stepped and rounded back (to nearest, or stochastically with
  ``stochastic_rounding=True`` for bfloat16, :mod:`optimlab.core.precision`): on the plain path
  here (the reference), and for bfloat16 parameters with float32 state in the C loop and the
  Triton kernels, which compute the same bits. bfloat16 parameters with bfloat16 state (the
  default) step on the plain path on the CPU, rounding after every operation as torch's
  foreach path does; the Triton kernels (a GPU's default) take them too and compute in
  float32, rounding each stored value once, as torch's fused Adam does; and float16
  parameters alike, with float16 or float32 state.

A subclass declares its hyperparameter checks (``_checks``), the names of its per-parameter
buffers (``_buffer_names``) and its rule (``_rule``, whose arguments are bound by name, see
:mod:`.binding`); nothing else.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

from ..core import precision
from ..core.ops import DIFFERENTIABLE, FOREACH, LOOP, ComplexSums, LoopOps
from ..fused import native
from ..fused.device_scalars import DeviceScalar
from ..fused.plan import FusedPlan, plain
from ..fused.steps import FusedSteps, capture_refusal
from .binding import BETAS, Derived, call_rule
from .checks import (
    boolean,
    describe,
    fused_choice,
    non_negative,
    one_of,
    optional_boolean,
    state_dtype_choice,
    tensor_number,
)
from .state import StateMap, advance_step, new_step, step_count

NONFINITE_POLICIES = ("raise", "skip", "ignore")
#: the key of a step's arguments holding GradScaler's inverse scale (none of a hyperparameter)
GRAD_UNSCALE = "grad_unscale"


@contextmanager
def evaluation_weights(optimizer: Any) -> Iterator[None]:
    """Hold the parameters at the point to evaluate or save while the block runs.

    Schedule-free optimizers take gradients at one point (``y``) and evaluate at another, the
    average ``x``: their ``eval()`` moves the parameters to ``x`` and ``train()`` back. For every
    other optimizer (torch's included) this does nothing. The lab and ``optimlab.train.fit``
    evaluate inside it.

    >>> import torch, optimlab
    >>> w = torch.zeros(2, requires_grad=True)
    >>> with evaluation_weights(optimlab.SGD([w], lr=0.1)):
    ...     pass
    """
    switch = getattr(optimizer, "eval", None)
    if switch is None or not callable(switch):
        yield
        return
    switch()
    try:
        yield
    finally:
        optimizer.train()


def _hooked(step: Callable[..., Any]) -> Callable[..., Any]:
    """``step`` wrapped as torch wraps every optimizer's (``Optimizer.profile_hook_step``): the
    step pre-hooks (global ones first) may replace the arguments, then the step, torch's
    ``_optimizer_step_code`` and the post-hooks (global ones last). The profiler range
    ``Optimizer.step#Name.step`` is opened only while a profiler records: opening it costs about
    12 µs, a third of a small model's whole step, on every step of every run that is not
    profiled."""

    @functools.wraps(step)
    def hooked(*args: Any, **kwargs: Any) -> Any:
        self = args[0]
        if not torch._C._autograd._profiler_enabled():
            return _with_hooks(step, self, args, kwargs)
        with torch.autograd.profiler.record_function(f"Optimizer.step#{type(self).__name__}.step"):
            return _with_hooks(step, self, args, kwargs)

    hooked.hooked = True  # type: ignore[attr-defined]  # torch's mark: wrapped once
    return hooked


def _with_hooks(step: Callable[..., Any], self: Any, args: tuple, kwargs: dict) -> Any:
    for pre_hook in (
        *_global_optimizer_pre_hooks.values(),
        *self._optimizer_step_pre_hooks.values(),
    ):
        result = pre_hook(self, args, kwargs)
        if result is not None:
            if isinstance(result, tuple) and len(result) == 2:
                args, kwargs = result
            else:
                raise RuntimeError(
                    f"{step} must return None or a tuple of (new_args, new_kwargs), but got "
                    f"{result}."
                )
    out = step(*args, **kwargs)
    self._optimizer_step_code()
    for post_hook in (
        *self._optimizer_step_post_hooks.values(),
        *_global_optimizer_post_hooks.values(),
    ):
        post_hook(self, args, kwargs)
    return out


class NonFiniteGradientError(FloatingPointError):
    """A gradient holds NaN or Inf; the step was not taken and nothing was changed."""


# --- the base class ------------------------------------------------------------------------


class Optimizer(torch.optim.Optimizer):
    """Base class: validation, state and dispatch for every optimlab optimizer."""

    #: hyperparameter name -> check(name, value); every group is checked against all of them.
    _checks: dict[str, Callable[[str, Any], None]] = {
        "foreach": optional_boolean,
        "fused": fused_choice,
        "capturable": boolean,
        "differentiable": boolean,
        "state_dtype": state_dtype_choice,
        "stochastic_rounding": boolean,
    }
    #: hyperparameters torch also takes as 1-element tensors (a learning rate that a compiled
    #: step reads without recompiling when a schedule changes it): checked, and used by the
    #: rule, as the numbers they hold; schedules write them in place
    _tensor_hyperparameters: tuple[str, ...] = ("lr",)
    #: group keys that choose how a step is computed, not what it computes
    _dispatch_keys = ("foreach", "fused")
    #: why this optimizer's rule has no fused path (it needs reductions such as norms or
    #: matrix products, which the elementwise compiled loop cannot express); None if it has one
    _unfusable_reason: str | None = None
    #: the rule of :mod:`optimlab.core` this optimizer applies (``staticmethod(rules.adam)``);
    #: its arguments are taken by name (:mod:`.binding`), those no group key names from
    #: ``_derived``
    _rule: Callable[..., None] | None = None
    _derived: Derived = BETAS
    #: whether the class's steps honour ``state_dtype`` (those stepping through the base
    #: class's ``_step_params``; classes with their own state layout refuse it)
    _computes_in_state_dtype = True
    #: per-parameter state entries, besides ``step``, that the rule takes as arguments (ASGD's
    #: step sizes ``eta`` and ``mu``): parameters are stepped together only when they share them
    _state_arguments: tuple[str, ...] = ()
    #: the group hyperparameters :meth:`_after_step` computes the state arguments from
    #: (NAdam's betas and momentum decay, ASGD's lr, lambd, alpha and t0), or None where it
    #: reads more than those and the step count: with them declared, the state arguments
    #: after ``n`` steps are a function of ``n`` while they stay the same, which lets the
    #: device path step without reading whether a step was skipped (see DeviceSteps)
    _after_step_inputs: tuple[str, ...] | None = None
    #: whether that host state is the group's (advanced every step, gradients or not: the
    #: schedule-free average's count), rather than its parameters' state arguments
    _host_state_in_group = False
    #: whether a step reads statistics of all of a group's parameters together (Prodigy's
    #: step size), which a ZeroRedundancyOptimizer, stepping a share per rank, cannot give
    _reads_every_parameter = False
    #: what the parameters hold in eval mode (``train_mode`` False), for the error of a step
    #: taken then; None for optimizers without an eval mode
    _eval_mode_holds: str | None = None

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        *,
        nonfinite_grads: str = "raise",
    ) -> None:
        one_of(*NONFINITE_POLICIES)("nonfinite_grads", nonfinite_grads)
        self._check_group(dict(defaults))  # the arguments first, as torch checks them
        if isinstance(params, Tensor):
            raise TypeError(  # torch's words first
                "params argument given to the optimizer should be an iterable of Tensors or "
                f"dicts, but got {describe(params)}: pass [tensor] or model.parameters()"
            )
        if isinstance(params, (set, frozenset)):
            raise TypeError(
                "Invalid params: a set; its order changes between runs, so saved optimizer "
                "state would be matched to the wrong parameters: pass a list"
            )
        if isinstance(params, dict):
            raise TypeError(
                "Invalid params: a dict; expected an iterable of tensors or a list of "
                "parameter-group dicts: wrap the group in a list, [group]"
            )
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list (Invalid params: empty)")
        self.nonfinite_grads = nonfinite_grads
        #: how many steps the ``"skip"`` policy has skipped (not saved in ``state_dict``).
        self.skipped_steps = 0
        super().__init__(params, defaults)
        self.state = StateMap(self.state)
        #: the fused path (:mod:`optimlab.fused.steps`); never saved or copied (its plans hold
        #: pointers). Made here, not on first use: a step torch.compile traces adds no attribute
        self._fused = FusedSteps(self)

    def _patch_step_function(self) -> None:
        # torch's Optimizer.__init__ (and __setstate__) calls this to wrap the class's step
        # once; optimlab's wrapper is torch's without the per-step profiler cost (see _hooked)
        self._zero_grad_profile_name = f"Optimizer.zero_grad#{type(self).__name__}.zero_grad"
        if not getattr(type(self).step, "hooked", None):
            type(self).step = _hooked(type(self).step)  # type: ignore[method-assign]

    # -- validation ------------------------------------------------------------------------

    def _numbers(self, group: dict[str, Any]) -> dict[str, Any]:
        """``group`` with its tensor hyperparameters (see ``_tensor_hyperparameters``) replaced
        by the numbers they hold."""
        numbers = dict(group)
        for name in self._tensor_hyperparameters:
            value = group.get(name)
            if isinstance(value, (tuple, list)):
                numbers[name] = tuple(tensor_number(f"{name}[{i}]", v) for i, v in enumerate(value))
            else:
                numbers[name] = tensor_number(name, value)
        return numbers

    def _check_group(self, group: dict[str, Any], loading: bool = False) -> None:
        """Check every hyperparameter of ``group`` (those this class has); subclasses add
        checks across arguments. ``loading``: the group of a state being loaded, whose values
        a scheduler may have written (OneCycleLR cycles one beta of tensor betas, CyclicLR
        takes momentum to 0 under nesterov): the checks torch makes only at construction are
        not made again, as torch's load makes none."""
        numbers = self._numbers(group)
        for name, check in self._checks.items():
            if name in numbers:
                check(name, numbers[name])
        if group.get("differentiable"):
            if group["fused"] in (True, "exact", "triton"):
                raise RuntimeError(
                    f"Invalid fused={group['fused']!r} with differentiable=True: `fused` does "
                    "not support `differentiable` (autograd through the step takes the "
                    "per-tensor path); leave fused unset"
                )
            if group["foreach"] is True:
                raise ValueError(
                    "Invalid foreach=True with differentiable=True: autograd through the step "
                    "takes the per-tensor path; leave foreach unset"
                )
        if group["fused"] in (True, "exact", "triton") and group["foreach"] is True:
            raise RuntimeError(
                f"Invalid fused={group['fused']!r} with foreach=True: `fused` and `foreach` "
                "cannot be `True` together; choose one: fused for the fused kernel, "
                "foreach=True for the multi-tensor path"
            )
        if group.get("stochastic_rounding") and group.get("state_dtype") is None:
            raise ValueError(
                "Invalid stochastic_rounding=True without state_dtype: it rounds an update "
                "computed in state_dtype to the parameters' dtype; pass "
                "state_dtype=torch.float32 (for bfloat16 parameters)"
            )
        if group.get("stochastic_rounding"):
            state_dtype = group.get("state_dtype")
            # (no tensors in the defaults, nor in a saved group: their indices)
            for p in (t for t in group.get("params", ()) if isinstance(t, Tensor)):
                if p.is_floating_point() and p.dtype not in (torch.bfloat16, state_dtype):
                    raise ValueError(
                        f"Invalid stochastic_rounding=True for a {p.dtype} parameter (shape "
                        f"{tuple(p.shape)}) with state_dtype={state_dtype}: it rounds float32 "
                        "updates to bfloat16 parameters; leave it off for this group "
                        "(rounding to nearest) or put the parameter in a group of its own"
                    )
                if p.dtype == torch.bfloat16 and state_dtype != torch.float32:
                    raise ValueError(
                        f"Invalid stochastic_rounding=True with state_dtype={state_dtype}: it "
                        "rounds float32 updates to bfloat16 parameters; pass "
                        "state_dtype=torch.float32"
                    )
        if group.get("state_dtype") is not None and not self._computes_in_state_dtype:
            raise ValueError(
                f"Invalid state_dtype={group['state_dtype']}: {type(self).__name__} keeps its "
                "state in the parameters' dtype (state_dtype=None)"
            )
        if group["fused"] in (True, "triton") and self._unfusable_reason is not None:
            raise ValueError(
                f"Invalid fused={group['fused']!r}: {type(self).__name__} has no fused path "
                f"({self._unfusable_reason}); pass fused=None or leave it out"
            )
        if group["fused"] is True and not native.available():
            raise RuntimeError(
                "fused=True, but the fused path cannot run here: "
                f"{native.unavailable_reason()}. Pass fused=None to fall back to the "
                "multi-tensor path where it cannot."
            )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters, with its own hyperparameters, after checking both."""
        if not isinstance(param_group, dict):
            raise TypeError(f"Invalid param_group: {describe(param_group)}; expected a dict")
        if "params" not in param_group:
            raise ValueError("Invalid param_group: it has no 'params' key")
        index = len(self.param_groups)
        params = param_group["params"]
        if isinstance(params, (set, frozenset)):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the "
                "ordering of tensors in sets will change between runs. Please use a list "
                f"instead. (Invalid params of group {index}: a set)"
            )
        params = [params] if isinstance(params, Tensor) else list(params)
        tensors = [p[1] if isinstance(p, tuple) and len(p) == 2 else p for p in params]
        differentiable = param_group.get("differentiable", self.defaults.get("differentiable"))
        for j, p in enumerate(tensors):
            if not isinstance(p, Tensor):
                raise TypeError(
                    "optimizer can only optimize Tensors, but one of the params is "
                    f"{type(p).__name__} (Invalid params[{j}] of group {index}: {describe(p)})"
                )
            if not (p.is_leaf or p.retains_grad or differentiable):
                raise ValueError(
                    f"can't optimize a non-leaf Tensor (Invalid params[{j}] of group {index}: "
                    f"a Tensor of shape {tuple(p.shape)} computed from other tensors); "
                    "optimize the leaf tensors it came from (or pass differentiable=True to "
                    "step through autograd)"
                )
        seen: dict[int, int] = {}
        for j, p in enumerate(tensors):
            if id(p) in seen:
                # torch warns (and will refuse): the parameter is stepped once per appearance
                warnings.warn(
                    f"optimizer contains a parameter group with duplicate parameters: params[{j}]"
                    f" of group {index} (shape {tuple(p.shape)}) repeats params[{seen[id(p)]}],"
                    " so each step updates it twice, as torch.optim does; pass each parameter "
                    "once",
                    UserWarning,
                    stacklevel=3,
                )
            seen.setdefault(id(p), j)
        for k, group in enumerate(self.param_groups):
            for p in group["params"]:
                if id(p) in seen:
                    raise ValueError(
                        "some parameters appear in more than one parameter group (Invalid "
                        f"params of group {index}: params[{seen[id(p)]}], shape "
                        f"{tuple(p.shape)}, is already in group {k}; a parameter may belong "
                        "to one group only)"
                    )
        candidate = {**self.defaults, **param_group}
        self._check_group(candidate)
        param_group["params"] = params
        super().add_param_group(param_group)

    # -- stepping --------------------------------------------------------------------------

    def _buffer_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        """Names of the per-parameter state tensors this group's configuration needs."""
        raise NotImplementedError

    def _update(
        self,
        ops: LoopOps,
        arguments: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        buffers: dict[str, list[Tensor]],
    ) -> None:
        """Apply the rule to one bucket of parameters (same device, dtype, step count and state
        arguments); ``arguments`` are the group's hyperparameters with ``step`` and the state
        arguments (see :meth:`_arguments`)."""
        call_rule(self._rule, ops, params, grads, buffers, arguments, self._derived)

    def _apply(
        self,
        ops: LoopOps,
        arguments: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        buffers: dict[str, list[Tensor]],
    ) -> None:
        """:meth:`_update`, on the gradients divided by GradScaler's scale where a scaled
        step asks for it (``arguments[GRAD_UNSCALE]``, the inverse scale): one elementwise
        product more, which the fused loop takes as it reads each gradient."""
        unscale = arguments.get(GRAD_UNSCALE)
        if unscale is not None:
            grads = ops.mul(grads, unscale)
        self._update(ops, arguments, params, grads, buffers)

    def _arguments(self, group: dict[str, Any], state: dict[str, Any], step: int) -> dict[str, Any]:
        """What the rule's arguments are taken from, for parameters whose state is like
        ``state`` at step count ``step``: the group, ``step`` and the state arguments."""
        arguments = self._numbers({**group, "step": step})
        arguments.update(zip(self._state_arguments, self._state_key(state)))
        if self._grad_unscale is not None:
            arguments[GRAD_UNSCALE] = self._grad_unscale
        return arguments

    def _state_key(self, state: dict[str, Any]) -> tuple[Any, ...]:
        """The numbers of ``state``'s state arguments (kept, as torch keeps them, in 0-dim
        tensors): parameters are stepped together only when these are equal."""
        return tuple(
            value.item() if isinstance(value, Tensor) else value
            for value in map(state.__getitem__, self._state_arguments)
        )

    def _after_step(self, group: dict[str, Any], stepped: list[dict[str, Any]]) -> None:
        """After a step: update the state entries kept for the next one (ASGD's step sizes,
        NAdam's momentum product) in ``stepped``, the states of ``group``'s parameters that
        were stepped, or the group's (the schedule-free average's weights). Nothing by
        default."""

    def _host_state(self, group: dict[str, Any], state: dict[str, Any]) -> tuple[Any, ...]:
        """The values :meth:`_after_step` advances that the rule of a parameter with ``state``
        reads, as numbers: its state arguments by default (the device path keeps them by step
        count, see DeviceSteps)."""
        return self._state_key(state)

    def _host_key(self, group: dict[str, Any], state: dict[str, Any]) -> tuple[int, int]:
        """What the device path keeps :meth:`_host_state`'s values under: whose they are and
        the steps counted on the host that they follow (the parameter's state and its step
        count by default; the group and its own count where that state is the group's)."""
        return id(state), step_count(state)

    def _with_host_state(
        self, group: dict[str, Any], state: dict[str, Any], values: tuple[Any, ...]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(group, state)`` as they were when :meth:`_host_state` gave ``values`` (copies
        where they differ)."""
        names = self._state_arguments
        replaced = {n: torch.tensor(v, dtype=state[n].dtype) for n, v in zip(names, values)}
        return group, {**state, **replaced}

    def _restore_host_state(
        self, group: dict[str, Any], states: list[dict[str, Any]], values: tuple[Any, ...]
    ) -> None:
        """Put back the :meth:`_host_state` ``values`` of a step count (a step the device
        skipped, read late)."""
        for state in states:
            for name, value in zip(self._state_arguments, values):
                state[name].fill_(value)

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        """A parameter's state before its first step: ``step`` and zeroed buffers.

        Subclasses whose state starts elsewhere (Adagrad's initial accumulator), has other
        shapes (Adafactor's factored moments) or holds per-parameter scalars override it.
        ``load_state_dict`` checks saved state against this template: the same entries, and
        tensors of the same shapes.
        """
        state: dict[str, Any] = {"step": new_step()}
        for name in self._buffer_names(group):
            state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def _param_name(self, group_index: int, j: int) -> str:
        group = self.param_groups[group_index]
        p = group["params"][j]
        if "param_names" in group:
            return f"{group['param_names'][j]!r} (shape {tuple(p.shape)})"
        return f"parameter {j} of group {group_index} (shape {tuple(p.shape)})"

    def _grads_are_finite(self, plans: list[FusedPlan | None]) -> bool:
        """Whether every gradient is free of NaN and Inf: one read of each, no temporaries.

        Gradients the fused path reads go to its compiled check (all threads, about the cost
        of reading them once); others to PyTorch: a 2-norm per tensor, finite exactly when the
        tensor is unless its squares overflow, which the exact per-tensor check then settles.
        """
        native_grads: dict[torch.dtype, list[Tensor]] = {}
        other_grads: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        for group, plan in zip(self.param_groups, plans):
            if plan is not None:
                if plan.any_nonfinite():
                    return False
                params = plan.others
            else:
                params = group["params"]
            use_native = plan is None and self._fused.wanted(group)
            for p in params:
                grad = p.grad
                if grad is None:
                    continue
                if grad.layout != torch.strided:
                    self._refuse_sparse(grad)
                    if not bool(torch.isfinite(grad._values()).all()):
                        return False
                    continue
                real = native.REAL_DTYPE.get(grad.dtype)
                if use_native and real is not None and plain(grad, grad.dtype):
                    native_grads.setdefault(real, []).append(grad)
                else:
                    other_grads.setdefault((grad.device, grad.dtype), []).append(grad)
        for grads in native_grads.values():
            if native.any_nonfinite(grads):
                return False
        for grads in other_grads.values():
            norms = torch.stack(torch._foreach_norm(grads, 2))
            if not bool(norms.isfinite().all()):
                if not all(bool(torch.isfinite(g).all()) for g in grads):
                    return False
        return True

    def _raise_nonfinite(self) -> None:
        for i, group in enumerate(self.param_groups):
            for j, p in enumerate(group["params"]):
                grad = p.grad
                if grad is not None and grad.layout != torch.strided:
                    grad = grad._values()  # a sparse gradient: the values it holds
                if grad is not None and not bool(torch.isfinite(grad).all()):
                    kind = "NaN" if bool(torch.isnan(grad).any()) else "Inf"
                    raise NonFiniteGradientError(
                        f"The gradient of {self._param_name(i, j)} holds {kind}; the step was "
                        "not taken. Pass nonfinite_grads='skip' to skip such steps instead."
                    )

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Take one optimization step; ``closure`` re-evaluates the model and returns the loss.

        The step runs without autograd, except with ``differentiable=True``, where it is
        recorded like any computation (torch's contract): the update's result then has a
        gradient with respect to the parameters, gradients and state before it.

        In CUDA graph capture only with ``capturable=True`` on the Triton path (see
        :meth:`_device_arguments`): elsewhere the step counts and the scalars they give (bias
        corrections, the learning rate) are computed on the host each step, so a replay
        would repeat the captured step's; the step raises instead.
        """
        capturing = torch.cuda.is_initialized() and torch.cuda.is_current_stream_capturing()
        if self._eval_mode_holds is not None:
            self._refuse_eval_mode(self._eval_mode_holds)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # torch's GradScaler protocol (see _step_supports_amp_scaling): the scaler has read the
        # gradients once already and says whether one is not finite; skip such a step (not
        # counted), else step with the gradients divided by the scale, in the rule itself.
        found_inf = getattr(self, "found_inf", None)
        grad_scale = getattr(self, "grad_scale", None)
        # On a GPU (or Triton's interpreter) the whole step is device kernels that read the
        # scaler's tensors there: nothing is read on the host (see fused.steps.DeviceSteps).
        device = (
            None
            if self.defaults.get("differentiable")
            else self._fused.device_steps.takes(self.param_groups)
        )
        if device is not None:
            self._check_lrs()
            with torch.no_grad():
                if self._fused.device_steps.step(device, found_inf, grad_scale):
                    return loss
        if capturing:
            raise RuntimeError(
                capture_refusal(self, "its parameters do not step on the Triton path")
            )
        if self._fused.device_steps.launched:  # (steps counted on the host, skipped or not)
            self._fused.device_steps.resolve(wait=True)
        if found_inf is not None and bool(found_inf.item() != 0):
            return loss
        if grad_scale is not None:  # GradScaler's own inverse: float32, from float64
            self._grad_unscale = grad_scale.double().reciprocal().float().item()
        try:
            with torch.set_grad_enabled(bool(self.defaults.get("differentiable"))):
                self._step(check_finite=found_inf is None)
        finally:
            self._grad_unscale = None
        return loss

    #: ``torch.amp.GradScaler.step`` hands the step the scale (``grad_scale``) and whether a
    #: gradient is not finite (``found_inf``), instead of unscaling the gradients in place and
    #: reading ``found_inf`` on the host itself: the step divides by the scale as it reads the
    #: gradients (one read, in the fused loop), and a step the scaler found an Inf in is
    #: skipped, its count not advanced. The results are what the torch twin computes under
    #: the scaler.
    _step_supports_amp_scaling = True
    _grad_unscale: float | None = None
    #: whether the rule's gradients go through :meth:`_apply` (else :meth:`step` unscales
    #: them in place first)
    _unscales_in_rule = True

    def _unscale_in_place(self) -> None:
        grads: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    grads.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
        for tensors in grads.values():
            torch._foreach_mul_(tensors, self._grad_unscale)

    def _refuse_leaves(self) -> None:
        """With ``differentiable=True`` the step is recorded for autograd, which cannot record
        an in-place change of a leaf tensor that requires grad: say so, naming it. Nor does
        this step record gradients with respect to a hyperparameter: refuse a tensor one that
        requires grad, rather than drop its gradient."""
        for i, group in enumerate(self.param_groups):
            if group.get("differentiable"):
                for name in self._tensor_hyperparameters:
                    values = group[name] if isinstance(group[name], tuple) else (group[name],)
                    if any(isinstance(v, Tensor) and v.requires_grad for v in values):
                        raise NotImplementedError(
                            f"Invalid {name} of parameter group {i}: a Tensor that requires "
                            "grad; optimlab's differentiable step records gradients with "
                            "respect to the parameters, gradients and state, not the "
                            f"hyperparameters: pass {name} as a number or a tensor that does "
                            "not require grad"
                        )
                for j, p in enumerate(group["params"]):
                    if p.is_leaf and p.requires_grad and p.grad is not None:
                        raise RuntimeError(
                            f"differentiable=True records the step for autograd, which cannot "
                            f"change {self._param_name(i, j)} in place: it is a leaf tensor "
                            "that requires grad. Step tensors computed from the leaves "
                            "(w = w0.clone(), as in meta-learning), or leave differentiable "
                            "unset."
                        )

    def _refuse_unfusable_devices(self) -> None:
        """``fused=True`` on a parameter with a gradient that the fused loop cannot reach (not
        in the CPU's memory: a meta or CUDA tensor): say so, as torch does, before anything is
        read."""
        for i, group in enumerate(self.param_groups):
            if group["fused"] is True:
                for j, p in enumerate(group["params"]):
                    if p.grad is None:
                        continue
                    on_gpu = p.device.type == "cuda" and self._fused.device_steps.takes([group])
                    if not (p.device.type == "cpu" or on_gpu) or not (
                        p.is_floating_point() or p.is_complex()
                    ):
                        raise RuntimeError(
                            "`fused=True` requires all the params to be floating point Tensors "
                            f"of supported devices: ['cpu']; {self._param_name(i, j)} is a "
                            f"{p.dtype} tensor on {p.device}. Pass fused=None to step it on "
                            "another path."
                        )

    def _step(self, check_finite: bool = True) -> None:
        if self.defaults.get("differentiable"):
            self._refuse_leaves()
        if self.defaults.get("fused") is True:
            self._refuse_unfusable_devices()
        if self._grad_unscale is not None and not self._unscales_in_rule:
            self._unscale_in_place()
            self._grad_unscale = None
        self._check_lrs()
        plans = [self._fused.ready(group) for group in self.param_groups]
        if self.nonfinite_grads != "ignore" and check_finite:
            with torch.no_grad():
                finite = self._grads_are_finite(plans)
            if not finite:
                if self.nonfinite_grads == "raise":
                    self._raise_nonfinite()
                self.skipped_steps += 1
                return
        for group, plan in zip(self.param_groups, plans):
            if plan is None:
                self._step_group(group)
                continue
            others = self._fused.step(group, plan)
            if others is None:  # no kernel to be had: the general path decides
                self._step_group(group)
            elif others:
                self._step_params(group, others, fused=False)
        if type(self)._after_step is not Optimizer._after_step:
            for group in self.param_groups:
                stepped = self._fused.stepped_states(group)  # those with gradients, if planned
                if stepped is None:
                    stepped = [self.state[p] for p in group["params"] if p.grad is not None]
                self._after_step(group, stepped)

    #: what a step raises for a non-finite gradient (the device path raises it a step later)
    _NonFiniteError: type[Exception] = NonFiniteGradientError

    def _host_steps_reason(self) -> str | None:
        """Why this optimizer's steps need the host between them (so that a GPU step cannot run
        without reading back whether it was skipped), or None."""
        name = type(self).__name__
        if self._unfusable_reason is not None:
            return f"{name} has no fused path ({self._unfusable_reason})"
        host_state = self._state_arguments or type(self)._after_step is not Optimizer._after_step
        if (
            host_state
            and self._after_step_inputs is None
            or inspect.unwrap(type(self).step) is not inspect.unwrap(Optimizer.step)
        ):
            return (
                f"{name} updates per-parameter or group state on the host after each step "
                "from more than its step count and hyperparameters, which the Triton path, "
                "where the host learns only later whether a step was applied, does not take"
            )
        if not self._unscales_in_rule:
            return f"{name} unscales GradScaler's gradients outside its rule"
        return None

    def _check_lrs(self) -> None:
        for group in self.param_groups:  # a schedule may have written a bad value since
            if group.get("capturable") and isinstance(group["lr"], Tensor):
                continue  # read on the device only (see _device_arguments)
            non_negative("lr", tensor_number("lr", group["lr"]))

    def _capturable_reason(self) -> str | None:
        """Why this optimizer cannot count its steps and compute its scalars on the device
        (``capturable=True``), beyond what its rule reads (which the recording finds), or
        None."""
        if self._host_state_in_group or (
            self._after_step_inputs is not None
            and type(self)._state_update is Optimizer._state_update
        ):
            return (
                f"{type(self).__name__} advances the state its rule reads on the host after "
                "each step, which a replayed graph would not"
            )
        return None

    def _state_update(self, arguments: dict[str, Any]) -> tuple[Any, ...]:
        """The state arguments :meth:`_after_step` writes after a step, as numbers computed
        from that step's rule ``arguments`` (the step count, the hyperparameters, the state
        arguments before it), in ``_state_arguments`` order: how a capturable step advances
        them on the device, with device numbers (``optimlab.fused.device_scalars``).
        Optimizers with state arguments define it to take ``capturable=True``."""
        raise NotImplementedError

    def _place_on_device(self, state: dict[str, Any], p: Tensor, group: dict[str, Any]) -> None:
        """Keep ``state``'s step count and state arguments on ``p``'s device where the group
        is ``capturable`` (as torch keeps them: the step's kernels advance them there)."""
        if not group.get("capturable"):
            return
        for name in ("step", *self._state_arguments):
            value = state.get(name)
            if isinstance(value, Tensor) and value.device != p.device:
                state[name] = value.to(p.device)

    def _device_arguments(
        self,
        group: dict[str, Any],
        step: DeviceScalar,
        device: torch.device,
        state: dict[str, Any],
    ) -> dict[str, Any]:
        """:meth:`_arguments` for a step with ``capturable=True``: ``step``, the count, lives
        on ``device``, as does a tensor hyperparameter there (an ``lr`` a schedule writes
        in place: each replay of a captured step reads its value of the moment); the rule's
        scalar arithmetic then runs on the device (:mod:`optimlab.fused.device_scalars`).
        Hyperparameters given as numbers, or as CPU tensors beside CUDA parameters, are
        read when the step is captured, and a replay repeats them."""
        arguments = dict(group)
        for name in self._tensor_hyperparameters:
            value = group.get(name)
            if isinstance(value, (tuple, list)):
                arguments[name] = tuple(
                    _on_device(f"{name}[{i}]", v, device) for i, v in enumerate(value)
                )
            else:
                arguments[name] = _on_device(name, value, device)
        arguments["step"] = step
        for name in self._state_arguments:  # (shared by the parameters stepped together)
            arguments[name] = DeviceScalar(state[name].to(torch.float64))
        if self._grad_unscale is not None:
            arguments[GRAD_UNSCALE] = self._grad_unscale
        return arguments

    def check_finite(self) -> None:
        """Wait for the steps launched on a GPU and raise :class:`NonFiniteGradientError` if
        one found a NaN or an infinity in a gradient (``nonfinite_grads="raise"``).

        On a GPU a step never waits for the device, so it cannot raise for its own gradients:
        it writes nothing where they are not finite, and the error comes at the next
        ``step()`` (or here, or at ``state_dict()``), saying that the step was not applied.
        After it, ``state[p]["step"]`` and ``skipped_steps`` are exact. Nothing to do on the
        CPU, where each step checks its own gradients.
        """
        self._fused.settle()

    def state_dict(self) -> dict[str, Any]:
        """torch's ``state_dict``, with every step launched on a GPU counted exactly first
        (see :meth:`check_finite`)."""
        self._fused.settle()
        return super().state_dict()

    def _refuse_eval_mode(self, holds: str) -> None:
        """Raise if a group is in eval mode (``train_mode`` False: schedule-free, ASGD), where
        the parameters hold ``holds`` instead of the point the optimizer steps from."""
        for i, group in enumerate(self.param_groups):
            if not group.get("train_mode", True):
                raise RuntimeError(
                    f"{type(self).__name__}.step() called in eval mode (parameter group {i}): "
                    f"the parameters hold {holds}, so call train() first. Call "
                    "optimizer.train() before training steps (and optimizer.eval() before "
                    "evaluating or saving the model)."
                )

    def _step_group(self, group: dict[str, Any]) -> None:
        """The general path: any parameters, any state; then plan the next fused steps."""
        fused = self._fused.wanted(group)
        self._step_params(group, group["params"], fused)
        self._fused.replan(group, fused)

    def _step_params(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        fused: bool,
        names: tuple[str, ...] | None = None,
    ) -> None:
        """Step ``params`` (those with gradients) on the general path; ``names``: the buffers
        they keep, if not ``_buffer_names(group)``."""
        names = self._buffer_names(group) if names is None else names
        # Bucket by device, dtype, step count and state arguments: one rule call per bucket,
        # with scalar bias corrections. Parameters normally all fall in one bucket.
        dense = []
        for p in params:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                state.update(self._new_state(p, group))
            if p.grad.layout != torch.strided:  # a sparse gradient: its own step, as torch's
                self._refuse_sparse(p.grad)
                if self._compute_dtype(group, p.dtype) != p.dtype:
                    raise RuntimeError(
                        f"Invalid state_dtype={group['state_dtype']} with a sparse gradient "
                        f"(parameter of shape {tuple(p.shape)}): sparse steps compute in the "
                        "parameter's dtype; leave state_dtype unset for it (a group of its own)"
                    )
                arguments = self._arguments(group, state, advance_step(state))
                if arguments.pop(GRAD_UNSCALE, None) is not None:
                    p.grad.mul_(self._grad_unscale)  # as GradScaler unscales: in place
                self._step_sparse(arguments, p, state)
                continue
            dense.append(p)
        states = [self.state[p] for p in dense]
        counts = None
        if len({id(s) for s in states}) == len(states):  # repeated parameters: one at a time
            counts = self._fused.advance_steps(states)
        if counts is None:
            counts = [advance_step(state) for state in states]
        buckets: dict[tuple[Any, ...], list[Tensor]] = {}
        shared = self._state_arguments
        for p, state, count in zip(dense, states, counts):
            key = (p.device, p.dtype, count)
            if shared:
                key += self._state_key(state)
            buckets.setdefault(key, []).append(p)
        foreach = group["foreach"] is not False and not group.get("differentiable")
        for (_, dtype, step, *_), bucket in buckets.items():
            arguments = self._arguments(group, self.state[bucket[0]], step)
            if fused and dtype in native.REAL_DTYPE:
                bucket = self._fused.update(group, arguments, names, bucket)
            if not bucket:
                continue
            real = [_as_real(p) for p in bucket]
            grads = [_as_real(p.grad) for p in bucket]
            buffers = {name: [_as_real(self.state[p][name]) for p in bucket] for name in names}
            wide = self._compute_dtype(group, dtype)
            if wide != dtype:  # mixed precision: the rule on widened copies, then rounded back
                real = [p.detach().to(wide) for p in bucket]
                grads = [p.grad.to(wide) for p in bucket]
            if foreach:
                self._apply(self._ops(FOREACH, dtype.is_complex), arguments, real, grads, buffers)
            else:
                ops = DIFFERENTIABLE if group.get("differentiable") else LOOP
                ops = self._ops(ops, dtype.is_complex)
                for i in range(len(bucket)):
                    one = {name: [tensors[i]] for name, tensors in buffers.items()}
                    self._apply(ops, arguments, [real[i]], [grads[i]], one)
            if wide != dtype:
                self._round_back(group, bucket, real, step)

    #: whether torch computes this rule on complex parameters as complex numbers (SGD), where
    #: a scaled sum rounds its product apart (:class:`~optimlab.core.ops.ComplexSums`), rather
    #: than on their pairs of reals (the Adam family)
    _complex_arithmetic = False

    def _ops(self, ops: Any, complex_numbers: bool) -> Any:
        """The operations a bucket's rule runs on: ``ops``, as on complex numbers where torch
        computes on them (``complex_numbers``: the bucket's parameters are complex)."""
        return ComplexSums(ops) if complex_numbers and self._complex_arithmetic else ops

    def _compute_dtype(self, group: dict[str, Any], dtype: torch.dtype) -> torch.dtype:
        """The dtype a step computes in for parameters of ``dtype``: ``state_dtype`` for real
        floating parameters where the group names one, else their own."""
        wide = group.get("state_dtype")
        if wide is None or not dtype.is_floating_point:
            return dtype
        return wide

    def _round_back(
        self, group: dict[str, Any], params: list[Tensor], computed: list[Tensor], step: int
    ) -> None:
        """Write the update computed in ``state_dtype`` back into the parameters: rounded to
        nearest, or stochastically for bfloat16 ones (``stochastic_rounding=True``)."""
        for p, value in zip(params, computed):
            seed = self.state[p].get("rounding_seed")
            if seed is not None and p.dtype == torch.bfloat16 and value.dtype == torch.float32:
                value = precision.stochastic_round_bf16(value, int(seed), step)
            p.detach().copy_(value)

    def _new_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        """:meth:`_init_state`, its buffers in the group's ``state_dtype`` (which must be at
        least as wide as the parameter's), and the seed of stochastic rounding where the group
        asks for it (a bfloat16 parameter): derived from torch's initial seed and the
        parameter's place, so no random number is drawn from the user's generator."""
        state = self._init_state(p, group)
        self._place_on_device(state, p, group)
        wide = self._compute_dtype(group, p.dtype)
        if wide == p.dtype:
            return state
        if torch.finfo(wide).bits < torch.finfo(p.dtype).bits:
            raise ValueError(
                f"Invalid state_dtype={wide}: narrower than a parameter's dtype ({p.dtype}, "
                f"shape {tuple(p.shape)}); the update is computed in state_dtype, which must "
                "hold the parameter exactly"
            )
        for name, value in state.items():
            if isinstance(value, Tensor) and value.dim() > 0 and value.is_floating_point():
                state[name] = value.to(wide)
        if group.get("stochastic_rounding") and p.dtype == torch.bfloat16:
            place = next(  # (group, position): where the parameter sits in the optimizer
                (
                    (i << 20) + j
                    for i, g in enumerate(self.param_groups)
                    for j, q in enumerate(g["params"])
                    if q is p
                ),
                0,
            )
            seed = precision.hash32(torch.initial_seed() ^ precision.hash32(place + 1))
            state["rounding_seed"] = torch.tensor(seed, dtype=torch.int64)
        return state

    #: whether the class steps parameters whose gradients are sparse (``_step_sparse``), as
    #: torch's SGD and Adagrad do (``nn.Embedding(sparse=True)``)
    _supports_sparse_grads = False

    def _refuse_sparse(self, grad: Tensor) -> None:
        if not self._supports_sparse_grads:
            _require_dense(grad)

    def _step_sparse(self, arguments: dict[str, Any], p: Tensor, state: dict[str, Any]) -> None:
        """Step one parameter whose gradient is sparse (COO), its state's step already
        advanced; ``arguments`` as the rule takes them (see :meth:`_arguments`)."""
        raise NotImplementedError

    # -- saving and loading ----------------------------------------------------------------

    #: entries a parameter's state may hold beyond what its group's configuration keeps, loaded
    #: as they are (SGD's momentum buffer while a scheduler holds momentum at 0: torch keeps
    #: it, and uses it again when momentum returns)
    _kept_entries: tuple[str, ...] = ()

    def _loaded_entries(
        self, entry: dict[str, Any], template: dict[str, Any], where: str, group: dict[str, Any]
    ) -> dict[str, Any]:
        """A saved parameter state, as torch.optim or optimlab saved it, made this class's:
        a missing ``step`` (torch's SGD and Muon count no steps) taken as 1, which is all
        their rules ask of it (not the first step); an entry an older optimlab did not keep
        rebuilt by :meth:`_older_entry`; numbers it kept bare put in tensors as torch keeps
        them."""
        entry = dict(entry)
        if entry and "step" not in entry:
            entry["step"] = 1
        for name in set(template) - set(entry):
            value = self._older_entry(name, entry, group) if entry else None
            if value is not None:
                entry[name] = value
        if set(template) - set(entry) or set(entry) - set(template) - set(self._kept_entries):
            raise ValueError(
                f"{where} has entries {sorted(entry)} but this optimizer's "
                f"configuration needs {sorted(template)}"
            )
        for name, blank in template.items():
            value = entry[name]
            if isinstance(blank, Tensor) and blank.dim() == 0 and isinstance(value, (int, float)):
                entry[name] = torch.tensor(float(value), dtype=blank.dtype)
        return entry

    def _older_entry(self, name: str, entry: dict[str, Any], group: dict[str, Any]) -> Any:
        """An entry of a parameter's state that states saved by older optimlab versions lack,
        computed from the rest (``entry``), or None."""
        return None

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by ``state_dict()``, after checking that it fits.

        The state may come from the torch twin (``torch.optim.Adam``'s for :class:`Adam`):
        torch's format and this class's are one (see :meth:`state_dict`). Refused (ValueError
        naming the place): a different number of groups, a group of a different size, invalid
        hyperparameters, missing or unexpected state entries, and a state tensor whose shape
        differs from its parameter's. Loaded tensors are copied, so
        the optimizer never shares buffers with the dict it was given. The dispatch choices
        ``foreach`` and ``fused`` stay this optimizer's: a state saved on one path resumes on
        any other with the same results.
        """
        self._fused.settle()  # steps launched on a GPU: counted before they are replaced
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict has {len(saved_groups)} parameter groups but this optimizer has "
                f"{len(self.param_groups)}"
            )
        saved_state = state_dict["state"]
        new_state: dict[Any, Any] = {}
        prepared: list[tuple[Tensor, dict[str, Any]]] = []
        for i, (saved, mine) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(mine["params"]):
                raise ValueError(
                    f"state_dict's group {i} has {len(saved['params'])} parameters but this "
                    f"optimizer's group {i} has {len(mine['params'])}"
                )
            dispatch = {key: mine.get(key, self.defaults[key]) for key in self._dispatch_keys}
            self._check_group({**self.defaults, **saved, **dispatch}, loading=True)
            config = {**self.defaults, **saved}
            for j, (key, p) in enumerate(zip(saved["params"], mine["params"])):
                if key not in saved_state:
                    continue
                where = f"state_dict['state'][{key!r}] (parameter {j} of group {i})"
                template = self._new_state(p, config)
                entry = self._loaded_entries(saved_state[key], template, where, config)
                if not entry:
                    continue
                entry["step"] = new_step(step_count(entry))
                self._place_on_device(entry, p, config)
                for name, blank in template.items():
                    if name == "step" or not isinstance(blank, Tensor):
                        continue
                    value = entry[name]
                    if not isinstance(value, Tensor) or value.shape != blank.shape:
                        found = tuple(value.shape) if isinstance(value, Tensor) else describe(value)
                        raise ValueError(
                            f"{where}['{name}'] has shape {found} but this optimizer keeps it "
                            f"with shape {tuple(blank.shape)} for a parameter of shape "
                            f"{tuple(p.shape)}"
                        )
                    # As torch loads a buffer: on the parameter's device, in its dtype if
                    # floating. Not a 0-dim scalar (NAdam's mu_product, ASGD's eta, a
                    # rounding seed): torch casts those too, and its resumed run then departs
                    # from the uninterrupted one; kept in the dtype it was saved in, a resumed
                    # run continues exactly. And where a new state keeps it (the host, read
                    # there each step; the device with capturable=True), not on a GPU that
                    # every step would then wait for.
                    scalar = value.dim() == 0
                    dtype = blank.dtype if p.is_floating_point() and not scalar else value.dtype
                    device = blank.device if scalar else p.device
                    entry[name] = value.to(device=device, dtype=dtype, copy=True)
                new_state[key] = entry
                prepared.append((p, entry))
        dispatch = [
            {key: mine.get(key, self.defaults[key]) for key in self._dispatch_keys}
            for mine in self.param_groups
        ]
        self._fused.forget()
        defaults = dict(self.defaults)  # torch's __setstate__ adds keys of its own to defaults
        super().load_state_dict({**state_dict, "state": new_state})
        self.defaults = defaults  # ... which a resumed optimizer's groups must not gain
        self.state = StateMap(self.state)
        for p, entry in prepared:  # as prepared above: torch's load casts the scalars too
            self.state[p].update(entry)
        for group, keep in zip(self.param_groups, dispatch):
            for key, value in defaults.items():
                group.setdefault(key, value)  # a checkpoint from before a key existed
            group.update(keep)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.state = StateMap(self.state)
        if "_fused" not in self.__dict__:  # (a copy; torch's load_state_dict calls this too,
            self._fused = FusedSteps(self)  # which keeps the books: what graphs use, say)

    def __getstate__(self) -> dict[str, Any]:
        # torch's keeps only defaults, state and param_groups; keep the policy too (a deep copy
        # must be able to step). Fused plans hold pointers: never copied, rebuilt on demand.
        return {
            **super().__getstate__(),
            "nonfinite_grads": self.nonfinite_grads,
            "skipped_steps": self.skipped_steps,
        }

    def __repr__(self) -> str:
        tensors = sum(len(g["params"]) for g in self.param_groups)
        elements = sum(p.numel() for g in self.param_groups for p in g["params"])
        lines = [
            f"{type(self).__name__}({len(self.param_groups)} group(s), {tensors} tensor(s), "
            f"{elements:,} parameters, nonfinite_grads={self.nonfinite_grads!r})"
        ]
        for i, group in enumerate(self.param_groups):
            settings = ", ".join(
                f"{k}={group[k]!r}"
                for k in self.defaults
                if k != "params" and k not in self._dispatch_keys
            )
            lines.append(f"  group {i} ({len(group['params'])} tensor(s)): {settings}")
        return "\n".join(lines)


def _on_device(name: str, value: Any, device: torch.device) -> Any:
    """A hyperparameter for a capturable step: a tensor on ``device`` as a DeviceScalar,
    anything else as the number it holds."""
    if isinstance(value, Tensor) and value.device == device:
        # (a float32 tensor keeps its dtype: its arithmetic is a float32 tensor's, as on the
        # host, see tensor_number)
        dtype = torch.float32 if value.dtype == torch.float32 else torch.float64
        return DeviceScalar(value.detach().reshape(()).to(dtype))
    return tensor_number(name, value)


def _require_dense(grad: Tensor) -> None:
    if grad.layout != torch.strided:  # torch's twins raise RuntimeError too
        raise RuntimeError(
            f"Sparse gradients are not supported (a {grad.layout} gradient of shape "
            f"{tuple(grad.shape)}); use dense gradients, e.g. nn.Embedding(sparse=False)"
        )


def _as_real(t: Tensor) -> Tensor:
    # Complex numbers are updated as pairs of reals, as torch.optim does. A lazily conjugated
    # tensor (a gradient set to x.conj()) is resolved first: its memory holds the unconjugated
    # values. (Parameters and state are written in place and never carry the bit.)
    if not t.is_complex():
        return t
    return torch.view_as_real(t.resolve_conj() if t.is_conj() else t)
