"""A third backend that records an update rule instead of running it: the input of the fused path.

The rules of :mod:`optimlab.core.rules` are written once against the list operations of
:mod:`optimlab.core.ops`. :class:`TapeOps` provides the same operations over symbolic operands
(:class:`Var`): calling a rule with it runs the rule's Python (its branches, its scalar
arithmetic such as bias corrections) exactly as the plain path does, and writes down the
elementwise operations it asks for, in order, as a :class:`Tape`.

Operations that take "a scalar, one scalar per tensor, or a list of tensors" (``mul``, ``mul_``,
``div_``) record a different instruction for the tensor form (``mul_tensor``, ...; see
:data:`METHODS`). Reductions (``norm``, ``max_abs``) raise :class:`NotRecordable`.

A tape has two parts:

* its *program*: the operations and which operands they read and write. It depends only on the
  optimizer's configuration (and, for a few rules, on whether this is the first step), so a
  kernel compiled for it is reused on every step;
* its *scalars*: the numbers the operations take (``-lr / (1 - beta1**t)``, ``1 - beta``, ...),
  computed in Python with the very expressions the plain path evaluates, and handed to the
  kernel at each call.

:mod:`optimlab.fused.native` turns a program into one C loop that reads every operand once and
writes each modified one once. The operations of a tape mean exactly what the plain backends
compute, element by element (see ``native.C_EXPRESSIONS``), which is what makes the fused path
give bitwise equal results.

>>> from optimlab.core import rules
>>> tape = Tape(("param", "grad", "velocity"))
>>> rules.heavy_ball_momentum(tape.ops, [tape["param"]], [tape["grad"]], [tape["velocity"]],
...                           lr=0.1, beta=0.9, nesterov=False, weight_decay=0.0,
...                           maximize=False)
>>> [op for op, *_ in tape.program.instructions]
['mul_', 'add_', 'add_']
>>> tape.scalars
[0.9, -0.1, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .device_scalars import DeviceScalar

#: operation name -> (number of tensor operands, number of scalars, writes in place)
SIGNATURES: dict[str, tuple[int, int, bool]] = {
    "neg": (1, 0, False),
    "add": (2, 1, False),
    "add_": (2, 1, True),
    "add_scalar_": (1, 1, True),
    "add_scalar": (1, 1, False),
    "div": (1, 1, False),
    "div_": (1, 1, True),
    "div_tensor_": (2, 0, True),
    "lerp": (2, 1, False),
    "lerp_": (2, 1, True),
    "mul_": (1, 1, True),
    "mul": (1, 1, False),
    "mul_tensor_": (2, 0, True),
    "mul_tensor": (2, 0, False),
    "addcmul": (3, 1, False),
    "addcmul_": (3, 1, True),
    "addcdiv_": (3, 1, True),
    "sqrt": (1, 0, False),
    "sqrt_": (1, 0, True),
    "abs": (1, 0, False),
    "sign": (1, 0, False),
    "sign_": (1, 0, True),
    "reciprocal_": (1, 0, True),
    "maximum_": (2, 0, True),
    "maximum": (2, 0, False),
    "clamp_": (1, 2, True),
    "sign_select": (1, 3, False),
    "copy_": (2, 0, True),
}

#: the :class:`TapeOps` method that records each instruction, where the names differ: the list
#: operations taking "a scalar or a list of tensors" record a different instruction for each
METHODS: dict[str, str] = {
    **{op: op for op in SIGNATURES},
    "div_tensor_": "div_",
    "mul_tensor_": "mul_",
    "mul_tensor": "mul",
}


class NotRecordable(NotImplementedError):
    """The rule asked for an operation the tape cannot record (a reduction, a matrix product).

    The fused path then leaves the step to the plain backends.
    """


class Var:
    """A symbolic operand: stands for one list of tensors (the bucket's params, grads, ...)."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"Var({self.index})"


@dataclass(frozen=True)
class Program:
    """The structure of a recorded update: hashable, so compiled kernels can be cached by it.

    ``operands`` names the inputs (``"param"``, ``"grad"``, then the state buffers);
    ``instructions`` holds ``(op, result, arguments, scalar_slots)`` with variables as integers:
    ``0 .. len(operands) - 1`` are the operands, larger numbers are elementwise temporaries.
    For an in-place op the result is its first argument.
    """

    operands: tuple[str, ...]
    instructions: tuple[tuple[str, int, tuple[int, ...], tuple[int, ...]], ...]

    @property
    def read(self) -> tuple[int, ...]:
        """The operands the program reads before overwriting them (the kernel loads these)."""
        n = len(self.operands)
        loaded: set[int] = set()
        defined: set[int] = set()
        for op, result, args, _ in self.instructions:
            reads = args[1:] if op == "copy_" else args  # copy_ replaces its target unread
            loaded.update(a for a in reads if a < n and a not in defined)
            if op == "copy_":
                defined.add(result)
        return tuple(sorted(loaded))

    @property
    def written(self) -> tuple[int, ...]:
        """The operands the program modifies (and the kernel stores back)."""
        n = len(self.operands)
        return tuple(
            sorted({r for op, r, _, _ in self.instructions if r < n and SIGNATURES[op][2]})
        )


class TapeOps:
    """The operations of :class:`optimlab.core.ops.LoopOps`, recorded on a :class:`Tape`.

    Every list argument must be a one-element list holding a :class:`Var`: the whole bucket is
    one operand. Scalars may be a number or a list with one number (per-tensor lists of length
    one, as the rules pass them); they are stored as Python floats, or as the
    :class:`~.device_scalars.DeviceScalar` a capturable step computes them in.
    """

    name = "tape"

    def __init__(self, tape: Tape) -> None:
        self._tape = tape

    def neg(self, xs):
        return [self._tape._record("neg", (_only(xs),), ())]

    def add(self, xs, ys, alpha=1.0):
        return [
            self._tape._record(
                "add",
                (
                    _only(xs),
                    _only(ys),
                ),
                (_scalar(alpha),),
            )
        ]

    def add_(self, xs, ys, alpha=1.0):
        self._tape._record(
            "add_",
            (
                _only(xs),
                _only(ys),
            ),
            (_scalar(alpha),),
        )

    def add_scalar_(self, xs, scalar):
        self._tape._record("add_scalar_", (_only(xs),), (_scalar(scalar),))

    def add_scalar(self, xs, scalar):
        return [self._tape._record("add_scalar", (_only(xs),), (_scalar(scalar),))]

    def div(self, xs, scalar):
        return [self._tape._record("div", (_only(xs),), (_scalar(scalar),))]

    def div_(self, xs, others):
        if _is_tensor_list(others):
            self._tape._record("div_tensor_", (_only(xs), _only(others)), ())
        else:
            self._tape._record("div_", (_only(xs),), (_scalar(others),))

    def lerp(self, xs, ys, weight):
        return [
            self._tape._record(
                "lerp",
                (
                    _only(xs),
                    _only(ys),
                ),
                (_scalar(weight),),
            )
        ]

    def lerp_(self, xs, ys, weight):
        self._tape._record(
            "lerp_",
            (
                _only(xs),
                _only(ys),
            ),
            (_scalar(weight),),
        )

    def mul_(self, xs, others):
        if _is_tensor_list(others):
            self._tape._record("mul_tensor_", (_only(xs), _only(others)), ())
        else:
            self._tape._record("mul_", (_only(xs),), (_scalar(others),))

    def mul(self, xs, others):
        if _is_tensor_list(others):
            return [self._tape._record("mul_tensor", (_only(xs), _only(others)), ())]
        return [self._tape._record("mul", (_only(xs),), (_scalar(others),))]

    def addcmul(self, xs, ys, zs, value):
        return [
            self._tape._record(
                "addcmul",
                (
                    _only(xs),
                    _only(ys),
                    _only(zs),
                ),
                (_scalar(value),),
            )
        ]

    def addcmul_(self, xs, ys, zs, value):
        self._tape._record(
            "addcmul_",
            (
                _only(xs),
                _only(ys),
                _only(zs),
            ),
            (_scalar(value),),
        )

    def addcdiv_(self, xs, ys, zs, values):
        self._tape._record(
            "addcdiv_",
            (
                _only(xs),
                _only(ys),
                _only(zs),
            ),
            (_scalar(values),),
        )

    def sqrt(self, xs):
        return [self._tape._record("sqrt", (_only(xs),), ())]

    def sqrt_(self, xs):
        self._tape._record("sqrt_", (_only(xs),), ())

    def maximum_(self, xs, ys):
        self._tape._record(
            "maximum_",
            (
                _only(xs),
                _only(ys),
            ),
            (),
        )

    def copy_(self, xs, ys):
        self._tape._record(
            "copy_",
            (
                _only(xs),
                _only(ys),
            ),
            (),
        )

    def maximum(self, xs, ys):
        return [self._tape._record("maximum", (_only(xs), _only(ys)), ())]

    def abs(self, xs):
        return [self._tape._record("abs", (_only(xs),), ())]

    def sign(self, xs):
        return [self._tape._record("sign", (_only(xs),), ())]

    def sign_(self, xs):
        self._tape._record("sign_", (_only(xs),), ())

    def reciprocal_(self, xs):
        self._tape._record("reciprocal_", (_only(xs),), ())

    def clamp_(self, xs, low, high):
        self._tape._record("clamp_", (_only(xs),), (_scalar(low), _scalar(high)))

    def sign_select(self, xs, positive, negative, zero):
        return [
            self._tape._record(
                "sign_select", (_only(xs),), (_scalar(positive), _scalar(negative), _scalar(zero))
            )
        ]

    def max_abs(self, xs):
        raise NotRecordable("max_abs is a reduction; the fused path records elementwise rules")

    def __getattr__(self, name: str):
        # An operation of the plain backends that the tape does not (yet) know.
        if name.startswith("_"):
            raise AttributeError(name)
        raise NotRecordable(f"the tape cannot record the list operation {name!r}")


class Tape:
    """One recording: the operands, the instructions, and the scalars in the order they came.

    Index a tape by operand name to get the :class:`Var` to pass to a rule (wrapped in a list).
    """

    def __init__(self, operands: Sequence[str]) -> None:
        self.operand_names = tuple(operands)
        self._vars = {name: Var(i) for i, name in enumerate(self.operand_names)}
        self._count = len(self.operand_names)
        self._instructions: list[tuple[str, int, tuple[int, ...], tuple[int, ...]]] = []
        #: the scalars of the recorded operations, one slot each, as Python floats (or
        #: DeviceScalars: see :mod:`.device_scalars`)
        self.scalars: list[float | DeviceScalar] = []
        self.ops = TapeOps(self)

    def __getitem__(self, name: str) -> Var:
        return self._vars[name]

    def _record(self, op: str, args: tuple[Var, ...], scalars: tuple[Any, ...]) -> Var:
        if SIGNATURES[op][2]:  # in place: the result is the first argument
            result = args[0]
        else:
            result = Var(self._count)
            self._count += 1
        # one slot per scalar, numbered in the order they came
        first = len(self.scalars)
        self.scalars += scalars
        slots = tuple(range(first, len(self.scalars)))
        self._instructions.append((op, result.index, tuple(a.index for a in args), slots))
        return result

    @property
    def program(self) -> Program:
        return Program(self.operand_names, tuple(self._instructions))

    @property
    def key(self) -> tuple[object, ...]:
        """A hashable summary that identifies :attr:`program` (cheaper to build and hash)."""
        return (self.operand_names, *self._instructions)


def _only(xs: list[Var]) -> Var:
    if len(xs) == 1:
        x = xs[0]
        if x.__class__ is Var:
            return x
    raise TypeError(f"the tape backend takes one-element lists of Var, got {xs!r}")


def _is_tensor_list(others: object) -> bool:
    """Whether a "scalar(s) or list of tensors" argument is the list of tensors (of Vars)."""
    return isinstance(others, (list, tuple)) and bool(others) and isinstance(others[0], Var)


def _scalar(value: object) -> float | DeviceScalar:
    if value.__class__ is float or value.__class__ is DeviceScalar:
        return value  # type: ignore[return-value]
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], Var):
            raise NotRecordable("this operation is recorded with scalars only")
        if len(value) != 1:
            raise TypeError(f"the tape backend takes one scalar per operation, got {value!r}")
        value = value[0]
    if value.__class__ is DeviceScalar:
        return value  # type: ignore[return-value]
    if isinstance(value, complex):  # a hyperparameter out of range (betas edited to 1.5)
        raise NotRecordable(
            f"it computes a complex scalar, {value!r}, from the group's hyperparameters "
            "(one out of range?)"
        )
    return float(value)  # type: ignore[arg-type]
