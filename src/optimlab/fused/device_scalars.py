"""Numbers that live on the device: what a rule's scalar arithmetic runs on in a capturable step.

A rule computes its scalars (``-lr / (1 - beta1**t)``, ...) in Python from the step count and
the hyperparameters. With ``capturable=True`` the step count (and a learning rate given as a
tensor on the device) are not known on the host: they live on the device, so that a CUDA
graph captured once replays every later step. The rule then runs with
:class:`DeviceScalar` operands: each arithmetic operation becomes a PyTorch operation on
float64 device tensors, which a capture records and a replay repeats with the values of the
day.

The operations are those a Python float computes, rounded the same way: ``+ - * /`` on two
float64 tensors are correctly rounded as Python's are; a Python number enters as a tensor
filled with it (``torch.full``), never as a "CPU scalar" operand, which CUDA divides by
multiplying with its reciprocal; ``**`` is ``pow`` on two tensors (the CPU's ``pow``, as
Python's; a GPU's differs from it in the last place at most). A rule that asks the value on
the host (a branch on the step count, ``min``, ``math.sqrt``) raises :class:`NotCapturable`:
it cannot step without the host.

>>> import torch
>>> t = DeviceScalar(torch.tensor([1.0, 2.0], dtype=torch.float64))
>>> (-(0.1 / (1.0 - 0.9**t))).tensor
tensor([-1.0000, -0.5263], dtype=torch.float64)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class NotCapturable(RuntimeError):
    """A rule read a number that lives on the device (to branch on it, or to hand it to a
    function of floats): its step cannot be taken, or captured, without the host."""


class DeviceScalar:
    """A float64 tensor (0-dim, or one value per parameter tensor) standing for a number in a
    rule's scalar arithmetic (see the module docstring)."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor

    def _operand(self, other: Any) -> Tensor:
        if isinstance(other, DeviceScalar):
            return other.tensor
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return torch.full((), float(other), dtype=torch.float64, device=self.tensor.device)
        return NotImplemented  # type: ignore[return-value]

    def _binary(self, other: Any, op: Any, reflected: bool = False) -> Any:
        operand = self._operand(other)
        if operand is NotImplemented:
            return NotImplemented
        a, b = (operand, self.tensor) if reflected else (self.tensor, operand)
        return DeviceScalar(op(a, b))

    def __add__(self, other: Any) -> Any:
        return self._binary(other, torch.add)

    def __radd__(self, other: Any) -> Any:
        return self._binary(other, torch.add, reflected=True)

    def __sub__(self, other: Any) -> Any:
        return self._binary(other, torch.sub)

    def __rsub__(self, other: Any) -> Any:
        return self._binary(other, torch.sub, reflected=True)

    def __mul__(self, other: Any) -> Any:
        return self._binary(other, torch.mul)

    def __rmul__(self, other: Any) -> Any:
        return self._binary(other, torch.mul, reflected=True)

    def __truediv__(self, other: Any) -> Any:
        return self._binary(other, torch.div)

    def __rtruediv__(self, other: Any) -> Any:
        return self._binary(other, torch.div, reflected=True)

    def __pow__(self, other: Any) -> Any:
        return self._binary(other, torch.pow)

    def __rpow__(self, other: Any) -> Any:
        return self._binary(other, torch.pow, reflected=True)

    def __neg__(self) -> DeviceScalar:
        return DeviceScalar(torch.neg(self.tensor))

    def __pos__(self) -> DeviceScalar:
        return self

    def __abs__(self) -> DeviceScalar:
        return DeviceScalar(torch.abs(self.tensor))

    def _read(self, *_: Any) -> Any:
        raise NotCapturable(
            "the rule reads a number that lives on the device (the step count, or a learning "
            "rate given as a tensor there) to branch on it or to compute with it as a Python "
            "float"
        )

    __bool__ = __float__ = __int__ = __index__ = __round__ = _read
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _read  # type: ignore[assignment]
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"DeviceScalar({self.tensor!r})"
