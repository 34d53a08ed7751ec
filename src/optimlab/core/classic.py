"""The update rules of Adagrad, Adadelta, Rprop and ASGD, built from the core's parts.

Like :mod:`optimlab.core.rules`, every rule updates parameters and state in place over lists of
tensors (one bucket: same device, dtype and step count), against a backend ``ops`` of
:mod:`optimlab.core.ops`, and is elementwise, so the fused path can record it. Each follows the
operation order of ``torch.optim``'s single-tensor function (the path torch takes on the CPU by
default), so the results agree with torch's to the last bit or nearly.

The scalars a rule needs at a step (Adagrad's decayed learning rate, ASGD's ``eta`` and ``mu``)
are plain Python numbers computed with the expressions torch evaluates; see
:func:`adagrad_learning_rate`, :func:`asgd_eta` and :func:`asgd_mu`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .ops import LoopOps
from .rules import descent_direction, rms_denominator


def adagrad_learning_rate(lr: float, lr_decay: float, step: int) -> float:
    """Adagrad's step size at ``step`` (1-based): ``lr / (1 + (step - 1) * lr_decay)``.

    >>> adagrad_learning_rate(0.1, 0.5, 3)
    0.05
    """
    return lr / (1 + (step - 1) * lr_decay)


def adagrad(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    sums: list[Tensor],
    *,
    step: int,
    lr: float,
    lr_decay: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """Adagrad (Duchi, Hazan and Singer, 2011), as torch.optim.Adagrad.

    ``s = s + g^2`` (the sum of all squared gradients so far, from ``initial_accumulator_value``),
    then ``w -= lr_t * g / (sqrt(s) + eps)`` with ``lr_t = lr / (1 + (t - 1) * lr_decay)``.
    """
    grads = descent_direction(ops, params, grads, maximize=maximize, weight_decay=weight_decay)
    ops.addcmul_(sums, grads, grads, 1.0)
    denom = rms_denominator(ops, sums, eps=eps, eps_inside_sqrt=False)
    ops.addcdiv_(params, grads, denom, -adagrad_learning_rate(lr, lr_decay, step))


def _sparse_like(grad: Tensor, values: Tensor) -> Tensor:
    """A sparse tensor with ``grad``'s indices and size holding ``values`` (torch's
    ``_make_sparse``; the indices are already valid, so they are not checked again)."""
    return torch.sparse_coo_tensor(grad._indices(), values, grad.size(), check_invariants=False)


def adagrad_sparse(
    param: Tensor,
    grad: Tensor,
    state_sum: Tensor,
    *,
    step: int,
    lr: float,
    lr_decay: float,
    eps: float,
    maximize: bool,
) -> None:
    """:func:`adagrad` for one parameter whose gradient is sparse (COO), as torch.optim.Adagrad.

    The gradient (negated when ``maximize``) is coalesced first, its repeated indices summed
    (the update is not linear in it); then, at the rows ``i`` it holds, with values ``g``::

        s[i] = s[i] + g**2
        w[i] = w[i] - lr_t * g / (sqrt(s[i]) + eps)     lr_t = lr / (1 + (t - 1) * lr_decay)

    and nothing else changes. The operations are torch's: ``param`` and ``state_sum`` are
    changed in place with sparse additions. There is no weight decay: a sparse gradient cannot
    hold ``weight_decay * w`` (the optimizer refuses it, as torch does).

    >>> import torch
    >>> w, s = torch.zeros(3), torch.zeros(3)
    >>> g = torch.sparse_coo_tensor([[2, 0, 2]], [1.0, 4.0, 2.0], (3,))
    >>> adagrad_sparse(w, g, s, step=1, lr=0.5, lr_decay=0.0, eps=0.0, maximize=False)
    >>> w.tolist(), s.tolist()
    ([-0.5, 0.0, -0.5], [16.0, 0.0, 9.0])
    """
    if maximize:
        grad = -grad
    grad = grad.coalesce()
    values = grad._values()
    state_sum.add_(_sparse_like(grad, values.pow(2)))
    std = state_sum.sparse_mask(grad)
    std_values = std._values().sqrt_().add_(eps)
    clr = adagrad_learning_rate(lr, lr_decay, step)
    param.add_(_sparse_like(grad, values / std_values), alpha=-clr)


def adadelta(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    acc_deltas: list[Tensor],
    *,
    lr: float,
    rho: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """Adadelta (Zeiler, 2012, Algorithm 1), as torch.optim.Adadelta.

    ``s = rho * s + (1 - rho) * g^2``; the step is ``d = sqrt(u + eps) / sqrt(s + eps) * g``,
    the root mean square of past steps over that of the gradients; then
    ``u = rho * u + (1 - rho) * d^2`` and ``w -= lr * d`` (Zeiler's rule is ``lr = 1``).
    """
    grads = descent_direction(ops, params, grads, maximize=maximize, weight_decay=weight_decay)
    ops.mul_(square_avgs, rho)
    ops.addcmul_(square_avgs, grads, grads, 1 - rho)
    # RMS[g] and RMS[d], with epsilon inside the root as in the paper and torch: the
    # eps_inside_sqrt form of rms_denominator, without its division by a correction of 1.
    std = ops.add_scalar(square_avgs, eps)
    ops.sqrt_(std)
    delta = ops.add_scalar(acc_deltas, eps)
    ops.sqrt_(delta)
    ops.div_(delta, std)
    ops.mul_(delta, grads)
    ops.mul_(acc_deltas, rho)
    ops.addcmul_(acc_deltas, delta, delta, 1 - rho)
    ops.add_(params, delta, alpha=-lr)


def rprop(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    prevs: list[Tensor],
    step_sizes: list[Tensor],
    *,
    etaminus: float,
    etaplus: float,
    step_size_min: float,
    step_size_max: float,
    maximize: bool,
) -> None:
    """Rprop (Riedmiller and Braun, 1993; the iRprop- variant), as torch.optim.Rprop.

    Each weight has its own step size. Where the gradient kept its sign since the last step
    the step size grows by ``etaplus``, where it flipped it shrinks by ``etaminus`` and the
    step is skipped (the gradient is taken as 0, so the next step does not shrink it again),
    where either is 0 it stays; it is kept within ``[step_size_min, step_size_max]``. Then
    ``w -= step_size * sign(g)``. Only the signs of gradients matter.
    """
    grads = descent_direction(ops, params, grads, maximize=maximize, weight_decay=0.0)
    # torch compares sign(g * prev) with 0; the product's own sign is the same comparison.
    agreement = ops.mul(grads, prevs)
    ops.mul_(step_sizes, ops.sign_select(agreement, etaplus, etaminus, 1.0))
    ops.clamp_(step_sizes, step_size_min, step_size_max)
    # Where the sign flipped the gradient counts as 0 (torch: grad[sign == etaminus] = 0).
    grads = ops.mul(grads, ops.sign_select(agreement, 1.0, 0.0, 1.0))
    ops.addcmul_(params, ops.sign(grads), step_sizes, -1.0)
    ops.copy_(prevs, grads)


def asgd_eta(lr: float, lambd: float, alpha: float, step: int) -> float:
    """ASGD's step size after ``step`` steps taken with learning rate ``lr``.

    ``lr / (1 + lambd * lr * step) ** alpha`` (Bottou, 2012, with ``alpha = 3/4``); it is
    the step size of step ``step + 1``. torch.optim.ASGD computes it after each step from the
    learning rate of that step, so a schedule's change reaches the step after the next one.

    >>> asgd_eta(0.1, 1.0, 1.0, 10)
    0.05
    """
    try:
        return lr / ((1 + lambd * lr * step) ** alpha)
    except OverflowError:  # the power is beyond float64: the step size is its limit, 0
        return 0.0


def asgd_mu(t0: float, step: int) -> float:
    """ASGD's averaging weight for step ``step + 1``: ``1 / max(1, step - t0)``.

    1 (the average restarts at the parameter) until ``t0`` steps have passed, then
    ``1/2, 1/3, ...``: the plain mean of the iterates from there on.

    >>> [asgd_mu(2, step) for step in range(1, 6)]
    [1.0, 1.0, 1.0, 0.5, 0.3333333333333333]
    """
    return 1 / max(1, step - t0)


def asgd(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    axs: list[Tensor],
    *,
    eta: float,
    mu: float,
    lambd: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """Averaged SGD (Polyak and Juditsky, 1992; Bottou, 2012), as torch.optim.ASGD.

    ``w = w * (1 - lambd * eta) - eta * g``, then the average ``ax = ax + mu * (w - ax)``
    (``ax = w`` while ``mu`` is 1). ``eta`` and ``mu`` are this step's scalars
    (:func:`asgd_eta`, :func:`asgd_mu`); the average never feeds back into the step.
    """
    grads = descent_direction(ops, params, grads, maximize=maximize, weight_decay=weight_decay)
    ops.mul_(params, 1 - lambd * eta)
    ops.add_(params, grads, alpha=-eta)
    if mu != 1:
        difference = ops.add(params, axs, alpha=-1.0)  # torch: param.sub(ax), the same kernel
        ops.mul_(difference, mu)
        ops.add_(axs, difference)
    else:
        ops.copy_(axs, params)
