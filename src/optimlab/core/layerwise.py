"""The update rules of Adafactor, Muon, LAMB and LARS: steps shaped per tensor, not per element.

Each of these optimizers looks at a whole tensor at once: Adafactor keeps the second moment of
a matrix as a row and a column average and scales its step by the tensor's root mean square,
Muon orthogonalizes each weight matrix's momentum with a Newton-Schulz iteration, and LAMB and
LARS scale each tensor's step by a trust ratio of norms. Those reductions and matrix products
are PyTorch calls on each tensor; everything elementwise goes through the ``ops`` backend of
:mod:`optimlab.core.ops`, so the per-tensor and multi-tensor paths give bitwise equal results,
as for every rule in :mod:`optimlab.core.rules`. None of them can take the fused path: the
compiled loop is elementwise.

As there, each rule updates one bucket of parameters (same device, dtype and step count) and
its state in place; complex parameters arrive viewed as real. Where a rule matches
``torch.optim`` (Adafactor, Muon) it follows torch's order of operations, so parameters agree
to the last bit or nearly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .ops import LoopOps, floats, whole
from .rules import bias_correction, descent_direction, rms_denominator

#: Keller Jordan's quintic Newton-Schulz coefficients (a, b, c), as torch.optim.Muon's default
MUON_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
#: how Muon scales its learning rate by the matrix's shape (see :func:`muon_adjusted_lr`)
MUON_LR_ADJUSTMENTS = (None, "original", "match_rms_adamw")


def trust_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """``n / d`` per tensor, and 1 where either is 0.

    LAMB's step of a tensor is scaled by the norm of its weights over the norm of
    its update. A tensor whose weights are zero (a bias initialized at zero) would never move
    with a ratio of 0, and one whose update is zero would divide by zero: both take the plain
    step instead, as the reference implementations do.

    >>> trust_ratios([2.0, 0.0, 3.0], [4.0, 1.0, 0.0])
    [0.5, 1.0, 1.0]
    """
    return [n / d if n > 0 and d > 0 else 1.0 for n, d in zip(numerators, denominators)]


# --- Adafactor ----------------------------------------------------------------------------


def adafactor(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    row_vars: list[Tensor],
    col_vars: list[Tensor],
    variances: list[Tensor],
    *,
    step: int,
    lr: float,
    beta2_decay: float,
    eps1: float | None,
    eps2: float,
    d: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """Adafactor (Shazeer and Stern, 2018) in torch.optim.Adafactor's form.

    The bucket is either factored (parameters of two or more dimensions: ``row_vars`` and
    ``col_vars`` given, ``variances`` empty) or not (vectors and scalars: ``variances``). With
    ``beta2_t = 1 - t**beta2_decay``, ``rho = min(lr, 1/sqrt(t))`` and
    ``alpha = max(eps2, RMS(w)) * rho``, both taken before the weight decay::

        w = w * (1 - lr * weight_decay)
        R = beta2_t * R + (1 - beta2_t) * mean(g**2, last dim)        factored
        C = beta2_t * C + (1 - beta2_t) * mean(g**2, second-last dim)
        V = R @ C / max(mean(R), eps1)                                 (rank-1 estimate)
        V = beta2_t * V + (1 - beta2_t) * g**2                         unfactored
        U = g / sqrt(max(V, eps1**2))
        w = w - alpha / max(1, RMS(U) / d) * U

    ``eps1=None`` is the dtype's machine epsilon.
    """
    if maximize:
        grads = ops.neg(grads)
    if eps1 is None:
        eps1 = torch.finfo(params[0].dtype).eps
    one_minus_beta2 = step**beta2_decay
    rho = min(lr, 1 / step**0.5)
    alphas = [
        max(eps2, norm / p.numel() ** 0.5) * rho
        for norm, p in zip(floats(ops.norm(params)), params)
    ]
    if weight_decay != 0:
        ops.mul_(params, 1 - lr * weight_decay)
    if row_vars:
        # mean(g**2) over a row (column) as a squared norm: no temporary of g's size
        # (whole: a reduction over a dimension sharded across ranks (FSDP2), completed)
        row_means = [whole(torch.norm(g, dim=-1, keepdim=True)) for g in grads]
        ops.mul_(row_means, row_means)
        ops.div_(row_means, [g.size(-1) for g in grads])
        ops.lerp_(row_vars, row_means, one_minus_beta2)
        col_means = [whole(torch.norm(g, dim=-2, keepdim=True)) for g in grads]
        ops.mul_(col_means, col_means)
        ops.div_(col_means, [g.size(-2) for g in grads])
        ops.lerp_(col_vars, col_means, one_minus_beta2)
        estimates = [r @ c for r, c in zip(row_vars, col_vars)]
        # divided by the mean of the row factor, [..., 1, 1]: broadcast, per tensor
        for v, r in zip(estimates, row_vars):
            v.div_(whole(r.mean(dim=-2, keepdim=True)).clamp_(min=eps1))
    else:
        ops.lerp_(variances, ops.mul(grads, grads), one_minus_beta2)
        estimates = [v.clone() for v in variances]  # the update must not write the state
    ops.clamp_(estimates, eps1 * eps1, math.inf)  # squared: the root restores eps1's scale
    ops.rsqrt_(estimates)
    ops.mul_(estimates, grads)
    updates = estimates
    norms = floats(ops.norm(updates))
    for p, u, alpha, norm in zip(params, updates, alphas, norms):
        clip = max(1.0, norm / (u.numel() ** 0.5 * d))
        ops.add_([p], [u], alpha=-alpha / clip)


# --- Muon ---------------------------------------------------------------------------------


def newton_schulz(
    matrix: Tensor,
    coefficients: tuple[float, float, float] = MUON_COEFFICIENTS,
    steps: int = 5,
    eps: float = 1e-7,
    dtype: torch.dtype = torch.bfloat16,
) -> Tensor:
    """Approximately orthogonalize a matrix: ``U S' V^T`` for ``matrix = U S V^T``, ``S' ~ 1``.

    Keller Jordan's quintic Newton-Schulz iteration, as torch.optim.Muon runs it: the matrix
    (transposed to be wide) is divided by its Frobenius norm, which puts every singular value
    in (0, 1], then ``steps`` times ``X = a X + (b A + c A^2) X`` with ``A = X X^T``. Each step
    maps every singular value ``s`` to ``a s + b s^3 + c s^5`` and keeps the singular vectors.
    The coefficients trade exactness for speed: the slope at zero is large (3.4445), so small
    singular values grow fast, but the iteration does not converge to 1; after 5 steps the
    singular values lie roughly in [0.7, 1.2] rather than at 1, which does not hurt training.
    ``dtype``: the precision of the iteration (torch and the reference code use bfloat16); the
    result has that dtype.

    >>> import torch
    >>> q = newton_schulz(torch.randn(4, 6, dtype=torch.float64), dtype=torch.float64)
    >>> s = torch.linalg.svdvals(q)
    >>> bool(((s > 0.6) & (s < 1.25)).all())
    True
    """
    if matrix.ndim != 2:
        raise ValueError(f"newton_schulz takes a matrix; got shape {tuple(matrix.shape)}")
    a, b, c = coefficients
    x = matrix.to(dtype, copy=True)
    tall = matrix.size(0) > matrix.size(1)
    if tall:
        x = x.T  # X X^T is then the smaller Gram matrix
    x.div_(x.norm().clamp(min=eps))  # Frobenius norm >= spectral norm: singular values <= 1
    for _ in range(steps):
        gram = x @ x.T
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, poly, x, beta=a)
    return x.T if tall else x


def muon_adjusted_lr(lr: float, adjust_lr_fn: str | None, shape: Sequence[int]) -> float:
    """The learning rate Muon applies to a matrix of ``shape`` (rows, columns).

    ``None`` or ``"original"`` (Keller Jordan): ``lr * sqrt(max(1, rows / columns))``;
    ``"match_rms_adamw"`` (Moonshot, Liu et al. 2025): ``0.2 * lr * sqrt(max(rows, columns))``,
    which gives the update the root mean square of AdamW's, so AdamW's lr can be reused.

    >>> muon_adjusted_lr(0.02, None, (64, 16))
    0.04
    """
    rows, cols = shape[:2]
    if adjust_lr_fn == "match_rms_adamw":
        return lr * (0.2 * math.sqrt(max(rows, cols)))
    return lr * math.sqrt(max(1, rows / cols))


def muon(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor],
    *,
    lr: float,
    weight_decay: float,
    momentum: float,
    nesterov: bool,
    ns_coefficients: tuple[float, float, float],
    ns_steps: int,
    eps: float,
    adjust_lr_fn: str | None,
    maximize: bool,
) -> None:
    """Muon's step for a bucket of matrices, in torch.optim.Muon's form::

        B = momentum * B + (1 - momentum) * g
        O = newton_schulz(momentum * B + (1 - momentum) * g  if nesterov  else  B)
        w = w * (1 - lr * weight_decay)
        w = w - muon_adjusted_lr(lr, shape) * O

    The iteration runs in bfloat16, as torch's and the reference implementation's do.
    """
    if maximize:
        grads = ops.neg(grads)
    ops.lerp_(momentum_buffers, grads, 1 - momentum)
    updates = ops.lerp(grads, momentum_buffers, momentum) if nesterov else momentum_buffers
    # Back in the parameter's dtype (exact from bfloat16): adding it is then what torch's
    # mixed-dtype add computes.
    orthogonal = [
        newton_schulz(u, ns_coefficients, ns_steps, eps).to(p.dtype)
        for u, p in zip(updates, params)
    ]
    ops.mul_(params, 1 - lr * weight_decay)
    by_lr: dict[float, list[int]] = {}
    for i, p in enumerate(params):
        by_lr.setdefault(muon_adjusted_lr(lr, adjust_lr_fn, p.shape), []).append(i)
    for adjusted, indices in by_lr.items():
        ops.add_([params[i] for i in indices], [orthogonal[i] for i in indices], alpha=-adjusted)


# --- LAMB ---------------------------------------------------------------------------------


def lamb(
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
    weight_norm_clamp: tuple[float, float] | None,
    maximize: bool,
) -> None:
    """LAMB (You et al., 2019, Algorithm 2): Adam's direction, scaled per tensor::

        m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g**2
        r = m_hat / (sqrt(v_hat) + eps) + weight_decay * w
        w = w - lr * phi(|w|) / |r| * r

    with norms over each tensor, ``phi(z) = min(max(z, low), high)`` for
    ``weight_norm_clamp=(low, high)`` (the identity for None), and a ratio of 1 where
    ``phi(|w|)`` or ``|r|`` is 0 (:func:`trust_ratios`).
    """
    grads = descent_direction(ops, params, grads, maximize=maximize, weight_decay=0.0)
    ops.lerp_(exp_avgs, grads, 1 - beta1)
    ops.mul_(exp_avg_sqs, beta2)
    ops.addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    denom = rms_denominator(
        ops, exp_avg_sqs, eps=eps, eps_inside_sqrt=False, correction=bias_correction(beta2, step)
    )
    updates = ops.div(exp_avgs, bias_correction(beta1, step))
    ops.div_(updates, denom)
    if weight_decay != 0:
        ops.add_(updates, params, alpha=weight_decay)
    weight_norms = floats(ops.norm(params))
    if weight_norm_clamp is not None:
        low, high = weight_norm_clamp
        weight_norms = [min(max(n, low), high) for n in weight_norms]
    ratios = trust_ratios(weight_norms, floats(ops.norm(updates)))
    ops.mul_(updates, [-lr * ratio for ratio in ratios])
    ops.add_(params, updates)


# --- LARS ---------------------------------------------------------------------------------


def lars(
    ops: LoopOps,
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor],
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    trust_coefficient: float,
    exclude_1d: bool,
    maximize: bool,
) -> None:
    """LARS (You et al., 2017, Algorithm 1): momentum SGD with a learning rate per tensor::

        local_lr = trust_coefficient * |w| / (|g| + weight_decay * |w|)
        v = momentum * v + lr * local_lr * (g + weight_decay * w)
        w = w - v

    with norms over each tensor, and ``local_lr = 1`` where ``|w|`` is 0 (a zero-initialized
    tensor would never move with 0) or the denominator is 0 (``|g| = 0`` without weight
    decay, where the step is 0 anyway), as optax's ``lars`` (``scale_by_trust_ratio``) does.
    A zero gradient with weight decay is no exception: ``local_lr = trust_coefficient /
    weight_decay``, so a dead layer's step (before momentum) is ``lr * trust_coefficient * w``,
    as the paper's formula gives. (optax divides by ``|g + weight_decay * w|``, which equals
    the paper's denominator there.) ``exclude_1d``: tensors of at most one dimension (biases,
    normalization weights) take ``local_lr = 1`` and no weight decay. ``momentum = 0`` keeps
    no buffer: ``w = w - lr * local_lr * (g + weight_decay * w)``.
    """
    grads = descent_direction(ops, params, grads, maximize=maximize, weight_decay=0.0)
    adapted = [i for i, p in enumerate(params) if not (exclude_1d and p.ndim <= 1)]
    scales = [lr] * len(params)
    directions = list(grads)
    if adapted:
        sub_params = [params[i] for i in adapted]
        sub_grads = [grads[i] for i in adapted]
        weight_norms = floats(ops.norm(sub_params))
        grad_norms = floats(ops.norm(sub_grads))
        denominators = [g + weight_decay * w for w, g in zip(weight_norms, grad_norms)]
        ratios = [
            trust_coefficient * w / d if w > 0 and d > 0 else 1.0
            for w, d in zip(weight_norms, denominators)
        ]
        if weight_decay != 0:
            sub_grads = ops.add(sub_grads, sub_params, alpha=weight_decay)
        for i, ratio, direction in zip(adapted, ratios, sub_grads):
            scales[i] = lr * ratio
            directions[i] = direction
    steps = ops.mul(directions, scales)  # new tensors: .grad itself is never modified
    if momentum != 0:
        ops.mul_(momentum_buffers, momentum)
        ops.add_(momentum_buffers, steps)
        steps = momentum_buffers
    ops.add_(params, steps, alpha=-1.0)
