"""ScheduleFreeAdamW, ScheduleFreeSGD and Prodigy: tuning-free optimizers beyond the notes.

Two answers to "which learning rate schedule, and which learning rate?":

* schedule-free learning (Defazio et al., 2024, "The Road Less Scheduled"; the self-tuning
  winner of AlgoPerf 2024) needs no schedule and no training length: it evaluates gradients at
  an interpolation ``y`` between the base optimizer's iterate ``z`` and their running average
  ``x``, the point to evaluate and save. The optimizer has a train mode (the parameters hold
  ``y``) and an eval mode (they hold ``x``): call :meth:`ScheduleFreeSGD.eval` before
  evaluating or saving the model for inference and :meth:`ScheduleFreeSGD.train` before
  training again, as the authors' optimizers require;
* Prodigy (Mishchenko and Defazio, 2023) estimates Adam's learning rate on the way, from how
  far the iterates have travelled against the gradients; ``lr`` (default 1) only rescales it.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import torch
from torch import Tensor

from ..core import tuning_free as rules
from ..core.ops import FOREACH, LOOP, LoopOps, floats
from .base import Optimizer, _as_real, _require_dense
from .binding import BETAS, call_rule
from .checks import (
    FLOAT32_EXPONENT,
    FLOAT64_EXPONENT,
    LARGEST_SCALE,
    SMALLEST_SCALE,
    boolean,
    bounded,
    hyperparameters,
    invalid,
    non_negative,
    optional,
    pair_in_unit_interval,
    real_number,
    tensor_number,
    unit_interval,
)
from .state import advance_step, new_step

# --- hyperparameter checks of this family ----------------------------------------------------


def _number(lr: Any) -> float:
    """A learning rate as a Python float: a tensor lr (torch's form, written in place by
    schedules) as the number it holds. These optimizers have no torch twin whose float32
    roundings to follow, and their running sums (the average's weights, Prodigy's d) keep
    float64's precision."""
    return float(tensor_number("lr", lr))


def positive(name: str, value: Any) -> None:
    """A number in [2**-32, 2**32] (Prodigy's ``d0``, ``d_coef`` and ``eps``)."""
    if real_number(name, value) <= 0:
        raise ValueError(f"{invalid(name, value)}; expected a finite number > 0")
    bounded(
        name,
        value,
        SMALLEST_SCALE,
        LARGEST_SCALE,
        why=(
            "the moments and the denominator take products of up to four such factors "
            "(d**2 * g**2, d * eps), which must stay within float32's range, "
            f"2**-{FLOAT32_EXPONENT} to 2**{FLOAT32_EXPONENT}"
        ),
    )


def non_negative_int(name: str, value: Any) -> None:
    """A count of steps: an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{invalid(name, value, f'a {type(value).__name__}')}; expected an integer >= 0"
        )
    if value < 0:
        raise ValueError(f"{invalid(name, value)}; expected an integer >= 0")


def open_unit_interval(name: str, value: Any) -> None:
    """Schedule-free's interpolation weight: 0 < value < 1 (``eval()`` divides by it)."""
    if not 0.0 < real_number(name, value) < 1.0:
        raise ValueError(
            f"{invalid(name, value)}; expected a number in (0, 1): schedule-free "
            f"evaluates gradients at y = (1 - {name}) * z + {name} * x, and recovers x by "
            "dividing by it"
        )


#: schedule-free sums its averaging weights in a float64, over step counts a float64 holds
#: exactly: up to 2**53
_STEP_BITS = sys.float_info.mant_dig
#: the largest ``r``: the weights ``t**r`` summed over 2**53 steps stay below 2**1024 (their sum
#: is below ``(2**53)**(r + 1)``), so ``r <= 1024 / 53 - 1``, about 18.3
LARGEST_R = FLOAT64_EXPONENT / _STEP_BITS - 1


def averaging_exponent(name: str, value: Any) -> None:
    """Schedule-free's ``r``, the power of ``t`` in step ``t``'s averaging weight: [0, 18.3]."""
    if real_number(name, value) < 0:
        raise ValueError(f"{invalid(name, value)}; expected a finite number >= 0")
    bounded(
        name,
        value,
        0.0,
        LARGEST_R,
        why=(
            f"the average weighs step t by t**{name}; summed over the 2**{_STEP_BITS} steps a "
            f"float64 counts exactly, these weights must stay below float64's "
            f"2**{FLOAT64_EXPONENT}"
        ),
    )


def schedule_free_betas(name: str, value: Any) -> None:
    """``(beta1, beta2)``: beta1 in (0, 1), the interpolation weight; beta2 in [0, 1)."""
    pair_in_unit_interval(name, value)
    open_unit_interval(f"{name}[0]", value[0])


def growth_factor(name: str, value: Any) -> None:
    """A factor >= 1, infinity included (no limit)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{invalid(name, value, f'a {type(value).__name__}')}; expected a number >= 1 "
            "(float('inf') for no limit)"
        )
    try:
        float(value)
    except OverflowError:  # an int beyond the float range: the rule computes in floats
        raise ValueError(
            f"{invalid(name, value)}; expected a number >= 1 (float('inf') for no limit): "
            "this int is beyond the float range"
        ) from None
    if not value >= 1:  # also refuses NaN
        raise ValueError(
            f"{invalid(name, value)}; expected a number >= 1 (float('inf') for no limit): "
            "the estimate may not shrink"
        )


def _ops(group: dict[str, Any]) -> LoopOps:
    return LOOP if group["foreach"] is False else FOREACH


def _buckets(params: list[Tensor]) -> list[list[Tensor]]:
    """Parameters by device and dtype: the lists one multi-tensor call can take."""
    buckets: dict[tuple[Any, ...], list[Tensor]] = {}
    for p in params:
        buckets.setdefault((p.device, p.dtype), []).append(p)
    return list(buckets.values())


# --- schedule-free -------------------------------------------------------------------------


class _ScheduleFree(Optimizer):
    """What schedule-free SGD and AdamW share: the average's weights, and the two modes."""

    #: entries each parameter group carries besides its hyperparameters (saved with it)
    _group_state = {"train_mode": True, "k": 0, "weight_sum": 0.0, "lr_max": -1.0}

    def _interpolation(self, group: dict[str, Any]) -> float:
        """``beta`` of ``y = (1 - beta) * z + beta * x``."""
        raise NotImplementedError

    def _check_group(self, group: dict[str, Any], loading: bool = False) -> None:
        super()._check_group(group, loading)
        # Step t's weight is t**r * lr**weight_lr_power (lr the largest so far): over 2**53
        # steps the weights' sum stays below 2**bits, which must be within float64's range.
        lr, r, power = float(group["lr"]), float(group["r"]), float(group["weight_lr_power"])
        bits = (r + 1) * _STEP_BITS + power * math.log2(max(lr, 1.0))
        if bits > FLOAT64_EXPONENT:
            raise ValueError(
                f"Invalid weight_lr_power={group['weight_lr_power']!r} with r={group['r']!r} "
                f"and lr={group['lr']!r}: the average weighs step t by "
                f"t**r * lr**weight_lr_power, and over 2**{_STEP_BITS} steps these weights "
                f"sum to up to 2**{bits:.0f}; expected (r + 1) * {_STEP_BITS} + "
                f"weight_lr_power * log2(lr) <= {FLOAT64_EXPONENT} (float64's range)"
            )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for key, value in self._group_state.items():
            group.setdefault(key, value)
        # A new group's parameters have no z yet (x = y = z): either mode describes them, so
        # the group follows the optimizer's current one.
        group["train_mode"] = self.param_groups[0]["train_mode"]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            for key, value in self._group_state.items():
                group.setdefault(key, value)

    def _schedule(self, group: dict[str, Any]) -> rules.ScheduleFreeStep:
        return rules.schedule_free_schedule(
            lr=_number(group["lr"]),
            k=group["k"],
            warmup_steps=group["warmup_steps"],
            r=group["r"],
            weight_lr_power=group["weight_lr_power"],
            lr_max=group["lr_max"],
            weight_sum=group["weight_sum"],
        )

    def _arguments(self, group, state, step):
        # the rule steps with the schedule's learning rate (warm-up) and the average's weight
        scheduled = self._schedule(group)
        arguments = super()._arguments(group, state, step)
        return {**arguments, "lr": scheduled.lr, "ckp1": scheduled.ckp1}

    #: a step from ``y`` is refused in eval mode, see :meth:`train`
    _eval_mode_holds = "the average x, not the point y where gradients are taken"
    #: after each step taken, the group's count, largest lr and weights' sum come from these
    _after_step_inputs = ("lr", "warmup_steps", "r", "weight_lr_power")
    #: the group entries :meth:`_after_step` advances
    _running = ("k", "lr_max", "weight_sum")
    _host_state_in_group = True

    def _after_step(self, group, stepped):
        # The rule read these running values (possibly once per bucket); store the new ones
        # only now that the step is taken.
        scalars = self._schedule(group)
        group["k"] += 1
        group["lr_max"] = float(scalars.lr_max)  # (plain numbers: saved with the group)
        group["weight_sum"] = float(scalars.weight_sum)

    def _host_state(self, group, state):
        return tuple(group[name] for name in self._running)

    def _host_key(self, group, state):
        return id(group), group["k"]

    def _with_host_state(self, group, state, values):
        return {**group, **dict(zip(self._running, values))}, state

    def _restore_host_state(self, group, states, values):
        group.update(zip(self._running, values))

    @torch.no_grad()
    def eval(self) -> None:
        """Put the averaged point ``x`` in the parameters: evaluate or save the model now.

        ``x = (y - (1 - beta) * z) / beta``, computed as ``lerp(y, z, 1 - 1/beta)`` as the
        authors do. Harmless when already in eval mode; parameters without state (never
        stepped) are left as they are, their ``x``, ``y`` and ``z`` being one point.
        """
        self._switch(to_train=False)

    @torch.no_grad()
    def train(self) -> None:
        """Put the gradient point ``y = (1 - beta) * z + beta * x`` back: train again.

        ``eval()`` then ``train()`` gives ``y`` back within a few ulps (the two
        interpolations round); harmless when already in train mode.
        """
        self._switch(to_train=True)

    def _switch(self, to_train: bool) -> None:
        for group in self.param_groups:
            if group["train_mode"] == to_train:
                continue
            beta = self._interpolation(group)
            params = [p for p in group["params"] if "z" in self.state.get(p, ())]
            for bucket in _buckets(params):
                points = [_as_real(p) for p in bucket]
                zs = [_as_real(self.state[p]["z"]) for p in bucket]
                # in z's dtype (``state_dtype``, where wider than the parameters'), then
                # rounded back to nearest, as a step computes
                wide = [point.to(z.dtype) for point, z in zip(points, zs)]
                switch = rules.schedule_free_to_y if to_train else rules.schedule_free_to_x
                switch(_ops(group), wide, zs, beta)
                for point, value in zip(points, wide):
                    if value is not point:
                        point.copy_(value)
            group["train_mode"] = to_train


class ScheduleFreeSGD(_ScheduleFree):
    r"""Schedule-free SGD (Defazio et al., 2024), as the authors' ``SGDScheduleFree``.

    Update at step ``t``, with ``g`` the gradient at ``y`` (negated when ``maximize``)::

        u = g + weight_decay * y
        y = lerp(y, z, c) + lr_t * (momentum * (1 - c) - 1) * u
        z = z - lr_t * u

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 1.0.
        momentum: in [0, 1), the interpolation between ``z`` and ``x``. Default 0.9.
        weight_decay: >= 0, taken at ``y``. Default 0.
        warmup_steps: steps of linear warmup of ``lr``. Default 0.
        r: >= 0, the power of ``t`` in the average's weights. Default 0.
        weight_lr_power: the power of the learning rate in them. Default 2.
        maximize, foreach, fused, nonfinite_grads, state_dtype, stochastic_rounding: as for
            :class:`optimlab.Adam` (how the step is computed, never what; the non-finite
            policy; mixed precision).

    which keeps ``y = (1 - momentum) * z + momentum * x`` for the average
    ``x_{t+1} = (1 - c) * x_t + c * z_{t+1}``, ``c = w_t / sum_{i<=t} w_i``: gradient descent
    ``z``, its weighted average ``x``, and the gradient taken between them. ``x`` is never
    stored; the state holds ``z`` (one buffer, as SGD with momentum).

    When to use it: where you would use SGD with momentum and a decaying schedule, without
    having to fix the length of training in advance: ``x`` at any step is about as good as a
    run scheduled to end there. Learning rates 10-50 times SGD's usual ones work (the default
    is 1.0); ``momentum`` (0.9) matters more than in SGD, 0.95-0.98 for long runs.

    ``warmup_steps`` multiplies ``lr`` by ``t / warmup_steps`` for the first steps (the
    recommended warmup; no scheduler is needed, though one may still set ``lr``). The
    average weighs step ``t`` by ``t**r * max_{i<=t}(lr_i)**weight_lr_power``: the defaults
    (``r=0``, ``weight_lr_power=2``) weigh every step after warmup equally and warmup steps by
    their squared learning rate. ``weight_decay`` is taken at ``y``, inside ``u``.

    **Train and eval modes.** In train mode (the default, from construction) the parameters
    hold ``y``; :meth:`eval` replaces them with ``x``, :meth:`train` puts ``y`` back, and
    ``step()`` in eval mode raises an error. Call ``optimizer.eval()`` wherever you call
    ``model.eval()`` and before saving the model to use it, and ``optimizer.train()`` with
    ``model.train()``. The mode is saved in ``state_dict()``: a checkpoint taken in either
    mode resumes exactly (load the model and the optimizer state, then ``train()`` if it was
    saved in eval mode). Models with BatchNorm should refresh its running statistics at
    ``x`` before evaluating (a few forward passes in ``model.train()`` after
    ``optimizer.eval()``), as the authors advise.

    Differences from the authors' code: the optimizer starts in train mode (theirs must be
    put there with ``train()`` first, a no-op before the first step); every group's mode is
    checked at ``step()``; ``.grad`` is never modified.

    ``fused=None`` (default) runs the step as one compiled loop where this machine can compile
    it (:mod:`optimlab.fused.native`; bitwise equal to the multi-tensor path); ``fused=True``
    insists on it, ``fused=False``/``foreach=True`` takes the multi-tensor path,
    ``foreach=False`` one PyTorch call per tensor; ``nonfinite_grads`` as in
    :class:`~optimlab.Adam` (a skipped step does not advance the average's weights), and so
    are ``state_dtype`` and ``stochastic_rounding``.

    Example::

        >>> import torch, optimlab
        >>> w = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
        >>> opt = optimlab.ScheduleFreeSGD([w], lr=0.1, momentum=0.5)
        >>> for _ in range(3):
        ...     opt.zero_grad(); (w ** 2 / 2).sum().backward(); _ = opt.step()
        >>> round(w.item(), 6)   # y = (z + x) / 2, where the next gradient is taken
        1.539
        >>> opt.eval(); round(w.item(), 6)   # x = (1.8 + 1.62 + 1.4535) / 3, to evaluate
        1.6245
        >>> opt.train(); round(w.item(), 6)
        1.539
    """

    _checks = {
        **Optimizer._checks,
        "lr": non_negative,
        "momentum": open_unit_interval,
        "weight_decay": non_negative,
        "warmup_steps": non_negative_int,
        "r": averaging_exponent,
        "weight_lr_power": non_negative,
        "maximize": boolean,
    }

    _rule = staticmethod(rules.schedule_free_sgd)

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
        nonfinite_grads: str = "raise",
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _interpolation(self, group):
        return group["momentum"]

    def _buffer_names(self, group):
        return ("z",)

    def _init_state(self, p, group):
        # z starts at the parameter: x = y = z before the first step.
        return {
            "step": new_step(),
            "z": torch.clone(p, memory_format=torch.preserve_format).detach(),
        }


class ScheduleFreeAdamW(_ScheduleFree):
    r"""Schedule-free AdamW (Defazio et al., 2024), as the authors' ``AdamWScheduleFree`` (1.3).

    Update at step ``t``, with ``g`` the gradient at ``y`` (negated when ``maximize``)::

        v = beta2 * v + (1 - beta2) * g**2
        u = g / (sqrt(v / (1 - beta2**t)) + eps) + weight_decay * y
        y = lerp(y, z, c) + lr_t * (beta1 * (1 - c) - 1) * u
        z = z - lr_t * u

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 0.0025.
        betas: ``(beta1, beta2)``, each in [0, 1): the interpolation and the squares' average.
            Default (0.9, 0.999).
        eps: >= 0, added to the root. Default 1e-8.
        weight_decay: >= 0, taken at ``y``. Default 0.
        warmup_steps: steps of linear warmup of ``lr``. Default 0.
        r: >= 0, the power of ``t`` in the average's weights. Default 0.
        weight_lr_power: the power of the learning rate in them. Default 2.
        maximize, foreach, fused, nonfinite_grads, state_dtype, stochastic_rounding: as for
            :class:`optimlab.Adam` (how the step is computed, never what; the non-finite
            policy; mixed precision).

    which keeps ``y = (1 - beta1) * z + beta1 * x`` for the average
    ``x_{t+1} = (1 - c) * x_t + c * z_{t+1}``, ``c = w_t / sum_{i<=t} w_i``: ``z`` takes
    Adam's normalized steps without momentum, ``x`` averages them and the gradient is taken
    between the two; ``beta1`` plays momentum's part. The state holds ``z`` and ``v``: Adam's
    memory. This is the authors' default code (``adamw_schedulefree.py``), not the paper's
    Algorithm 1, which multiplies ``lr_t`` by ``sqrt(1 - beta2**t)`` instead of dividing ``v``
    and weighs the average by that ``lr_t**2`` (their ``AdamWScheduleFreePaper``).

    When to use it: where you would use AdamW with warmup and a cosine or linear decay, when
    the training length is not known in advance or one run should serve several lengths
    (AlgoPerf 2024's self-tuning track was won with it). Learning rates 1-10 times AdamW's
    scheduled ones work (default 0.0025); use ``warmup_steps``.

    ``warmup_steps`` multiplies ``lr`` by ``t / warmup_steps`` for the first steps (the
    recommended warmup; no scheduler is needed, though one may still set ``lr``). The
    average weighs step ``t`` by ``t**r * max_{i<=t}(lr_i)**weight_lr_power``: the defaults
    (``r=0``, ``weight_lr_power=2``) weigh every step after warmup equally and warmup steps by
    their squared learning rate. ``weight_decay`` is taken at ``y``, inside ``u``.

    **Train and eval modes.** In train mode (the default, from construction) the parameters
    hold ``y``; :meth:`eval` replaces them with ``x``, :meth:`train` puts ``y`` back, and
    ``step()`` in eval mode raises an error. Call ``optimizer.eval()`` wherever you call
    ``model.eval()`` and before saving the model to use it, and ``optimizer.train()`` with
    ``model.train()``. The mode is saved in ``state_dict()``: a checkpoint taken in either
    mode resumes exactly (load the model and the optimizer state, then ``train()`` if it was
    saved in eval mode). Models with BatchNorm should refresh its running statistics at
    ``x`` before evaluating (a few forward passes in ``model.train()`` after
    ``optimizer.eval()``), as the authors advise.

    Differences from the authors' code: the optimizer starts in train mode (theirs must be
    put there with ``train()`` first, a no-op before the first step); every group's mode is
    checked at ``step()``; ``.grad`` is never modified; the normalized gradient is not stored
    but enters ``y`` and ``z`` through two fused divisions (the same values up to rounding).

    ``fused=None`` (default) runs the step as one compiled loop where this machine can compile
    it (:mod:`optimlab.fused.native`; bitwise equal to the multi-tensor path); ``fused=True``
    insists on it, ``fused=False``/``foreach=True`` takes the multi-tensor path,
    ``foreach=False`` one PyTorch call per tensor; ``nonfinite_grads`` as in
    :class:`~optimlab.Adam` (a skipped step does not advance the average's weights), and so
    are ``state_dtype`` and ``stochastic_rounding``.

    Example::

        >>> import torch, optimlab
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = optimlab.ScheduleFreeAdamW(model.parameters(), lr=1e-2, warmup_steps=10)
        >>> for _ in range(5):
        ...     opt.zero_grad(); model(torch.ones(8, 4)).pow(2).mean().backward(); _ = opt.step()
        >>> opt.eval()    # model now holds x: evaluate it, or save it
        >>> opt.train()   # back to y before the next step
    """

    _checks = {
        **Optimizer._checks,
        "lr": non_negative,
        "betas": schedule_free_betas,
        "eps": non_negative,
        "weight_decay": non_negative,
        "warmup_steps": non_negative_int,
        "r": averaging_exponent,
        "weight_lr_power": non_negative,
        "maximize": boolean,
    }

    _rule = staticmethod(rules.schedule_free_adamw)
    _derived = {**BETAS, "bias_correction2": lambda a: 1 - a["betas"][1] ** (a["k"] + 1)}

    def __init__(
        self,
        params: Any,
        lr: float = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
        nonfinite_grads: str = "raise",
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _interpolation(self, group):
        return group["betas"][0]

    def _buffer_names(self, group):
        return ("z", "exp_avg_sq")

    def _init_state(self, p, group):
        return {
            "step": new_step(),
            "z": torch.clone(p, memory_format=torch.preserve_format).detach(),
            "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
        }


# --- Prodigy -------------------------------------------------------------------------------

#: the arguments of :func:`rules.prodigy_estimate` that come from the group as they are
_ESTIMATE_ARGUMENTS = ("d", "d0", "d_max", "d_numerator", "d_coef", "growth_rate", "beta3")


class Prodigy(Optimizer):
    r"""Prodigy (Mishchenko and Defazio, 2023): Adam that estimates its own learning rate.

    As the authors' ``prodigyopt.Prodigy``. Update at step ``t`` (``t - 1`` steps taken), with
    ``g`` the gradient (negated when ``maximize``; plus ``weight_decay * x`` when
    ``decouple=False``), ``x0`` the starting point and ``dlr = d * lr * bc``::

        m = beta1 * m + d * (1 - beta1) * g
        v = beta2 * v + d**2 * (1 - beta2) * g**2
        s = beta3 * s + (d / d0) * dlr * g                ((d / d0) * d * g: safeguard_warmup)
        num = beta3 * num + (d / d0) * dlr * <g, x0 - x>   sums over the whole group
        d_hat = d_coef * num / |s|_1
        d = min(max(d, d_hat, every earlier d_hat), d * growth_rate)
        x = x - dlr * weight_decay * x                    (decouple=True, the default)
        x = x - dlr * m / (sqrt(v) + d * eps)             (the new d in the denominator)
        x = x - dlr * d * g / (sqrt(v) + d * eps)         instead, when beta1 = 0

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 1.0.
        betas: ``(beta1, beta2)``, each in [0, 1). Default (0.9, 0.999).
        beta3: in [0, 1), the decay of the estimate's sums (None: ``sqrt(beta2)``).
        eps: >= 0, added to the root (times ``d``). Default 1e-8.
        weight_decay: >= 0. Default 0.
        decouple: decoupled weight decay (the default), else added to ``g``.
        use_bias_correction: Adam's bias correction in ``dlr``.
        safeguard_warmup: leave ``lr`` out of the estimate's sums during warmup.
        d0: > 0, the first estimate of ``d``. Default 1e-6.
        d_coef: > 0, scales every estimate. Default 1.
        growth_rate: > 1, the most ``d`` may grow in one step. Default inf.
        maximize, foreach, fused, nonfinite_grads: as for :class:`optimlab.Adam` (how the step
            is computed, never what; the non-finite policy; mixed precision).

    ``bc = sqrt(1 - beta2**t) / (1 - beta1**t)`` with ``use_bias_correction``, else 1;
    ``beta3`` defaults to ``sqrt(beta2)``. ``d`` starts at ``d0`` (1e-6, rarely worth
    changing) and only grows: ``d_hat`` estimates the distance from ``x0`` to a solution
    (D-adaptation), and ``d * lr`` becomes Adam's learning rate. The estimate's numerator and
    ``d``, ``d_max``, ``d_hat`` and ``k`` live in each parameter group (saved with it).
    ``betas=(0, beta2)`` steps as the authors' code does, with the new ``d`` where
    ``m = d * g`` would have the previous one: a step ``new d / previous d`` times longer
    than the limit ``beta1 -> 0`` (and than the paper's Algorithm 4), while ``d`` grows.

    When to use it: in place of Adam(W) when you do not want to tune the learning rate: keep
    ``lr=1`` (lower it, or ``d_coef``, only if training is unstable; ``d_coef`` 0.5-2 is the
    preferred knob) and combine with the usual schedules, which ``lr`` carries (a cosine decay
    works well). ``growth_rate`` (e.g. 1.02) limits how fast ``d`` grows, a kind of warmup;
    ``safeguard_warmup`` removes ``lr`` from ``s`` for use with a warmup schedule.

    Differences from the authors' code: ``d`` is estimated per parameter group (theirs
    shares one over all groups and requires every group to have the same ``lr`` or 0); with
    a single group, the usual case, the two agree. ``lr=0`` for a group leaves it unchanged;
    ``.grad`` is never modified; ``fsdp_in_use`` and ``slice_p`` are not offered; with
    ``beta1 = 0`` the state keeps ``exp_avg`` all the same (it holds ``d * g``).

    No fused path: each step needs two sums over all the group's tensors (a dot product and a
    1-norm) between two elementwise passes. ``foreach`` chooses the multi-tensor or the
    per-tensor path (bitwise equal); ``nonfinite_grads`` as in :class:`~optimlab.Adam`.

    Example::

        >>> import torch, optimlab
        >>> w = torch.tensor([3.0, -2.0], dtype=torch.float64, requires_grad=True)
        >>> opt = optimlab.Prodigy([w])
        >>> for _ in range(60):
        ...     opt.zero_grad(); (w ** 2).sum().backward(); _ = opt.step()
        >>> d = opt.param_groups[0]["d"]; d > 0.1   # grew from d0 = 1e-6 to about |x0|
        True
        >>> bool(w.abs().max() < 0.5)
        True
    """

    _computes_in_state_dtype = False  # its own state layout and steps

    _unfusable_reason = (
        "its step size comes from a dot product and a 1-norm over all the group's tensors"
    )
    #: entries each parameter group carries besides its hyperparameters (saved with it)
    _group_state = {"k": 0, "d_numerator": 0.0, "d_hat": 0.0, "d_denom": 0.0}
    _reads_every_parameter = True  # d: sums over every parameter of the group

    _checks = {
        **Optimizer._checks,
        "lr": non_negative,
        "betas": pair_in_unit_interval,
        "beta3": optional(unit_interval),
        "eps": positive,
        "weight_decay": non_negative,
        "decouple": boolean,
        "use_bias_correction": boolean,
        "safeguard_warmup": boolean,
        "d0": positive,
        "d_coef": positive,
        "growth_rate": growth_factor,
        "maximize": boolean,
    }

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        beta3: float | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decouple: bool = True,
        use_bias_correction: bool = False,
        safeguard_warmup: bool = False,
        d0: float = 1e-6,
        d_coef: float = 1.0,
        growth_rate: float = math.inf,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
        nonfinite_grads: str = "raise",
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        self._complete(group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            self._complete(group)

    def _complete(self, group: dict[str, Any]) -> None:
        for key, value in self._group_state.items():
            group.setdefault(key, value)
        group.setdefault("d", group["d0"])
        group.setdefault("d_max", group["d0"])

    def _buffer_names(self, group):
        return ("exp_avg", "exp_avg_sq", "s", "p0")

    def _init_state(self, p, group):
        state = super()._init_state(p, group)
        state["p0"] = torch.clone(p, memory_format=torch.preserve_format).detach()
        return state

    _unscales_in_rule = False  # its statistics read the gradients too

    def _update(self, ops, arguments, params, grads, buffers):
        raise NotImplementedError("Prodigy steps a whole group at once, in _step_params")

    def _arguments(self, group, state, step):
        # The step's scalars: beta3 defaults to sqrt(beta2); the step size is d * lr times
        # the bias correction; weight decay is either coupled (in the statistics) or not.
        beta1, beta2 = group["betas"]
        correction = 1.0
        if group["use_bias_correction"]:
            correction = rules.prodigy_bias_correction(beta1, beta2, group["k"])
        decay = group["weight_decay"]
        return {
            **super()._arguments(group, state, step),
            "beta1": beta1,
            "beta2": beta2,
            "beta3": group["beta3"] if group["beta3"] is not None else math.sqrt(beta2),
            "dlr": group["d"] * _number(group["lr"]) * correction,
            "weight_decay": 0.0 if group["decouple"] else decay,
            "decoupled_weight_decay": decay if group["decouple"] else 0.0,
        }

    def _step_params(self, group, params, fused, names=None):
        active = []
        for p in params:
            if p.grad is None:
                continue
            _require_dense(p.grad)
            state = self.state[p]
            if not state:
                state.update(self._init_state(p, group))
            step = advance_step(state)
            active.append(p)
        if not active or _number(group["lr"]) == 0:
            return  # the authors' code skips lr-0 groups; nothing would change
        state = self.state[active[0]]
        arguments = self._arguments(group, state, step)
        buckets, numerator_delta, d_denom = self._statistics(group, arguments, active)
        if d_denom == 0:
            return  # no gradient yet (all zero): no information on d, no step, as the authors
        estimate = rules.prodigy_estimate(
            numerator_delta=numerator_delta,
            d_denom=d_denom,
            **{name: arguments[name] for name in _ESTIMATE_ARGUMENTS},
        )
        group.update(estimate._asdict())
        for real, buffers in buckets:
            rules.prodigy_step(
                _ops(group),
                real,
                buffers["exp_avg"],
                buffers["exp_avg_sq"],
                d=estimate.d,
                previous_d=arguments["d"],
                beta1=arguments["beta1"],
                dlr=arguments["dlr"],
                eps=group["eps"],
                decoupled_weight_decay=arguments["decoupled_weight_decay"],
            )
        group["k"] += 1

    def _statistics(self, group, arguments, active):
        """Each bucket's tensors, and the sums over all of them that estimate ``d``."""
        ops = _ops(group)
        d, d0, dlr = arguments["d"], arguments["d0"], arguments["dlr"]
        buckets = []
        numerator_delta = d_denom = 0.0
        for bucket in _buckets(active):
            real = [_as_real(p) for p in bucket]
            buffers = {
                name: [_as_real(self.state[p][name]) for p in bucket]
                for name in self._buffer_names(group)
            }
            buckets.append((real, buffers))
            grads = [_as_real(p.grad) for p in bucket]
            dots, norms = call_rule(
                rules.prodigy_statistics, ops, real, grads, buffers, arguments, {}
            )
            values = floats(dots + norms)  # one synchronization per bucket
            for value in values[: len(bucket)]:
                numerator_delta += (d / d0) * dlr * value
            for value in values[len(bucket) :]:
                d_denom += value
        return buckets, numerator_delta, d_denom
