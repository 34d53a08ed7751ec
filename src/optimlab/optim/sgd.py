"""Gradient descent and momentum: torch's SGD, and the notes' two momentum forms."""

from __future__ import annotations

from typing import Any

import torch

from ..core import rules
from .base import Optimizer
from .binding import call_rule, item
from .checks import (
    boolean,
    hyperparameters,
    non_negative,
    one_of,
    sparse_grad_allowed,
    unit_interval,
)


class SGD(Optimizer):
    r"""Stochastic gradient descent, numerically identical to :class:`torch.optim.SGD`.

    Update, with ``g`` the gradient (negated when ``maximize``) plus ``weight_decay * w``::

        b = g                                   on the first step
        b = momentum * b + (1 - dampening) * g  afterwards
        w = w - lr * b                          (w - lr * (g + momentum * b) with nesterov)

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 0.001.
        momentum: >= 0, the ``momentum`` of the update above (0: plain gradient descent).
            Default 0.
        dampening: >= 0, scales the new gradient in the momentum buffer. Default 0.
        weight_decay: >= 0; ``weight_decay * w`` is added to ``g``. Default 0.
        nesterov: step with ``g + momentum * b`` (needs momentum > 0 and dampening 0).
        maximize, foreach, fused, differentiable, nonfinite_grads, state_dtype,
            stochastic_rounding: as for :class:`optimlab.Adam` (how the step is computed, never
            what; the non-finite policy; mixed precision).

    With ``momentum=0`` this is plain batch, stochastic or mini-batch gradient descent,
    ``w = w - lr * g`` (seed 004, section 1); which one depends only on the batches you feed.

    How the step is computed (``fused``, ``foreach``), ``nonfinite_grads`` and mixed
    precision (``state_dtype``, ``stochastic_rounding``) are as for
    :class:`optimlab.Adam`; this rule takes no square root, so every path gives bitwise the same
    results.

    Sparse (COO) gradients, as ``nn.Embedding(sparse=True)`` makes, are taken as torch takes
    them (:func:`optimlab.core.rules.sgd_sparse`: a sparse momentum buffer, bitwise torch's),
    except with ``weight_decay`` or ``fused=True``, which torch refuses too (RuntimeError).

    Example::

        >>> import torch, optimlab
        >>> w = torch.tensor([1.0, -2.0], requires_grad=True)
        >>> opt = optimlab.SGD([w], lr=0.1)
        >>> (w ** 2).sum().backward(); _ = opt.step()
        >>> w.detach().tolist()
        [0.800000011920929, -1.600000023841858]
    """

    _checks = {
        **Optimizer._checks,
        "lr": non_negative,
        "momentum": unit_interval,
        "dampening": non_negative,
        "weight_decay": non_negative,
        "nesterov": boolean,
        "maximize": boolean,
    }
    _rule = staticmethod(rules.sgd)
    _supports_sparse_grads = True
    _complex_arithmetic = True  # torch's SGD never views complex parameters as real

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
        differentiable: bool = False,
        nonfinite_grads: str = "raise",
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _check_group(self, group, loading=False):
        super()._check_group(group, loading)
        if (
            not loading
            and group["nesterov"]
            and (group["momentum"] <= 0 or group["dampening"] != 0)
        ):
            raise ValueError(
                f"Invalid nesterov=True with momentum={group['momentum']!r} and "
                f"dampening={group['dampening']!r}; Nesterov momentum needs momentum > 0 "
                "and dampening = 0"
            )

    def _buffer_names(self, group):
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    _kept_entries = ("momentum_buffer",)

    def _refuse_sparse(self, grad):
        sparse_grad_allowed(self, grad)

    def _step_sparse(self, arguments, p, state):
        momentum = arguments["momentum"]
        first = arguments["step"] == 1  # torch's buffer is None: made from this gradient
        buffer = rules.sgd_sparse(
            p,
            p.grad,
            None if momentum == 0 or first else state["momentum_buffer"],
            lr=arguments["lr"],
            momentum=momentum,
            dampening=arguments["dampening"],
            nesterov=arguments["nesterov"],
            maximize=arguments["maximize"],
        )
        if buffer is not None:
            state["momentum_buffer"] = buffer


MOMENTUM_FORMS = ("ema", "heavy_ball")
#: Momentum's coefficient when neither ``momentum`` nor ``beta`` is given
MOMENTUM_DEFAULT = 0.9


def _momentum_from_beta(group: dict[str, Any], default: float | None = None) -> None:
    """Move ``beta`` (the notes' name) to ``momentum`` (torch's), in place, checking it.

    For the constructor's arguments (``default``: ``momentum``'s default, which ``beta``
    replaces), a parameter group given as a dict, and a group saved before the coefficient
    was named ``momentum`` (otherwise loading it would fill in the default instead).
    """
    if "beta" not in group:
        return
    beta = group.pop("beta")
    if beta is None:  # the constructor's default: not given
        return
    unit_interval("beta", beta)  # refused under the name the caller used
    momentum = group.get("momentum", beta)
    if momentum != beta and momentum != default:
        raise ValueError(
            f"Invalid momentum={momentum!r} with beta={beta!r}; pass only one of them "
            "(beta is the notes' name for momentum)"
        )
    group["momentum"] = beta


class Momentum(Optimizer):
    r"""Gradient descent with momentum, in the forms the notes use.

    ``form="ema"`` (seed 000 listing 1, seeds 001 and 002): the step follows an exponentially
    weighted average of the gradients, started at zero::

        v = beta * v + (1 - beta) * g
        w = w - lr * v                       (lr * v / (1 - beta**t) with bias_correction)

    ``form="heavy_ball"`` (seed 004): the previous step is added again, scaled by ``beta``::

        w_t = w_{t-1} - lr * g + beta * (w_{t-1} - w_{t-2})

    The two are the same method: ``ema`` with learning rate ``a`` takes the steps of
    ``heavy_ball`` with learning rate ``a * (1 - beta)`` in exact arithmetic (in floating point
    they round apart, about 1e-9 relative after a float32 step). They differ when the learning rate
    changes: ``ema`` rescales the whole remembered velocity, ``heavy_ball`` only new gradients.

    ``nesterov=True`` (seed 004) takes the gradient at the look-ahead point
    ``w_{t-1} + beta * (w_{t-1} - w_{t-2})``. The parameter the optimizer holds *is* that
    look-ahead point, so the gradient you compute at the parameter is the one the rule needs;
    the points where gradients are evaluated are exactly those of the notes' formula.

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 0.01.
        momentum: ``beta`` in [0, 1), the average's decay (the notes' beta). Default 0.9.
        form: ``"ema"`` (the averaged form) or ``"heavy_ball"``. Default ``"ema"``.
        nesterov: take the gradient at the look-ahead point (see above).
        weight_decay: >= 0; ``weight_decay * w`` is added to ``g``. Default 0.
        beta: the notes' name for ``momentum`` (give one of the two).
        bias_correction: with ``form="ema"``, divide ``v`` by ``1 - beta**t``.
        maximize, foreach, fused, nonfinite_grads, state_dtype, stochastic_rounding: as for
            :class:`optimlab.Adam` (how the step is computed, never what; the non-finite
            policy; mixed precision).

    ``g`` is the gradient (negated when ``maximize``) plus ``weight_decay * w``, and ``beta``
    is the ``momentum`` argument: it is called ``momentum`` in ``defaults`` and in the
    parameter groups, as in :class:`torch.optim.SGD`, so that torch's schedulers find it
    (``OneCycleLR`` and ``CyclicLR`` with ``cycle_momentum=True`` cycle it). ``beta=``, the
    notes' name, is accepted for it, in the constructor and in parameter-group dicts, and a
    checkpoint saved when the group key was ``beta`` loads with its value.

    How the step is computed (``fused``, ``foreach``), ``nonfinite_grads`` and mixed
    precision (``state_dtype``, ``stochastic_rounding``) are as for
    :class:`optimlab.Adam`; this rule takes no square root, so every path gives bitwise the same
    results.

    Example::

        >>> import torch, optimlab
        >>> w = torch.tensor([1.0], requires_grad=True)
        >>> opt = optimlab.Momentum([w], lr=0.5, momentum=0.8)   # v = 0.2 * g on step 1
        >>> (w ** 2).sum().backward(); _ = opt.step()
        >>> round(w.item(), 6)  # 1 - 0.5 * 0.2 * 2
        0.8
    """

    _checks = {
        **Optimizer._checks,
        "lr": non_negative,
        "momentum": unit_interval,
        "form": one_of(*MOMENTUM_FORMS),
        "nesterov": boolean,
        "bias_correction": boolean,
        "weight_decay": non_negative,
        "maximize": boolean,
    }

    #: the rules take the notes' ``beta``: the ``momentum`` hyperparameter
    _derived = {"bias_correction_on": item("bias_correction"), "beta": item("momentum")}

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        momentum: float = MOMENTUM_DEFAULT,
        form: str = "ema",
        nesterov: bool = False,
        weight_decay: float = 0.0,
        *,
        beta: float | None = None,
        bias_correction: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
        nonfinite_grads: str = "raise",
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        defaults = hyperparameters(locals())
        _momentum_from_beta(defaults, default=MOMENTUM_DEFAULT)
        super().__init__(params, defaults, nonfinite_grads=nonfinite_grads)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if isinstance(param_group, dict):
            _momentum_from_beta(param_group)
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = [dict(group) for group in state_dict["param_groups"]]
        for group in groups:
            _momentum_from_beta(group)
        super().load_state_dict({**state_dict, "param_groups": groups})

    def _check_group(self, group, loading=False):
        super()._check_group(group, loading)
        if group["bias_correction"] and group["form"] != "ema":
            raise ValueError(
                f"Invalid bias_correction=True with form={group['form']!r}; only the 'ema' "
                "form keeps an average to correct"
            )

    def _buffer_names(self, group):
        return ("velocity",) if group["form"] == "ema" else ("last_step",)

    def _update(self, ops, arguments, params, grads, buffers):
        form = arguments["form"]
        rule = rules.ema_momentum if form == "ema" else rules.heavy_ball_momentum
        call_rule(rule, ops, params, grads, buffers, arguments, self._derived)
