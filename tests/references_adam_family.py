"""Independent float64 NumPy transcriptions of NAdam, RAdam, Adamax, Lion and AdEMAMix, from their papers.

Each function is written from the published algorithm (cited in its docstring), not from
optimlab's code, with the signature of ``references.py``: it takes the starting point, a
gradient function and one learning rate per step, and returns the points at which the
gradient was evaluated, one per step, then the final point. Where torch.optim (or the
authors' code) departs from the paper, the departure is a named argument, so the paper's
choice and the implementation's are both visible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Grad = Callable[[np.ndarray], np.ndarray]


def nadam(
    w0,
    grad: Grad,
    lrs: Sequence[float],
    beta1=0.9,
    beta2=0.999,
    epsilon=1e-8,
    momentum_decay=0.004,
):
    """Dozat (2016), "Incorporating Nesterov Momentum into Adam", Algorithm 2 (NAdam).

    mu_t = beta1 * (1 - 0.5 * 0.96**(t * psi)) (the paper's schedule is psi = 1/250 = 0.004)
        g_hat = g_t / (1 - prod_{i<=t} mu_i)
        m_t = beta1 m_{t-1} + (1 - beta1) g_t;     m_hat = m_t / (1 - prod_{i<=t+1} mu_i)
        n_t = beta2 n_{t-1} + (1 - beta2) g_t^2;   n_hat = n_t / (1 - beta2^t)
        m_bar = (1 - mu_t) g_hat + mu_{t+1} m_hat
        theta_t = theta_{t-1} - lr m_bar / (sqrt(n_hat) + eps)
    The products are exact float64 products.
    """
    w = np.array(w0, dtype=np.float64)
    m = np.zeros_like(w)
    n = np.zeros_like(w)

    def mu(t):
        return beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))

    product = 1.0  # prod_{i <= t} mu_i
    points = []
    for t, lr in enumerate(lrs, start=1):
        points.append(w.copy())
        g = grad(w)
        product *= mu(t)
        g_hat = g / (1 - product)
        m = beta1 * m + (1 - beta1) * g
        m_hat = m / (1 - product * mu(t + 1))
        n = beta2 * n + (1 - beta2) * g * g
        n_hat = n / (1 - beta2**t)
        m_bar = (1 - mu(t)) * g_hat + mu(t + 1) * m_hat
        w = w - lr * m_bar / (np.sqrt(n_hat) + epsilon)
    return points + [w]


def radam(
    w0,
    grad: Grad,
    lrs: Sequence[float],
    beta1=0.9,
    beta2=0.999,
    epsilon=1e-8,
    threshold=5.0,
):
    """Liu et al. (2020), "On the Variance of the Adaptive Learning Rate and Beyond", Alg. 2.

    rho_inf = 2 / (1 - beta2) - 1
        m_t = beta1 m + (1 - beta1) g;  m_hat = m_t / (1 - beta1^t)
        v_t = beta2 v + (1 - beta2) g^2
        rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
        if rho_t > threshold:
            l_t = sqrt((1 - beta2^t) / v_t)   (the authors' code: sqrt(1 - beta2^t) / (sqrt(v_t) + eps))
            r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
            theta_t = theta_{t-1} - lr r_t m_hat l_t
        else:
            theta_t = theta_{t-1} - lr m_hat            (un-adapted momentum)
    The paper's threshold is 4; the authors' code (LiyuanLucasLiu/RAdam, ``N_sma >= 5``) and
    torch.optim use 5, hence ``threshold=5.0``. ``epsilon`` sits where the authors' code puts it.
    """
    w = np.array(w0, dtype=np.float64)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    rho_inf = 2 / (1 - beta2) - 1
    points = []
    for t, lr in enumerate(lrs, start=1):
        points.append(w.copy())
        g = grad(w)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t)
        rho = rho_inf - 2 * t * beta2**t / (1 - beta2**t)
        if rho > threshold:
            l = np.sqrt(1 - beta2**t) / (np.sqrt(v) + epsilon)
            r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            w = w - lr * r * m_hat * l
        else:
            w = w - lr * m_hat
    return points + [w]


def adamax(w0, grad: Grad, lrs: Sequence[float], beta1=0.9, beta2=0.999, epsilon=1e-8):
    """Kingma and Ba (2015), "Adam: A Method for Stochastic Optimization", Algorithm 2.

    m_t = beta1 m + (1 - beta1) g;  u_t = max(beta2 u, |g|);
    theta_t = theta_{t-1} - (lr / (1 - beta1^t)) m_t / u_t.
    The paper has no epsilon; torch.optim.Adamax takes ``max(beta2 u, |g| + eps)``, which is
    where ``epsilon`` goes here (0 gives the paper's rule).
    """
    w = np.array(w0, dtype=np.float64)
    m = np.zeros_like(w)
    u = np.zeros_like(w)
    points = []
    for t, lr in enumerate(lrs, start=1):
        points.append(w.copy())
        g = grad(w)
        m = beta1 * m + (1 - beta1) * g
        u = np.maximum(beta2 * u, np.abs(g) + epsilon)
        w = w - (lr / (1 - beta1**t)) * m / u
    return points + [w]


def lion(w0, grad: Grad, lrs: Sequence[float], beta1=0.9, beta2=0.99, weight_decay=0.0):
    """Chen et al. (2023), "Symbolic Discovery of Optimization Algorithms", Algorithm 2.

    c_t = beta1 m_{t-1} + (1 - beta1) g_t
    theta_t = theta_{t-1} - lr (sign(c_t) + lambda theta_{t-1})
    m_t = beta2 m_{t-1} + (1 - beta2) g_t
    (Program 1 writes the same with ``interp(g, m, beta) = (1 - beta) g + beta m``.)
    """
    w = np.array(w0, dtype=np.float64)
    m = np.zeros_like(w)
    points = []
    for lr in lrs:
        points.append(w.copy())
        g = grad(w)
        c = beta1 * m + (1 - beta1) * g
        w = w - lr * (np.sign(c) + weight_decay * w)
        m = beta2 * m + (1 - beta2) * g
    return points + [w]


def ademamix(
    w0,
    grad: Grad,
    lrs: Sequence[float],
    beta1=0.9,
    beta2=0.999,
    beta3=0.9999,
    alpha=2.0,
    beta3_warmup=None,
    alpha_warmup=None,
    epsilon=1e-8,
    weight_decay=0.0,
):
    """Pagliardini, Ablin and Grangier (2024), "The AdEMAMix Optimizer: Better, Faster,
    Older", Algorithm 1, with its schedulers f_alpha and f_beta3 (section 3):

    alpha_t = min(t alpha / T_alpha, alpha)
    beta3_t = min(exp(ln(beta1) ln(beta3) / ((1 - t/T_beta3) ln(beta3) + (t/T_beta3) ln(beta1))),
                  beta3)
    m1 = beta1 m1 + (1 - beta1) g;  m2 = beta3_t m2 + (1 - beta3_t) g;  nu = beta2 nu + (1 - beta2) g^2
    m1_hat = m1 / (1 - beta1^t);  nu_hat = nu / (1 - beta2^t)
    theta = theta - lr ((m1_hat + alpha_t m2) / (sqrt(nu_hat) + eps) + lambda theta)
    """
    w = np.array(w0, dtype=np.float64)
    m1, m2, nu = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    points = []
    for t, lr in enumerate(lrs, start=1):
        points.append(w.copy())
        g = grad(w)
        a = alpha if alpha_warmup is None else min(t * alpha / alpha_warmup, alpha)
        if beta3_warmup is None:
            b3 = beta3
        else:
            f = t / beta3_warmup
            exponent = np.log(beta1) * np.log(beta3) / ((1 - f) * np.log(beta3) + f * np.log(beta1))
            b3 = min(np.exp(exponent), beta3)
        m1 = beta1 * m1 + (1 - beta1) * g
        m2 = b3 * m2 + (1 - b3) * g
        nu = beta2 * nu + (1 - beta2) * g**2
        m1_hat = m1 / (1 - beta1**t)
        nu_hat = nu / (1 - beta2**t)
        w = w - lr * ((m1_hat + a * m2) / (np.sqrt(nu_hat) + epsilon) + weight_decay * w)
    return points + [w]
