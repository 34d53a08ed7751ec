"""Gradient descent and momentum: torch's SGD, and the notes' two momentum forms."""

from __future__ import annotations

from typing import Any

from ..core import rules
from .base import Optimizer
from .binding import call_rule, item
from .checks import boolean, hyperparameters, non_negative, one_of, unit_interval


class SGD(Optimizer):
    r"""Stochastic gradient descent, numerically identical to :class:`torch.optim.SGD`.

    Update, with ``g`` the gradient (negated when ``maximize``) plus ``weight_decay * w``::

        b = g                                   on the first step
        b = momentum * b + (1 - dampening) * g  afterwards
        w = w - lr * b                          (w - lr * (g + momentum * b) with nesterov)

    With ``momentum=0`` this is plain batch, stochastic or mini-batch gradient descent,
    ``w = w - lr * g`` (seed 004, section 1); which one depends only on the batches you feed.

    How the step is computed (``fused``, ``foreach``) and ``nonfinite_grads`` are as for
    :class:`optimlab.Adam`; this rule takes no square root, so every path gives bitwise the same
    results.

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
        nonfinite_grads: str = "raise",
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _check_group(self, group):
        super()._check_group(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                f"Invalid nesterov=True with momentum={group['momentum']!r} and "
                f"dampening={group['dampening']!r}; Nesterov momentum needs momentum > 0 "
                "and dampening = 0"
            )

    def _buffer_names(self, group):
        return ("momentum_buffer",) if group["momentum"] != 0 else ()


MOMENTUM_FORMS = ("ema", "heavy_ball")


class Momentum(Optimizer):
    r"""Gradient descent with momentum, in the forms the notes use.

    ``form="ema"`` (seed 000 listing 1, seeds 001 and 002): the step follows an exponentially
    weighted average of the gradients, started at zero::

        v = beta * v + (1 - beta) * g
        w = w - lr * v                       (lr * v / (1 - beta**t) with bias_correction)

    ``form="heavy_ball"`` (seed 004): the previous step is added again, scaled by ``beta``::

        w_t = w_{t-1} - lr * g + beta * (w_{t-1} - w_{t-2})

    The two are the same method: ``ema`` with learning rate ``a`` takes exactly the steps of
    ``heavy_ball`` with learning rate ``a * (1 - beta)``. They differ when the learning rate
    changes: ``ema`` rescales the whole remembered velocity, ``heavy_ball`` only new gradients.

    ``nesterov=True`` (seed 004) takes the gradient at the look-ahead point
    ``w_{t-1} + beta * (w_{t-1} - w_{t-2})``. The parameter the optimizer holds *is* that
    look-ahead point, so the gradient you compute at the parameter is the one the rule needs;
    the points where gradients are evaluated are exactly those of the notes' formula.

    ``g`` is the gradient (negated when ``maximize``) plus ``weight_decay * w``.

    How the step is computed (``fused``, ``foreach``) and ``nonfinite_grads`` are as for
    :class:`optimlab.Adam`; this rule takes no square root, so every path gives bitwise the same
    results.

    Example::

        >>> import torch, optimlab
        >>> w = torch.tensor([1.0], requires_grad=True)
        >>> opt = optimlab.Momentum([w], lr=0.5, beta=0.8)   # v = 0.2 * g on the first step
        >>> (w ** 2).sum().backward(); _ = opt.step()
        >>> round(w.item(), 6)  # 1 - 0.5 * 0.2 * 2
        0.8
    """

    _checks = {
        **Optimizer._checks,
        "lr": non_negative,
        "beta": unit_interval,
        "form": one_of(*MOMENTUM_FORMS),
        "nesterov": boolean,
        "bias_correction": boolean,
        "weight_decay": non_negative,
        "maximize": boolean,
    }

    _derived = {"bias_correction_on": item("bias_correction")}

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        beta: float = 0.9,
        form: str = "ema",
        nesterov: bool = False,
        weight_decay: float = 0.0,
        *,
        bias_correction: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
        nonfinite_grads: str = "raise",
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _check_group(self, group):
        super()._check_group(group)
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
