"""The rules of the tuning-free optimizers: schedule-free SGD and AdamW, and Prodigy.

Written, like :mod:`optimlab.core.rules`, once against the list operations of
:mod:`optimlab.core.ops`, over the tensors of one bucket, updating them in place.

**Schedule-free** (Defazio et al., 2024, "The Road Less Scheduled", arXiv:2405.15682; the
authors' ``schedulefree`` package, version 1.3) keeps three sequences::

    y_t     = (1 - beta) * z_t + beta * x_t          where gradients are taken
    z_{t+1} = z_t - lr_t * u_t                       the base optimizer's step
    x_{t+1} = (1 - c_{t+1}) * x_t + c_{t+1} * z_{t+1}   the average to evaluate and save

with ``u_t`` the gradient at ``y_t`` (SGD) or the gradient over Adam's root mean square
(AdamW), plus ``weight_decay * y_t``; ``c_{t+1} = w_t / sum_{i<=t} w_i`` with
``w_t = t**r * max_{i<=t}(lr_i)**weight_lr_power``. Only two are stored: ``z`` in the state,
and ``y`` in the parameter (in train mode; ``x`` in eval mode), which is updated in place
without forming ``x``::

    y <- lerp(y, z, c) + lr * (beta * (1 - c) - 1) * u

Every per-step scalar (``c``, the warmup, Adam's bias correction) is computed in Python
(:func:`schedule_free_schedule`) before the elementwise rule runs, so the rules are fusable.

**Prodigy** (Mishchenko and Defazio, 2023, arXiv:2306.06101; the authors' ``prodigyopt``) is
Adam whose step size ``d * lr`` is estimated on the way, from a running sum of
``<g, x_0 - x>`` over the running average of gradients' 1-norm. The estimate needs two sums
over every tensor of a parameter group (a dot product and a 1-norm), so a step has two
elementwise passes with a reduction between them: :func:`prodigy_statistics` (averages and
the tensors' contributions to the sums), :func:`prodigy_estimate` (the new ``d``, in Python),
then :func:`prodigy_step`. Reductions are per-tensor PyTorch calls on every backend, so the
per-tensor and multi-tensor paths agree bitwise; there is no fused path.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .ops import LoopOps
from .rules import descent_direction

# --- schedule-free ---------------------------------------------------------------------------


class ScheduleFreeStep(NamedTuple):
    """The scalars of one schedule-free step, and the group's running values after it."""

    lr: float  # the learning rate of this step, warmup included
    ckp1: float  # c_{t+1}: the weight of z_{t+1} in the average x_{t+1}
    lr_max: float  # the largest learning rate so far
    weight_sum: float  # the sum of the averaging weights so far


def schedule_free_schedule(
    *,
    lr: float,
    k: int,
    warmup_steps: int,
    r: float,
    weight_lr_power: float,
    lr_max: float,
    weight_sum: float,
) -> ScheduleFreeStep:
    """The scalars of step ``k + 1`` (``k`` steps taken), as the authors' code computes them.

    A pure function of the group's running values, so a step that runs the rule on several
    buckets (or records it for the fused path) computes the same numbers each time; the
    optimizer stores the returned running values once the step is taken.

    >>> s = schedule_free_schedule(lr=0.1, k=0, warmup_steps=2, r=0.0, weight_lr_power=2.0,
    ...                            lr_max=-1.0, weight_sum=0.0)
    >>> s.lr, s.ckp1, s.lr_max, round(s.weight_sum, 6)
    (0.05, 1.0, 0.05, 0.0025)
    """
    scheduled = lr * ((k + 1) / warmup_steps if k < warmup_steps else 1.0)
    lr_max = max(scheduled, lr_max)
    weight = (float(k + 1) ** r) * (lr_max**weight_lr_power)  # floats: an int power may never end
    weight_sum = weight_sum + weight
    # All learning rates zero so far: no weight yet, and z has not moved (the authors' code
    # catches the ZeroDivisionError and uses 0 too).
    ckp1 = weight / weight_sum if weight_sum != 0 else 0.0
    return ScheduleFreeStep(scheduled, ckp1, lr_max, weight_sum)


def _schedule_free_y_and_z(
    ops: LoopOps,
    ys: list[Tensor],
    zs: list[Tensor],
    grads: list[Tensor],
    denoms: list[Tensor] | None,
    *,
    lr: float,
    ckp1: float,
    beta: float,
    weight_decay: float,
) -> None:
    """``u = grads / denoms + weight_decay * y`` (no division without ``denoms``); then
    ``y = lerp(y, z, c) + lr * (beta * (1 - c) - 1) * u`` and ``z = z - lr * u``."""
    y_coefficient = lr * (beta * (1 - ckp1) - 1)
    if denoms is None:
        if weight_decay != 0:
            grads = ops.add(grads, ys, alpha=weight_decay)  # decay is taken at y
        ops.lerp_(ys, zs, ckp1)
        ops.add_(ys, grads, alpha=y_coefficient)
        ops.add_(zs, grads, alpha=-lr)
        return
    # Adam's normalized gradient enters y and z through addcdiv, so it is never stored; y's
    # new value is built aside because the decay term and z's step both read the old y.
    new_ys = ops.lerp(ys, zs, ckp1)
    if weight_decay != 0:
        ops.add_(new_ys, ys, alpha=y_coefficient * weight_decay)
        ops.add_(zs, ys, alpha=-lr * weight_decay)
    ops.addcdiv_(new_ys, grads, denoms, y_coefficient)
    ops.addcdiv_(zs, grads, denoms, -lr)
    ops.copy_(ys, new_ys)


def schedule_free_sgd(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    zs: list[Tensor],
    *,
    lr: float,
    ckp1: float,
    momentum: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """Schedule-free SGD: the parameters hold ``y``; ``zs`` the SGD sequence ``z``.

    ``u = g + weight_decay * y``; ``y = lerp(y, z, c) + lr * (momentum * (1 - c) - 1) * u``;
    ``z = z - lr * u`` (the order of the authors' ``SGDScheduleFree``).
    """
    grads = ops.neg(grads) if maximize else grads
    _schedule_free_y_and_z(
        ops, params, zs, grads, None, lr=lr, ckp1=ckp1, beta=momentum, weight_decay=weight_decay
    )


def schedule_free_adamw(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    zs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    *,
    lr: float,
    ckp1: float,
    beta1: float,
    beta2: float,
    bias_correction2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """Schedule-free AdamW: the parameters hold ``y``; ``zs`` the Adam sequence ``z``.

    ``v = beta2 * v + (1 - beta2) * g**2``;
    ``u = g / (sqrt(v / (1 - beta2**t)) + eps) + weight_decay * y``; then ``y`` and ``z`` as
    in :func:`schedule_free_sgd` with ``beta1`` for the momentum. There is no first moment:
    the interpolation between ``z`` and ``x`` replaces it.
    """
    grads = ops.neg(grads) if maximize else grads
    ops.mul_(exp_avg_sqs, beta2)
    ops.addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    denoms = ops.div(exp_avg_sqs, bias_correction2)
    ops.sqrt_(denoms)
    ops.add_scalar_(denoms, eps)
    _schedule_free_y_and_z(
        ops, params, zs, grads, denoms, lr=lr, ckp1=ckp1, beta=beta1, weight_decay=weight_decay
    )


def schedule_free_to_x(ops: LoopOps, ys: list[Tensor], zs: list[Tensor], beta: float) -> None:
    """Turn ``y`` into ``x = (y - (1 - beta) * z) / beta`` in place: ``lerp(y, z, 1 - 1/beta)``."""
    ops.lerp_(ys, zs, 1 - 1 / beta)


def schedule_free_to_y(ops: LoopOps, xs: list[Tensor], zs: list[Tensor], beta: float) -> None:
    """Turn ``x`` into ``y = (1 - beta) * z + beta * x`` in place: ``lerp(x, z, 1 - beta)``."""
    ops.lerp_(xs, zs, 1 - beta)


# --- Prodigy ---------------------------------------------------------------------------------


class ProdigyEstimate(NamedTuple):
    """A group's step-size estimate after a step (the names of the authors' group entries)."""

    d: float
    d_max: float
    d_hat: float
    d_numerator: float
    d_denom: float


def prodigy_statistics(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    ss: list[Tensor],
    p0s: list[Tensor],
    *,
    d: float,
    d0: float,
    dlr: float,
    beta1: float,
    beta2: float,
    beta3: float,
    safeguard_warmup: bool,
    weight_decay: float,
    maximize: bool,
) -> tuple[list[Tensor], list[Tensor]]:
    """Prodigy's first pass: the averages, and each tensor's share of the estimate's sums.

    With ``g`` the gradient (negated when ``maximize``) plus ``weight_decay * x`` (coupled
    decay: pass 0 for decoupled), and ``dlr = d * lr * bias correction``::

        m = beta1 * m + d * (1 - beta1) * g
        v = beta2 * v + d**2 * (1 - beta2) * g**2
        s = beta3 * s + (d / d0) * dlr * g        (d / d0) * d * g with safeguard_warmup

    Returns ``<g, x0 - x>`` (before the step) and ``|s|_1`` (after), one 0-d tensor per
    tensor; the caller sums them over the whole group (:func:`prodigy_estimate`).
    """
    grads = descent_direction(ops, params, grads, maximize=maximize, weight_decay=weight_decay)
    # <g, x0 - x>: how far the iterates went in the direction the gradients point back to.
    distances = ops.add(p0s, params, alpha=-1.0)
    dots = [torch.dot(g.reshape(-1), x.reshape(-1)) for g, x in zip(grads, distances)]
    ops.mul_(exp_avgs, beta1)
    ops.add_(exp_avgs, grads, alpha=d * (1 - beta1))
    ops.mul_(exp_avg_sqs, beta2)
    ops.addcmul_(exp_avg_sqs, grads, grads, d * d * (1 - beta2))
    ops.mul_(ss, beta3)
    ops.add_(ss, grads, alpha=(d / d0) * (d if safeguard_warmup else dlr))
    # The same PyTorch reduction on every backend: the per-tensor and multi-tensor paths agree.
    norms = [torch.linalg.vector_norm(s, 1) for s in ss]
    return dots, norms


def prodigy_estimate(
    *,
    d: float,
    d0: float,
    d_max: float,
    d_numerator: float,
    d_coef: float,
    growth_rate: float,
    beta3: float,
    numerator_delta: float,
    d_denom: float,
) -> ProdigyEstimate:
    """The new ``d`` from the group's sums, as the authors' code computes it.

    ``numerator = beta3 * numerator + numerator_delta`` (``numerator_delta`` is the sum of
    ``(d / d0) * dlr * <g, x0 - x>``), ``d_hat = d_coef * numerator / d_denom`` with
    ``d_denom = |s|_1`` over the group; ``d`` never decreases, grows at most ``growth_rate``
    times per step, and leaves ``d0`` only upwards. ``d_denom`` must be positive.

    >>> prodigy_estimate(d=1e-6, d0=1e-6, d_max=1e-6, d_numerator=0.0, d_coef=1.0,
    ...                  growth_rate=2.0, beta3=0.5, numerator_delta=3.0, d_denom=1.0).d
    3.0
    """
    numerator = d_numerator * beta3 + numerator_delta
    d_hat = d_coef * numerator / d_denom
    if d == d0:
        d = max(d, d_hat)
    d_max = max(d_max, d_hat)
    d = min(d_max, d * growth_rate)
    return ProdigyEstimate(d, d_max, d_hat, numerator, d_denom)


def prodigy_step(
    ops: LoopOps,
    params: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    *,
    d: float,
    previous_d: float,
    beta1: float,
    dlr: float,
    eps: float,
    decoupled_weight_decay: float,
) -> None:
    """Prodigy's second pass: ``x = x - dlr * decay * x - dlr * m / (sqrt(v) + d * eps)``.

    ``d`` is the new estimate, ``previous_d`` the one the averages were taken with, and
    ``dlr`` the step's ``previous_d * lr * bias correction``, as in the authors' code. With
    ``beta1 = 0`` the authors' code keeps no average and steps with ``dlr * d * g``: the new
    ``d`` where ``m = previous_d * g`` has the old one, that is ``m`` times ``d * lr * bias
    correction``. This is their choice, not the limit of ``beta1 -> 0`` (nor the paper's
    Algorithm 4, whose step has ``d_k`` throughout): the step is ``d / previous_d`` times
    longer, which matters while ``d`` grows.
    """
    denoms = ops.sqrt(exp_avg_sqs)
    ops.add_scalar_(denoms, d * eps)
    if decoupled_weight_decay != 0:
        ops.add_(params, params, alpha=-decoupled_weight_decay * dlr)
    step_size = dlr if beta1 > 0 else dlr * (d / previous_d)
    ops.addcdiv_(params, exp_avgs, denoms, -step_size)


def prodigy_bias_correction(beta1: float, beta2: float, k: int) -> float:
    """``sqrt(1 - beta2**(k+1)) / (1 - beta1**(k+1))``: Adam's corrections folded into ``dlr``."""
    return (1 - beta2 ** (k + 1)) ** 0.5 / (1 - beta1 ** (k + 1))
