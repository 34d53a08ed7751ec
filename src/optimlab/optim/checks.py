"""Hyperparameter checks of the optimizer classes, in torch's words: ``"Invalid learning rate:
-1.0 (lr); ..."``.

Each check takes ``(name, value)`` and raises TypeError or ValueError naming both and what is
valid; a class lists its checks in ``_checks``. The messages begin as torch.optim's do
(``"Invalid weight_decay value: -1"``, ``"Invalid beta parameter at index 0: 1.0"``), so code
and tests matching torch's messages match these. (The functional API checks its arguments with
:mod:`optimlab.checks`, whose messages name the owner first.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

# --- hyperparameter checks -----------------------------------------------------------------
# Each check takes (name, value) and raises TypeError/ValueError naming both.
#
# The bounds come from the float range, never typed in. float32 (with bfloat16, which shares
# its exponents) is the narrowest range a rule computes in: its largest value lies just under
# 2**FLOAT32_EXPONENT = 2**128. A step multiplies up to four numbers of a scale
# hyperparameter's size: a learning rate, a decay (or trust) coefficient, a parameter or
# gradient, and the growth a too-large step compounds over the next ones (lr * weight_decay *
# p, step after step). Each may therefore reach the fourth root of that range, 2**32 (about
# 4.3e9), and no further: beyond it a step can overflow float32 for parameters and gradients
# of ordinary size (0.001 to 1000), and from 2**128 on the value is not even a float32.

#: the exponent of float32's range: its largest finite value is just under 2**128
FLOAT32_EXPONENT = math.frexp(torch.finfo(torch.float32).max)[1]
#: the exponent of float64's range (1024), for rules computed in Python floats
FLOAT64_EXPONENT = math.frexp(torch.finfo(torch.float64).max)[1]
#: the largest scale hyperparameter (learning rate, decay, epsilon, ...): 2**32
LARGEST_SCALE = 2.0 ** (FLOAT32_EXPONENT // 4)
#: the smallest positive scale where a rule needs one (a denominator floor, a distance): 2**-32;
#: four such factors stay above 2**-128, within float32's subnormal range
SMALLEST_SCALE = 1.0 / LARGEST_SCALE
#: the largest relative step (a step that moves a tensor by up to this times its own norm, as
#: LAMB's, LARS's and Adafactor's do): 2**16. Such steps compound, the norm growing by up to
#: this factor a step, and norms square the weights: four steps' growth, squared, is 2**128.
LARGEST_RELATIVE_STEP = 2.0 ** (FLOAT32_EXPONENT // 8)
RELATIVE_STEP_REASON = (
    "each step moves a tensor by up to this times its norm, so its norm may grow by this "
    f"factor a step, and norms square the weights: four steps' growth, squared, is float32's "
    f"2**{FLOAT32_EXPONENT}"
)
_SCALE_REASON = (
    f"a step multiplies up to four numbers of this size, and float32's range ends at "
    f"2**{FLOAT32_EXPONENT}"
)


def power_of_two(value: float) -> str:
    """A bound as the message shows it: ``2**32`` rather than ``4294967296.0``.

    >>> power_of_two(2.0 ** 32), power_of_two(-2.0 ** -32), power_of_two(18.3)
    ('2**32', '-2**-32', '18.3')
    """
    mantissa, exponent = math.frexp(abs(value))
    sign = "-" if value < 0 else ""
    return f"{sign}2**{exponent - 1}" if mantissa == 0.5 else f"{value:g}"


#: how torch.optim begins its message for these arguments (others: "Invalid {name} value")
_TORCH_PHRASES = {"lr": "Invalid learning rate", "eps": "Invalid epsilon value"}


def invalid(name: str, value: Any, note: str = "") -> str:
    """How a message about a bad ``value`` of argument ``name`` begins: in torch's words (so
    code matching torch's messages matches these), naming the argument where they do not, and
    with ``note`` in the parentheses.

    >>> invalid("lr", -0.5), invalid("momentum", "1", "a str")
    ('Invalid learning rate: -0.5 (lr)', "Invalid momentum value: '1' (a str)")
    >>> invalid("lr", "1", "a str")
    "Invalid learning rate: '1' (lr, a str)"
    """
    phrase = _TORCH_PHRASES.get(name)
    said = [name] if phrase is not None else []
    said += [note] if note else []
    aside = f" ({', '.join(said)})" if said else ""
    return f"{phrase or f'Invalid {name} value'}: {value!r}{aside}"


def real_number(name: str, value: Any) -> float:
    """A finite real number (not a bool), as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{invalid(name, value, f'a {type(value).__name__}')}; expected a real number"
        )
    try:
        real = float(value)  # a Python int beyond the float range raises OverflowError
    except OverflowError:
        real = math.inf
    if not math.isfinite(real):
        raise ValueError(f"{invalid(name, value)}; expected a finite number")
    return real


def bounded(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    open_low: bool = False,
    why: str = _SCALE_REASON,
) -> float:
    """A real number in ``[low, high]`` (``(low, high]`` with ``open_low``), as a float.

    The one check every bounded hyperparameter goes through: a value outside says so with the
    range (its bounds as powers of two where they are) and ``why``.
    """
    number = real_number(name, value)
    if number < low or number > high or (open_low and number == low):
        opening = "(" if open_low else "["
        raise ValueError(
            f"{invalid(name, value)}; expected a number in "
            f"{opening}{power_of_two(low) if low else 0}, {power_of_two(high)}]: {why}"
        )
    return number


def non_negative(name: str, value: Any) -> None:
    """A number in [0, 2**32] (learning rates, epsilons, weight decay, dampening)."""
    if real_number(name, value) < 0:
        raise ValueError(f"{invalid(name, value)}; expected a finite number >= 0")
    bounded(name, value, 0.0, LARGEST_SCALE)


def unit_interval(name: str, value: Any) -> None:
    """A coefficient of an average: 0 <= value < 1."""
    if not 0.0 <= real_number(name, value) < 1.0:
        raise ValueError(f"{invalid(name, value)}; expected a number in [0, 1)")


def betas(count: int) -> Callable[[str, Any], None]:
    """The check of ``count`` averaging coefficients, such as Adam's two ``betas``."""
    kind = {2: "a pair", 3: "a triple"}.get(count, f"{count} numbers")
    names = ", ".join(f"beta{i + 1}" for i in range(count))

    def check(name: str, value: Any) -> None:
        if not isinstance(value, (tuple, list)) or len(value) != count:
            raise TypeError(f"{invalid(name, value)}; expected {kind} ({names})")
        for i, beta in enumerate(value):
            if not 0.0 <= real_number(f"{name}[{i}]", beta) < 1.0:  # in torch's words
                raise ValueError(
                    f"Invalid beta parameter at index {i}: {beta!r} ({name}="
                    f"{tuple(value)!r}); expected a number in [0, 1)"
                )

    return check


#: Two averaging coefficients, such as Adam's ``betas``.
pair_in_unit_interval = betas(2)


#: the largest count of steps: the rules divide by step counts in float64, which holds every
#: integer exactly up to 2**53 (a larger Python int may not even convert to a float)
LARGEST_STEP_COUNT = 2**53


def positive_integer(name: str, value: Any) -> None:
    """A count of steps (a warm-up's length): an integer in [1, 2**53]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{invalid(name, value, f'a {type(value).__name__}')}; expected an integer >= 1"
        )
    if value < 1:
        raise ValueError(f"{invalid(name, value)}; expected an integer >= 1")
    if value > LARGEST_STEP_COUNT:
        raise ValueError(
            f"{invalid(name, value)}; expected an integer in [1, 2**53]: a rule "
            "divides by it in float64, which counts steps exactly up to 2**53"
        )


class TensorScalar(float):
    """The number in a 1-element float32 tensor (a tensor learning rate), whose arithmetic with
    Python numbers is the tensor's: the other operand rounded to float32, then the result, as
    ``torch.tensor(0.01) / x`` computes on the CPU. torch.optim computes with a tensor lr on
    the tensor (Adam's ``lr / bias_correction1``), so a rule handed this number rounds where
    torch's does. Anything else (``float(x)``, ``math.sqrt``) sees the plain float; so does a
    step traced by ``torch.compile`` (a rounding apart from the eager step).

    >>> lr = TensorScalar(torch.tensor(0.01).item())
    >>> lr / 0.9 == torch.tensor(0.01).div(0.9).item(), type(1 - lr * 0.5).__name__
    (True, 'TensorScalar')
    """

    __slots__ = ()

    def _round(self, value: Any) -> TensorScalar:
        return TensorScalar(float(np.float32(value)))

    def __add__(self, other: Any) -> Any:
        return self._round(np.float32(self) + np.float32(other))

    def __radd__(self, other: Any) -> Any:
        return self._round(np.float32(other) + np.float32(self))

    def __sub__(self, other: Any) -> Any:
        return self._round(np.float32(self) - np.float32(other))

    def __rsub__(self, other: Any) -> Any:
        return self._round(np.float32(other) - np.float32(self))

    def __mul__(self, other: Any) -> Any:
        return self._round(np.float32(self) * np.float32(other))

    def __rmul__(self, other: Any) -> Any:
        return self._round(np.float32(other) * np.float32(self))

    def __truediv__(self, other: Any) -> Any:
        return self._round(np.float32(self) / np.float32(other))

    def __rtruediv__(self, other: Any) -> Any:
        # as torch.Tensor.__rtruediv__: the reciprocal, then the product (two roundings)
        return self._round(np.float32(1.0) / np.float32(self) * np.float32(other))

    def __neg__(self) -> Any:
        return TensorScalar(-float(self))

    def __pow__(self, exponent: Any) -> Any:
        # ATen's own pow of a float32 tensor by a number (x*x for 2, x*x*x for 3, its square
        # root for 0.5, ..., else the power in double, rounded), on a host tensor of ours
        # (read through NumPy: no device is involved)
        power = torch.tensor(float(self), dtype=torch.float32).pow_(float(exponent))
        return TensorScalar(float(power.numpy()))


def tensor_number(name: str, value: Any) -> Any:
    """A hyperparameter torch also takes as a 1-element tensor (``lr=torch.tensor(0.01)``):
    the number such a tensor holds; any other value as it is.

    >>> tensor_number("lr", torch.tensor([0.5])), tensor_number("lr", 0.1)
    (0.5, 0.1)
    """
    if not isinstance(value, Tensor):
        return value
    if value.numel() != 1:
        raise ValueError(
            f"Invalid {name} value: {describe(value)}; Tensor {name} must be 1-element (a "
            "number in a tensor)"
        )
    if value.is_complex() or value.dtype == torch.bool:
        raise TypeError(
            f"Invalid {name} value: a Tensor of dtype {value.dtype}; expected a real number"
        )
    number = value.item()
    if value.dtype != torch.float32 or torch.compiler.is_compiling():
        return number  # torch.compile traces plain floats without recompiling
    return TensorScalar(number)


def not_at_least_zero(value: float) -> bool:
    """What torch's ``if not 0.0 <= value`` refuses: a negative number, or NaN."""
    return not value >= 0


def boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{invalid(name, value)}; expected True or False")


def torch_words(
    check: Callable[[str, Any], None],
    sentence: str,
    refused: Callable[[float], bool] = lambda value: True,
) -> Callable[[str, Any], None]:
    """``check``, whose ValueError for a number torch's class ``refused`` too begins with
    torch's ``sentence`` about it (formatted with the value), where torch says it otherwise
    than :func:`invalid`, so code matching torch's message matches ours; then the argument and
    what is valid. (For a value torch takes, optimlab's refusal keeps its own words.)

    >>> words = "Learning rate should be >= 0 but is: {}"
    >>> check = torch_words(non_negative, words, not_at_least_zero)
    >>> check("lr", -1.0)
    Traceback (most recent call last):
    ...
    ValueError: Learning rate should be >= 0 but is: -1.0 (lr); expected a finite number >= 0
    """

    def checked(name: str, value: Any) -> None:
        try:
            check(name, value)
        except ValueError as error:
            if isinstance(value, (int, float)) and not refused(value):
                raise
            text, start = str(error), invalid(name, value)
            rest = text[len(start) :] if text.startswith(start) else f": {text}"
            # (torch's sentence shows the value as str does: a string's quotes follow)
            said = name if str(value) == repr(value) else f"{name}={value!r}"
            raise ValueError(f"{sentence.format(value)} ({said}){rest}") from None

    return checked


def one_of(*choices: str) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise ValueError(f"{invalid(name, value)}; expected one of {allowed}")

    return check


def optional(check: Callable[[str, Any], None]) -> Callable[[str, Any], None]:
    """``check``, or None (a default worked out from other arguments, or a choice left open)."""

    def checked(name: str, value: Any) -> None:
        if value is None:
            return
        try:
            check(name, value)
        except (TypeError, ValueError) as error:
            message = str(error).replace("; expected ", "; expected None or ", 1)
            raise type(error)(message) from None

    return checked


def optional_boolean(name: str, value: Any) -> None:
    """None (let optimlab choose) or True or False: ``foreach``."""
    if value is not None:
        boolean(name, value)


#: the dtypes ``state_dtype`` may name: what the update is computed and the state kept in
STATE_DTYPES = (torch.float32, torch.float64)


def state_dtype_choice(name: str, value: Any) -> None:
    """None (the parameter's dtype, as torch) or a floating dtype: ``state_dtype``."""
    if value is None or (isinstance(value, torch.dtype) and value in STATE_DTYPES):
        return
    raise (TypeError if not isinstance(value, torch.dtype) else ValueError)(
        f"{invalid(name, value)}; expected None (the parameter's dtype), "
        "torch.float32 or torch.float64"
    )


def fused_choice(name: str, value: Any) -> None:
    """None (let optimlab choose), True, False, "exact" or "triton": ``fused``."""
    if (
        value is None
        or isinstance(value, bool)
        or (isinstance(value, str) and value in ("exact", "triton"))
    ):
        return
    raise (ValueError if isinstance(value, str) else TypeError)(
        f"{invalid(name, value)}; expected None, True, False, 'exact' or 'triton'"
    )


def sparse_grad_allowed(optimizer: Any, grad: Tensor) -> None:
    """Refuse the sparse gradient ``grad`` where torch.optim.SGD and Adagrad refuse it, with
    their type (RuntimeError), before anything changes: in a group with ``weight_decay``
    (whose gradient ``weight_decay * w`` is dense, which a sparse gradient cannot hold) or with
    ``fused=True`` (the fused loop reads dense tensors only)."""
    for group in optimizer.param_groups:
        if not any(p.grad is grad for p in group["params"]):
            continue
        name, decay = type(optimizer).__name__, group.get("weight_decay", 0)
        found = f"a {grad.layout} gradient of shape {tuple(grad.shape)}"
        if decay != 0:
            raise RuntimeError(
                f"Invalid weight_decay={decay!r} with a sparse gradient ({found}): {name} "
                f"would add weight_decay * w, which is dense, to it (torch.optim.{name} "
                "refuses it too); give the parameter a group with weight_decay=0, or use "
                "dense gradients, e.g. nn.Embedding(sparse=False)"
            )
        if group.get("fused") is True:
            raise RuntimeError(
                f"fused=True, but the fused loop cannot take sparse gradients ({found}), as "
                f"torch.optim.{name}'s fused path cannot; pass fused=None to step it on the "
                "sparse path"
            )


def describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a Tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def hyperparameters(arguments: dict[str, Any]) -> dict[str, Any]:
    """A group's defaults from a constructor's ``locals()``, taken first thing in ``__init__``.

    Every argument but ``params`` and ``nonfinite_grads`` (a policy of the optimizer, not of a
    group); lists become tuples, as torch keeps ``betas``.

    >>> hyperparameters({"self": None, "params": [], "lr": 0.1, "betas": [0.9, 0.99],
    ...                  "nonfinite_grads": "raise"})
    {'lr': 0.1, 'betas': (0.9, 0.99)}
    """
    skip = ("self", "params", "nonfinite_grads", "__class__")
    return {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in arguments.items()
        if name not in skip
    }
