"""The rules of NAdam, RAdam, Adamax, Lion and AdEMAMix, built from the parts of :mod:`.rules`.

Like every rule of :mod:`optimlab.core.rules`, each function updates the parameters and state
of one bucket (same device, dtype and step count) in place, with elementwise operations of a
backend from :mod:`optimlab.core.ops`; the scalars that change from step to step (bias
corrections, NAdam's momentum schedule, RAdam's rectification) are computed in Python from
``step``, so the rules can also be recorded on a tape and run fused.

NAdam, RAdam and Adamax follow the operation order of ``torch.optim``'s per-tensor
implementation (the one torch runs on the CPU), so that the parameters agree to the last bit
or within a few units in the last place (see each rule for where and why they may differ).
"""

from __future__ import annotations

import math
import struct
from collections import OrderedDict

from torch import Tensor

from .ops import LoopOps
from .rules import bias_correction, descent_direction, rms_denominator


def _decay_then_direction(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    *,
    lr: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
) -> list[Tensor]:
    """Weight decay as AdamW (shrink the weights now) or as L2 (add it to the gradient)."""
    if decoupled_weight_decay and weight_decay != 0:
        ops.mul_(params, 1 - lr * weight_decay)
    coupled = 0.0 if decoupled_weight_decay else weight_decay
    return descent_direction(ops, params, grads, maximize=maximize, weight_decay=coupled)


# --- NAdam ---------------------------------------------------------------------------------


def nadam_momentum(beta1: float, momentum_decay: float, step: int) -> float:
    """Dozat's momentum schedule ``mu_t = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))``.

    It warms the momentum up from ``beta1 / 2`` towards ``beta1`` (``momentum_decay = 0.004``,
    i.e. ``0.96 ** (t / 250)``, is the paper's schedule and torch's default).

    >>> round(nadam_momentum(0.9, 0.004, 1), 6)
    0.450073
    """
    return beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))


def _to_float32(x: float) -> float:
    if x.__class__ is not float:  # a number on the device (a capturable step) rounds itself
        return x.to_float32()  # type: ignore[attr-defined]
    return struct.unpack("f", struct.pack("f", x))[0]


# Below this the product no longer matters: 1 - product and 1 - product * mu both round to
# exactly 1.0 in float64 (they do from 2**-54 on), so the products need not be kept further.
_NEGLIGIBLE_PRODUCT = 2.0**-60
_PRODUCTS: OrderedDict[tuple[float, float, bool], list[float]] = OrderedDict()
_PRODUCTS_KEPT = 8  # configurations whose products stay cached (a few groups, a few betas)


def nadam_momentum_product(
    beta1: float, momentum_decay: float, step: int, *, single_precision: bool
) -> float:
    """``mu_1 * mu_2 * ... * mu_step``, rounded as torch.optim.NAdam rounds it.

    torch keeps this product as a per-parameter state tensor of its default *scalar* dtype:
    float32 unless the default dtype is float64, even for float64 parameters. Its rounding to
    float32 at every step changes the step sizes ``lr * (1 - mu) / (1 - product)`` by up to
    about 1e-7 relatively, far more than the 1e-12 a float64 comparison with torch allows, so
    ``single_precision=True`` reproduces it: each factor and each product rounded to float32,
    as ``float32_tensor *= python_float`` does (the factor is cast to float32 first). With
    ``single_precision=False`` the product is computed in float64, as torch does when the
    default dtype is float64.

    The product is computed from ``step`` (and cached), not carried in the state, so the rule
    stays a function of ``step`` that the fused path can record. Once it falls below
    ``2**-60`` it is returned as 0.0: from there on ``1 - product`` is exactly 1.0 in float64
    either way (in float32 torch's product underflows to 0 itself, after 132 steps with the
    defaults).

    >>> nadam_momentum_product(0.9, 0.004, 1, single_precision=False) == nadam_momentum(
    ...     0.9, 0.004, 1)
    True
    >>> nadam_momentum_product(0.9, 0.004, 10_000, single_precision=True)
    0.0
    """
    key = (float(beta1), float(momentum_decay), bool(single_precision))
    products = _PRODUCTS.get(key)
    if products is None:
        products = _PRODUCTS[key] = [1.0]
        while len(_PRODUCTS) > _PRODUCTS_KEPT:
            _PRODUCTS.popitem(last=False)
    else:
        _PRODUCTS.move_to_end(key)
    while len(products) <= step and products[-1] >= _NEGLIGIBLE_PRODUCT:
        mu = nadam_momentum(beta1, momentum_decay, len(products))
        if single_precision:
            products.append(_to_float32(products[-1] * _to_float32(mu)))
        else:
            products.append(products[-1] * mu)
    if step < len(products) and products[step] >= _NEGLIGIBLE_PRODUCT:
        return products[step]
    return 0.0


def nadam(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    momentum_decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
    mu_product: float,
    single_precision_product: bool,
) -> None:
    """NAdam (Dozat, 2016): Adam whose momentum step looks ahead, as Nesterov's does.

    With ``mu_t`` from :func:`nadam_momentum` and ``P_t = mu_1 * ... * mu_t``, formed from
    ``mu_product`` (``P_{t-1}``) as torch forms it, rounded to float32 with
    ``single_precision_product`` (the product in a float32 tensor)::

        m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g**2
        d = sqrt(v / (1 - beta2**t)) + eps
        w -= lr * (1 - mu_t) / (1 - P_t) * g / d + lr * mu_{t+1} / (1 - P_t * mu_{t+1}) * m / d

    in torch's order: the denominator divides before the root, and the gradient's part is
    added before the momentum's.
    """
    grads = _decay_then_direction(
        ops,
        params,
        grads,
        lr=lr,
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay,
        maximize=maximize,
    )
    mu = nadam_momentum(beta1, momentum_decay, step)
    mu_next = nadam_momentum(beta1, momentum_decay, step + 1)
    if single_precision_product:  # float32_tensor *= mu: mu cast to float32 first
        product = _to_float32(mu_product * _to_float32(mu))
    else:
        product = mu_product * mu
    product_next = product * mu_next  # in float64, as torch does (a Python float product)
    ops.lerp_(exp_avgs, grads, 1 - beta1)
    ops.mul_(exp_avg_sqs, beta2)
    ops.addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    # torch's per-tensor NAdam divides before the square root: sqrt(v / c2) + eps. The
    # notes' rms_denominator divides the root, sqrt(v) / sqrt(c2), torch's multi-tensor
    # order, one rounding apart; this rule follows the per-tensor path torch takes on the CPU.
    denom = ops.div(exp_avg_sqs, bias_correction(beta2, step))
    ops.sqrt_(denom)
    ops.add_scalar_(denom, eps)
    ops.addcdiv_(params, grads, denom, -lr * (1.0 - mu) / (1.0 - product))
    ops.addcdiv_(params, exp_avgs, denom, (-lr * mu_next) / (1.0 - product_next))


# --- RAdam ---------------------------------------------------------------------------------


def radam_rectification(beta2: float, step: int) -> float | None:
    """RAdam's variance rectification ``r_t``, or None while the variance is intractable.

    ``rho_inf = 2 / (1 - beta2) - 1`` is the length of the simple moving average the
    exponential one approximates; ``rho_t = rho_inf - 2 t beta2**t / (1 - beta2**t)`` its
    length at step ``t``. While ``rho_t <= 5`` the rule takes an unadapted momentum step
    (None); then ``r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2)
    rho_t))``, which grows to 1 (Liu et al., 2020, Algorithm 2).

    >>> radam_rectification(0.999, 5) is None, round(radam_rectification(0.999, 6), 6)
    (True, 0.025821)
    """
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction(beta2, step)
    if not rho_t > 5.0:
        return None
    return ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5


def radam(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
) -> None:
    """RAdam (Liu et al., 2020): Adam with its adaptive step switched in as it becomes reliable.

    ``m`` and ``v`` as Adam's; with ``r_t`` from :func:`radam_rectification`::

        w -= lr * m / (1 - beta1**t)                                          while r_t is None
        w -= lr * m / (1 - beta1**t) * sqrt(1 - beta2**t) / (sqrt(v) + eps) * r_t    then

    (epsilon is added to ``sqrt(v)``, not to the bias-corrected root, as in torch). The
    tensor operations are torch's per-tensor ones, in its order, down to its
    ``c / x == x.reciprocal() * c`` (``Tensor.__rtruediv__``): gathering the scalars into one
    Adam-like ``addcdiv`` instead drifts from torch by a few float32 units in the last place
    per step, more than 1e-6 relatively after a hundred steps.
    """
    grads = _decay_then_direction(
        ops,
        params,
        grads,
        lr=lr,
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay,
        maximize=maximize,
    )
    ops.lerp_(exp_avgs, grads, 1 - beta1)
    ops.mul_(exp_avg_sqs, beta2)
    ops.addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    rectification = radam_rectification(beta2, step)
    update = ops.div(exp_avgs, bias_correction(beta1, step))
    ops.mul_(update, lr)
    if rectification is not None:
        adaptive = rms_denominator(ops, exp_avg_sqs, eps=eps, eps_inside_sqrt=False)
        ops.reciprocal_(adaptive)
        ops.mul_(adaptive, bias_correction(beta2, step) ** 0.5)
        ops.mul_(update, adaptive)
        ops.mul_(update, rectification)
    ops.add_(params, update, alpha=-1.0)


# --- Adamax --------------------------------------------------------------------------------


def adamax(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_infs: list[Tensor],
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """Adamax (Kingma and Ba, 2015, Algorithm 2): Adam with the infinity norm.

    ``m = beta1 * m + (1 - beta1) * g``; ``u = max(beta2 * u, |g| + eps)``;
    ``w -= lr / (1 - beta1**t) * m / u``. The running maximum needs no bias correction.
    Epsilon goes inside the maximum, as in torch (the paper has none; it keeps ``u`` from
    being 0 where every gradient so far was).
    """
    grads = descent_direction(ops, params, grads, maximize=maximize, weight_decay=weight_decay)
    ops.lerp_(exp_avgs, grads, 1 - beta1)
    ops.mul_(exp_infs, beta2)
    magnitudes = ops.abs(grads)
    ops.add_scalar_(magnitudes, eps)
    ops.maximum_(exp_infs, magnitudes)
    ops.addcdiv_(params, exp_avgs, exp_infs, -(lr / bias_correction(beta1, step)))


# --- Lion ----------------------------------------------------------------------------------


def lion(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """Lion (Chen et al., 2023, Algorithm 2): the sign of an interpolated momentum.

    ``c = beta1 * m + (1 - beta1) * g``; ``w = w * (1 - lr * weight_decay) - lr * sign(c)``;
    ``m = beta2 * m + (1 - beta2) * g``. Every coordinate moves by exactly ``lr`` (plus the
    decay); weight decay is decoupled by construction. The order (decay first, then the
    signed step, then the momentum) is the authors' PyTorch code's (google/automl,
    ``lion/lion_pytorch.py``).
    """
    if weight_decay != 0:
        ops.mul_(params, 1 - lr * weight_decay)
    grads = descent_direction(ops, params, grads, maximize=maximize, weight_decay=0.0)
    update = ops.lerp(exp_avgs, grads, 1 - beta1)
    ops.sign_(update)
    ops.add_(params, update, alpha=-lr)
    ops.lerp_(exp_avgs, grads, 1 - beta2)


# --- AdEMAMix ------------------------------------------------------------------------------


def ademamix_alpha(alpha: float, alpha_warmup: int | None, step: int) -> float:
    """The weight of the slow average at ``step``: ``min(t * alpha / T_alpha, alpha)``, or
    ``alpha`` throughout without a warm-up (Pagliardini et al., 2024, Algorithm 1).

    >>> ademamix_alpha(8.0, 100, 25), ademamix_alpha(8.0, 100, 500), ademamix_alpha(8.0, None, 1)
    (2.0, 8.0, 8.0)
    """
    if alpha_warmup is None:
        return alpha
    return min(step * alpha / alpha_warmup, alpha)


def ademamix_beta3(beta1: float, beta3: float, beta3_warmup: int | None, step: int) -> float:
    """The slow average's coefficient at ``step``, warmed up from ``beta1`` to ``beta3``:

        beta3(t) = min(exp(ln(beta1) ln(beta3) / ((1 - t/T) ln(beta3) + (t/T) ln(beta1))), beta3)

    (the paper's scheduler, which moves the average's half-life linearly; ``beta3``
    throughout without a warm-up). Computed as ``1 / ln(beta3(t)) = (1 - t/T) / ln(beta1) +
    (t/T) / ln(beta3)``, the same number, which also holds where a coefficient is 0
    (``1 / ln(0) = 0``).

    >>> ademamix_beta3(0.9, 0.9999, 100, 0), ademamix_beta3(0.9, 0.9999, 100, 100)
    (0.9, 0.9999)
    """
    if beta3_warmup is None:
        return beta3
    fraction = step / beta3_warmup

    def inverse_log(beta: float) -> float:
        return 0.0 if beta == 0 else 1.0 / math.log(beta)

    inverse = (1 - fraction) * inverse_log(beta1) + fraction * inverse_log(beta3)
    return min(0.0 if inverse == 0 else math.exp(1.0 / inverse), beta3)


def ademamix(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_slows: list[Tensor],
    exp_avg_sqs: list[Tensor],
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    beta3: float,
    alpha: float,
    beta3_warmup: int | None,
    alpha_warmup: int | None,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """AdEMAMix (Pagliardini, Ablin and Grangier, 2024, Algorithm 1): Adam plus a slow average.

    ``m1 = beta1 * m1 + (1 - beta1) * g`` (Adam's), ``m2 = beta3_t * m2 + (1 - beta3_t) * g``
    (a slow one, half-life thousands of steps, not bias-corrected), ``v = beta2 * v + (1 -
    beta2) * g^2``, then::

        w -= lr * ((m1 / (1 - beta1**t) + alpha_t * m2) / (sqrt(v / (1 - beta2**t)) + eps)
                   + weight_decay * w)

    with ``alpha_t`` and ``beta3_t`` from :func:`ademamix_alpha` and :func:`ademamix_beta3`.
    The order of operations is the authors' PyTorch code's (apple/ml-ademamix).
    """
    grads = descent_direction(ops, params, grads, maximize=maximize, weight_decay=0.0)
    slow = ademamix_beta3(beta1, beta3, beta3_warmup, step)
    ops.lerp_(exp_avgs, grads, 1 - beta1)
    ops.lerp_(exp_avg_slows, grads, 1 - slow)
    ops.mul_(exp_avg_sqs, beta2)
    ops.addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    denom = rms_denominator(
        ops, exp_avg_sqs, eps=eps, eps_inside_sqrt=False, correction=bias_correction(beta2, step)
    )
    update = ops.div(exp_avgs, bias_correction(beta1, step))
    ops.add_(update, exp_avg_slows, alpha=ademamix_alpha(alpha, alpha_warmup, step))
    ops.div_(update, denom)
    if weight_decay != 0:
        ops.add_(update, params, alpha=weight_decay)
    ops.add_(params, update, alpha=-lr)
