"""Adafactor, Muon, LAMB and LARS: drop-in optimizers beyond the notes, built from the core's parts.

Each shapes its step per tensor rather than per element (factored second moments, an
orthogonalized matrix, trust ratios of norms), so none has a fused path: the compiled loop of
:mod:`optimlab.fused.native` is elementwise. Their rules are in :mod:`optimlab.core.layerwise`.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from ..core import layerwise as rules
from ..core.rules import adam as adam_rule
from .base import Optimizer, _as_real
from .binding import call_rule, constant, item
from .checks import (
    FLOAT32_EXPONENT,
    LARGEST_RELATIVE_STEP,
    RELATIVE_STEP_REASON,
    boolean,
    bounded,
    hyperparameters,
    invalid,
    non_negative,
    not_at_least_zero,
    one_of,
    optional,
    pair_in_unit_interval,
    real_number,
    torch_words,
    unit_interval,
)
from .state import new_step

# --- checks of the arguments only these optimizers take ------------------------------------


def _relative_step(name: str, value: Any) -> None:
    """A learning rate that moves each tensor relative to its norm (LAMB, Adafactor): [0, 2**16]."""
    if real_number(name, value) < 0:
        raise ValueError(f"{invalid(name, value)}; expected a finite number >= 0")
    bounded(name, value, 0.0, LARGEST_RELATIVE_STEP, why=RELATIVE_STEP_REASON)


def _non_positive(name: str, value: Any) -> None:
    if real_number(name, value) > 0:
        raise ValueError(f"{invalid(name, value)}; expected a finite number <= 0")


def _at_least_one(name: str, value: Any) -> None:
    if real_number(name, value) < 1:
        raise ValueError(f"{invalid(name, value)}; expected a finite number >= 1")


def _adafactor_eps(name: str, value: Any) -> None:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{invalid(name, value)}; expected a pair (eps1, eps2), eps1 may be None")
    for i in (0, 1):  # eps1 may be None: the dtype's machine epsilon
        if value[i] is not None or i == 1:
            torch_words(
                non_negative, f"epsilon{i + 1} should be >= 0 but is: {{}}", not_at_least_zero
            )(f"{name}[{i}]", value[i])


def _coefficients(name: str, value: Any) -> None:
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise TypeError(f"{invalid(name, value)}; expected three numbers (a, b, c)")
    for i, v in enumerate(value):
        real_number(f"{name}[{i}]", v)


#: the largest singular value Muon's Newton-Schulz iteration may reach: it takes fifth powers
#: of them (``A**2 X``), which must stay within float32's (and bfloat16's) 2**128: 2**25
_LARGEST_SINGULAR_VALUE = 2.0 ** (FLOAT32_EXPONENT // 5)


@functools.lru_cache(maxsize=64)
def _newton_schulz_peak(a: float, b: float, c: float, steps: int) -> float:
    """The largest singular value ``steps`` iterations of ``s -> a s + b s**3 + c s**5`` reach
    from ``[0, 1]`` (where the iteration starts them), over a fine grid, in float64."""
    s = torch.linspace(0.0, 1.0, 4097, dtype=torch.float64)
    peak = 1.0
    for _ in range(steps):
        s = a * s + b * s**3 + c * s**5
        peak = max(peak, torch.nan_to_num(s.abs(), nan=torch.inf).max().item())
        if not peak <= _LARGEST_SINGULAR_VALUE:
            break
    return peak


def _ns_steps(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{invalid(name, value, f'a {type(value).__name__}')}; expected an integer from 1 to 99"
        )
    if not 1 <= value < 100:
        raise ValueError(f"{invalid(name, value)}; expected an integer from 1 to 99")


def _weight_norm_clamp(name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{invalid(name, value)}; expected None or a pair (low, high)")
    non_negative(f"{name}[0]", value[0])
    non_negative(f"{name}[1]", value[1])
    if value[0] > value[1]:
        raise ValueError(f"{invalid(name, value)}; expected low <= high")


# --- parameters of one group that keep different state -------------------------------------


class _StateByKind(Optimizer):
    """An optimizer whose parameters, within one group, keep different state by their shape.

    Adafactor keeps a row and a column factor for a matrix but a full average for a vector;
    Muon a momentum buffer for a matrix but AdamW's two averages for the rest. Each parameter
    has a kind (``_kind``), each kind its buffers (``_kind_buffers``); a step runs the base
    class's bucketing once per kind, so every bucket the rule gets is of one kind and the state
    holds exactly what that kind needs (the same entries as torch.optim keeps).
    """

    _computes_in_state_dtype = False  # its own state layout and steps

    #: the kinds, in order; the first is what ``_buffer_names`` lists outside a step
    _kinds: tuple[str, ...] = ()

    def _kind(self, real: Tensor, group: dict[str, Any]) -> str:
        """The kind of a parameter, from its real view (complex numbers are pairs of reals)."""
        raise NotImplementedError

    def _kind_buffers(self, kind: str, group: dict[str, Any]) -> tuple[str, ...]:
        raise NotImplementedError

    def _kind_state(self, kind: str, real: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        """The zeroed buffers of a parameter of this kind; same shape as it unless overridden."""
        names = self._kind_buffers(kind, group)
        return {n: torch.zeros_like(real, memory_format=torch.preserve_format) for n in names}

    def _buffer_names(self, group):
        names: tuple[str, ...] = ()
        for k in self._kinds:
            names += tuple(n for n in self._kind_buffers(k, group) if n not in names)
        return names

    def _init_state(self, p, group):
        real = _as_real(p)
        return {"step": new_step(), **self._kind_state(self._kind(real, group), real, group)}

    def _step_params(self, group, params, fused):
        by_kind: dict[str, list[Tensor]] = {}
        for p in params:
            if p.grad is None:
                continue
            kind = self._kind(_as_real(p), group)
            state = self.state.get(p)
            needed = self._kind_buffers(kind, group)
            if state and not set(needed) <= set(state):
                raise ValueError(
                    f"The state of a parameter of shape {tuple(p.shape)} holds "
                    f"{sorted(state)}, but it now takes a {kind!r} step, which needs "
                    f"{sorted(needed)}: its group's settings changed after it was stepped"
                )
            by_kind.setdefault(kind, []).append(p)
        for kind, members in by_kind.items():
            super()._step_params(group, members, fused, self._kind_buffers(kind, group))


# --- the optimizers ------------------------------------------------------------------------


class Adafactor(_StateByKind):
    r"""Adafactor (Shazeer and Stern, 2018); numerically identical to torch.optim.Adafactor.

    Update at step ``t``, with ``g`` the gradient (negated when ``maximize``),
    ``beta2_t = 1 - t**beta2_decay``, ``rho = min(lr, 1/sqrt(t))``, and ``RMS`` the root mean
    square of a whole tensor::

        alpha = max(eps2, RMS(w)) * rho               relative step size
        w = w * (1 - lr * weight_decay)               decoupled weight decay
        R = beta2_t * R + (1 - beta2_t) * mean(g**2 over each row)      matrices: factored
        C = beta2_t * C + (1 - beta2_t) * mean(g**2 over each column)
        V = R @ C / max(mean(R), eps1)
        V = beta2_t * V + (1 - beta2_t) * g**2        vectors and scalars
        U = g / sqrt(max(V, eps1**2))
        w = w - alpha / max(1, RMS(U) / d) * U        update clipping at d

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 0.01.
        beta2_decay: <= 0, ``beta2_t = 1 - t**beta2_decay``. Default -0.8.
        eps: ``(eps1, eps2)``: the floor of the second moment (None: the dtype's machine
            epsilon) and of ``RMS(w)``. Default (None, 1e-3).
        d: > 0, the clipping threshold of ``RMS(U)``. Default 1.
        weight_decay: >= 0, decoupled. Default 0.
        maximize, foreach, fused, nonfinite_grads: as for :class:`optimlab.Adam` (how the step
            is computed, never what; the non-finite policy; mixed precision).

    A tensor of two or more dimensions keeps only the averages of ``g**2`` over its rows and
    its columns (state ``row_var`` of shape ``(..., rows, 1)`` and ``col_var`` of shape
    ``(..., 1, cols)``, factored over its last two dimensions): memory grows as rows + columns,
    not rows * columns. Vectors and scalars keep the full average, ``variance``. The steps
    scale with the weights (``alpha``), so ``lr`` is only the cap of the relative step size
    ``rho`` and the rate of the weight decay, as in torch. ``eps=(None, eps2)``: ``eps1`` is
    the dtype's machine epsilon. Complex parameters are updated as pairs of reals (torch
    refuses them): a complex vector's real view is a matrix and is factored.

    No fused path: the step needs norms, row and column means and a matrix product per
    tensor. ``foreach`` chooses torch's multi-tensor kernels for the elementwise parts (the
    default) or one call per tensor: the results are bitwise equal. ``nonfinite_grads`` as for
    every optimlab optimizer (:class:`optimlab.Adam`).

    Example::

        >>> import torch, optimlab
        >>> model = torch.nn.Linear(4, 3)
        >>> opt = optimlab.Adafactor(model.parameters(), lr=1e-2)
        >>> model(torch.ones(8, 4)).pow(2).mean().backward(); _ = opt.step()
        >>> [tuple(t.shape) for k, t in opt.state[model.weight].items() if k != "step"]
        [(3, 1), (1, 4)]
        >>> tuple(opt.state[model.bias]["variance"].shape)
        (3,)
    """

    _unfusable_reason = (
        "its step needs per-tensor norms and, for matrices, row and column means and a "
        "matrix product, which the elementwise fused loop cannot compute"
    )
    _kinds = ("factored", "unfactored")
    _checks = {
        **Optimizer._checks,
        "lr": torch_words(
            _relative_step, "Learning rate should be >= 0 but is: {}", not_at_least_zero
        ),
        "beta2_decay": torch_words(_non_positive, "beta2_decay should be <= 0 but is: {}"),
        "eps": _adafactor_eps,
        "d": torch_words(
            _at_least_one, "Clipping threshold d should be >= 1 but is: {}", lambda d: not d >= 1
        ),
        "weight_decay": torch_words(
            non_negative, "weight_decay should be >= 0 but is: {}", not_at_least_zero
        ),
        "maximize": boolean,
    }
    _rule = staticmethod(rules.adafactor)
    _derived = {"eps1": item("eps", 0), "eps2": item("eps", 1)}

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        fused: bool | str | None = None,
        nonfinite_grads: str = "raise",
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _kind(self, real, group):
        return "factored" if real.ndim >= 2 else "unfactored"

    def _kind_buffers(self, kind, group):
        return ("row_var", "col_var") if kind == "factored" else ("variance",)

    def _kind_state(self, kind, real, group):
        if kind == "unfactored":
            return super()._kind_state(kind, real, group)
        shape = real.shape
        return {
            "row_var": real.new_zeros((*shape[:-1], 1)),
            "col_var": real.new_zeros((*shape[:-2], 1, shape[-1])),
        }


class Muon(_StateByKind):
    r"""Muon for the weight matrices and AdamW for the rest, in one optimizer.

    For 2-D parameters, numerically identical to :class:`torch.optim.Muon` (same arguments
    and defaults); every other parameter (biases, normalization weights, scalars, and tensors
    of more dimensions) takes an AdamW step, so ``Muon(model.parameters())`` trains a whole
    model, as Keller Jordan's ``MuonWithAuxAdam`` does. Update of a weight matrix, with ``g``
    its gradient (negated when ``maximize``)::

        B = momentum * B + (1 - momentum) * g                     momentum (an average)
        M = momentum * B + (1 - momentum) * g    if nesterov else B
        O = newton_schulz(M)                      ~ U V^T for M = U S V^T (orthogonalized)
        w = w * (1 - lr * weight_decay)
        w = w - lr * sqrt(max(1, rows / cols)) * O

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 0.001.
        weight_decay: >= 0, decoupled, for the matrices. Default 0.1.
        momentum: in [0, 1), the matrices' momentum. Default 0.95.
        nesterov: use the Nesterov form of the momentum (the default).
        ns_coefficients: the three coefficients of the quintic Newton-Schulz iteration.
        eps: > 0, the floor of the norm the iteration divides by. Default 1e-7.
        ns_steps: the iterations. Default 5.
        adjust_lr_fn: None (``sqrt(max(1, rows / cols))``) or ``"match_rms_adamw"``.
        adamw_lr: the other parameters' learning rate (None: ``lr``).
        adamw_betas, adamw_eps, adamw_weight_decay: the other parameters' AdamW arguments.
        use_muon: False gives every parameter of the group the AdamW step.
        maximize, foreach, fused, nonfinite_grads: as for :class:`optimlab.Adam` (how the step
            is computed, never what; the non-finite policy; mixed precision).

    ``newton_schulz`` (:func:`optimlab.core.layerwise.newton_schulz`) runs ``ns_steps``
    quintic iterations with ``ns_coefficients``, in bfloat16 as torch and the reference code
    do, after dividing by the Frobenius norm (at least ``eps``); its singular values come out
    roughly in [0.7, 1.2], not exactly 1. ``adjust_lr_fn="match_rms_adamw"`` scales the
    rate by ``0.2 * sqrt(max(rows, cols))`` instead (Moonshot), so AdamW's learning rate
    and weight decay carry over.

    Every other parameter: AdamW (:class:`optimlab.AdamW`, torch.optim.AdamW's arithmetic)
    with ``adamw_lr`` (None: the group's ``lr``, so a schedule drives both),
    ``adamw_betas``, ``adamw_eps`` and ``adamw_weight_decay``; the defaults are
    ``MuonWithAuxAdam``'s. ``use_muon=False`` (per group) gives all of a group's parameters
    the AdamW step: the reference recommends it for the input embedding and the output layer,
    which are matrices too. State: ``momentum_buffer`` for a matrix, ``exp_avg`` and
    ``exp_avg_sq`` for the others, as torch's Muon and AdamW keep. A complex matrix is a
    (rows, cols, 2) real tensor, so it takes the AdamW step.

    No fused path: the orthogonalization is a sequence of matrix products. ``foreach``
    chooses torch's multi-tensor kernels for the elementwise parts (the default) or one call
    per tensor: the results are bitwise equal.

    Example::

        >>> import torch, optimlab
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(),
        ...                             torch.nn.Linear(16, 2))
        >>> opt = optimlab.Muon(model.parameters(), lr=0.02, adamw_lr=3e-4)
        >>> model(torch.ones(4, 8)).pow(2).mean().backward(); _ = opt.step()
        >>> sorted(opt.state[model[0].weight]), sorted(opt.state[model[0].bias])
        (['momentum_buffer', 'step'], ['exp_avg', 'exp_avg_sq', 'step'])
    """

    _unfusable_reason = (
        "its Newton-Schulz orthogonalization is a sequence of matrix products, which the "
        "elementwise fused loop cannot compute"
    )
    _kinds = ("matrix", "adamw")
    _checks = {
        **Optimizer._checks,
        "lr": torch_words(
            non_negative, "Learning rate should be >= 0 but is: {}", not_at_least_zero
        ),
        "weight_decay": torch_words(
            non_negative, "weight decay should be >= 0 but is: {}", not_at_least_zero
        ),
        "momentum": torch_words(
            unit_interval, "momentum should be >= 0 but is: {}", not_at_least_zero
        ),
        "nesterov": boolean,
        "ns_coefficients": _coefficients,
        "eps": non_negative,
        "ns_steps": _ns_steps,
        "adjust_lr_fn": torch_words(
            one_of(*rules.MUON_LR_ADJUSTMENTS), "Adjust learning rate function {} is not supported"
        ),
        "adamw_lr": optional(non_negative),
        "adamw_betas": pair_in_unit_interval,
        "adamw_eps": non_negative,
        "adamw_weight_decay": non_negative,
        "use_muon": boolean,
        "maximize": boolean,
    }

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = rules.MUON_COEFFICIENTS,
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        *,
        adamw_lr: float | None = None,
        adamw_betas: tuple[float, float] = (0.9, 0.95),
        adamw_eps: float = 1e-10,
        adamw_weight_decay: float = 0.0,
        use_muon: bool = True,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
        nonfinite_grads: str = "raise",
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _check_group(self, group: dict[str, Any], loading: bool = False) -> None:
        super()._check_group(group, loading)
        # Each Newton-Schulz step maps every singular value s to a s + b s**3 + c s**5: they
        # must not grow past 2**25, whose fifth power is float32's (and bfloat16's) 2**128.
        a, b, c = (float(v) for v in group["ns_coefficients"])
        peak = _newton_schulz_peak(a, b, c, group["ns_steps"])
        if not peak <= _LARGEST_SINGULAR_VALUE:
            raise ValueError(
                f"Invalid ns_coefficients={group['ns_coefficients']!r} with "
                f"ns_steps={group['ns_steps']!r}: the iteration s -> a*s + b*s**3 + c*s**5 "
                f"takes singular values in [0, 1] up to {peak:.3g}; expected coefficients that "
                f"keep them within 2**{FLOAT32_EXPONENT // 5} (their fifth powers within "
                f"float32's 2**{FLOAT32_EXPONENT}), as the default {rules.MUON_COEFFICIENTS} do"
            )

    def _kind(self, real, group):
        return "matrix" if group["use_muon"] and real.ndim == 2 else "adamw"

    def _kind_buffers(self, kind, group):
        return ("momentum_buffer",) if kind == "matrix" else ("exp_avg", "exp_avg_sq")

    def _update(self, ops, arguments, params, grads, buffers):
        if "momentum_buffer" in buffers:
            call_rule(rules.muon, ops, params, grads, buffers, arguments, {})
        else:  # AdamW, whose arguments are the adamw_* hyperparameters
            adamw = {name: value(arguments) for name, value in self._adamw_arguments.items()}
            call_rule(adam_rule, ops, params, grads, buffers, {**arguments, **adamw}, {})

    #: the AdamW part's arguments, from the adamw_* hyperparameters
    _adamw_arguments = {
        "lr": lambda a: a["lr"] if a["adamw_lr"] is None else a["adamw_lr"],
        "beta1": item("adamw_betas", 0),
        "beta2": item("adamw_betas", 1),
        "eps": item("adamw_eps"),
        "weight_decay": item("adamw_weight_decay"),
        "eps_inside_sqrt": constant(False),
        "decoupled_weight_decay": constant(True),
        "amsgrad": constant(False),
        "bias_correction_on": constant(True),
    }


class LAMB(Optimizer):
    r"""LAMB (You et al., 2019, "Large Batch Optimization for Deep Learning", Algorithm 2).

    Adam's direction, with the step of each tensor scaled to its weights' norm. Update at
    step ``t``, with ``g`` the gradient (negated when ``maximize``) and norms over each
    tensor::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        r = m_hat / (sqrt(v_hat) + eps) + weight_decay * w     m_hat = m / (1 - beta1**t), ...
        w = w - lr * phi(|w|) / |r| * r                        trust ratio phi(|w|) / |r|

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 0.001.
        betas: ``(beta1, beta2)``, each in [0, 1). Default (0.9, 0.999).
        eps: >= 0, added to the root. Default 1e-6.
        weight_decay: >= 0, added to the Adam step before the trust ratio. Default 0.
        weight_norm_clamp: None, or ``(low, high)`` bounds of ``|w|`` in the trust ratio.
        maximize, foreach, fused, nonfinite_grads, state_dtype, stochastic_rounding: as for
            :class:`optimlab.Adam` (how the step is computed, never what; the non-finite
            policy; mixed precision).

    Each tensor (layer) moves by ``lr * phi(|w|)``, whatever its gradient's scale: the ratio
    that lets the paper train BERT with batches of 32k. ``phi`` is the identity, or
    ``min(max(|w|, low), high)`` with ``weight_norm_clamp=(low, high)`` (the paper's bounded
    ``phi``; pytorch-lamb clamps to (0, 10)). Where ``phi(|w|)`` or ``|r|`` is 0 (a bias
    initialized at zero) the ratio is 1, as in the reference implementations. The decay is
    part of ``r``, so it is scaled with the step (the paper uses 0.01 for BERT).

    No fused path: the trust ratio needs two norms per tensor. ``foreach`` chooses torch's
    multi-tensor kernels (the default) or one call per tensor: the results are bitwise equal.

    ``nonfinite_grads``, ``state_dtype`` and ``stochastic_rounding`` are as for
    :class:`optimlab.Adam`.

    Example::

        >>> import torch, optimlab
        >>> w = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
        >>> opt = optimlab.LAMB([w], lr=0.1)
        >>> w.grad = torch.tensor([1.0, 0.0], dtype=torch.float64); _ = opt.step()
        >>> [round(x, 6) for x in w.tolist()]          # moved by lr * |w| = 0.5
        [2.5, 4.0]
    """

    _unfusable_reason = (
        "its trust ratio needs the norms of each tensor's weights and update, reductions the "
        "elementwise fused loop cannot compute"
    )
    _checks = {
        **Optimizer._checks,
        "lr": _relative_step,
        "betas": pair_in_unit_interval,
        "eps": non_negative,
        "weight_decay": non_negative,
        "weight_norm_clamp": _weight_norm_clamp,
        "maximize": boolean,
    }
    _rule = staticmethod(rules.lamb)

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        weight_norm_clamp: tuple[float, float] | None = None,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
        nonfinite_grads: str = "raise",
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _buffer_names(self, group):
        return ("exp_avg", "exp_avg_sq")


class LARS(Optimizer):
    r"""LARS (You et al., 2017, "Large Batch Training of Convolutional Networks", Algorithm 1).

    Momentum SGD with a learning rate for each tensor (layer) from the ratio of its weights'
    norm to its gradient's. Update, with ``g`` the gradient (negated when ``maximize``) and
    norms over each tensor::

        local_lr = trust_coefficient * |w| / (|g| + weight_decay * |w|)
        v = momentum * v + lr * local_lr * (g + weight_decay * w)
        w = w - v

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 1.0.
        momentum: >= 0, the momentum of the scaled steps. Default 0.9.
        weight_decay: >= 0, added to ``g`` and to the trust ratio's denominator. Default 0.
        trust_coefficient: > 0, ``tau`` of the per-tensor rate. Default 1e-3.
        exclude_1d: give tensors of at most one dimension (biases, normalization weights)
            ``local_lr = 1`` and no weight decay.
        maximize, foreach, fused, nonfinite_grads, state_dtype, stochastic_rounding: as for
            :class:`optimlab.Adam` (how the step is computed, never what; the non-finite
            policy; mixed precision).

    Each tensor moves by about ``lr * trust_coefficient * |w|`` per step whatever its
    gradient's scale, which keeps layers with small gradients learning at very large batch
    sizes (the paper trains AlexNet and ResNet-50 with batches of 8k-32k, with
    ``trust_coefficient`` 0.001 and ``lr`` a few units, warmed up and decayed). ``lr`` enters
    the velocity, as in the paper (torch's SGD applies it after). Where ``|w|`` is 0 (a
    zero-initialized tensor) or the denominator is 0 (``|g| = 0`` and no weight decay),
    ``local_lr`` is 1, as in optax's ``lars``; a zero gradient with weight decay (a dead layer,
    or gradients zeroed but not set to None) takes the paper's
    ``local_lr = trust_coefficient / weight_decay``. ``exclude_1d=True`` gives
    tensors of at most one dimension (biases, normalization weights) ``local_lr = 1`` and no
    weight decay, as SimCLR, BYOL and Barlow Twins do. ``momentum=0`` keeps no buffer.

    No fused path: the local learning rate needs two norms per tensor. ``foreach`` chooses
    torch's multi-tensor kernels (the default) or one call per tensor: the results are
    bitwise equal.

    ``nonfinite_grads``, ``state_dtype`` and ``stochastic_rounding`` are as for
    :class:`optimlab.Adam`.

    Example::

        >>> import torch, optimlab
        >>> w = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
        >>> opt = optimlab.LARS([w], lr=1.0, momentum=0.0, trust_coefficient=0.01)
        >>> w.grad = torch.tensor([0.0, 2.0], dtype=torch.float64); _ = opt.step()
        >>> [round(x, 6) for x in w.tolist()]          # moved by 0.01 * |w| = 0.05
        [3.0, 3.95]
    """

    _unfusable_reason = (
        "its local learning rate needs the norms of each tensor's weights and gradient, "
        "reductions the elementwise fused loop cannot compute"
    )
    _checks = {
        **Optimizer._checks,
        "lr": non_negative,
        "momentum": unit_interval,
        "weight_decay": non_negative,
        "trust_coefficient": non_negative,
        "exclude_1d": boolean,
        "maximize": boolean,
    }
    _rule = staticmethod(rules.lars)

    def _check_group(self, group: dict[str, Any], loading: bool = False) -> None:
        super()._check_group(group, loading)
        # A step moves each tensor by up to lr * trust_coefficient times its norm.
        step = float(group["lr"]) * float(group["trust_coefficient"])
        if step > LARGEST_RELATIVE_STEP:
            raise ValueError(
                f"Invalid lr={group['lr']!r} with trust_coefficient="
                f"{group['trust_coefficient']!r}; expected lr * trust_coefficient in "
                f"[0, 2**{FLOAT32_EXPONENT // 8}]: {RELATIVE_STEP_REASON}"
            )

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 1e-3,
        *,
        exclude_1d: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
        nonfinite_grads: str = "raise",
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _buffer_names(self, group):
        return ("momentum_buffer",) if group["momentum"] != 0 else ()
