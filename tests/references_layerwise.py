"""Independent float64 NumPy transcriptions of LAMB, LARS, AdamW and Muon's Newton-Schulz step.

Each function is written from the published algorithm (the paper's algorithm box, or the
authors' reference code), not from optimlab's code. The optimizers take one parameter vector,
as ``references.py``'s: ``f(w0, grad, lrs)`` returns the points at which the gradient was
evaluated, one per step, then the final point. The ``*_tensors`` forms take a list of arrays
(one per layer) and a gradient function of that list, and return the final list: the trust
ratios of LAMB and LARS are per layer, which a single vector cannot show.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Grad = Callable[[np.ndarray], np.ndarray]
GradList = Callable[[list[np.ndarray]], list[np.ndarray]]


def _single(step_tensors, w0, grad: Grad, lrs, **kwargs):
    """Run a per-layer rule on one vector, recording the points where the gradient is taken."""
    points = []

    def recording_grad(ws):
        points.append(ws[0].copy())
        return [grad(ws[0])]

    (w,) = step_tensors([np.array(w0, dtype=np.float64)], recording_grad, lrs, **kwargs)
    return points + [w]


def lamb_tensors(
    ws0: Sequence[np.ndarray],
    grad: GradList,
    lrs: Sequence[float],
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-6,
    weight_decay: float = 0.0,
    phi_bounds: tuple[float, float] | None = None,
):
    """LAMB: You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76
    minutes" (ICLR 2020, arXiv:1904.00962), Algorithm 2, for each layer i:

        m_t = beta1 m_{t-1} + (1 - beta1) g_t,    v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
        m_t = m_t / (1 - beta1^t),                v_t = v_t / (1 - beta2^t)
        r_t = m_t / (sqrt(v_t) + eps)
        x_{t+1}^(i) = x_t^(i) - eta_t phi(||x_t^(i)||) / ||r_t^(i) + lambda x_t^(i)||
                                   * (r_t^(i) + lambda x_t^(i))

    phi is the identity, or min(max(z, gamma_l), gamma_u) with bounds (section 3 of the
    paper). Where phi(||x||) or the update's norm is 0 the ratio is 1: the paper leaves it
    open; NVIDIA's and pytorch-lamb's implementations use 1.
    """
    ws = [np.array(w, dtype=np.float64) for w in ws0]
    ms = [np.zeros_like(w) for w in ws]
    vs = [np.zeros_like(w) for w in ws]
    for t, eta in enumerate(lrs, start=1):
        gs = grad([w.copy() for w in ws])
        new = []
        for i, (w, g) in enumerate(zip(ws, gs)):
            ms[i] = beta1 * ms[i] + (1 - beta1) * g
            vs[i] = beta2 * vs[i] + (1 - beta2) * g**2
            m_hat = ms[i] / (1 - beta1**t)
            v_hat = vs[i] / (1 - beta2**t)
            update = m_hat / (np.sqrt(v_hat) + epsilon) + weight_decay * w
            phi = np.linalg.norm(w)
            if phi_bounds is not None:
                phi = min(max(phi, phi_bounds[0]), phi_bounds[1])
            u_norm = np.linalg.norm(update)
            ratio = phi / u_norm if phi > 0 and u_norm > 0 else 1.0
            new.append(w - eta * ratio * update)
        ws = new
    return ws


def lamb(w0, grad: Grad, lrs, **kwargs):
    """:func:`lamb_tensors` for one vector (one layer)."""
    return _single(lamb_tensors, w0, grad, lrs, **kwargs)


def lars_tensors(
    ws0: Sequence[np.ndarray],
    grad: GradList,
    lrs: Sequence[float],
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    eta: float = 1e-3,
    exclude_1d: bool = False,
):
    """LARS: You, Gitman and Ginsburg, "Large Batch Training of Convolutional Networks"
    (arXiv:1708.03888), Algorithm 1 with the trust coefficient eta of eq. (6), for each layer l:

        lambda^l = eta ||w^l|| / (||g^l|| + beta ||w^l||)          (local LR)
        v^l = m v^l + gamma_t lambda^l (g^l + beta w^l)             (momentum)
        w^l = w^l - v^l

    where beta is the weight decay and gamma_t the global rate of step t. The paper does not
    treat zero norms: with ||w|| = 0 its lambda is 0 (the layer would never move), with a zero
    denominator it is undefined; in both lambda = 1, as in optax's ``lars`` (its
    ``scale_by_trust_ratio`` after ``add_decayed_weights``). A zero gradient with beta > 0 is
    neither: the formula gives lambda = eta / beta.
    ``exclude_1d``: layers of at most one dimension (biases, batch-norm parameters) take
    lambda = 1 and no weight decay, as in the SimCLR / Barlow Twins LARS.
    """
    ws = [np.array(w, dtype=np.float64) for w in ws0]
    vs = [np.zeros_like(w) for w in ws]
    for gamma in lrs:
        gs = grad([w.copy() for w in ws])
        new = []
        for i, (w, g) in enumerate(zip(ws, gs)):
            if exclude_1d and w.ndim <= 1:
                local, beta = 1.0, 0.0
            else:
                w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
                beta = weight_decay
                denominator = g_norm + beta * w_norm
                local = eta * w_norm / denominator if w_norm > 0 and denominator > 0 else 1.0
            vs[i] = momentum * vs[i] + gamma * local * (g + beta * w)
            new.append(w - vs[i])
        ws = new
    return ws


def lars(w0, grad: Grad, lrs, **kwargs):
    """:func:`lars_tensors` for one vector (one layer)."""
    return _single(lars_tensors, w0, grad, lrs, **kwargs)


def adamw(w0, grad: Grad, lrs, beta1, beta2, epsilon, weight_decay):
    """AdamW: Loshchilov and Hutter, "Decoupled Weight Decay Regularization" (ICLR 2019),
    Algorithm 2, with the schedule multiplier folded into the learning rate as in Keller
    Jordan's ``MuonWithAuxAdam`` (KellerJordan/Muon, muon.py, ``adam_update``):

        w = w * (1 - lr * weight_decay)
        m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
        w = w - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
    """
    w = np.array(w0, dtype=np.float64)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    points = []
    for t, lr in enumerate(lrs, start=1):
        points.append(w.copy())
        g = grad(w)
        w = w * (1 - lr * weight_decay)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        w = w - lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + epsilon)
    return points + [w]


def newton_schulz(g: np.ndarray, a: float, b: float, c: float, steps: int, eps: float = 1e-7):
    """Muon's orthogonalization, from Keller Jordan's reference ``zeropower_via_newtonschulz5``
    (KellerJordan/Muon, muon.py), in float64 instead of bfloat16:

        X = G / (||G||_F + eps), transposed if G is tall
        repeat: A = X X^T;  B = b A + c A A;  X = a X + B X

    (torch.optim.Muon divides by max(||G||_F, eps) instead: the two agree for eps = 0.)
    """
    x = np.array(g, dtype=np.float64)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    x = x / (np.linalg.norm(x) + eps)
    for _ in range(steps):
        a_mat = x @ x.T
        b_mat = b * a_mat + c * a_mat @ a_mat
        x = a * x + b_mat @ x
    return x.T if tall else x


def quintic(s: np.ndarray, a: float, b: float, c: float, steps: int) -> np.ndarray:
    """What the iteration does to each singular value s in (0, 1]: s -> a s + b s^3 + c s^5."""
    s = np.array(s, dtype=np.float64)
    for _ in range(steps):
        s = a * s + b * s**3 + c * s**5
    return s
