"""Independent float64 NumPy transcriptions of schedule-free SGD/AdamW and Prodigy.

Written from the papers' algorithm boxes, with the constants of the authors' released code
where the two differ (named in each docstring), not from optimlab's code. Each function takes
the starting point, a gradient function and one learning rate per step, and returns the points
at which the gradient was evaluated, one per step, then the final point (for schedule-free:
the next ``y``; :func:`schedule_free_sequences` also gives ``x`` and ``z``).

The transcriptions use the papers' forms, which differ from the implementations' in-place
forms: schedule-free keeps ``x``, ``y`` and ``z`` explicitly (optimlab keeps ``y`` and ``z``
and updates ``y`` without forming ``x``); Prodigy keeps the paper's ``r`` and ``s`` with their
``(1 - beta3) * d**2`` factors (the code scales both sums by ``d**2 / d0`` instead, which
leaves their ratio, the estimate, unchanged).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Grad = Callable[[np.ndarray], np.ndarray]


def schedule_free_sequences(
    w0,
    grad: Grad,
    lrs: Sequence[float],
    *,
    adam: bool,
    beta: float,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    r: float = 0.0,
    weight_lr_power: float = 2.0,
):
    """Schedule-free SGD / AdamW: returns (points y_1..y_T and y_{T+1}, x_{T+1}, z_{T+1}).

    Defazio et al., 2024, "The Road Less Scheduled" (arXiv:2405.15682), Algorithm 1
    (Schedule-Free AdamW; SGD is the same without the second moment, section 2)::

        y_t     = (1 - beta) z_t + beta x_t
        g_t     = grad f(y_t)
        v_t     = beta2 v_{t-1} + (1 - beta2) g_t^2                      (AdamW)
        gamma_t = lr_t * min(1, t / T_warmup)
        z_{t+1} = z_t - gamma_t * (g_t / (sqrt(v_t / (1 - beta2^t)) + eps) + lambda y_t)
        c_{t+1} = w_t / sum_{i<=t} w_i,  w_t = t^r * (max_{i<=t} gamma_i)^weight_lr_power
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}

    with x_1 = z_1 = w0. The paper's box puts Adam's bias correction into gamma_t and weighs
    the average by gamma_t^2; the authors' released AdamWScheduleFree (version 1.3, the
    reference here) divides v by it instead and weighs by the largest learning rate so far to
    the power weight_lr_power, times t^r (section 4 of the paper for r).
    """
    x = np.array(w0, dtype=np.float64)
    z = x.copy()
    v = np.zeros_like(x)
    lr_max, weight_sum = 0.0, 0.0
    points = []
    for t, lr in enumerate(lrs, start=1):
        y = (1 - beta) * z + beta * x
        points.append(y)
        g = grad(y)
        gamma = lr * (min(1.0, t / warmup_steps) if warmup_steps else 1.0)
        if adam:
            v = beta2 * v + (1 - beta2) * g * g
            u = g / (np.sqrt(v / (1 - beta2**t)) + eps)
        else:
            u = g
        z = z - gamma * (u + weight_decay * y)
        lr_max = max(lr_max, gamma)
        weight = t**r * lr_max**weight_lr_power
        weight_sum += weight
        c = weight / weight_sum if weight_sum > 0 else 0.0
        x = (1 - c) * x + c * z
    points.append((1 - beta) * z + beta * x)
    return points, x, z


def schedule_free_sgd(w0, grad: Grad, lrs, *, momentum=0.9, **kwargs):
    """The gradient points of schedule-free SGD (:func:`schedule_free_sequences`)."""
    return schedule_free_sequences(w0, grad, lrs, adam=False, beta=momentum, **kwargs)[0]


def schedule_free_adamw(w0, grad: Grad, lrs, *, betas=(0.9, 0.999), **kwargs):
    """The gradient points of schedule-free AdamW (:func:`schedule_free_sequences`)."""
    beta1, beta2 = betas
    return schedule_free_sequences(w0, grad, lrs, adam=True, beta=beta1, beta2=beta2, **kwargs)[0]


def prodigy(
    w0,
    grad: Grad,
    lrs: Sequence[float],
    *,
    betas=(0.9, 0.999),
    beta3=None,
    eps=1e-8,
    weight_decay=0.0,
    decouple=True,
    use_bias_correction=False,
    safeguard_warmup=False,
    d0=1e-6,
    d_coef=1.0,
    growth_rate=float("inf"),
):
    """Prodigy's points: x_0 .. x_T, then x_{T+1}.

    Mishchenko and Defazio, 2023, "Prodigy: An Expeditiously Adaptive Parameter-Free
    Learner" (arXiv:2306.06101), Algorithm 4 (Prodigy, Adam version), for k = 0, 1, ...::

        g_k     = grad f(x_k)                      (+ lambda x_k: coupled weight decay)
        m_{k+1} = beta1 m_k + (1 - beta1) d_k g_k
        v_{k+1} = beta2 v_k + (1 - beta2) d_k^2 g_k^2
        r_{k+1} = beta3 r_k + (1 - beta3) gamma_k d_k^2 <g_k, x_0 - x_k>
        s_{k+1} = beta3 s_k + (1 - beta3) gamma_k d_k^2 g_k
        d_hat   = r_{k+1} / |s_{k+1}|_1
        d_{k+1} = max(d_k, d_hat)
        x_{k+1} = x_k - gamma_k d_k m_{k+1} / (sqrt(v_{k+1}) + d_k eps)

    with beta3 = sqrt(beta2) by default. The authors' released ``prodigyopt.Prodigy`` (the
    reference for the extensions) adds: d_hat times d_coef; d may grow at most growth_rate
    times per step once it has left d0 (d_{k+1} = min(max(d_0, all d_hat so far),
    growth_rate d_k)); gamma_k = lr_k * sqrt(1 - beta2^(k+1)) / (1 - beta1^(k+1)) with
    bias correction; safeguard_warmup drops gamma_k from s; decoupled weight decay
    x -= gamma_k d_k lambda x before the step; and d_{k+1} (not d_k) in the denominator.
    With beta1 = 0 that code keeps no m and steps with d_{k+1} g_k where the paper's m_{k+1}
    is d_k g_k (prodigyopt/prodigy.py: ``p.data.addcdiv_(grad, denom, value=-dlr * d)``
    after d is updated). A step whose |s|_1 is 0 is skipped.
    """
    beta1, beta2 = betas
    beta3 = np.sqrt(beta2) if beta3 is None else beta3
    x = np.array(w0, dtype=np.float64)
    x0 = x.copy()
    m, v, s = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    r, d, d_max = 0.0, d0, d0
    points = []
    k = 0
    for lr in lrs:
        points.append(x.copy())
        g = grad(x)
        if weight_decay and not decouple:
            g = g + weight_decay * x
        correction = np.sqrt(1 - beta2 ** (k + 1)) / (1 - beta1 ** (k + 1))
        gamma = lr * (correction if use_bias_correction else 1.0)
        m = beta1 * m + (1 - beta1) * d * g
        v = beta2 * v + (1 - beta2) * d * d * g * g
        r = beta3 * r + (1 - beta3) * gamma * d * d * np.dot(g, x0 - x)
        s = beta3 * s + (1 - beta3) * (1.0 if safeguard_warmup else gamma) * d * d * g
        if np.abs(s).sum() == 0:
            continue
        d_hat = d_coef * r / np.abs(s).sum()
        d_max = max(d_max, d_hat)
        d_new = min(d_max, (max(d, d_hat) if d == d0 else d) * growth_rate)
        if weight_decay and decouple:
            x = x - gamma * d * weight_decay * x
        direction = m if beta1 > 0 else d_new * g
        x = x - gamma * d * direction / (np.sqrt(v) + d_new * eps)
        d = d_new
        k += 1
    return points + [x]
