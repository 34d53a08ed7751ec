"""Adaptive step sizes: RMSprop, Adam and AdamW, with the variants the notes disagree on."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..core import rules
from .base import Optimizer
from .binding import BETAS, item
from .checks import boolean, hyperparameters, non_negative, pair_in_unit_interval, unit_interval


class RMSprop(Optimizer):
    r"""RMSprop; with default arguments numerically identical to :class:`torch.optim.RMSprop`.

    Update, with ``g`` the gradient (negated when ``maximize``) plus ``weight_decay * w``::

        s = alpha * s + (1 - alpha) * g**2
        w = w - lr * g / (sqrt(s) + eps)         torch, seed 002
        w = w - lr * g / sqrt(s + eps)           eps_inside_sqrt=True: seeds 000, 001, 004, Keras

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 0.01.
        alpha: in [0, 1), the decay of the average of squared gradients. Default 0.99.
        eps: >= 0, added to the root (inside it with ``eps_inside_sqrt``). Default 1e-8.
        weight_decay: >= 0; ``weight_decay * w`` is added to ``g``. Default 0.
        momentum: >= 0, the momentum of the divided steps (0: none). Default 0.
        centered: divide by an estimate of the standard deviation instead.
        eps_inside_sqrt: divide by ``sqrt(s + eps)`` (the notes, Keras).
        maximize, foreach, fused, capturable, differentiable, nonfinite_grads, state_dtype,
            stochastic_rounding: as for :class:`optimlab.Adam` (how the step is computed, never
            what; the non-finite policy; mixed precision).

    ``centered`` divides by an estimate of the standard deviation instead,
    ``sqrt(s - avg(g)**2)``; ``momentum > 0`` keeps ``b = momentum * b + g / denom`` and steps
    ``w = w - lr * b``. Keras' RMSprop is ``eps_inside_sqrt=True, alpha=0.9, eps=1e-7``.

    How the step is computed (``fused``, ``foreach``; never what, up to the last bit of a
    square root), ``nonfinite_grads`` and mixed precision (``state_dtype``,
    ``stochastic_rounding``) are as for :class:`optimlab.Adam`.

    Example::

        >>> import torch, optimlab
        >>> w = torch.tensor([10.0], dtype=torch.float64, requires_grad=True)
        >>> opt = optimlab.RMSprop([w], lr=0.1, alpha=0.9, eps=1e-7, eps_inside_sqrt=True)
        >>> (w ** 2 / 2).sum().backward(); _ = opt.step()
        >>> round(w.item(), 6)
        9.683772
    """

    _checks = {
        **Optimizer._checks,
        "lr": non_negative,
        "alpha": unit_interval,
        "eps": non_negative,
        "weight_decay": non_negative,
        "momentum": unit_interval,
        "centered": boolean,
        "eps_inside_sqrt": boolean,
        "maximize": boolean,
    }
    _rule = staticmethod(rules.rmsprop)

    def _check_group(self, group: dict[str, Any], loading: bool = False) -> None:
        super()._check_group(group, loading)
        # Centered, the first step's variance is alpha * (1 - alpha) * g**2: below float32's
        # epsilon, alpha loses it in the rounding of g**2, and the root of a negative is NaN.
        smallest = torch.finfo(torch.float32).eps
        if group["centered"] and float(group["alpha"]) < smallest:
            raise ValueError(
                f"Invalid alpha={group['alpha']!r} with centered=True; expected alpha in "
                f"[2**{math.frexp(smallest)[1] - 1}, 1): the centered variance, "
                "alpha * (1 - alpha) * g**2 at the first step, is otherwise lost in float32's "
                "rounding of g**2 and its square root is NaN"
            )

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        eps_inside_sqrt: bool = False,
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
        names = ("square_avg",)
        if group["momentum"] > 0:
            names += ("momentum_buffer",)
        if group["centered"]:
            names += ("grad_avg",)
        return names


class Adam(Optimizer):
    r"""Adam; with default arguments numerically identical to :class:`torch.optim.Adam`.

    Update at step ``t``, with ``g`` the gradient (negated when ``maximize``) plus
    ``weight_decay * w``::

        m = beta1 * m + (1 - beta1) * g          average of gradients (momentum)
        v = beta2 * v + (1 - beta2) * g**2       average of squares (RMSprop)
        m_hat = m / (1 - beta1**t)               bias correction (seeds 001, 002, 004)
        v_hat = v / (1 - beta2**t)
        w = w - lr * m_hat / (sqrt(v_hat) + eps)

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 1e-3.
        betas: ``(beta1, beta2)``, each in [0, 1): the averages' decay. Default (0.9, 0.999).
        eps: >= 0, added to the root (inside it with ``eps_inside_sqrt``). Default 1e-8.
        weight_decay: >= 0; ``weight_decay * w`` is added to ``g`` (or, with
            ``decoupled_weight_decay``, the weights shrink by ``lr * weight_decay``).
        amsgrad: divide by the running maximum of ``v_hat`` (Reddi et al., 2018), as torch.
        bias_correction: False uses ``m`` and ``v`` as they are (seed 000, listing 3).
        eps_inside_sqrt: divide by ``sqrt(v_hat + eps)`` (seed 004; seed 000 listing 3).
        maximize: ascend instead of descend.
        foreach, fused: how the step is computed, never what (see below).
        capturable, differentiable: as torch's (``differentiable=True`` records the step).
        decoupled_weight_decay: True is :class:`AdamW`.
        nonfinite_grads: ``"raise"`` (default) names the parameter whose gradient holds NaN or
            Inf, ``"skip"`` skips the step, ``"ignore"`` steps anyway (as torch).
        state_dtype: None keeps the state in each parameter's dtype (as torch);
            ``torch.float32`` keeps it, and computes the step, in float32 for narrower
            (bfloat16, float16) parameters, which are written back rounded to nearest.
        stochastic_rounding: with ``state_dtype=torch.float32``, round bfloat16 parameters
            stochastically (unbiased; reproducible: :mod:`optimlab.core.precision`); refused
            for a group with float16 parameters or other state.

    Example::

        >>> import torch, optimlab
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = optimlab.Adam(model.parameters(), lr=1e-3)
        >>> loss = model(torch.ones(8, 4)).pow(2).mean()
        >>> loss.backward(); _ = opt.step(); opt.zero_grad()

    How the step is computed (never what, up to the last bit of a square root): ``fused=None``,
    the default, runs the update as one compiled loop over all parameters, gradients and state
    at once (:mod:`optimlab.fused.native`; no temporaries, one pass over memory) where this
    machine can compile it, else the multi-tensor path. The loop takes the CPU's correctly
    rounded square root, as torch's fused kernels do: each root within 1 ulp of the plain
    path's (PyTorch's MKL root; the tolerance is tested for every configuration in
    ``tests/test_fast_path.py``), everything else bitwise the same. ``fused=True`` insists on
    the loop (an error where it cannot run); ``fused="exact"`` calls PyTorch's own square root
    in it, for results bitwise equal to the plain path and to torch.optim's multi-tensor path.
    ``fused=False`` or ``foreach=True`` takes the multi-tensor path, ``foreach=False`` one
    PyTorch call per tensor. Parameters the loop does not take (not on the CPU, not
    float32/float64 or their complex types, not contiguous) take the multi-tensor path in the
    same step. The non-finite check costs one more read of the gradients (4 bytes per float32
    parameter); ``nonfinite_grads="ignore"`` saves it.

    On a GPU, where Triton is installed (``pip install 'optimlab[gpu]'``), ``fused=None`` (or
    ``fused="triton"``) runs the same recorded rule as one Triton kernel per step over all
    tensors (:mod:`optimlab.fused.triton_kernels`), bitwise the CPU loop's, without a host
    synchronisation: a step with a non-finite gradient writes nothing, and ``"raise"`` raises
    at the next ``step()`` (or :meth:`~optimlab.optim.base.Optimizer.check_finite`), saying
    the step was not applied.
    """

    _checks = {
        **Optimizer._checks,
        "lr": non_negative,
        "betas": pair_in_unit_interval,
        "eps": non_negative,
        "weight_decay": non_negative,
        "amsgrad": boolean,
        "bias_correction": boolean,
        "eps_inside_sqrt": boolean,
        "maximize": boolean,
        "decoupled_weight_decay": boolean,
    }
    _rule = staticmethod(rules.adam)
    _derived = {**BETAS, "bias_correction_on": item("bias_correction")}
    _tensor_hyperparameters = ("lr", "betas")

    def _check_group(self, group: dict[str, Any], loading: bool = False) -> None:
        super()._check_group(group, loading)
        # torch's rules for tensor hyperparameters, kept so that code written for it behaves
        # the same: betas are both tensors or neither, and torch's multi-tensor path takes
        # tensors only when capturable.
        betas = group["betas"]
        if not loading and sum(isinstance(beta, Tensor) for beta in betas) == 1:
            raise ValueError(
                f"Invalid betas: {betas!r}; betas must be either both floats or both Tensors"
            )
        if group["foreach"] is True and not group["capturable"]:
            for name, value in [("lr", group["lr"]), ("betas[0]", betas[0])]:
                if isinstance(value, Tensor):
                    raise ValueError(
                        f"Invalid {name} value: a Tensor with foreach=True; {name} as a Tensor is "
                        "not supported for capturable=False and foreach=True (as in torch): "
                        "pass capturable=True, a number, or leave foreach unset"
                    )

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        bias_correction: bool = True,
        eps_inside_sqrt: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        decoupled_weight_decay: bool = False,
        nonfinite_grads: str = "raise",
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _buffer_names(self, group):
        names = ("exp_avg", "exp_avg_sq")
        return names + ("max_exp_avg_sq",) if group["amsgrad"] else names


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov and Hutter, 2019), as torch.optim.AdamW.

    Before Adam's step the weights shrink, ``w = w * (1 - lr * weight_decay)``, instead of
    ``weight_decay * w`` being added to the gradient, where Adam's division would rescale it.
    It is ``Adam(..., decoupled_weight_decay=True)``, as in torch. Every other argument is
    :class:`Adam`'s (``fused``, ``foreach``, ``nonfinite_grads``, ``state_dtype`` and
    ``stochastic_rounding`` included, and the notes'
    variants ``bias_correction`` and ``eps_inside_sqrt``, which torch lacks: its parameter
    groups keep them besides torch's keys, and a group loaded without them takes the
    defaults); the default ``weight_decay`` is 1e-2, as in torch.

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 0.001.
        betas: ``(beta1, beta2)``, each in [0, 1). Default (0.9, 0.999).
        eps: >= 0, added to the root. Default 1e-8.
        weight_decay: >= 0, the rate of the decoupled shrinking. Default 1e-2.
        amsgrad: divide by the running maximum of ``v_hat``.
        bias_correction, eps_inside_sqrt: the notes' variants, as for :class:`Adam`.
        maximize, foreach, fused, capturable, differentiable, nonfinite_grads, state_dtype,
            stochastic_rounding: as for :class:`optimlab.Adam` (how the step is computed, never
            what; the non-finite policy; mixed precision).

    Example::

        >>> import torch, optimlab
        >>> opt = optimlab.AdamW(torch.nn.Linear(4, 1).parameters(), lr=1e-3, weight_decay=0.05)
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | str | None = None,
        bias_correction: bool = True,
        eps_inside_sqrt: bool = False,
        nonfinite_grads: str = "raise",
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        settings = hyperparameters(locals())
        super().__init__(
            params, **settings, decoupled_weight_decay=True, nonfinite_grads=nonfinite_grads
        )
