"""A fused plan's per-step checks in C++: about 40 ns per tensor instead of about 1 µs in Python.

A :class:`~optimlab.optim.plan.FusedPlan` must confirm before every step that nothing it relied
on changed: each parameter's data pointer, size and layout, that it still has a dense,
contiguous CPU gradient of its dtype (whose pointer it reads afresh), that its state dict holds
the same buffers and the step count the plan expects. Asked from Python, each of these is a
method call on a tensor: about 70 ns, a microsecond per tensor in all, a millisecond per step
for a thousand tensors, as long as the update itself of a 10M-parameter model. This module
asks the same questions of the C++ tensors behind the Python objects (``THPVariable_Unpack``),
and also takes the step's book-keeping (each state's ``step`` + 1, each parameter's autograd
version counter bumped, as PyTorch's in-place operations do).

It is compiled once per machine and PyTorch version, against PyTorch's own headers, with the
system C++ compiler (``$OPTIMLAB_CXX``, ``$CXX``, ``c++`` or ``g++``; about 20 s), in a
background thread started by the first plan, into the kernel cache of
:mod:`optimlab.core.native`. Until it is loaded, and wherever it cannot be built (no C++
compiler, no Python headers), plans check in Python: same answers, slower.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import shutil
import sys
import sysconfig
import threading
import time
from pathlib import Path

import torch

from . import native

SOURCE = r"""
#include <Python.h>
#include <torch/csrc/autograd/python_variable.h>

namespace {

/* A tensor the kernels can read as a plain array of dtype: dense, contiguous, on the CPU, with
   storage, no lazy conjugation or negation, no Python dispatch (DTensor, FakeTensor...). */
bool plain(const at::Tensor& t, c10::ScalarType dtype) {
  return t.defined() && t.layout() == c10::kStrided && t.device().is_cpu() &&
         t.scalar_type() == dtype && t.has_storage() && t.is_contiguous() && !t.is_conj() &&
         !t.is_neg() && !t.key_set().has(c10::DispatchKey::Python);
}

int64_t address(const at::Tensor& t) { return (int64_t)(intptr_t)t.const_data_ptr(); }

}  // namespace

extern "C" {

/* 1 when every fused parameter still has the plan's pointer, size and layout, a plain gradient
   (whose pointer goes to grad_ptrs[i]), its state the plan's buffers and step count steps[i];
   the other parameters a gradient and the absent ones none. 0 when anything changed; -1 with a
   Python error set (a state that is not a dict). */
int64_t ol_plan_ready(PyObject* fused, PyObject* others, PyObject* absent,
                      const int64_t* param_ptrs, const int64_t* numels, int64_t* grad_ptrs,
                      PyObject* states, PyObject* step_key, PyObject* names, PyObject* buffers,
                      const int64_t* steps) {
  if (!PyList_Check(fused) || !PyList_Check(others) || !PyList_Check(absent) ||
      !PyList_Check(states) || !PyTuple_Check(names) || !PyList_Check(buffers) ||
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
      if (!p.has_storage() || address(p) != param_ptrs[i] || p.numel() != numels[i] ||
          !plain(p, p.scalar_type()))
        return 0;
      const at::Tensor& g = p.grad();
      if (!plain(g, p.scalar_type()) || g.numel() != numels[i]) return 0;
      grad_ptrs[i] = address(g);
      PyObject* state = PyList_GET_ITEM(states, i);
      if (!PyDict_CheckExact(state)) return 0;
      PyObject* step = PyDict_GetItemWithError(state, step_key);
      if (step == nullptr) return PyErr_Occurred() ? -1 : 0;
      if (!PyLong_CheckExact(step)) return 0;
      int overflow = 0;
      if (PyLong_AsLongLongAndOverflow(step, &overflow) != steps[i] || overflow) return 0;
      for (Py_ssize_t j = 0; j < k; j++) {
        PyObject* buffer = PyDict_GetItemWithError(state, PyTuple_GET_ITEM(names, j));
        if (buffer == nullptr && PyErr_Occurred()) return -1;
        if (buffer != PyList_GET_ITEM(PyList_GET_ITEM(buffers, j), i)) return 0;
      }
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(others); i++) {
      PyObject* o = PyList_GET_ITEM(others, i);
      if (!THPVariable_Check(o) || !THPVariable_Unpack(o).grad().defined()) return 0;
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

/* The book-keeping of a fused step (after ol_plan_ready): every state's step + 1 (and steps[i]
   with it), every parameter's autograd version counter bumped. 0, or -1 with a Python error. */
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
  } catch (const std::exception& error) {
    PyErr_SetString(PyExc_RuntimeError, error.what());
    return -1;
  }
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject* step = PyLong_FromLongLong(steps[i] + 1);
    if (step == nullptr) return -1;
    int failed = PyDict_SetItem(PyList_GET_ITEM(states, i), step_key, step);
    Py_DECREF(step);
    if (failed) return -1;
    steps[i] += 1;
  }
  return 0;
}

}
"""


class Checker:
    """The loaded library: ``ready(...)`` and ``advance(...)`` (see the C++ source)."""

    def __init__(self, library: ctypes.PyDLL) -> None:
        pointer = ctypes.c_void_p
        obj = ctypes.py_object
        self.ready = library.ol_plan_ready
        self.ready.restype = ctypes.c_int64
        self.ready.argtypes = [
            obj,
            obj,
            obj,
            pointer,
            pointer,
            pointer,
            obj,
            obj,
            obj,
            obj,
            pointer,
        ]
        self.advance = library.ol_plan_advance
        self.advance.restype = ctypes.c_int64
        self.advance.argtypes = [obj, obj, obj, pointer]


_lock = threading.Lock()
_checker: Checker | None = None
_builder: threading.Thread | None = None
_unavailable: str | None = None
#: when another process is compiling: look in the cache again after this time.monotonic()
_retry_at = 0.0


class _Busy(Exception):
    """Another process holds the build lock: its library will be in the cache soon."""


def checker() -> Checker | None:
    """The compiled checks if they are loaded; else None (and the build is started)."""
    if _checker is None and _builder is None and _unavailable is None:
        start()
    return _checker


def start() -> None:
    """Start building (or loading from the cache) in a background thread, once per process
    (again later if another process was building it)."""
    global _builder
    with _lock:
        if _builder is not None or _checker is not None or _unavailable is not None:
            return
        if time.monotonic() < _retry_at:
            return
        _builder = threading.Thread(target=_build, name="optimlab-plancheck", daemon=True)
        _builder.start()


def wait(timeout: float = 600.0) -> Checker | None:
    """Build (or load) now and return the checks, waiting for another process's build too;
    None, with :func:`unavailable_reason`, if they cannot be had here."""
    global _retry_at
    deadline = time.monotonic() + timeout
    while _checker is None and _unavailable is None and time.monotonic() < deadline:
        _retry_at = 0.0
        start()
        builder = _builder
        if builder is not None:
            builder.join(max(0.0, deadline - time.monotonic()))
        if _checker is None and _unavailable is None:
            time.sleep(0.2)  # another process is building it
    return _checker


def unavailable_reason() -> str | None:
    return _unavailable


def _build() -> None:
    global _checker, _unavailable, _builder, _retry_at
    try:
        library = ctypes.PyDLL(str(_library()))
        checker = Checker(library)
    except _Busy:
        _retry_at = time.monotonic() + 2.0
        _builder = None
        return
    except (native.NativeUnavailable, OSError, AttributeError) as error:
        _unavailable = str(error)
        return
    _checker = checker


def _library() -> Path:
    """The compiled library's path: from the cache, else compiled into it."""
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
    directory = native._writable_cache_dir()
    library = directory / f"optimlab_plancheck_{key[:32]}.so"
    if library.exists():
        return library
    # One process compiles (about 20 s of a core); the others keep checking in Python and
    # look again later, rather than compiling the same library side by side.
    with open(directory / f".plancheck_{key[:32]}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _Busy from None
        if not library.exists():
            native._compile(compiler, flags, SOURCE, directory, library, ".cpp", libraries)
    return library
