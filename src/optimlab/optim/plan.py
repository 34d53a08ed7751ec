"""What a parameter group's fused step needs, worked out once and re-checked cheaply each step.

The fused kernel takes tables of data pointers (:mod:`optimlab.core.native`). Building them
means asking every tensor for its pointer, size, layout and state: about a microsecond per
tensor in Python, most of a step for a thousand small tensors. A :class:`FusedPlan` does that
work once, after a step on the general path, and on later steps only confirms that nothing it
relied on changed:

* the group still holds the same parameter list, and the optimizer the same state mapping,
  in which no entry was added, replaced or removed since (:class:`~optimlab.optim.base.StateMap`
  counts changes);
* each parameter still has its data pointer, size and contiguous layout, and its state dict the
  same buffers;
* the same parameters have gradients, every gradient is a contiguous dense tensor (its pointer
  is read afresh: ``zero_grad(set_to_none=True)`` gives new gradients every step).

When any of these fails the step takes the general path, which is always correct, and a new
plan is made after it. ``load_state_dict`` drops all plans. The kernels write through raw
pointers, so a step then bumps the parameters' autograd version counters itself, as PyTorch's
in-place operations do (a parameter saved for a backward pass still reports the change).

The per-tensor checks and the step's book-keeping (step counts, version counters) run in C++
(:mod:`optimlab.core.plancheck`, about 40 ns per tensor) once that is compiled; before, or where
it cannot be, in Python with C-level loops (``map`` over tensor methods, about 1 µs per tensor).
Both ask the same questions. Nothing is allocated in proportion to the model except tables of
pointers.
"""

from __future__ import annotations

import operator
from itertools import repeat
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.autograd.graph import increment_version

from ..core import native, plancheck

_grad = operator.attrgetter("grad")
_data_ptr = Tensor.data_ptr
_numel = Tensor.numel
_is_contiguous = Tensor.is_contiguous
_is_neg = Tensor.is_neg


class Bucket:
    """Parameters of one real dtype and one step count: one kernel call."""

    __slots__ = (
        "dtype",
        "index",
        "table",
        "starts",
        "states",
        "address",
        "starts_address",
        "grads_address",
        "tensors",
        "elements",
    )

    def __init__(
        self,
        dtype: torch.dtype,
        index: list[int],
        table: np.ndarray,
        starts: np.ndarray,
        states: list[dict[str, Any]],
    ) -> None:
        self.dtype = dtype  # the real dtype the kernel computes in
        self.index = index  # positions in the plan's fused lists
        self.table = table  # [operands, tensors] data pointers; row 1 (gradients) per step
        self.starts = starts  # offsets of each tensor in the concatenation
        self.states = states
        # The addresses the kernels take, worked out once.
        self.address = table.ctypes.data
        self.starts_address = starts.ctypes.data
        self.grads_address = self.address + table.strides[0]
        self.tensors = table.shape[1]
        self.elements = int(starts[-1])


class FusedPlan:
    """The validated structure of one parameter group for the fused path."""

    def __init__(self, optimizer: Any, group: dict[str, Any], names: tuple[str, ...]) -> None:
        self.group = group
        self.param_list = group["params"]
        self.n_params = len(self.param_list)
        self.state = optimizer.state
        self.state_version = getattr(optimizer.state, "version", None)
        self.names = tuple(names)
        fused: list[Tensor] = []
        others: list[Tensor] = []
        absent: list[Tensor] = []
        for p in self.param_list:
            grad = p.grad
            if grad is None:
                absent.append(p)
                continue
            state = optimizer.state.get(p)
            if fusable_entry(p, grad, state, names):
                fused.append(p)
            else:
                others.append(p)
        self.fused = fused
        self.others = others
        self.absent = absent
        self.states = [optimizer.state[p] for p in fused]
        self.buffers = {name: [s[name] for s in self.states] for name in names}
        self.param_ptrs = list(map(_data_ptr, fused))
        self.numels = list(map(_numel, fused))
        self.complex = [i for i, p in enumerate(fused) if p.is_complex()]
        # One bucket per (dtype, step): normally exactly one.
        keys: dict[tuple[torch.dtype, int], list[int]] = {}
        for i, (p, state) in enumerate(zip(fused, self.states)):
            keys.setdefault((native.REAL_DTYPE[p.dtype], state["step"]), []).append(i)
        self.buckets = []
        for (dtype, _), index in keys.items():
            operands = [[fused[i] for i in index], [fused[i].grad for i in index]]
            operands += [[self.buffers[name][i] for i in index] for name in names]
            table, starts = native.pointer_table(operands)
            self.buckets.append(
                Bucket(dtype, index, table, starts, [self.states[i] for i in index])
            )
        self.single = len(self.buckets) == 1 and len(self.buckets[0].index) == len(fused)
        # What the C++ checks take: the lists above as they are, and arrays (kept alive here)
        # by address, all worked out once.
        self.grad_ptrs = self.buckets[0].table[1] if self.single else np.zeros(len(fused), np.int64)
        steps = [state["step"] for state in self.states]
        self.steps = np.array(steps, dtype=np.int64) if all(type(n) is int for n in steps) else None
        self.native_args: tuple[Any, ...] | None = None
        if self.steps is not None:
            self._arrays = (np.array(self.param_ptrs, np.int64), np.array(self.numels, np.int64))
            self.native_args = (
                fused,
                others,
                absent,
                self._arrays[0].ctypes.data,
                self._arrays[1].ctypes.data,
                self.grad_ptrs.ctypes.data,
                self.states,
                "step",
                self.names,
                list(self.buffers.values()),
                self.steps.ctypes.data,
            )
        self.native_checked = False  # whether the last ready() ran the C++ checks

    def ready(self, optimizer: Any, group: dict[str, Any]) -> bool:
        """Whether the plan still holds; if so, also read this step's gradient pointers."""
        state = optimizer.state
        if (
            group is not self.group
            or group["params"] is not self.param_list
            or len(self.param_list) != self.n_params
            or state is not self.state
            or self.state_version is None
            or state.version != self.state_version  # a state dict added, replaced or removed
        ):
            return False
        checker = plancheck.checker() if self.native_args is not None else None
        self.native_checked = checker is not None
        if checker is not None:
            if not checker.ready(*self.native_args):
                return False
            if not self.single:
                for bucket in self.buckets:
                    bucket.table[1] = self.grad_ptrs[bucket.index]
            return True
        return self._ready_in_python()

    def _ready_in_python(self) -> bool:
        """:meth:`ready`'s per-tensor checks in Python (until the C++ ones are loaded)."""
        fused = self.fused
        grads = list(map(_grad, fused))
        try:
            if not (
                all(map(operator.is_, map(type, grads), repeat(Tensor)))  # None is not a Tensor
                and all(map(_is_contiguous, grads))
                and not any(map(_is_neg, grads))  # e.g. z.conj().imag: lazily negated
                and not any(grads[i].is_conj() for i in self.complex)
                and list(map(_data_ptr, fused)) == self.param_ptrs
                and list(map(_numel, fused)) == self.numels
                and all(map(_is_contiguous, fused))
                and all(p.grad is not None for p in self.others)
                and all(p.grad is None for p in self.absent)
            ):
                return False
            for name, buffers in self.buffers.items():
                if not all(map(operator.is_, map(operator.itemgetter(name), self.states), buffers)):
                    return False
            for bucket in self.buckets:  # a step count changed behind the plan's back
                states = bucket.states
                if not all(map(operator.eq, map(_step, states), repeat(states[0]["step"]))):
                    return False
        except RuntimeError:  # e.g. a sparse gradient: the general path explains the problem
            return False
        pointers = list(map(_data_ptr, grads))
        if self.single:
            self.buckets[0].table[1] = pointers
        else:
            for bucket in self.buckets:
                bucket.table[1] = [pointers[i] for i in bucket.index]
        return True

    def any_nonfinite(self) -> bool:
        """Whether a gradient the kernel will read holds NaN or Inf (after :meth:`ready`)."""
        return any(
            native.any_nonfinite_at(
                b.grads_address, b.starts_address, b.tensors, b.elements, b.dtype
            )
            for b in self.buckets
        )

    def step(self, optimizer: Any) -> bool:
        """Take the fused part of the step (after :meth:`ready`); the ``others`` are left to
        the caller. False, with nothing changed, when a kernel cannot be had."""
        runs = []
        for bucket in self.buckets:
            found = optimizer._fused_kernel(
                self.group, self.names, bucket.dtype, bucket.states[0]["step"] + 1
            )
            if found is None:
                return False
            runs.append(found)
        if self.native_checked:  # steps + 1, version counters bumped
            plancheck.checker().advance(self.fused, self.states, "step", self.native_args[-1])
        else:
            for state in self.states:
                state["step"] += 1
            if self.steps is not None:
                self.steps += 1
            increment_version(self.fused)
        for b, (kernel, scalars) in zip(self.buckets, runs):
            kernel.call(b.address, b.starts_address, b.tensors, b.elements, scalars)
        return True


_step = operator.itemgetter("step")


def fusable_entry(
    p: Tensor, grad: Tensor, state: dict[str, Any] | None, names: tuple[str, ...]
) -> bool:
    """Whether the kernel can update ``p`` from ``grad`` with the buffers of ``state``."""
    dtype = p.dtype
    if not state or dtype not in native.REAL_DTYPE:
        return False
    n = p.numel()
    fusable = native.fusable
    if not (fusable(p, dtype) and fusable(grad, dtype) and grad.numel() == n):
        return False
    for name in names:
        buffer = state.get(name)
        if not (isinstance(buffer, Tensor) and fusable(buffer, dtype) and buffer.numel() == n):
            return False
    return True
