"""Exponentially weighted averages, the building block of momentum, RMSprop and Adam.

The notes (seed 000, section 3.1) average a daily temperature series::

    v_0 = 0
    v_t = beta * v_{t-1} + (1 - beta) * x_t        = sum_i beta**(t-i) * (1 - beta) * x_i

which averages over roughly the last ``1 / (1 - beta)`` values. Started at zero it is too small
at first; dividing by ``1 - beta**t`` (bias correction, eq. 10) removes that pull.

Example (the notes' table, beta = 0.8)::

    >>> ewa([20, 23, 17], beta=0.8).round(2).tolist()
    [4.0, 7.8, 9.64]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .core.rules import bias_correction as _bias_correction
from .optim.checks import boolean, unit_interval


class EWA:
    """A running exponentially weighted average of a stream of numbers or tensors.

    ``update(x)`` folds in one value and returns the current average (bias-corrected when
    ``bias_correction`` is on); ``value`` is the current average, ``count`` the number of values
    seen, ``window`` the effective number of values averaged, ``1 / (1 - beta)``.

    >>> avg = EWA(beta=0.8)
    >>> [round(avg.update(x), 2) for x in (20, 23, 17)]
    [4.0, 7.8, 9.64]
    >>> avg.window
    5.000000000000001
    """

    def __init__(self, beta: float, bias_correction: bool = False) -> None:
        unit_interval("beta", beta)
        boolean("bias_correction", bias_correction)
        self.beta = float(beta)
        self.bias_correction = bias_correction
        self.count = 0
        self._average: Any = 0.0

    @property
    def window(self) -> float:
        """The effective number of recent values averaged, ``1 / (1 - beta)``."""
        return 1.0 / (1.0 - self.beta)

    @property
    def value(self) -> Any:
        """The current average (0 before any value), bias-corrected when asked."""
        if self.bias_correction and self.count > 0:
            return self._average / _bias_correction(self.beta, self.count)
        return self._average

    def update(self, x: Any) -> Any:
        """Fold in one value (a number or a tensor) and return the new average."""
        if isinstance(x, torch.Tensor):
            if self.count == 0:
                self._average = torch.zeros_like(x)
            self._average = self._average * self.beta + (1 - self.beta) * x
        else:
            if not isinstance(x, (int, float, np.number)) or isinstance(x, bool):
                raise TypeError(f"Invalid x: {x!r}; expected a number or a Tensor")
            if not math.isfinite(x):
                raise ValueError(f"Invalid x: {x!r}; expected a finite number")
            self._average = self.beta * self._average + (1 - self.beta) * float(x)
        self.count += 1
        return self.value

    def reset(self) -> None:
        self.count = 0
        self._average = 0.0

    def state_dict(self) -> dict[str, Any]:
        return {
            "beta": self.beta,
            "bias_correction": self.bias_correction,
            "count": self.count,
            "average": self._average,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unit_interval("beta", state["beta"])
        self.beta = float(state["beta"])
        self.bias_correction = bool(state["bias_correction"])
        self.count = int(state["count"])
        self._average = state["average"]

    def __repr__(self) -> str:
        return (
            f"EWA(beta={self.beta}, bias_correction={self.bias_correction}, "
            f"count={self.count}, window={self.window:g})"
        )


def ewa(series: Any, beta: float, bias_correction: bool = False) -> Any:
    """The exponentially weighted averages of a whole series, along its first axis.

    Returns an array of the same shape: a float64 NumPy array for sequences and arrays, a
    tensor of the input's dtype for floating-point tensors, of torch's default dtype for integer
    ones (as ``beta * x`` is, and :class:`EWA`'s updates). ``out[t]`` is ``v_{t+1}`` of the
    notes.

    >>> ewa([20, 23, 17], beta=0.8, bias_correction=True).round(3).tolist()
    [20.0, 21.667, 19.754]
    """
    unit_interval("beta", beta)
    boolean("bias_correction", bias_correction)
    is_tensor = isinstance(series, torch.Tensor)
    values = series if is_tensor else np.asarray(series, dtype=np.float64)
    if is_tensor and not (values.is_floating_point() or values.is_complex()):
        values = values.to(torch.get_default_dtype())  # (averages of integers are not integers)
    if values.ndim == 0 or len(values) == 0:
        raise ValueError(f"Invalid series: expected a non-empty sequence, got {series!r}")
    finite = torch.isfinite(values).all() if is_tensor else np.isfinite(values).all()
    if not finite:
        raise ValueError("Invalid series: it holds NaN or Inf")
    out = torch.empty_like(values) if is_tensor else np.empty_like(values)
    average = values[0] * 0
    for t in range(len(values)):
        average = beta * average + (1 - beta) * values[t]
        out[t] = average / _bias_correction(beta, t + 1) if bias_correction else average
    return out
