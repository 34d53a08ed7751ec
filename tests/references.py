"""Independent float64 NumPy transcriptions of the notes' update rules.

Each function is written from the formula in the seed notes (``../shared/seeds/``), not from
optimlab's code: it takes the starting point, a gradient function, and one learning rate per
step, and returns the points at which the gradient was evaluated, one per step, then the final
point. The tests compare optimlab's parameters after each step with these points.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Grad = Callable[[np.ndarray], np.ndarray]


def gradient_descent(w0, grad: Grad, lrs: Sequence[float]):
    """Seed 004, section 1: w = w - alpha * dL/dw."""
    w = np.array(w0, dtype=np.float64)
    points = []
    for lr in lrs:
        points.append(w.copy())
        w = w - lr * grad(w)
    return points + [w]


def ema_momentum(w0, grad: Grad, lrs, beta, bias_correction=False):
    """Seed 000, listing 1: v = beta*v + (1-beta)*dw; w = w - alpha*v (eq. 10 when corrected)."""
    w = np.array(w0, dtype=np.float64)
    v = np.zeros_like(w)
    points = []
    for t, lr in enumerate(lrs, start=1):
        points.append(w.copy())
        dw = grad(w)
        v = beta * v + (1 - beta) * dw
        v_used = v / (1 - beta**t) if bias_correction else v
        w = w - lr * v_used
    return points + [w]


def heavy_ball(w0, grad: Grad, lrs, beta):
    """Seed 004, 2.1: w^t = w^{t-1} - alpha*dL/dw^{t-1} + beta*(w^{t-1} - w^{t-2})."""
    w_prev = np.array(w0, dtype=np.float64)  # w^{t-2}; the first step has no previous step
    w = w_prev.copy()
    points = []
    for lr in lrs:
        points.append(w.copy())
        w_next = w - lr * grad(w) + beta * (w - w_prev)
        w_prev, w = w, w_next
    return points + [w]


def heavy_ball_nesterov(w0, grad: Grad, lrs, beta):
    """Seed 004, 2.2: w^t = w^{t-1} - alpha*dL/d(w^{t-1} + beta*dw) + beta*dw.

    Returns the look-ahead points ``w^{t-1} + beta*dw`` where gradients are evaluated, and at
    the end the look-ahead point after the last step.
    """
    w = np.array(w0, dtype=np.float64)
    dw = np.zeros_like(w)
    points = []
    for lr in lrs:
        look_ahead = w + beta * dw
        points.append(look_ahead)
        w_next = w - lr * grad(look_ahead) + beta * dw
        dw = w_next - w
        w = w_next
    return points + [w + beta * dw]


def ema_nesterov(w0, grad: Grad, lr, beta, steps):
    """Averaged momentum with the gradient taken at the look-ahead point w - alpha*beta*v.

    Only defined for a constant learning rate (the look-ahead uses the next step's rate).
    """
    w = np.array(w0, dtype=np.float64)
    v = np.zeros_like(w)
    points = []
    for _ in range(steps):
        look_ahead = w - lr * beta * v
        points.append(look_ahead)
        v = beta * v + (1 - beta) * grad(look_ahead)
        w = w - lr * v
    return points + [w - lr * beta * v]


def rmsprop(w0, grad: Grad, lrs, beta, epsilon, eps_inside_sqrt):
    """Seed 000 listing 2 (inside: alpha/sqrt(s+eps)); seed 002 (outside: alpha/(sqrt(s)+eps))."""
    w = np.array(w0, dtype=np.float64)
    s = np.zeros_like(w)
    points = []
    for lr in lrs:
        points.append(w.copy())
        dw = grad(w)
        s = beta * s + (1 - beta) * dw**2
        if eps_inside_sqrt:
            w = w - (lr / np.sqrt(s + epsilon)) * dw
        else:
            w = w - lr * dw / (np.sqrt(s) + epsilon)
    return points + [w]


def adam(w0, grad: Grad, lrs, beta1, beta2, epsilon, bias_correction, eps_inside_sqrt):
    """Seed 000 listing 3 (no correction, eps inside); seed 004 (corrected, eps inside);
    seeds 001 and 002 (corrected, eps outside)."""
    w = np.array(w0, dtype=np.float64)
    v = np.zeros_like(w)
    s = np.zeros_like(w)
    points = []
    for t, lr in enumerate(lrs, start=1):
        points.append(w.copy())
        dw = grad(w)
        v = beta1 * v + (1 - beta1) * dw
        s = beta2 * s + (1 - beta2) * dw**2
        if bias_correction:
            v_hat, s_hat = v / (1 - beta1**t), s / (1 - beta2**t)
        else:
            v_hat, s_hat = v, s
        if eps_inside_sqrt:
            w = w - (lr / np.sqrt(s_hat + epsilon)) * v_hat
        else:
            w = w - lr * v_hat / (np.sqrt(s_hat) + epsilon)
    return points + [w]
