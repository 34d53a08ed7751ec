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
* hands the math to a rule of :mod:`optimlab.core.rules`, on the multi-tensor backend
  (``foreach=True``, the default) or the plain per-tensor one (``foreach=False``).

A subclass declares its hyperparameter checks (``_checks``), the names of its per-parameter
buffers (``_buffer_names``) and calls its rule (``_update``); nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from ..core.ops import FOREACH, LOOP, LoopOps

NONFINITE_POLICIES = ("raise", "skip", "ignore")


class NonFiniteGradientError(FloatingPointError):
    """A gradient holds NaN or Inf; the step was not taken and nothing was changed."""


# --- hyperparameter checks -----------------------------------------------------------------
# Each check takes (name, value) and raises TypeError/ValueError naming both.


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"Invalid {name}: {value!r} (a {type(value).__name__}); expected a real number"
        )
    if not math.isfinite(value):
        raise ValueError(f"Invalid {name}: {value!r}; expected a finite number")
    return float(value)


def non_negative(name: str, value: Any) -> None:
    """A finite number >= 0 (learning rates, epsilons, weight decay, dampening)."""
    if _real(name, value) < 0:
        raise ValueError(f"Invalid {name}: {value!r}; expected a finite number >= 0")


def unit_interval(name: str, value: Any) -> None:
    """A coefficient of an average: 0 <= value < 1."""
    if not 0.0 <= _real(name, value) < 1.0:
        raise ValueError(f"Invalid {name}: {value!r}; expected a number in [0, 1)")


def pair_in_unit_interval(name: str, value: Any) -> None:
    """Two averaging coefficients, such as Adam's ``betas``."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"Invalid {name}: {value!r}; expected a pair (beta1, beta2)")
    unit_interval(f"{name}[0]", value[0])
    unit_interval(f"{name}[1]", value[1])


def boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"Invalid {name}: {value!r}; expected True or False")


def one_of(*choices: str) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise ValueError(f"Invalid {name}: {value!r}; expected one of {allowed}")

    return check


def optional_boolean(name: str, value: Any) -> None:
    if value is not None:
        boolean(name, value)


# --- the base class ------------------------------------------------------------------------


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a Tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


class Optimizer(torch.optim.Optimizer):
    """Base class: validation, state and dispatch for every optimlab optimizer."""

    #: hyperparameter name -> check(name, value); every group is checked against all of them.
    _checks: dict[str, Callable[[str, Any], None]] = {"foreach": optional_boolean}

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        *,
        nonfinite_grads: str = "raise",
    ) -> None:
        one_of(*NONFINITE_POLICIES)("nonfinite_grads", nonfinite_grads)
        if isinstance(params, Tensor):
            raise TypeError(
                f"Invalid params: {_describe(params)}; expected an iterable of tensors or of "
                "parameter-group dicts: pass [tensor] or model.parameters()"
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
            raise ValueError("Invalid params: empty; the optimizer got no parameters to optimize")
        self.nonfinite_grads = nonfinite_grads
        #: how many steps the ``"skip"`` policy has skipped (not saved in ``state_dict``).
        self.skipped_steps = 0
        super().__init__(params, defaults)

    # -- validation ------------------------------------------------------------------------

    def _check_group(self, group: dict[str, Any]) -> None:
        """Check every hyperparameter of ``group``; subclasses add checks across arguments."""
        for name, check in self._checks.items():
            check(name, group[name])

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters, with its own hyperparameters, after checking both."""
        if not isinstance(param_group, dict):
            raise TypeError(f"Invalid param_group: {_describe(param_group)}; expected a dict")
        if "params" not in param_group:
            raise ValueError("Invalid param_group: it has no 'params' key")
        index = len(self.param_groups)
        params = param_group["params"]
        if isinstance(params, (set, frozenset)):
            raise TypeError(
                f"Invalid params of group {index}: a set; its order changes between runs: "
                "pass a list"
            )
        params = [params] if isinstance(params, Tensor) else list(params)
        tensors = [p[1] if isinstance(p, tuple) and len(p) == 2 else p for p in params]
        for j, p in enumerate(tensors):
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"Invalid params[{j}] of group {index}: {_describe(p)}; expected a Tensor"
                )
            if not (p.is_leaf or p.retains_grad):
                raise ValueError(
                    f"Invalid params[{j}] of group {index}: a non-leaf Tensor of shape "
                    f"{tuple(p.shape)} (computed from other tensors); optimize the leaf "
                    "tensors it came from"
                )
        seen: dict[int, int] = {}
        for j, p in enumerate(tensors):
            if id(p) in seen:
                raise ValueError(
                    f"Invalid params of group {index}: params[{j}] (shape {tuple(p.shape)}) "
                    f"repeats params[{seen[id(p)]}]; each parameter may appear once"
                )
            seen[id(p)] = j
        for k, group in enumerate(self.param_groups):
            for p in group["params"]:
                if id(p) in seen:
                    raise ValueError(
                        f"Invalid params of group {index}: params[{seen[id(p)]}] (shape "
                        f"{tuple(p.shape)}) is already in group {k}; a parameter may belong to "
                        "one group only"
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
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        buffers: dict[str, list[Tensor]],
        step: int,
    ) -> None:
        """Apply the rule to one bucket of parameters (same device, dtype and step count)."""
        raise NotImplementedError

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = {"step": 0}
        for name in self._buffer_names(group):
            state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def _param_name(self, group_index: int, j: int) -> str:
        group = self.param_groups[group_index]
        p = group["params"][j]
        if "param_names" in group:
            return f"{group['param_names'][j]!r} (shape {tuple(p.shape)})"
        return f"parameter {j} of group {group_index} (shape {tuple(p.shape)})"

    def _grads_are_finite(self) -> bool:
        grads_by_device: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    _require_dense(p.grad)
                    grads_by_device.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
        flags = []
        for grads in grads_by_device.values():
            flags.append(torch.stack(FOREACH.max_abs(grads)).isfinite().all().cpu())
        return bool(torch.stack(flags).all()) if flags else True

    def _raise_nonfinite(self) -> None:
        for i, group in enumerate(self.param_groups):
            for j, p in enumerate(group["params"]):
                if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                    kind = "NaN" if bool(torch.isnan(p.grad).any()) else "Inf"
                    raise NonFiniteGradientError(
                        f"The gradient of {self._param_name(i, j)} holds {kind}; the step was "
                        "not taken. Pass nonfinite_grads='skip' to skip such steps instead."
                    )

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Take one optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            non_negative("lr", group["lr"])  # a schedule may have written a bad value since
        if self.nonfinite_grads != "ignore" and not self._grads_are_finite():
            if self.nonfinite_grads == "raise":
                self._raise_nonfinite()
            self.skipped_steps += 1
            return loss
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:
        names = self._buffer_names(group)
        # Bucket by device, dtype and step count: one rule call per bucket, with scalar bias
        # corrections. Parameters normally all fall in one bucket.
        buckets: dict[tuple[Any, ...], list[Tensor]] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            _require_dense(p.grad)
            state = self.state[p]
            if not state:
                state.update(self._init_state(p, group))
            state["step"] += 1
            buckets.setdefault((p.device, p.dtype, state["step"]), []).append(p)
        foreach = group["foreach"] is not False
        for (_, _, step), params in buckets.items():
            real = [_as_real(p) for p in params]
            grads = [_as_real(p.grad) for p in params]
            buffers = {name: [_as_real(self.state[p][name]) for p in params] for name in names}
            if foreach:
                self._update(FOREACH, group, real, grads, buffers, step)
            else:
                for i in range(len(params)):
                    one = {name: [tensors[i]] for name, tensors in buffers.items()}
                    self._update(LOOP, group, [real[i]], [grads[i]], one, step)

    # -- saving and loading ----------------------------------------------------------------

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by ``state_dict()``, after checking that it fits.

        Refused (ValueError naming the place): a different number of groups, a group of a
        different size, invalid hyperparameters, missing or unexpected state entries, and a
        state tensor whose shape differs from its parameter's. Loaded tensors are copied, so
        the optimizer never shares buffers with the dict it was given.
        """
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict has {len(saved_groups)} parameter groups but this optimizer has "
                f"{len(self.param_groups)}"
            )
        saved_state = state_dict["state"]
        new_state: dict[Any, Any] = {}
        for i, (saved, mine) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(mine["params"]):
                raise ValueError(
                    f"state_dict's group {i} has {len(saved['params'])} parameters but this "
                    f"optimizer's group {i} has {len(mine['params'])}"
                )
            self._check_group({**self.defaults, **saved})
            expected = {"step", *self._buffer_names({**self.defaults, **saved})}
            for j, (key, p) in enumerate(zip(saved["params"], mine["params"])):
                if key not in saved_state:
                    continue
                entry = dict(saved_state[key])
                where = f"state_dict['state'][{key!r}] (parameter {j} of group {i})"
                if set(entry) != expected:
                    raise ValueError(
                        f"{where} has entries {sorted(entry)} but this optimizer's "
                        f"configuration needs {sorted(expected)}"
                    )
                step = entry["step"]
                entry["step"] = int(step.item()) if isinstance(step, Tensor) else int(step)
                for name in expected - {"step"}:
                    value = entry[name]
                    if not isinstance(value, Tensor) or value.shape != p.shape:
                        found = (
                            tuple(value.shape) if isinstance(value, Tensor) else _describe(value)
                        )
                        raise ValueError(
                            f"{where}['{name}'] has shape {found} but the parameter has shape "
                            f"{tuple(p.shape)}"
                        )
                    entry[name] = value.clone()
                new_state[key] = entry
        super().load_state_dict({**state_dict, "state": new_state})

    def __repr__(self) -> str:
        tensors = sum(len(g["params"]) for g in self.param_groups)
        elements = sum(p.numel() for g in self.param_groups for p in g["params"])
        lines = [
            f"{type(self).__name__}({len(self.param_groups)} group(s), {tensors} tensor(s), "
            f"{elements:,} parameters, nonfinite_grads={self.nonfinite_grads!r})"
        ]
        for i, group in enumerate(self.param_groups):
            settings = ", ".join(
                f"{k}={group[k]!r}" for k in self.defaults if k not in ("params", "foreach")
            )
            lines.append(f"  group {i} ({len(group['params'])} tensor(s)): {settings}")
        return "\n".join(lines)


def _require_dense(grad: Tensor) -> None:
    if grad.layout != torch.strided:
        raise TypeError(
            f"Sparse gradients are not supported (a {grad.layout} gradient of shape "
            f"{tuple(grad.shape)}); use dense gradients, e.g. nn.Embedding(sparse=False)"
        )


def _as_real(t: Tensor) -> Tensor:
    # Complex numbers are updated as pairs of reals, as torch.optim does.
    return torch.view_as_real(t) if t.is_complex() else t
