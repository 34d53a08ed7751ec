"""``optimlab build``: compile, once per machine and PyTorch version, what the fused path needs.

The fused path compiles one C kernel per rule configuration (about 0.2 s each) and the plan
checks in C++ (about 20 s). Doing that in a user's first step would stall it and start
compilers behind the user's back, so set-up does it: ``make run`` and ``make test`` run
:func:`build`, and users who install with pip run ``optimlab build``. It builds

* the support library and the fused path's self-test (every operation against PyTorch's);
* the kernels of every optimizer's common configurations (its defaults and those the
  registry lists: momentum, Nesterov, weight decay, AMSGrad, centered RMSprop, ...; see
  :mod:`optimlab.optim.registry`), for float32 and float64, by taking ten real steps of each
  on a tiny parameter: exactly the kernels a user's steps ask for, found the way they find
  them;
* the C++ plan checks (:mod:`optimlab.fused.plancheck`).

What is already in the cache is only loaded. ``OPTIMLAB_FUSED=0`` builds nothing.

>>> from optimlab.fused.build import build
>>> lines = []
>>> build(lines.append)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import torch

from . import native, plancheck


def build(progress: Callable[[str], None]) -> bool:
    """Build everything the fused path needs here, reporting each part through ``progress``.

    Returns whether the fused path can run here (with what it could build); the reasons for
    anything missing go through ``progress``.
    """
    if os.environ.get("OPTIMLAB_FUSED", "1") == "0":
        progress("OPTIMLAB_FUSED=0: the fused path is off, nothing to build")
        return False
    from ..optim.registry import REGISTRY

    native._building_ahead = True
    try:
        started = time.perf_counter()
        progress(f"kernel cache: {native.cache_dir()}")
        reason = native.unavailable_reason()
        if reason is not None:
            progress(f"fused path unavailable here: {reason}")
            return False
        progress(f"self-test passed ({time.perf_counter() - started:.1f} s)")
        for name, entry in REGISTRY.items():  # each one's common configurations
            if not entry.fusable:
                continue
            started = time.perf_counter()
            for variant in entry.variants():
                for dtype in (torch.float32, torch.float64):
                    _take_steps(entry.cls, variant.configuration.arguments, dtype)
            progress(f"kernels for {name} ({time.perf_counter() - started:.1f} s)")
        started = time.perf_counter()
        progress("plan checks in C++: building (about 20 s the first time)...")
        if plancheck.build() is None:
            progress(f"plan checks in C++ unavailable: {plancheck.unavailable_reason()}")
        else:
            progress(f"plan checks in C++ ready ({time.perf_counter() - started:.1f} s)")
        return True
    finally:
        native._building_ahead = False


def _take_steps(cls: type, options: dict[str, Any], dtype: torch.dtype) -> None:
    p = torch.zeros(4, dtype=dtype, requires_grad=True)
    optimizer = cls([p], fused=True, **options)
    for _ in range(10):  # some rules ask for other operations on the first steps (RAdam: 1-5)
        p.grad = torch.ones_like(p)
        optimizer.step()
