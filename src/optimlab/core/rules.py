"""The update rules: every optimizer's math, once, as functions over lists of tensors.

Each rule updates parameters and state buffers in place and returns nothing. The lists hold the
tensors of one bucket: same device, same dtype, same step count (so bias corrections are scalars).
Complex tensors arrive already viewed as real (``torch.view_as_real``), so every rule is plain
real elementwise arithmetic. ``ops`` is a backend from :mod:`optimlab.core.ops`; the same rule runs
on either backend with bitwise equal results.

The rules are built from a few shared parts, as the notes build Adam out of momentum and RMSprop:

* :func:`descent_direction`: the gradient, negated to maximize, plus an L2 penalty;
* an exponentially weighted average, ``v = beta * v + (1 - beta) * x`` (``lerp``);
* the same average of squares, ``s = beta * s + (1 - beta) * x * x``;
* :func:`rms_denominator`: ``sqrt(s) + eps`` or the notes' ``sqrt(s + eps)``, bias-corrected or not;
* :func:`bias_correction`: ``1 - beta ** t``.

Where a rule coincides with ``torch.optim``, its operations follow torch's order exactly, so the
parameters agree to the last bit or nearly (the parity tests use 1e-12 in float64).
"""

from __future__ import annotations

from torch import Tensor

from .ops import LoopOps


def bias_correction(beta: float, step: int) -> float:
    """``1 - beta**step``: the total weight an average started at zero has after ``step`` updates.

    Dividing the average by it removes the pull towards the zero start (seed 000, eq. 10).

    >>> round(bias_correction(0.8, 2), 4)
    0.36
    """
    return 1.0 - beta**step


def descent_direction(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    *,
    maximize: bool,
    weight_decay: float,
) -> list[Tensor]:
    """The gradient to descend: ``(-grad if maximize else grad) + weight_decay * param``.

    The L2 penalty ``weight_decay/2 * |w|^2`` enters through its gradient. New tensors are made
    only when something changes, and ``.grad`` itself is never modified.
    """
    if maximize:
        grads = ops.neg(grads)
    if weight_decay != 0:
        grads = ops.add(grads, params, alpha=weight_decay)
    return grads


def rms_denominator(
    ops: LoopOps,
    square_avgs: list[Tensor],
    *,
    eps: float,
    eps_inside_sqrt: bool,
    correction: float = 1.0,
) -> list[Tensor]:
    """A new list holding ``sqrt(s / correction) + eps``, or ``sqrt(s / correction + eps)``.

    The notes disagree on where epsilon goes: seed 000 (listing 2) and seed 004 put it inside the
    root, ``alpha / sqrt(s + eps)`` (Keras does the same); seed 001's Adam and seed 002 put it
    outside, ``alpha / (sqrt(s) + eps)`` (torch.optim does the same). ``correction`` is the
    bias correction ``1 - beta2**t`` of the average (1 for none).
    """
    if eps_inside_sqrt:
        denom = ops.div(square_avgs, correction)
        ops.add_scalar_(denom, eps)
        ops.sqrt_(denom)
    else:
        denom = ops.sqrt(square_avgs)
        # (a correction a capturable step computes on the device is not a number: it divides)
        if not isinstance(correction, (int, float)) or correction != 1.0:
            ops.div_(denom, correction**0.5)
        ops.add_scalar_(denom, eps)
    return denom


def sgd(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor],
    *,
    step: int,
    lr: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    weight_decay: float,
    maximize: bool,
) -> None:
    """Stochastic gradient descent with torch.optim.SGD's momentum.

    ``b = momentum * b + (1 - dampening) * g`` (``b = g`` on the first step), then
    ``w -= lr * b``, or ``w -= lr * (g + momentum * b)`` with Nesterov.
    """
    grads = descent_direction(ops, params, grads, maximize=maximize, weight_decay=weight_decay)
    if momentum != 0:
        if step == 1:
            ops.copy_(momentum_buffers, grads)
        else:
            ops.mul_(momentum_buffers, momentum)
            ops.add_(momentum_buffers, grads, alpha=1 - dampening)
        if nesterov:
            grads = ops.add(grads, momentum_buffers, alpha=momentum)
        else:
            grads = momentum_buffers
    ops.add_(params, grads, alpha=-lr)


def sgd_sparse(
    param: Tensor,
    grad: Tensor,
    momentum_buffer: Tensor | None,
    *,
    lr: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    maximize: bool,
) -> Tensor | None:
    """:func:`sgd` for one parameter whose gradient ``grad`` is sparse (COO), as torch.optim.SGD.

    With ``g = -grad if maximize else grad``::

        b = g                                   when momentum_buffer is None (the first step)
        b = momentum * b + (1 - dampening) * g  afterwards
        w = w - lr * b                          (w - lr * (g + momentum * b) with nesterov)

    The operations are torch's, on sparse tensors (the gradient is not coalesced first): the
    buffer made on the first step is sparse and gathers every later gradient's entries.
    ``param`` and the buffer are changed in place; returns the buffer (a new one on the first
    step), or None without momentum. There is no weight decay: a sparse gradient cannot hold
    ``weight_decay * w`` (the optimizer refuses it, as torch does).

    >>> import torch
    >>> w = torch.ones(3)
    >>> g = torch.sparse_coo_tensor([[2, 0, 2]], [1.0, 2.0, 3.0], (3,))
    >>> b = sgd_sparse(w, g, None, lr=0.5, momentum=0.9, dampening=0.0, nesterov=False,
    ...                maximize=False)
    >>> w.tolist(), b.layout
    ([0.0, 1.0, -1.0], torch.sparse_coo)
    """
    if maximize:
        grad = -grad
    if momentum != 0:
        if momentum_buffer is None:
            momentum_buffer = grad.detach().clone()
        else:
            momentum_buffer.mul_(momentum).add_(grad, alpha=1 - dampening)
        grad = grad.add(momentum_buffer, alpha=momentum) if nesterov else momentum_buffer
    param.add_(grad, alpha=-lr)
    return momentum_buffer


def ema_momentum(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    velocities: list[Tensor],
    *,
    step: int,
    lr: float,
    beta: float,
    nesterov: bool,
    bias_correction_on: bool,
    weight_decay: float,
    maximize: bool,
) -> None:
    """Momentum as an average of gradients (seed 000 listing 1, seeds 001 and 002).

    ``v = beta * v + (1 - beta) * g`` from ``v = 0``, then ``w -= lr * v`` (divided by
    ``1 - beta**t`` with bias correction). With Nesterov the step looks ahead:
    ``w -= lr * ((1 - beta) * g + beta * v)``, which is the heavy-ball Nesterov rule with
    learning rate ``lr * (1 - beta)`` (see :func:`heavy_ball_momentum`).
    """
    grads = descent_direction(ops, params, grads, maximize=maximize, weight_decay=weight_decay)
    ops.lerp_(velocities, grads, 1 - beta)
    direction = ops.lerp(grads, velocities, beta) if nesterov else velocities
    scale = lr / bias_correction(beta, step) if bias_correction_on else lr
    ops.add_(params, direction, alpha=-scale)


def heavy_ball_momentum(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    last_steps: list[Tensor],
    *,
    lr: float,
    beta: float,
    nesterov: bool,
    weight_decay: float,
    maximize: bool,
) -> None:
    """Polyak's heavy ball (seed 004): ``w_t = w_{t-1} - lr * g + beta * (w_{t-1} - w_{t-2})``.

    ``last_steps`` holds ``d = w_{t-1} - w_{t-2}`` (zero at the start); the rule is
    ``d = beta * d - lr * g; w += d``.

    Nesterov (seed 004) takes the gradient at the look-ahead point ``w_{t-1} + beta * d``. Here
    the parameter *is* that look-ahead point ``y = w + beta * d`` (Sutskever et al., 2013), so the
    gradient the user computes at the parameter is the one the rule needs:
    ``d = beta * d - lr * g(y); y += beta * d - lr * g(y)``. The sequence of points where
    gradients are taken is the same as the notes' formula (a test checks it).
    """
    grads = descent_direction(ops, params, grads, maximize=maximize, weight_decay=weight_decay)
    ops.mul_(last_steps, beta)
    ops.add_(last_steps, grads, alpha=-lr)
    if nesterov:
        ops.add_(params, grads, alpha=-lr)
        ops.add_(params, last_steps, alpha=beta)
    else:
        ops.add_(params, last_steps)


def rmsprop(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor],
    momentum_buffers: list[Tensor],
    *,
    lr: float,
    alpha: float,
    eps: float,
    eps_inside_sqrt: bool,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
) -> None:
    """RMSprop: ``s = alpha * s + (1 - alpha) * g^2; w -= lr * g / (sqrt(s) + eps)``.

    ``eps_inside_sqrt`` gives the notes' and Keras' ``lr * g / sqrt(s + eps)``. ``centered``
    subtracts the square of the averaged gradient from ``s`` (an estimate of the variance);
    ``momentum`` keeps ``b = momentum * b + g / denom`` and steps ``w -= lr * b`` (torch's form).
    """
    grads = descent_direction(ops, params, grads, maximize=maximize, weight_decay=weight_decay)
    ops.mul_(square_avgs, alpha)
    ops.addcmul_(square_avgs, grads, grads, 1 - alpha)
    if centered:
        ops.lerp_(grad_avgs, grads, 1 - alpha)
        variance = ops.addcmul(square_avgs, grad_avgs, grad_avgs, -1)
        if eps_inside_sqrt:
            ops.add_scalar_(variance, eps)
            ops.sqrt_(variance)
        else:
            ops.sqrt_(variance)
            ops.add_scalar_(variance, eps)
        denom = variance
    else:
        denom = rms_denominator(ops, square_avgs, eps=eps, eps_inside_sqrt=eps_inside_sqrt)
    if momentum > 0:
        ops.mul_(momentum_buffers, momentum)
        ops.addcdiv_(momentum_buffers, grads, denom, 1.0)
        ops.add_(params, momentum_buffers, alpha=-lr)
    else:
        ops.addcdiv_(params, grads, denom, -lr)


def adam(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    eps_inside_sqrt: bool,
    weight_decay: float,
    decoupled_weight_decay: bool,
    amsgrad: bool,
    bias_correction_on: bool,
    maximize: bool,
) -> None:
    """Adam: momentum's average of gradients over RMSprop's root mean square.

    ``m = beta1 * m + (1 - beta1) * g``, ``v = beta2 * v + (1 - beta2) * g^2``, then
    ``w -= lr * m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - beta1**t)`` and
    ``v_hat = v / (1 - beta2**t)``. Without bias correction ``m_hat = m, v_hat = v`` (seed 000
    listing 3); ``eps_inside_sqrt`` gives ``sqrt(v_hat + eps)`` (seeds 000 and 004).
    ``decoupled_weight_decay`` shrinks the weights first, ``w *= 1 - lr * weight_decay`` (AdamW),
    instead of adding ``weight_decay * w`` to the gradient. ``amsgrad`` divides by the running
    maximum of ``v``.
    """
    if decoupled_weight_decay and weight_decay != 0:
        ops.mul_(params, 1 - lr * weight_decay)
    coupled_decay = 0.0 if decoupled_weight_decay else weight_decay
    grads = descent_direction(ops, params, grads, maximize=maximize, weight_decay=coupled_decay)
    ops.lerp_(exp_avgs, grads, 1 - beta1)
    ops.mul_(exp_avg_sqs, beta2)
    ops.addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    if amsgrad:
        ops.maximum_(max_exp_avg_sqs, exp_avg_sqs)
        exp_avg_sqs = max_exp_avg_sqs
    if bias_correction_on:
        correction1 = bias_correction(beta1, step)
        correction2 = bias_correction(beta2, step)
    else:
        correction1 = correction2 = 1.0
    denom = rms_denominator(
        ops, exp_avg_sqs, eps=eps, eps_inside_sqrt=eps_inside_sqrt, correction=correction2
    )
    ops.addcdiv_(params, exp_avgs, denom, -(lr / correction1))
