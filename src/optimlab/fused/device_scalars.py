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
the host as a Python number (``math.sqrt``, ``float()``) raises :class:`NotCapturable`: it
cannot step without the host.

A rule that *branches* on such a number (RAdam's ``rho_t > 5``, a ``min``) is recorded once
for each way its branches can go (:func:`every_branch`): a comparison gives a
:class:`DeviceCondition`, whose truth the recording is told, and which is kept with the
answer. Each recording becomes a launch that applies only where the device finds every
condition as it was answered: exactly one of them writes.

>>> import torch
>>> t = DeviceScalar(torch.tensor(2.0, dtype=torch.float64))
>>> (-(0.1 / (1.0 - 0.9**t))).tensor
tensor(-0.5263, dtype=torch.float64)
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor

T = TypeVar("T")

#: at most this many recordings of one rule (the ways its branches on device numbers go)
MAX_BRANCHES = 8


class NotCapturable(RuntimeError):
    """A rule read a number that lives on the device (to branch on it, or to hand it to a
    function of floats): its step cannot be taken, or captured, without the host."""


class DeviceScalar:
    """A float64 tensor (0-dim, or one value per parameter tensor) standing for a number in a
    rule's scalar arithmetic (see the module docstring).

    A float32 one stands for a hyperparameter given as a float32 tensor (``betas``, ``lr``):
    its arithmetic is then the tensor's, as :class:`optimlab.optim.checks.TensorScalar`
    computes it on the host (and torch.optim on the tensor): in float32, the other operand
    rounded to float32 first, ``x / t`` as a reciprocal then a product (torch's
    ``Tensor.__rtruediv__``), and ``t ** n`` as ATen's pow of a tensor by a number (``t * t``
    for 2, ``t * t * t`` for 3, the power in float64, rounded, otherwise).
    """

    __slots__ = ("tensor",)

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor

    @property
    def _float32(self) -> bool:
        return self.tensor.dtype == torch.float32

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
        if a.dtype == torch.float32 or b.dtype == torch.float32:  # a float32 tensor's
            a, b = a.float(), b.float()
            if op is torch.div and reflected:  # torch's Tensor.__rtruediv__
                return DeviceScalar(torch.reciprocal(b) * a)
            if op is torch.pow and not reflected:
                return DeviceScalar(_aten_pow(a, b, other))
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

    def to_float32(self) -> DeviceScalar:
        """Rounded to float32 (to nearest even, as ``struct.pack("f", x)`` rounds a float)."""
        return self if self._float32 else DeviceScalar(self.tensor.float().double())

    def __neg__(self) -> DeviceScalar:
        return DeviceScalar(torch.neg(self.tensor))

    def __pos__(self) -> DeviceScalar:
        return self

    def __abs__(self) -> DeviceScalar:
        return DeviceScalar(torch.abs(self.tensor))

    def _read(self, *_: Any) -> Any:
        raise NotCapturable(
            "the rule reads a number that lives on the device (the step count, or a learning "
            "rate given as a tensor there) as a Python number"
        )

    __float__ = __int__ = __index__ = __round__ = _read

    def _compare(self, other: Any, op: Any) -> Any:
        operand = self._operand(other)
        if operand is NotImplemented:
            return NotImplemented
        return DeviceCondition(op(self.tensor, operand))

    def __eq__(self, other: Any) -> Any:  # type: ignore[override]
        return self._compare(other, torch.eq)

    def __ne__(self, other: Any) -> Any:  # type: ignore[override]
        return self._compare(other, torch.ne)

    def __lt__(self, other: Any) -> Any:
        return self._compare(other, torch.lt)

    def __le__(self, other: Any) -> Any:
        return self._compare(other, torch.le)

    def __gt__(self, other: Any) -> Any:
        return self._compare(other, torch.gt)

    def __ge__(self, other: Any) -> Any:
        return self._compare(other, torch.ge)

    def __bool__(self) -> bool:
        return bool(self != 0)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"DeviceScalar({self.tensor!r})"


def _aten_pow(base: Tensor, exponent: Tensor, given: Any) -> Tensor:
    """``base ** given`` for a float32 ``base``, as ATen computes a tensor's power of a
    number: ``given`` a Python number takes ATen's own kernel; a number on the device (a step
    count) takes the same cases, chosen there: ``t * t`` for 2, ``t * t * t`` for 3, else
    the power in float64, rounded."""
    if not isinstance(given, DeviceScalar):
        return torch.pow(base, float(given))
    square = base * base
    general = torch.pow(base.double(), exponent.double()).float()  # (ATen's, for a number)
    return torch.where(exponent == 2, square, torch.where(exponent == 3, square * base, general))


class DeviceCondition:
    """A comparison of device numbers (a boolean tensor) that a rule branches on: its truth
    is what :func:`every_branch` tells the recording, which keeps it with the answer."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor

    def __bool__(self) -> bool:
        branches = _branches.get()
        if branches is None:
            raise NotCapturable("the rule branches on a number that lives on the device")
        if len(branches) >= MAX_BRANCHES:
            raise NotCapturable(f"the rule branches more than {MAX_BRANCHES} times")
        k = len(branches)
        answer = branches.answers[k] if k < len(branches.answers) else False
        branches.append((self.tensor, answer))
        return answer


class _Branches(list):
    """The conditions one recording met, with the answers it took (``answers`` first, then
    False)."""

    def __init__(self, answers: tuple[bool, ...]) -> None:
        super().__init__()
        self.answers = answers


_branches: contextvars.ContextVar[_Branches | None] = contextvars.ContextVar(
    "optimlab_device_branches", default=None
)


def every_branch(record: Callable[[], T]) -> list[tuple[T, list[tuple[Tensor, bool]]]]:
    """``record()`` once for each way the conditions on device numbers it meets can go, each
    with those conditions and the answers it took (none where it meets none).

    >>> t = DeviceScalar(torch.tensor(7.0, dtype=torch.float64))
    >>> [(result, [bool(c) == a for c, a in met]) for result, met in
    ...  every_branch(lambda: "late" if t > 5 else "early")]
    [('early', [False]), ('late', [True])]
    """
    found = []
    pending: list[tuple[bool, ...]] = [()]
    while pending:
        answers = pending.pop()
        branches = _Branches(answers)
        token = _branches.set(branches)
        try:
            result = record()
        finally:
            _branches.reset(token)
        met = list(branches)
        # the conditions met past the given answers were taken False: their True ways next
        for k in range(len(answers), len(met)):
            pending.append(tuple(a for _, a in met[:k]) + (True,))
        found.append((result, met))
        if len(found) > MAX_BRANCHES:
            raise NotCapturable(f"the rule branches more than {MAX_BRANCHES} ways")
    return found


def selected(compute: Callable[[], tuple[Any, ...]], device: torch.device) -> list[Tensor]:
    """The numbers ``compute()`` gives, as 0-dim float64 tensors on ``device``; where it
    branches on device numbers (``max(1, t - t0)``), those of the way the device finds (each
    way computed, then chosen with ``torch.where``)."""
    chosen: list[Tensor] = []
    for values, met in every_branch(compute):
        tensors = [
            v.tensor if isinstance(v, DeviceScalar)
            else torch.full((), float(v), dtype=torch.float64, device=device)
            for v in values
        ]  # fmt: skip
        if met and chosen:  # (exactly one way holds; the first is taken unless another does)
            holds = torch.stack([condition == answer for condition, answer in met]).all()
            tensors = [torch.where(holds, t, c) for t, c in zip(tensors, chosen)]
        chosen = tensors
    return chosen
