"""The C++ plan checks: built once, shared between processes, absent without a C++ compiler.

What they answer is tested in tests/test_fast_path.py (every plan test runs with them and with
the Python checks); here, how they are had.
"""

from __future__ import annotations

import fcntl

import numpy as np
import pytest
import torch

from optimlab.core import native, plancheck


def test_without_a_cxx_compiler_the_checks_say_why(monkeypatch):
    monkeypatch.setattr(plancheck.shutil, "which", lambda name: None)
    with pytest.raises(native.NativeUnavailable, match=r"no C\+\+ compiler found"):
        plancheck._library()


def test_turned_off_with_the_fused_path(monkeypatch):
    monkeypatch.setenv("OPTIMLAB_FUSED", "0")
    with pytest.raises(native.NativeUnavailable, match="OPTIMLAB_FUSED=0"):
        plancheck._library()


def test_another_process_building_is_waited_for_not_duplicated(monkeypatch, tmp_path):
    # A fresh cache: the library is not there. While another process holds the build lock,
    # this one does not compile the same library beside it (it keeps the Python checks and
    # looks again later).
    monkeypatch.setenv("OPTIMLAB_KERNEL_CACHE", str(tmp_path))
    compiled = []
    monkeypatch.setattr(native, "_compile", lambda *args, **kwargs: compiled.append(args))
    plancheck._library()  # the stub "compiles" nothing; the path is returned
    locks = list(tmp_path.glob(".plancheck_*.lock"))
    assert len(locks) == 1 and len(compiled) == 1  # built under the lock (by the stub)
    with open(locks[0], "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        compiled.clear()
        with pytest.raises(plancheck._Busy):
            plancheck._library()
        assert compiled == []


def test_built_checks_load_and_answer():
    checker = plancheck.wait()
    assert checker is not None, plancheck.unavailable_reason()
    p = torch.zeros(3, requires_grad=True)
    p.grad = torch.ones(3)
    states = [{"step": 4}]
    pointers = np.array([p.data_ptr()], dtype=np.int64)
    numels = np.array([3], dtype=np.int64)
    grads = np.zeros(1, dtype=np.int64)
    steps = np.array([4], dtype=np.int64)

    def ready():
        return checker.ready(
            [p],
            [],
            [],
            pointers.ctypes.data,
            numels.ctypes.data,
            grads.ctypes.data,
            states,
            "step",
            (),
            [],
            steps.ctypes.data,
        )

    assert ready() == 1 and grads[0] == p.grad.data_ptr()
    version = p._version
    assert checker.advance([p], states, "step", steps.ctypes.data) == 0
    assert states[0]["step"] == 5 and steps[0] == 5 and p._version > version
    states[0]["step"] = 7  # changed behind the plan's back
    assert ready() == 0
    states[0]["step"] = 5
    p.grad = torch.ones(3)  # a new gradient: its pointer is read
    assert ready() == 1 and grads[0] == p.grad.data_ptr()
    states[0] = dict(states[0])  # another dict with the same entries holds the same buffers
    assert ready() == 1
    p.grad = torch.ones(6)[::2]  # not contiguous
    assert ready() == 0
    p.grad = None
    assert ready() == 0
    p.grad = torch.ones(3)
    with pytest.raises(TypeError, match="lists of equal lengths"):  # refused, not crashed on
        checker.ready(
            [p],
            [],
            [],
            pointers.ctypes.data,
            numels.ctypes.data,
            grads.ctypes.data,
            "not a list",
            "step",
            (),
            [],
            steps.ctypes.data,
        )
