"""A fused plan's per-step checks in C++: about 0.06 µs per tensor instead of about 1 µs in Python.

A :class:`~optimlab.fused.plan.FusedPlan` must confirm before every step that everything the
fused kernel relies on still holds (the specification is in :mod:`optimlab.fused.plan`): each
parameter's and buffer's type, dtype, layout, device, storage, pointer and size, that each
gradient is still a plain tensor of its parameter's dtype and shape clear of the memory the
step writes (its pointer is read afresh), the same state dicts with the step counts the plan
expects. Asked from Python, each of these is a method call on a tensor, microseconds per
tensor in all, milliseconds per step for a thousand tensors: as long as the update itself of a
10M-parameter model. This module asks the same questions of the C++ tensors behind the Python
objects (``THPVariable_Unpack``), and also takes the step's book-keeping (each state's
``step`` + 1, each parameter's autograd version counter bumped, as PyTorch's in-place
operations do).

It is compiled once per machine and PyTorch version, against PyTorch's own headers, with the
system C++ compiler (``$OPTIMLAB_CXX``, ``$CXX``, ``c++`` or ``g++``; about 20 s of one core),
by :func:`build`: ``optimlab build``, which ``make run`` and ``make test`` run as part of their
set-up. A user's process never compiles it: where it is not built (or cannot be: no C++
compiler, no Python headers), plans check in Python, asking the same questions, and say so
once on stderr when a plan holds many tensors.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import sys
import sysconfig
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import native

SOURCE = r"""
#include <Python.h>
#include <torch/csrc/autograd/python_variable.h>

namespace {

/* Rule (1) and the dtype of rule (2) of optimlab.fused.plan: a tensor the kernel can read as a
   plain array of dtype. Exactly torch.Tensor or nn.Parameter in Python (when it has a Python
   object), no Python dispatch (DTensor, FakeTensor...), strided, on the CPU, with storage,
   contiguous, without the lazy conjugation or negation bit. */
bool plain(const at::Tensor& t, int64_t dtype) {
  if (!t.defined() || t.layout() != c10::kStrided || !t.device().is_cpu() ||
      (int64_t)t.scalar_type() != dtype || !t.has_storage() || !t.is_contiguous() ||
      t.is_conj() || t.is_neg() || t.key_set().has(c10::DispatchKey::Python))
    return false;
  PyObject* object = t.unsafeGetTensorImpl()->pyobj_slot()->load_pyobj();
  return object == nullptr || THPVariable_CheckTypeExact(Py_TYPE(object));
}

int64_t address(const at::Tensor& t) { return (int64_t)(intptr_t)t.const_data_ptr(); }

/* Rule (3): a state's step count as torch.optim keeps it, a 0-dim tensor of float32 or
   float64 in the CPU's memory, holding count. (One element: no layout or Python-type question
   matters; a tensor without real storage, fake or meta, is not on the CPU.) */
bool step_holds(PyObject* o, int64_t count) {
  if (!THPVariable_Check(o)) return false;
  const at::Tensor& t = THPVariable_Unpack(o);
  if (t.dim() != 0 || !t.device().is_cpu() || !t.has_storage() ||
      t.key_set().has(c10::DispatchKey::Python))
    return false;
  if (t.scalar_type() == at::kFloat)
    return *static_cast<const float*>(t.const_data_ptr()) == (double)count;
  if (t.scalar_type() == at::kDouble)
    return *static_cast<const double*>(t.const_data_ptr()) == (double)count;
  return false;
}

/* Set a step count (that step_holds accepted) to count, as an in-place PyTorch operation
   would: its version counter bumped. */
void set_step(PyObject* o, int64_t count) {
  const at::Tensor& t = THPVariable_Unpack(o);
  if (t.scalar_type() == at::kFloat)
    *static_cast<float*>(t.data_ptr()) = (float)count;
  else
    *static_cast<double*>(t.data_ptr()) = (double)count;
  t.unsafeGetTensorImpl()->bump_version();
}

/* Whether [start, end) overlaps one of n sorted, pairwise disjoint intervals [lo[k], hi[k]):
   the first interval ending after start, found without branches (a branchy binary search
   mispredicts about half its steps), must begin before end. */
bool overlaps(int64_t start, int64_t end, const int64_t* lo, const int64_t* hi, int64_t n) {
  const int64_t* first = hi;
  int64_t length = n;
  while (length > 0) {
    const int64_t half = length / 2;
    const bool after = first[half] <= start;
    first = after ? first + half + 1 : first;
    length = after ? length - half - 1 : half;
  }
  const int64_t k = first - hi;
  return k < n && lo[k] < end;
}

}  // namespace

extern "C" {

/* The torch dtype code of a tensor (to give the plan its expected dtypes), -1 if none. */
int64_t ol_scalar_type(PyObject* o) {
  if (!THPVariable_Check(o)) return -1;
  return (int64_t)THPVariable_Unpack(o).scalar_type();
}

/* 1 when the plan still holds (see optimlab.fused.plan and Checker.arguments): every fused
   parameter is plain with its dtype dtypes[i], its pointer and element count; its gradient
   plain with that dtype and its shape, and clear of the written memory (the fused one,
   [w_lo, w_hi), and the others', [x_lo, x_hi)), its pointer going to grad_ptrs[i]; its state
   the plan's dict with step count steps[i] and the plan's buffers, each plain with dtype
   buffer_dtypes[i] (float32 for bfloat16 parameters with float32 state) and its shape at its
   pointer (buffer_ptrs[j * n + i]); the absent parameters still have no
   gradient. 0 when anything changed; -1 with a Python error set. */
int64_t ol_plan_ready(PyObject* fused, PyObject* absent, PyObject* states, PyObject* step_key,
                      PyObject* names, PyObject* buffers, const int64_t* arrays,
                      const int64_t* x_lo, const int64_t* x_hi, int64_t nx) {
  /* The plan's arrays, by address (one argument rather than nine: each costs ctypes time). */
  const int64_t* param_ptrs = (const int64_t*)(intptr_t)arrays[0];
  const int64_t* numels = (const int64_t*)(intptr_t)arrays[1];
  const int64_t* dtypes = (const int64_t*)(intptr_t)arrays[2];
  const int64_t* buffer_ptrs = (const int64_t*)(intptr_t)arrays[3];
  const int64_t* steps = (const int64_t*)(intptr_t)arrays[4];
  const int64_t* w_lo = (const int64_t*)(intptr_t)arrays[5];
  const int64_t* w_hi = (const int64_t*)(intptr_t)arrays[6];
  const int64_t nw = arrays[7];
  int64_t* grad_ptrs = (int64_t*)(intptr_t)arrays[8];
  const int64_t* buffer_dtypes = (const int64_t*)(intptr_t)arrays[9];
  if (!PyList_Check(fused) || !PyList_Check(absent) || !PyList_Check(states) ||
      !PyTuple_Check(names) || !PyList_Check(buffers) ||
      PyList_GET_SIZE(states) != PyList_GET_SIZE(fused) ||
      PyList_GET_SIZE(buffers) != PyTuple_GET_SIZE(names)) {
    PyErr_SetString(PyExc_TypeError, "ol_plan_ready: lists of equal lengths and a tuple expected");
    return -1;
  }
  for (Py_ssize_t j = 0; j < PyList_GET_SIZE(buffers); j++) {
    PyObject* row = PyList_GET_ITEM(buffers, j);
    if (!PyList_Check(row) || PyList_GET_SIZE(row) != PyList_GET_SIZE(fused)) {
      PyErr_SetString(PyExc_TypeError, "ol_plan_ready: one list of buffers per name expected");
      return -1;
    }
  }
  try {
    const Py_ssize_t n = PyList_GET_SIZE(fused), k = PyTuple_GET_SIZE(names);
    for (Py_ssize_t i = 0; i < n; i++) {
      PyObject* o = PyList_GET_ITEM(fused, i);
      if (!THPVariable_Check(o)) return 0;
      const at::Tensor& p = THPVariable_Unpack(o);
      if (!plain(p, dtypes[i]) || address(p) != param_ptrs[i] || p.numel() != numels[i])
        return 0;
      const at::Tensor& g = p.grad();
      if (!plain(g, dtypes[i]) || g.sizes() != p.sizes()) return 0;
      const int64_t start = address(g), end = start + g.numel() * (int64_t)g.element_size();
      if (end > start && (overlaps(start, end, w_lo, w_hi, nw) ||
                          overlaps(start, end, x_lo, x_hi, nx)))
        return 0;
      grad_ptrs[i] = start;
      PyObject* state = PyList_GET_ITEM(states, i);
      if (!PyDict_CheckExact(state)) return 0;
      PyObject* step = PyDict_GetItemWithError(state, step_key);
      if (step == nullptr) return PyErr_Occurred() ? -1 : 0;
      if (!step_holds(step, steps[i])) return 0;
      for (Py_ssize_t j = 0; j < k; j++) {
        PyObject* buffer = PyDict_GetItemWithError(state, PyTuple_GET_ITEM(names, j));
        if (buffer == nullptr && PyErr_Occurred()) return -1;
        if (buffer != PyList_GET_ITEM(PyList_GET_ITEM(buffers, j), i)) return 0;
        const at::Tensor& b = THPVariable_Unpack(buffer);
        if (!plain(b, buffer_dtypes[i]) || address(b) != buffer_ptrs[j * n + i] ||
            b.sizes() != p.sizes())
          return 0;
      }
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(absent); i++) {
      PyObject* o = PyList_GET_ITEM(absent, i);
      if (!THPVariable_Check(o) || THPVariable_Unpack(o).grad().defined()) return 0;
    }
    return 1;
  } catch (...) {
    return 0;  /* e.g. a tensor without storage: the general path explains */
  }
}

/* The book-keeping of a fused step (after ol_plan_ready): every state's step count + 1 (and
   steps[i] with it), every parameter's autograd version counter bumped. 0, or -1 with a
   Python error. */
int64_t ol_plan_advance(PyObject* fused, PyObject* states, PyObject* step_key, int64_t* steps) {
  if (!PyList_Check(fused) || !PyList_Check(states) ||
      PyList_GET_SIZE(states) != PyList_GET_SIZE(fused)) {
    PyErr_SetString(PyExc_TypeError, "ol_plan_advance: two lists of equal lengths expected");
    return -1;
  }
  const Py_ssize_t n = PyList_GET_SIZE(fused);
  try {
    for (Py_ssize_t i = 0; i < n; i++)
      THPVariable_Unpack(PyList_GET_ITEM(fused, i)).unsafeGetTensorImpl()->bump_version();
    for (Py_ssize_t i = 0; i < n; i++) {
      PyObject* step = PyDict_GetItemWithError(PyList_GET_ITEM(states, i), step_key);
      if (step == nullptr) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_KeyError, "step");
        return -1;
      }
      set_step(step, steps[i] + 1);  /* ol_plan_ready saw it hold steps[i] */
      steps[i] += 1;
    }
  } catch (const std::exception& error) {
    PyErr_SetString(PyExc_RuntimeError, error.what());
    return -1;
  }
  return 0;
}

/* The general path's book-keeping: each state in the list (a dict) holds at step_key a step
   count step_holds would accept; all advance by one (as in set_step), their new counts in
   counts[i]. 1 when done; 0 when a state is not like that (nothing changed); -1 with a Python
   error. */
int64_t ol_steps_advance(PyObject* states, PyObject* step_key, int64_t* counts) {
  if (!PyList_Check(states)) {
    PyErr_SetString(PyExc_TypeError, "ol_steps_advance: a list expected");
    return -1;
  }
  const Py_ssize_t n = PyList_GET_SIZE(states);
  try {
    for (Py_ssize_t i = 0; i < n; i++) {
      PyObject* state = PyList_GET_ITEM(states, i);
      if (!PyDict_CheckExact(state)) return 0;
      PyObject* step = PyDict_GetItemWithError(state, step_key);
      if (step == nullptr) return PyErr_Occurred() ? -1 : 0;
      if (!THPVariable_Check(step)) return 0;
      const at::Tensor& t = THPVariable_Unpack(step);
      if (t.dim() != 0 || t.requires_grad()) return 0;
      double value;
      if (plain(t, (int64_t)at::kFloat))
        value = *static_cast<const float*>(t.const_data_ptr());
      else if (plain(t, (int64_t)at::kDouble))
        value = *static_cast<const double*>(t.const_data_ptr());
      else
        return 0;
      if (!(value >= 0 && value < 9007199254740992.0) || value != (double)(int64_t)value) return 0;
      counts[i] = (int64_t)value;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
      PyObject* step = PyDict_GetItem(PyList_GET_ITEM(states, i), step_key);
      set_step(step, counts[i] + 1);
      /* the count as stored: a float32 count stops at 2**24, as torch's does */
      const at::Tensor& t = THPVariable_Unpack(step);
      counts[i] = t.scalar_type() == at::kFloat
                      ? (int64_t)*static_cast<const float*>(t.const_data_ptr())
                      : (int64_t)*static_cast<const double*>(t.const_data_ptr());
    }
  } catch (...) {
    return 0;
  }
  return 1;
}

}
"""


class Checker:
    """The loaded library, asked about a :class:`~optimlab.fused.plan.FusedPlan`."""

    def __init__(self, library: ctypes.PyDLL) -> None:
        pointer, obj, integer = ctypes.c_void_p, ctypes.py_object, ctypes.c_int64
        self._ready = library.ol_plan_ready
        self._ready.restype = integer
        self._ready.argtypes = [obj] * 6 + [pointer] * 3 + [integer]
        self._advance = library.ol_plan_advance
        self._advance.restype = integer
        self._advance.argtypes = [obj, obj, obj, pointer]
        self._steps_advance = library.ol_steps_advance
        self._steps_advance.restype = integer
        self._steps_advance.argtypes = [obj, obj, pointer]
        scalar_type = library.ol_scalar_type
        scalar_type.restype = integer
        scalar_type.argtypes = [obj]
        #: torch dtype -> the code of its c10::ScalarType
        self.codes = {
            dtype: scalar_type(torch.zeros(0, dtype=dtype))
            for dtype in (*native.REAL_DTYPE, torch.bfloat16)
        }

    def arguments(self, plan: Any) -> tuple[Any, ...]:
        """The C function's fixed arguments for ``plan``: its lists as they are, and the
        addresses of its arrays in one array (all kept alive by the plan), worked out once."""
        arrays = (
            np.array(plan.param_ptrs, np.int64),
            np.array(plan.numels, np.int64),
            np.array([self.codes[d] for d in plan.dtypes], np.int64),
            np.array(plan.buffer_ptrs, np.int64).reshape(-1),
            *plan.written,
            np.array([self.codes[d] for d in plan.buffer_dtypes], np.int64),
        )
        addresses = [a.ctypes.data for a in arrays[:4]]
        addresses += [plan.steps.ctypes.data, arrays[4].ctypes.data, arrays[5].ctypes.data]
        addresses += [len(arrays[4]), plan.grad_ptrs.ctypes.data, arrays[6].ctypes.data]
        table = np.array(addresses, np.int64)
        plan._native_arrays = (*arrays, table)
        return (
            plan.fused,
            plan.absent,
            plan.states,
            "step",
            plan.names,
            list(plan.buffers.values()),
            table.ctypes.data,
        )

    def ready(self, plan: Any, extra: tuple[np.ndarray, np.ndarray]) -> bool:
        """Whether ``plan`` still holds (the same questions as its Python checks); if so, its
        ``grad_ptrs`` hold this step's gradients. ``extra``: memory the others write."""
        if plan.native_args is None:
            plan.native_args = self.arguments(plan)
            plan.native_steps = plan.steps.ctypes.data
        if len(extra[0]):
            found = self._ready(
                *plan.native_args, extra[0].ctypes.data, extra[1].ctypes.data, len(extra[0])
            )
        else:
            found = self._ready(*plan.native_args, None, None, 0)
        return found == 1

    def advance(self, plan: Any) -> None:
        """The step's book-keeping: step counts + 1, parameters' version counters bumped."""
        self._advance(plan.fused, plan.states, "step", plan.native_steps)

    def advance_steps(self, states: list[dict[str, Any]]) -> list[int] | None:
        """Each state's step count + 1, the new counts; None, with nothing changed, where a
        state's count is not a plain 0-dim float tensor (the caller advances those)."""
        counts = np.empty(len(states), np.int64)
        found = self._steps_advance(states, "step", counts.ctypes.data)
        if found < 0:
            raise RuntimeError("ol_steps_advance failed")
        return counts.tolist() if found == 1 else None


_lock = threading.Lock()
_checker: Checker | None = None
_unavailable: str | None = None
_looked = False


def checker() -> Checker | None:
    """The compiled checks if ``optimlab build`` has built them for this machine and PyTorch;
    else None (:func:`unavailable_reason` says why). Never compiles: found once per process."""
    global _looked
    if not _looked:
        with _lock:
            if not _looked:
                _load(build=False)
                _looked = True
    return _checker


def build() -> Checker | None:
    """Build the checks (or load them from the cache) now: about 20 s of one core the first
    time on a machine, under the kernel cache's build lock. None, with
    :func:`unavailable_reason`, where they cannot be built (no C++ compiler, no headers)."""
    global _looked
    with _lock:
        if _checker is None:
            _load(build=True)
        _looked = True
    return _checker


def unavailable_reason() -> str | None:
    return _unavailable


def _load(build: bool) -> None:
    global _checker, _unavailable
    try:
        path = _library(build)
        _checker = Checker(ctypes.PyDLL(str(path)))
        _unavailable = None
    except (native.NativeUnavailable, OSError, AttributeError) as error:
        _unavailable = str(error)


def _library(build: bool = True) -> Path:
    """The compiled library's path: from the cache, else (``build``) compiled into it."""
    if os.environ.get("OPTIMLAB_FUSED", "1") == "0":
        raise native.NativeUnavailable("OPTIMLAB_FUSED=0")
    compiler = None
    for candidate in (os.environ.get("OPTIMLAB_CXX"), os.environ.get("CXX"), "c++", "g++"):
        if candidate and shutil.which(candidate):
            compiler = shutil.which(candidate)
            break
    if compiler is None:
        raise native.NativeUnavailable("no C++ compiler found (set OPTIMLAB_CXX or CXX)")
    python_include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(python_include, "Python.h")):
        raise native.NativeUnavailable(f"no Python headers in {python_include}")
    root = Path(torch.__file__).parent
    abi = int(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", True))
    flags = [
        "-O2",
        "-std=c++20",
        "-shared",
        "-fPIC",
        "-w",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        f"-I{root / 'include'}",
        f"-I{root / 'include' / 'torch' / 'csrc' / 'api' / 'include'}",
        f"-I{python_include}",
    ]
    libraries = [f"-L{root / 'lib'}", "-ltorch_python", "-ltorch_cpu", "-lc10"]
    libraries.append(f"-Wl,-rpath,{root / 'lib'}")
    identity = [SOURCE, compiler, *flags, *libraries, torch.__version__, sys.version]
    key = hashlib.sha256("\0".join(identity).encode()).hexdigest()
    directory = native.cache_dir()
    library = directory / f"optimlab_plancheck_{key[:32]}.so"
    if native.trusted_file(library):
        return library
    if not build:
        raise native.NativeUnavailable(
            "not built for this machine and PyTorch yet (`optimlab build` builds them)"
        )
    native.compile_library(
        compiler, flags, SOURCE, library, ".cpp", libraries, what="the C++ plan checks"
    )
    return library
