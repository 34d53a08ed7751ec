"""NAdam, RAdam, Adamax, Lion and AdEMAMix: drop-in optimizers beyond the notes."""

from __future__ import annotations

from typing import Any

import torch

from ..core import adam_family as rules
from .base import Optimizer
from .checks import (
    betas,
    boolean,
    hyperparameters,
    non_negative,
    optional,
    pair_in_unit_interval,
    positive_integer,
)
from .state import step_count, step_dtype


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

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 0.002.
        betas: ``(beta1, beta2)``, each in [0, 1). Default (0.9, 0.999).
        eps: >= 0, added to the root. Default 1e-8.
        weight_decay: >= 0; ``weight_decay * w`` is added to ``g``. Default 0.
        momentum_decay: >= 0, how fast ``mu_t`` approaches ``beta1``. Default 4e-3.
        decoupled_weight_decay: shrink the weights instead (NAdamW).
        maximize, foreach, fused, capturable, differentiable, nonfinite_grads, state_dtype,
            stochastic_rounding: as for :class:`optimlab.Adam` (how the step is computed, never
            what; the non-finite policy; mixed precision).

    ``decoupled_weight_decay=True`` (NAdamW) shrinks the weights first,
    ``w = w * (1 - lr * weight_decay)``, instead of adding ``weight_decay * w`` to ``g``.
    ``momentum_decay = 0`` keeps ``mu_t = beta1 / 2`` throughout.

    Parity with torch: its per-tensor path (the one it takes on the CPU), operation for
    operation, so the parameters agree to the last bit. The one place that takes care: the
    state keeps ``P_t`` as torch does, in a 0-dim tensor ``mu_product`` of torch's scalar dtype
    (float32 unless ``torch.get_default_dtype()`` is float64, even for float64 parameters;
    loaded into float64 parameters, torch casts it to float64) multiplied by ``mu_t`` after
    each step, and the step rounds the product in that tensor's dtype, as torch does: rounding
    it to float32 changes the step sizes by about 1e-7 relatively. A state saved by optimlab
    before it kept ``mu_product`` gets it computed from ``step``.

    How the step is computed (``fused``, ``foreach``), ``nonfinite_grads`` and mixed
    precision (``state_dtype``, ``stochastic_rounding``) are as for
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
    _rule = staticmethod(rules.nadam)
    # The product of the momentum coefficients so far, kept as torch keeps it (a 0-dim tensor)
    _state_arguments = ("mu_product",)
    _after_step_inputs = ("betas", "momentum_decay")

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
        capturable: bool = False,
        differentiable: bool = False,
        nonfinite_grads: str = "raise",
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _buffer_names(self, group):
        return ("exp_avg", "exp_avg_sq")

    def _init_state(self, p, group):
        return {**super()._init_state(p, group), "mu_product": torch.ones((), dtype=step_dtype())}

    def _arguments(self, group, state, step):
        arguments = super()._arguments(group, state, step)
        # torch multiplies the product in its tensor's dtype (see the class docstring)
        arguments["single_precision_product"] = state["mu_product"].dtype != torch.float64
        return arguments

    def _device_arguments(self, group, step, device, state):
        arguments = super()._device_arguments(group, step, device, state)
        arguments["single_precision_product"] = state["mu_product"].dtype != torch.float64
        return arguments

    def _after_step(self, group, stepped):
        numbers = self._numbers(group)
        beta1, momentum_decay = numbers["betas"][0], numbers["momentum_decay"]
        for state in stepped:  # as torch: mu_product *= mu_t
            state["mu_product"].mul_(rules.nadam_momentum(beta1, momentum_decay, step_count(state)))

    def _state_update(self, arguments):
        # _after_step's product: mu_t cast to the product's dtype, the product rounded to it
        mu = rules.nadam_momentum(
            arguments["betas"][0], arguments["momentum_decay"], arguments["step"]
        )
        if arguments["single_precision_product"]:
            return ((arguments["mu_product"] * mu.to_float32()).to_float32(),)
        return (arguments["mu_product"] * mu,)

    def _older_entry(self, name, entry, group):
        if name != "mu_product":
            return None
        numbers = self._numbers(group)
        product = rules.nadam_momentum_product(
            numbers["betas"][0],
            numbers["momentum_decay"],
            step_count(entry),
            single_precision=step_dtype() != torch.float64,
        )
        return torch.tensor(product, dtype=step_dtype())


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

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 0.001.
        betas: ``(beta1, beta2)``, each in [0, 1). Default (0.9, 0.999).
        eps: >= 0, added to the root. Default 1e-8.
        weight_decay: >= 0; ``weight_decay * w`` is added to ``g``. Default 0.
        decoupled_weight_decay: shrink the weights instead (RAdamW).
        maximize, foreach, fused, capturable, differentiable, nonfinite_grads, state_dtype,
            stochastic_rounding: as for :class:`optimlab.Adam` (how the step is computed, never
            what; the non-finite policy; mixed precision).

    Parity with torch: torch's per-tensor operations in torch's order (the path torch takes
    on the CPU; its multi-tensor path orders them differently and differs from it by
    rounding), so the parameters agree to the last bit.

    How the step is computed (``fused``, ``foreach``), ``nonfinite_grads`` and mixed
    precision (``state_dtype``, ``stochastic_rounding``) are as for
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
    _rule = staticmethod(rules.radam)

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
        capturable: bool = False,
        differentiable: bool = False,
        nonfinite_grads: str = "raise",
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _buffer_names(self, group):
        return ("exp_avg", "exp_avg_sq")


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

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 0.002.
        betas: ``(beta1, beta2)``, each in [0, 1). Default (0.9, 0.999).
        eps: >= 0, the floor of the running maximum. Default 1e-8.
        weight_decay: >= 0; ``weight_decay * w`` is added to ``g``. Default 0.
        maximize, foreach, fused, capturable, differentiable, nonfinite_grads, state_dtype,
            stochastic_rounding: as for :class:`optimlab.Adam` (how the step is computed, never
            what; the non-finite policy; mixed precision).

    ``eps`` sits inside the maximum, as in torch (the paper has none); it keeps ``u`` from
    being 0 for a coordinate whose gradients were all 0. Unlike torch, ``foreach`` is
    keyword-only here, as for every optimlab optimizer.

    How the step is computed (``fused``, ``foreach``), ``nonfinite_grads`` and mixed
    precision (``state_dtype``, ``stochastic_rounding``) are as for
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
    _rule = staticmethod(rules.adamax)

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
        capturable: bool = False,
        differentiable: bool = False,
        nonfinite_grads: str = "raise",
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _buffer_names(self, group):
        return ("exp_avg", "exp_inf")


class Lion(Optimizer):
    r"""Lion: steps by the sign of an interpolated momentum, lr for every coordinate.

    EvoLved Sign Momentum (Chen et al., 2023, "Symbolic Discovery of Optimization
    Algorithms", Algorithm 2 and Program 1); torch.optim has no Lion. Update, with ``g``
    the gradient (negated when ``maximize``)::

        c = beta1 * m + (1 - beta1) * g          interpolate momentum and gradient
        w = w - lr * (sign(c) + weight_decay * w)
        m = beta2 * m + (1 - beta2) * g          then update the momentum

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 0.0001.
        betas: ``(beta1, beta2)``, each in [0, 1): the interpolation of the step and the
            momentum's decay. Default (0.9, 0.99).
        weight_decay: >= 0, decoupled: the weights shrink by ``lr * weight_decay``. Default 0.
        maximize, foreach, fused, nonfinite_grads, state_dtype, stochastic_rounding: as for
            :class:`optimlab.Adam` (how the step is computed, never what; the non-finite
            policy; mixed precision).

    Every coordinate moves by exactly ``lr`` (plus the decay), whatever the gradient's
    scale, so Lion's learning rate is typically 3-10 times smaller than AdamW's and its
    ``weight_decay`` 3-10 times larger (the paper, section 5; the defaults lr=1e-4,
    betas=(0.9, 0.99) and weight_decay=0 are the authors'). Weight decay is decoupled by
    construction, ``w = w * (1 - lr * weight_decay)`` before the signed step, the authors'
    PyTorch order (google/automl ``lion/lion_pytorch.py``). Only one buffer, ``exp_avg``:
    half of Adam's state. A fixed step of ``lr`` per coordinate cannot settle closer to a
    minimum than about ``lr``: decay the learning rate to converge.

    How the step is computed (``fused``, ``foreach``), ``nonfinite_grads`` and mixed
    precision (``state_dtype``, ``stochastic_rounding``) are as for
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
    _rule = staticmethod(rules.lion)

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
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _buffer_names(self, group):
        return ("exp_avg",)


class AdEMAMix(Optimizer):
    r"""AdEMAMix: Adam plus a slow average of the gradients that remembers thousands of steps.

    Pagliardini, Ablin and Grangier (2024), "The AdEMAMix Optimizer: Better, Faster, Older",
    Algorithm 1, with the defaults of the authors' code (apple/ml-ademamix); torch.optim has no
    AdEMAMix. One exponential average forgets too fast to use old gradients or too slowly to
    follow the new ones; AdEMAMix keeps both, Adam's fast ``m1`` and a slow ``m2``, and steps
    along their mix. Update at step ``t``, ``g`` the gradient (negated when ``maximize``)::

        m1 = beta1 * m1 + (1 - beta1) * g
        m2 = beta3_t * m2 + (1 - beta3_t) * g          slow: beta3 = 0.9999 (half-life ~7000)
        v = beta2 * v + (1 - beta2) * g**2
        w = w - lr * ((m1 / (1 - beta1**t) + alpha_t * m2) / (sqrt(v / (1 - beta2**t)) + eps)
                      + weight_decay * w)

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 0.001.
        betas: ``(beta1, beta2, beta3)``, each in [0, 1): the fast average, the squares'
            average and the slow average. Default (0.9, 0.999, 0.9999).
        alpha: >= 0, the weight of the slow average. Default 2.
        beta3_warmup: None, or the steps over which ``beta3_t`` grows from ``beta1`` to
            ``beta3`` (see below).
        alpha_warmup: None, or the steps over which ``alpha_t`` grows from 0 to ``alpha``.
        eps: >= 0, added to the root. Default 1e-8.
        weight_decay: >= 0, added to the update (the paper's ``lambda * w``). Default 0.
        maximize, foreach, fused, nonfinite_grads, state_dtype, stochastic_rounding: as for
            :class:`optimlab.Adam` (how the step is computed, never what; the non-finite
            policy; mixed precision).

    ``m2`` starts at zero and is not bias-corrected: early on it is small, and ``alpha`` weighs
    it in. For long runs the paper warms both up: ``alpha_warmup=T`` grows ``alpha_t``
    linearly from 0 to ``alpha`` over ``T`` steps, ``beta3_warmup=T`` grows ``beta3_t`` from
    ``beta1`` to ``beta3`` (its half-life linearly); without them (the default) both hold their
    final values from the first step. The paper uses ``alpha`` from 4 to 10 with warm-ups as
    long as training; the authors' code defaults to ``alpha=2`` without.

    State per parameter: ``exp_avg``, ``exp_avg_slow``, ``exp_avg_sq`` (one buffer more than
    Adam).

    Example::

        >>> import torch, optimlab
        >>> w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
        >>> opt = optimlab.AdEMAMix([w], lr=0.1)
        >>> (w ** 2).sum().backward(); _ = opt.step()   # Adam's step, times 1 + alpha * 1e-4
        >>> [round(x, 6) for x in w.tolist()]
        [0.89998, -1.89998]
    """

    _checks = {
        **Optimizer._checks,
        "lr": non_negative,
        "betas": betas(3),
        "alpha": non_negative,
        "beta3_warmup": optional(positive_integer),
        "alpha_warmup": optional(positive_integer),
        "eps": non_negative,
        "weight_decay": non_negative,
        "maximize": boolean,
    }
    _rule = staticmethod(rules.ademamix)

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float, float] = (0.9, 0.999, 0.9999),
        alpha: float = 2.0,
        beta3_warmup: int | None = None,
        alpha_warmup: int | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
        nonfinite_grads: str = "raise",
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _buffer_names(self, group):
        return ("exp_avg", "exp_avg_slow", "exp_avg_sq")
