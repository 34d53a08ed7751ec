"""NAdam, RAdam, Adamax and Lion: drop-in optimizers beyond the notes, from the core's parts."""

from __future__ import annotations

from typing import Any

import torch

from ..core import adam_family as rules
from .base import Optimizer
from .checks import boolean, hyperparameters, non_negative, pair_in_unit_interval


class NAdam(Optimizer):
    r"""Adam with Nesterov momentum; numerically identical to :class:`torch.optim.NAdam`.

    NAdam (Dozat, 2016, "Incorporating Nesterov Momentum into Adam"), with torch's arguments
    and defaults: the momentum part of the step uses the *next* step's momentum coefficient,
    so the step looks ahead. Update at step ``t``, with ``g`` the gradient (negated when
    ``maximize``) plus ``weight_decay * w``::

        mu_t = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))   momentum schedule
        P_t = mu_1 * mu_2 * ... * mu_t
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        d = sqrt(v / (1 - beta2**t)) + eps
        w = w - lr * (1 - mu_t) / (1 - P_t) * g / d
              - lr * mu_{t+1} / (1 - P_t * mu_{t+1}) * m / d

    ``decoupled_weight_decay=True`` (NAdamW) shrinks the weights first,
    ``w = w * (1 - lr * weight_decay)``, instead of adding ``weight_decay * w`` to ``g``.
    ``momentum_decay = 0`` keeps ``mu_t = beta1 / 2`` throughout.

    Parity with torch: its per-tensor path (the one it takes on the CPU), operation for
    operation, so the parameters agree to the last bit. The one place that takes care: torch
    keeps ``P_t`` as a state tensor of its default scalar dtype, float32 unless
    ``torch.get_default_dtype()`` is float64, even for float64 parameters; rounding it to
    float32 changes the step sizes by about 1e-7 relatively. So ``P_t`` is rounded as torch
    rounds it (float32 unless the default dtype is float64 at the step), computed from ``t``
    instead of kept in the state, which keeps the rule a function of the step count (fusable).
    The state is therefore ``step``, ``exp_avg`` and ``exp_avg_sq``, without torch's
    ``mu_product`` (:meth:`load_state_dict` drops it from a torch checkpoint, which then resumes
    here with the same results). One consequence: torch multiplies the product step by step with
    the ``beta1`` and ``momentum_decay`` of that step, this class forms it from the current
    values; the two agree unless these change during training
    (``OneCycleLR(cycle_momentum=True)`` does), and then only while ``P_t`` still matters, the
    first few dozen steps (with the default momentum_decay and beta1 <= 0.999 it falls below
    2**-60 by step 61, where 1 - P_t rounds to 1).

    How the step is computed (``fused``, ``foreach``) and ``nonfinite_grads`` are as for
    :class:`optimlab.Adam`.

    Example::

        >>> import torch, optimlab
        >>> w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
        >>> opt = optimlab.NAdam([w], lr=0.1)
        >>> (w ** 2).sum().backward(); _ = opt.step()   # lr * (1 + 0.1 * mu_2 / (1 - P_2))
        >>> [round(x, 6) for x in w.tolist()]
        [0.894355, -1.894355]
    """

    _checks = {
        **Optimizer._checks,
        "lr": non_negative,
        "betas": pair_in_unit_interval,
        "eps": non_negative,
        "weight_decay": non_negative,
        "momentum_decay": non_negative,
        "decoupled_weight_decay": boolean,
        "maximize": boolean,
    }

    def __init__(
        self,
        params: Any,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
        nonfinite_grads: str = "raise",
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _buffer_names(self, group):
        return ("exp_avg", "exp_avg_sq")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by ``state_dict()``, or by :class:`torch.optim.NAdam`.

        torch's state also holds ``mu_product``, which this class computes from ``step``:
        those entries are dropped (the values agree while ``beta1`` and ``momentum_decay``
        stayed constant), so a torch checkpoint resumes here with the same results.
        """
        state = {
            key: {name: value for name, value in entry.items() if name != "mu_product"}
            for key, entry in state_dict["state"].items()
        }
        super().load_state_dict({**state_dict, "state": state})

    def _update(self, ops, group, params, grads, buffers, step):
        beta1, beta2 = group["betas"]
        rules.nadam(
            ops,
            params,
            grads,
            buffers["exp_avg"],
            buffers["exp_avg_sq"],
            step=step,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum_decay=group["momentum_decay"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
            maximize=group["maximize"],
            # torch's scalar dtype (torch.optim.optimizer._get_scalar_dtype)
            single_precision_product=torch.get_default_dtype() != torch.float64,
        )


class RAdam(Optimizer):
    r"""Rectified Adam; numerically identical to :class:`torch.optim.RAdam`.

    RAdam (Liu et al., 2020, "On the Variance of the Adaptive Learning Rate and Beyond",
    Algorithm 2), with torch's arguments and defaults: early on, the average of squares has
    seen too few gradients for its inverse root to be a reliable step size, so RAdam takes
    plain momentum steps until the variance of that estimate becomes tractable, then switches
    Adam's adaptive step in, scaled by a rectification factor that rises to 1. Update at step
    ``t``, with ``g`` the gradient (negated when ``maximize``) plus ``weight_decay * w``::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * t * beta2**t / (1 - beta2**t)
        if rho_t > 5:
            r_t = sqrt((rho_t - 4) * (rho_t - 2) * rho_inf
                       / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            w = w - lr * r_t * sqrt(1 - beta2**t) / (1 - beta1**t) * m / (sqrt(v) + eps)
        else:
            w = w - lr / (1 - beta1**t) * m

    (with the default ``beta2 = 0.999`` the first five steps are plain momentum steps).
    ``decoupled_weight_decay=True`` (RAdamW) shrinks the weights first,
    ``w = w * (1 - lr * weight_decay)``, instead of adding ``weight_decay * w`` to ``g``.

    Parity with torch: torch's per-tensor operations in torch's order (the path torch takes
    on the CPU; its multi-tensor path orders them differently and differs from it by
    rounding), so the parameters agree to the last bit.

    How the step is computed (``fused``, ``foreach``) and ``nonfinite_grads`` are as for
    :class:`optimlab.Adam`.

    Example::

        >>> import torch, optimlab
        >>> w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
        >>> opt = optimlab.RAdam([w], lr=0.1)
        >>> (w ** 2).sum().backward(); _ = opt.step()   # a plain momentum step
        >>> [round(x, 6) for x in w.tolist()]
        [0.8, -1.6]
    """

    _checks = {
        **Optimizer._checks,
        "lr": non_negative,
        "betas": pair_in_unit_interval,
        "eps": non_negative,
        "weight_decay": non_negative,
        "decoupled_weight_decay": boolean,
        "maximize": boolean,
    }

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
        nonfinite_grads: str = "raise",
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _buffer_names(self, group):
        return ("exp_avg", "exp_avg_sq")

    def _update(self, ops, group, params, grads, buffers, step):
        beta1, beta2 = group["betas"]
        rules.radam(
            ops,
            params,
            grads,
            buffers["exp_avg"],
            buffers["exp_avg_sq"],
            step=step,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
            maximize=group["maximize"],
        )


class Adamax(Optimizer):
    r"""Adam with the infinity norm; numerically identical to :class:`torch.optim.Adamax`.

    Adamax (Kingma and Ba, 2015, "Adam: A Method for Stochastic Optimization", section 7.1,
    Algorithm 2), with torch's arguments and defaults: the step divides
    by an exponentially decaying running maximum of ``|g|``, which needs no bias correction.
    Update at step ``t``, with ``g`` the gradient (negated when ``maximize``) plus
    ``weight_decay * w``::

        m = beta1 * m + (1 - beta1) * g
        u = max(beta2 * u, |g| + eps)
        w = w - lr / (1 - beta1**t) * m / u

    ``eps`` sits inside the maximum, as in torch (the paper has none); it keeps ``u`` from
    being 0 for a coordinate whose gradients were all 0. Unlike torch, ``foreach`` is
    keyword-only here, as for every optimlab optimizer.

    How the step is computed (``fused``, ``foreach``) and ``nonfinite_grads`` are as for
    :class:`optimlab.Adam`.

    Example::

        >>> import torch, optimlab
        >>> w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
        >>> opt = optimlab.Adamax([w], lr=0.1)
        >>> (w ** 2).sum().backward(); _ = opt.step()   # the first step moves each by lr
        >>> [round(x, 6) for x in w.tolist()]
        [0.9, -1.9]
    """

    _checks = {
        **Optimizer._checks,
        "lr": non_negative,
        "betas": pair_in_unit_interval,
        "eps": non_negative,
        "weight_decay": non_negative,
        "maximize": boolean,
    }

    def __init__(
        self,
        params: Any,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
        nonfinite_grads: str = "raise",
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _buffer_names(self, group):
        return ("exp_avg", "exp_inf")

    def _update(self, ops, group, params, grads, buffers, step):
        beta1, beta2 = group["betas"]
        rules.adamax(
            ops,
            params,
            grads,
            buffers["exp_avg"],
            buffers["exp_inf"],
            step=step,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
        )


class Lion(Optimizer):
    r"""Lion: steps by the sign of an interpolated momentum, lr for every coordinate.

    EvoLved Sign Momentum (Chen et al., 2023, "Symbolic Discovery of Optimization
    Algorithms", Algorithm 2 and Program 1); torch.optim has no Lion. Update, with ``g``
    the gradient (negated when ``maximize``)::

        c = beta1 * m + (1 - beta1) * g          interpolate momentum and gradient
        w = w - lr * (sign(c) + weight_decay * w)
        m = beta2 * m + (1 - beta2) * g          then update the momentum

    Every coordinate moves by exactly ``lr`` (plus the decay), whatever the gradient's
    scale, so Lion's learning rate is typically 3-10 times smaller than AdamW's and its
    ``weight_decay`` 3-10 times larger (the paper, section 5; the defaults lr=1e-4,
    betas=(0.9, 0.99) and weight_decay=0 are the authors'). Weight decay is decoupled by
    construction, ``w = w * (1 - lr * weight_decay)`` before the signed step, the authors'
    PyTorch order (google/automl ``lion/lion_pytorch.py``). Only one buffer, ``exp_avg``:
    half of Adam's state. A fixed step of ``lr`` per coordinate cannot settle closer to a
    minimum than about ``lr``: decay the learning rate to converge.

    How the step is computed (``fused``, ``foreach``) and ``nonfinite_grads`` are as for
    :class:`optimlab.Adam`.

    Example::

        >>> import torch, optimlab
        >>> w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
        >>> opt = optimlab.Lion([w], lr=0.1)
        >>> (w ** 2).sum().backward(); _ = opt.step()   # each coordinate moves by lr
        >>> [round(x, 6) for x in w.tolist()]
        [0.9, -1.9]
    """

    _checks = {
        **Optimizer._checks,
        "lr": non_negative,
        "betas": pair_in_unit_interval,
        "weight_decay": non_negative,
        "maximize": boolean,
    }

    def __init__(
        self,
        params: Any,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
        nonfinite_grads: str = "raise",
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _buffer_names(self, group):
        return ("exp_avg",)

    def _update(self, ops, group, params, grads, buffers, step):
        beta1, beta2 = group["betas"]
        rules.lion(
            ops,
            params,
            grads,
            buffers["exp_avg"],
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
        )


#: this module's optimizers, by the name ``optimlab list`` and the lab use
OPTIMIZERS: dict[str, type] = {"nadam": NAdam, "radam": RAdam, "adamax": Adamax, "lion": Lion}

__all__: list[str] = ["Adamax", "Lion", "NAdam", "RAdam"]
