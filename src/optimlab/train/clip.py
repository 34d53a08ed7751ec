"""Gradient clipping and detection of non-finite gradients.

Clipping by global norm wraps :func:`torch.nn.utils.clip_grad_norm_` (the library made for the
job: one fused ``torch._foreach_norm`` per device and dtype, no per-tensor Python loop) and adds
what it lacks: arguments are checked up front with errors that name the argument and its value,
the total norm comes back as a Python ``float``, and a non-finite norm under
``error_if_nonfinite=True`` names the first parameter whose gradient holds NaN or Inf.

Example::

    loss.backward()
    if not grads_are_finite(model.parameters()):
        bad = first_nonfinite_grad(model.named_parameters())
        raise RuntimeError(f"non-finite gradient in {bad}")
    norm = clip_grad_norm(model.parameters(), max_norm=1.0)
    optimizer.step()

Every function accepts a single tensor, an iterable of tensors, or an iterable of
``(name, tensor)`` pairs such as ``model.named_parameters()``. Parameters whose ``.grad`` is
``None`` are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from numbers import Real

import torch

__all__ = [
    "clip_grad_norm",
    "clip_grad_value",
    "grad_norm_clipped",
    "grads_are_finite",
    "first_nonfinite_grad",
]

ParamsArg = torch.Tensor | Iterable[torch.Tensor] | Iterable[tuple[str, torch.Tensor]]


def _named_list(parameters: ParamsArg) -> list[tuple[str | None, torch.Tensor]]:
    """Materialise ``parameters`` as ``[(name or None, tensor), ...]``."""
    if isinstance(parameters, torch.Tensor):
        return [(None, parameters)]
    out: list[tuple[str | None, torch.Tensor]] = []
    for i, item in enumerate(parameters):
        if isinstance(item, torch.Tensor):
            out.append((None, item))
        elif (
            isinstance(item, tuple)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], torch.Tensor)
        ):
            out.append((item[0], item[1]))
        else:
            raise TypeError(
                f"parameters[{i}]: expected a tensor or a (name, tensor) pair, "
                f"got {type(item).__name__}"
            )
    return out


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (Real, torch.Tensor)):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            raise TypeError(
                f"{name} must be a real number, got a tensor of shape "
                f"{tuple(value.shape)} and dtype {value.dtype}"
            )
        value = value.item()
    return float(value)


def _check_norm_type(norm_type: float | str) -> float:
    if isinstance(norm_type, str):
        if norm_type.lower() not in ("inf", "+inf"):
            raise ValueError(f"norm_type must be a positive number or 'inf', got {norm_type!r}")
        return math.inf
    p = _check_real("norm_type", norm_type)
    if math.isnan(p) or p <= 0:
        raise ValueError(f"norm_type must be a positive number or inf, got {norm_type!r}")
    return p


def _grad_values(g: torch.Tensor) -> torch.Tensor:
    """The stored values of a gradient (dense tensor, or the values of a sparse one)."""
    if g.is_sparse:
        return g.coalesce().values()
    return g


def clip_grad_norm(
    parameters: ParamsArg,
    max_norm: float,
    norm_type: float | str = 2.0,
    error_if_nonfinite: bool = False,
) -> float:
    """Scale all gradients in place so that their global norm is at most ``max_norm``.

    The global norm is the ``norm_type``-norm of all gradients viewed as one vector. When it
    exceeds ``max_norm`` every gradient is multiplied by ``max_norm / (norm + 1e-6)``; otherwise
    the gradients are left unchanged (multiplied by exactly 1.0). Parameters without a gradient
    are skipped; with no gradients at all the norm is ``0.0``.

    Args:
        parameters: a tensor, an iterable of tensors, or of ``(name, tensor)`` pairs.
        max_norm: the largest allowed norm, ``>= 0`` (``inf`` means no clipping).
        norm_type: the order of the norm, ``> 0``, or ``inf`` / ``"inf"`` for the max-abs norm.
        error_if_nonfinite: raise ``RuntimeError`` (naming the first parameter with a NaN or
            Inf gradient) instead of scaling by a non-finite norm; the gradients are then left
            untouched.

    Returns:
        The total norm of the gradients *before* clipping, as a Python float.

    Raises:
        ValueError: ``max_norm`` is negative or NaN, or ``norm_type`` is not positive.
        TypeError: ``max_norm`` or ``norm_type`` is not a real number.

    Example::

        >>> p = torch.zeros(2, requires_grad=True)
        >>> p.grad = torch.tensor([3.0, 4.0])
        >>> clip_grad_norm([p], max_norm=1.0)
        5.0
    """
    return float(grad_norm_clipped(parameters, max_norm, norm_type, error_if_nonfinite).item())


def grad_norm_clipped(
    parameters: ParamsArg,
    max_norm: float,
    norm_type: float | str = 2.0,
    error_if_nonfinite: bool = False,
) -> torch.Tensor:
    """:func:`clip_grad_norm`, returning the norm as a 0-dim tensor on the gradients' device:
    without ``error_if_nonfinite`` nothing waits for the device (``fit`` reads it later)."""
    mn = _check_real("max_norm", max_norm)
    if math.isnan(mn) or mn < 0:
        raise ValueError(f"max_norm must be a non-negative number, got {max_norm!r}")
    p = _check_norm_type(norm_type)
    named = _named_list(parameters)
    tensors = [t for _, t in named]
    try:
        total = torch.nn.utils.clip_grad_norm_(
            tensors, mn, norm_type=p, error_if_nonfinite=error_if_nonfinite
        )
    except RuntimeError as e:
        if error_if_nonfinite and "non-finite" in str(e):
            bad = first_nonfinite_grad(named)
            raise RuntimeError(
                f"the total gradient norm of order {p} is non-finite "
                f"(first non-finite gradient: {bad}); gradients were left unchanged. "
                "Pass error_if_nonfinite=False to scale them anyway."
            ) from e
        raise
    return total


def clip_grad_value(parameters: ParamsArg, clip_value: float) -> None:
    """Clamp every gradient element in place to ``[-clip_value, clip_value]``.

    Wraps :func:`torch.nn.utils.clip_grad_value_`, checking ``clip_value`` first (a negative
    or NaN value raises ``ValueError`` instead of silently overwriting every gradient).
    Parameters without a gradient are skipped.
    """
    cv = _check_real("clip_value", clip_value)
    if math.isnan(cv) or cv < 0:
        raise ValueError(f"clip_value must be a non-negative number, got {clip_value!r}")
    tensors = [t for _, t in _named_list(parameters)]
    torch.nn.utils.clip_grad_value_(tensors, cv)


def grads_are_finite(parameters: ParamsArg) -> bool:
    """True when no gradient holds NaN or Inf (parameters without a gradient are skipped).

    Costs one synchronisation per device however many parameters there are.
    """
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for _, t in _named_list(parameters):
        if t.grad is not None:
            flag = torch.isfinite(_grad_values(t.grad)).all()
            by_device.setdefault(flag.device, []).append(flag)
    return all(bool(torch.stack(flags).all().item()) for flags in by_device.values())


def first_nonfinite_grad(parameters: ParamsArg, names: Sequence[str] | None = None) -> str | None:
    """The name of the first parameter whose gradient holds NaN or Inf, or ``None``.

    Names come from ``names`` (one per parameter, in order), or from ``(name, tensor)`` pairs
    such as ``model.named_parameters()``; otherwise the parameter is named by its position,
    ``"parameters[i]"`` (counting parameters without a gradient too).
    """
    named = _named_list(parameters)
    if names is not None:
        names = list(names)
        if len(names) != len(named):
            raise ValueError(
                f"names has {len(names)} entries but there are {len(named)} parameters"
            )
    for i, (pair_name, t) in enumerate(named):
        if t.grad is None:
            continue
        if not bool(torch.isfinite(_grad_values(t.grad)).all()):
            if names is not None:
                return str(names[i])
            return pair_name if pair_name is not None else f"parameters[{i}]"
    return None
