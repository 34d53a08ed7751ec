"""What the fused kernel may take; a group's fused step worked out once, re-checked each step.

**The specification.** The kernel reads and writes raw memory through tables of data pointers
(:mod:`optimlab.fused.native`), so it must only ever see tensors it can treat as plain arrays. A
parameter ``p`` is *fusable*, with its gradient ``g`` and the state buffers the rule names, when

1. ``p``, ``g`` and every buffer are exactly ``torch.Tensor`` or ``nn.Parameter`` (no subclass,
   no Python dispatch: DTensor, FakeTensor, ...), strided, on the CPU, with storage,
   contiguous, with neither the lazy conjugation nor the negation bit;
2. ``p`` is float32, float64, complex64 or complex128, and ``g`` and every buffer have exactly
   ``p``'s dtype and shape (the plain path raises for anything else: the kernel never sees it);
   or ``p`` and ``g`` are bfloat16 and the group keeps float32 state (``state_dtype``), and
   every buffer is float32 of ``p``'s shape; or (the Triton kernels only) ``p`` and ``g``
   are bfloat16 or float16, and every buffer is float32 (``state_dtype``) or, where the
   group keeps its state in the parameters' dtype, of ``p``'s dtype;
3. its state is a dict whose ``step`` is a step count as torch.optim keeps it: a 0-dim tensor
   of float32 or float64 passing (1), holding a whole number;
4. the memory it writes (``p`` and its buffers) overlaps nothing else the step reads or writes:
   not its own gradient, not another parameter's tensors. Gradients are only read, so they may
   share memory with each other.

Everything else goes to the plain path in the same step, which computes what it computes or
raises what it raises. :func:`fusable_subset` applies the specification when a group steps on
the general path; a :class:`FusedPlan` is what it decided, kept for the next steps.

**Each step** the plan confirms, before the kernel runs, that everything it relied on still
holds: the group and the optimizer's state mapping are the same objects (no state dict added,
replaced or removed: :class:`~optimlab.optim.base.StateMap` counts changes), and the group's
``fused`` and ``foreach`` choices the same; every fused
parameter and buffer is the same object, still passes (1) and (2) with the same data pointer
and element count; every gradient passes (1) and (2) afresh (its pointer is read anew:
``zero_grad(set_to_none=True)`` gives new gradients every step) and overlaps no memory the step
writes; the step counts are the plan's; the other parameters still have dense gradients, and
their tensors still keep clear of the fused memory; the parameters that had no gradient still
have none. Anything else and the step takes the general path, which applies the specification
afresh and makes a new plan. The kernels write through raw pointers, so a step bumps the
parameters' autograd version counters itself, as PyTorch's in-place operations do.

The same questions are asked in C++ (:mod:`optimlab.fused.plancheck`, compiled by ``optimlab
build``: 0.12 µs a parameter for SGD, 0.26 µs for Adam, whose two buffers are checked too) or,
where that library is not built, in Python (about 2 and 4.5 µs a parameter); the tests run
every plan test through both and compare with the plain path.
"""

from __future__ import annotations

import operator
import sys
from itertools import repeat
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.autograd.graph import increment_version

from . import native, plancheck

_grad = operator.attrgetter("grad")
_data_ptr = Tensor.data_ptr
_numel = Tensor.numel
_step = operator.itemgetter("step")
_shape = operator.attrgetter("shape")
_dtype = operator.attrgetter("dtype")
_layout = operator.attrgetter("layout")
_is_cpu = operator.attrgetter("is_cpu")
_device = operator.attrgetter("device")
_is_contiguous = Tensor.is_contiguous
_is_neg = Tensor.is_neg
_EXACT_TYPES = frozenset((Tensor, torch.nn.Parameter))
_NO_INTERVALS = (np.zeros(0, np.int64), np.zeros(0, np.int64))

#: plans with at least this many tensors say once, on stderr, when they check in Python
PYTHON_CHECKS_NOTICE_TENSORS = 100
_noticed = False


_CPU = torch.device("cpu")


def plain(t: Any, dtype: torch.dtype, device: torch.device = _CPU) -> bool:
    """Rule (1) and the dtype of rule (2): the kernel can read ``t`` as an array of ``dtype``
    (on ``device``: the CPU for the C kernels, a GPU for the Triton ones).

    (Without the storage: per step, ``data_ptr()`` raises for a tensor without one.)"""
    complex_ = [0] if isinstance(t, Tensor) and t.is_complex() else []
    return _all_plain([t], [dtype], complex_, device)


def _has_storage(t: Tensor) -> bool:
    try:
        t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # e.g. a functional or nested tensor
        return False
    return True


def extent(t: Any, device: torch.device = _CPU) -> tuple[int, int] | None:
    """The bytes ``[start, end)`` of ``device``'s memory that ``t``'s elements span; None if
    none (or elsewhere)."""
    if not isinstance(t, Tensor) or t.layout is not torch.strided or t.device != device:
        return None
    try:
        if t.numel() == 0:
            return None
        start, size = t.data_ptr(), t.element_size()
    except RuntimeError:  # no storage
        return None
    low = high = 0
    for length, stride in zip(t.shape, t.stride()):
        if stride >= 0:
            high += (length - 1) * stride
        else:
            low += (length - 1) * stride
    return start + low * size, start + (high + 1) * size


def _step_count(step: Any, device: torch.device = _CPU) -> int | None:
    """Rule (3): the count a step tensor holds, or None where it is not one (on the CPU, as
    torch keeps it, or, for the Triton kernels, on their ``device``, as ``capturable=True``
    keeps it: read once, when a plan is made)."""
    if not isinstance(step, Tensor) or step.dim() != 0 or not _has_storage(step):
        return None
    places = (_CPU,) if device == _CPU else (_CPU, device)
    if not any(plain(step, dtype, at) for dtype in (torch.float32, torch.float64) for at in places):
        return None
    count = step.item()
    return int(count) if count == int(count) else None


def _state_tensors(state: Any) -> list[Tensor]:
    return [v for v in state.values() if isinstance(v, Tensor)] if isinstance(state, dict) else []


def kernel_dtypes(
    dtype: torch.dtype, state_dtype: torch.dtype | None, triton: bool = False
) -> tuple[torch.dtype, torch.dtype] | None:
    """``(compute, buffers)``: the real dtype a kernel computes in for parameters of ``dtype``
    whose group keeps state in ``state_dtype``, and the dtype of their buffers; None where no
    kernel takes them. The kernels take float32, float64 and their complex types, with state
    of the same dtype, and bfloat16 with float32 state; the Triton kernels (``triton``) also
    bfloat16 and float16 with state of their own dtype (torch's default) or float32,
    computing in float32 (see :func:`optimlab.fused.triton_kernels.program_source`)."""
    if triton and dtype in (torch.bfloat16, torch.float16):
        if state_dtype in (None, dtype):
            return torch.float32, dtype
        return (torch.float32, torch.float32) if state_dtype == torch.float32 else None
    if state_dtype is None or state_dtype == dtype:
        real = native.REAL_DTYPE.get(dtype)
        return None if real is None else (real, dtype)
    if dtype == torch.bfloat16 and state_dtype == torch.float32:
        return torch.float32, torch.float32
    return None


def _entry_ok(
    p: Tensor,
    grad: Any,
    state: Any,
    names: tuple[str, ...],
    device: torch.device = _CPU,
    buffer_dtype: torch.dtype | None = None,
) -> bool:
    """Rules (1) to (3) for one parameter (its buffers of ``buffer_dtype``: its own if None)."""
    dtype = p.dtype
    if buffer_dtype is None:
        if dtype not in native.REAL_DTYPE:
            return False
        buffer_dtype = dtype
    if not isinstance(state, dict) or not state:
        return False
    if (
        _step_count(state.get("step"), device) is None
        or not plain(p, dtype, device)
        or not plain(grad, dtype, device)
    ):
        return False
    if not (_has_storage(p) and _has_storage(grad)):
        return False
    shape = p.shape
    if grad.shape != shape:
        return False
    for name in names:
        buffer = state.get(name)
        if (
            not plain(buffer, buffer_dtype, device)
            or buffer.shape != shape
            or not _has_storage(buffer)
        ):
            return False
    return True


def fusable_subset(
    optimizer: Any,
    group: dict[str, Any],
    candidates: list[Tensor],
    names: tuple[str, ...],
    device: torch.device = _CPU,
    triton: bool = False,
) -> tuple[list[Tensor], list[Tensor]]:
    """``(fused, rest)``: the ``candidates`` the specification lets the kernel take, in order
    (the C kernels, or the Triton ones, of ``device``: see :func:`kernel_dtypes`).

    Rule (4) looks at every tensor this group's step touches: each parameter with a gradient,
    its gradient and its state tensors.
    """
    state = optimizer.state
    state_dtype = group.get("state_dtype")
    ok = []
    for p in candidates:
        dtypes = kernel_dtypes(p.dtype, state_dtype, triton)
        if (
            dtypes is not None
            and p.grad is not None
            and _entry_ok(p, p.grad, state.get(p), names, device, dtypes[1])
        ):
            ok.append(p)
    if not ok:
        return [], list(candidates)
    # Rule (4): sort every interval, sweep, and take out both owners of any overlap in which
    # one side is written.
    intervals = []
    for owner, p in enumerate(group["params"]):
        grad = p.grad
        if grad is None:
            continue
        for t, written in [(grad, False), (p, True)] + [
            (t, True) for t in _state_tensors(state.get(p))
        ]:
            span = extent(t, device)
            if span is not None:
                intervals.append((span[0], span[1], owner, written))
    intervals.sort()
    clash: set[int] = set()
    open_: list[tuple[int, int, int, bool]] = []  # intervals that may still overlap what comes
    for interval in intervals:
        start = interval[0]
        open_ = [o for o in open_ if o[1] > start]
        for other in open_:
            if interval[3] or other[3]:  # two reads of one memory are harmless
                clash.update((interval[2], other[2]))
        open_.append(interval)
    if clash:
        index = {id(p): k for k, p in enumerate(group["params"])}
        ok = [p for p in ok if index[id(p)] not in clash]
    taken = {id(p) for p in ok}
    return ok, [p for p in candidates if id(p) not in taken]


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
        "device_bucket",
        "storage",
        "state_storage",
        "names",
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
        self.device_bucket: Any = None  # its tables on a GPU (triton_kernels.DeviceBucket)
        self.storage = dtype  # the parameters' dtype (bfloat16, float16: ``dtype`` is wider)
        self.state_storage = dtype  # the buffers' (the parameters', on Triton, or ``dtype``)
        self.names: list[str] | None = None  # the parameters' names (for error messages)


class FusedPlan:
    """The fusable part of one parameter group (see the module docstring), kept between steps."""

    def __init__(
        self,
        optimizer: Any,
        group: dict[str, Any],
        names: tuple[str, ...],
        device: torch.device = _CPU,
        triton: bool = False,
        capturable: bool = False,
    ) -> None:
        self.group = group
        self.device = device  # the CPU (C kernels) or a GPU (Triton kernels)
        self.triton = triton  # for the Triton kernels (on CPU tensors: in the interpreter)
        # step counts advanced on the device (capturable=True): ``steps`` holds them as they
        # were when the plan was made, and later steps check the step tensors by identity only
        self.capturable = capturable
        self.param_list = group["params"]
        # the group's dispatch choices the plan was made for (a group may change them)
        self.choice = (group.get("fused"), group.get("foreach"))
        self.n_params = len(self.param_list)
        self.state = optimizer.state
        self.state_version = getattr(optimizer.state, "version", None)
        self.names = tuple(names)
        with_grad = [p for p in self.param_list if p.grad is not None]
        fused, others = fusable_subset(optimizer, group, with_grad, self.names, device, triton)
        self.fused = fused
        self.others = others
        self.absent = [p for p in self.param_list if p.grad is None]
        self.states = [optimizer.state[p] for p in fused]
        self.buffers = {name: [s[name] for s in self.states] for name in names}
        self.dtypes = [p.dtype for p in fused]
        state_dtype = group.get("state_dtype")
        self.kernel_dtypes = [kernel_dtypes(d, state_dtype, triton) for d in self.dtypes]
        self.buffer_dtypes = [b for _, b in self.kernel_dtypes]
        self.shapes = [p.shape for p in fused]
        self.complex = [i for i, p in enumerate(fused) if p.is_complex()]
        self.param_ptrs = list(map(_data_ptr, fused))
        self.numels = list(map(_numel, fused))
        self.buffer_ptrs = [list(map(_data_ptr, b)) for b in self.buffers.values()]
        self.nbytes = np.array([p.numel() * p.element_size() for p in fused], np.int64)
        # The memory the kernel writes: pairwise disjoint (rule 4), sorted.
        self.written = _disjoint(
            [
                s
                for t in fused + [b for bs in self.buffers.values() for b in bs]
                if (s := extent(t, device)) is not None
            ]
        )
        # One bucket per (dtype, step): normally exactly one.
        keys: dict[tuple[torch.dtype, torch.dtype, torch.dtype, int], list[int]] = {}
        for i, (p, state) in enumerate(zip(fused, self.states)):
            compute, buffers = self.kernel_dtypes[i]
            key = (compute, p.dtype, buffers, _step_count(state["step"], device))
            keys.setdefault(key, []).append(i)
        self.buckets = []
        for (dtype, storage, state_storage, _), index in keys.items():
            operands = [[fused[i] for i in index], [fused[i].grad for i in index]]
            operands += [[self.buffers[name][i] for i in index] for name in names]
            table, starts = native.pointer_table(operands)
            if not triton and storage == torch.bfloat16 and group.get("stochastic_rounding"):
                # the C kernel's rounding seeds: a last row of the table (see native.Kernel)
                seeds = [[int(self.states[i]["rounding_seed"]) for i in index]]
                table = np.concatenate([table, np.array(seeds, np.int64)])
            bucket = Bucket(dtype, index, table, starts, [self.states[i] for i in index])
            bucket.storage = storage
            bucket.state_storage = state_storage
            self.buckets.append(bucket)
        self.single = len(self.buckets) == 1 and len(self.buckets[0].index) == len(fused)
        self.grad_ptrs = self.buckets[0].table[1] if self.single else np.zeros(len(fused), np.int64)
        self.step_tensors = list(map(_step, self.states))
        self.steps = np.array([_step_count(t, device) for t in self.step_tensors], np.int64)
        self.native_args: tuple[Any, ...] | None = None  # worked out by the C++ checker
        self.native_steps = 0  # the address of ``steps``, for the C++ book-keeping
        self.native_checked = False  # whether the last ready() ran the C++ checks

    def ready(self, optimizer: Any, group: dict[str, Any]) -> bool:
        """Whether the plan still holds; if so, also read this step's gradient pointers."""
        state = optimizer.state
        if (
            group is not self.group
            or group["params"] is not self.param_list
            or (group.get("fused"), group.get("foreach")) != self.choice
            or len(self.param_list) != self.n_params
            or state is not self.state
            or self.state_version is None
            or state.version != self.state_version  # a state dict added, replaced or removed
            # (a hyperparameter edited to ask for other buffers, amsgrad=True after steps: the
            # general path then does, or raises, what fused=False does)
            or optimizer._buffer_names(group) != self.names
        ):
            return False
        extra = self._others_ready()
        if extra is None:
            return False
        # the C++ checks ask what the C kernels need (CPU tensors)
        checker = None if self.triton else plancheck.checker()
        self.native_checked = checker is not None
        if checker is not None:
            if not checker.ready(self, extra):
                return False
        elif not self._ready_in_python(extra):
            return False
        if not self.single:
            for bucket in self.buckets:
                bucket.table[1] = self.grad_ptrs[bucket.index]
        return True

    def _others_ready(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The parameters outside the fused set (normally none): each still has a dense
        gradient, and none of their tensors overlaps the fused memory. Returns the memory they
        write, which the fused gradients must keep clear of; None when the plan no longer
        holds."""
        if not self.others:
            return _NO_INTERVALS
        written = []
        for p in self.others:
            grad = p.grad
            if grad is None or grad.layout is not torch.strided:
                return None
            for t, writes in [(grad, False), (p, True)] + [
                (t, True) for t in _state_tensors(self.state.get(p))
            ]:
                span = extent(t)
                if span is None:
                    continue
                if _overlaps(self.written, np.array([span[0]]), np.array([span[1]])).any():
                    return None
                if writes:
                    written.append(span)
        return _disjoint(written)

    def _ready_in_python(self, extra: tuple[np.ndarray, np.ndarray]) -> bool:
        """:meth:`ready`'s per-tensor checks in Python (where the C++ ones are not built)."""
        _notice_python_checks(len(self.fused))
        try:
            return self._check_in_python(extra)
        except (RuntimeError, NotImplementedError):  # a tensor without storage, ...
            return False

    def _check_in_python(self, extra: tuple[np.ndarray, np.ndarray]) -> bool:
        # Each question asked of all tensors at once (``map`` over tensor methods runs in C).
        fused, dtypes, complex_ = self.fused, self.dtypes, self.complex
        grads = list(map(_grad, fused))
        if not (
            not any(map(operator.is_not, map(_grad, self.absent), repeat(None)))
            and _all_plain(fused, dtypes, complex_, self.device)
            and list(map(_data_ptr, fused)) == self.param_ptrs
            and list(map(_numel, fused)) == self.numels
            and _all_plain(grads, dtypes, complex_, self.device)
            and list(map(_shape, grads)) == self.shapes
            and list(map(_shape, fused)) == self.shapes
        ):
            return False
        for name, buffers, pointers in zip(self.names, self.buffers.values(), self.buffer_ptrs):
            if not (
                all(map(operator.is_, map(operator.itemgetter(name), self.states), buffers))
                and _all_plain(buffers, self.buffer_dtypes, complex_, self.device)
                and list(map(_data_ptr, buffers)) == pointers
                and list(map(_shape, buffers)) == self.shapes
            ):
                return False
        steps = list(map(_step, self.states))
        if not all(map(operator.is_, steps, self.step_tensors)) or (
            not self.capturable and list(map(Tensor.item, steps)) != self.steps.tolist()
        ):
            return False
        pointers = np.fromiter(map(_data_ptr, grads), np.int64, len(grads))
        ends = pointers + self.nbytes
        empty = self.nbytes == 0
        for intervals in (self.written, extra):
            if (_overlaps(intervals, pointers, ends) & ~empty).any():
                return False
        self.grad_ptrs[:] = pointers
        return True

    def any_nonfinite(self) -> bool:
        """Whether a gradient the kernel will read holds NaN or Inf (after :meth:`ready`)."""
        return any(
            native.any_nonfinite_at(
                b.grads_address,
                b.starts_address,
                b.tensors,
                b.elements,
                torch.bfloat16 if b.storage == torch.bfloat16 else b.dtype,
            )
            for b in self.buckets
        )

    def step(self, kernel: Any) -> bool:
        """Take the fused part of the step (after :meth:`ready`); the ``others`` are left to
        the caller. ``kernel(bucket, step)``: the compiled rule for ``bucket``'s parameters
        (see :class:`Bucket`) at step count ``step``, and its scalars, or None. False, with
        nothing changed, when a kernel cannot be had."""
        runs = []
        for bucket in self.buckets:
            found = kernel(bucket, int(self.steps[bucket.index[0]]) + 1)
            if found is None:
                return False
            runs.append(found)
        if self.native_checked:  # steps + 1, version counters bumped
            plancheck.checker().advance(self)
        else:
            for step in self.step_tensors:
                step += 1
            self.steps += 1
            increment_version(self.fused)
        for b, (kernel, scalars) in zip(self.buckets, runs):
            kernel.call(b.address, b.starts_address, b.tensors, b.elements, scalars)
        return True


def _disjoint(spans: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """The union of byte intervals as sorted, pairwise disjoint ``(starts, ends)`` arrays."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return np.array([m[0] for m in merged], np.int64), np.array([m[1] for m in merged], np.int64)


def _all_plain(
    tensors: list[Any],
    dtypes: list[torch.dtype],
    complex_: list[int],
    device: torch.device = _CPU,
) -> bool:
    """:func:`plain` of every tensor (with ``dtypes[i]``), asked of all at once; ``complex_``:
    the positions of complex ones (only they can carry the conjugation bit)."""
    return (
        set(map(type, tensors)) <= _EXACT_TYPES
        and list(map(_dtype, tensors)) == dtypes
        and (
            all(map(_is_cpu, tensors))
            if device.type == "cpu"
            else all(map(operator.eq, map(_device, tensors), repeat(device)))
        )
        and all(map(operator.is_, map(_layout, tensors), repeat(torch.strided)))
        and all(map(_is_contiguous, tensors))
        and not any(map(_is_neg, tensors))
        and not any(tensors[i].is_conj() for i in complex_)
    )


def _overlaps(
    intervals: tuple[np.ndarray, np.ndarray], starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """For each ``[starts[i], ends[i])``: whether it overlaps one of ``intervals`` (sorted,
    pairwise disjoint, so their ends are sorted too)."""
    low, high = intervals
    if len(low) == 0:
        return np.zeros(len(starts), bool)
    first = np.searchsorted(high, starts, side="right")  # the first interval ending past start
    inside = first < len(low)
    return inside & (low[np.minimum(first, len(low) - 1)] < ends)


def _notice_python_checks(tensors: int) -> None:
    global _noticed
    if _noticed or tensors < PYTHON_CHECKS_NOTICE_TENSORS:
        return
    _noticed = True
    print(
        f"optimlab: fused steps check their {tensors} tensors in Python (a few µs each) "
        f"because the C++ plan checks are not built here ({plancheck.unavailable_reason()}); "
        "`optimlab build` builds them once per machine",
        file=sys.stderr,
    )
