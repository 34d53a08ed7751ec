"""optimlab: the optimizers that train neural networks, on one small functional core.

>>> import torch, optimlab
>>> model = torch.nn.Linear(3, 1)
>>> opt = optimlab.Adam(model.parameters(), lr=1e-3)

The names below are imported on first use (PEP 562): ``import optimlab`` itself imports
nothing heavy, so that ``optimlab --help`` answers without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: the subpackages and modules that ``optimlab.<name>`` gives
_MODULES = (
    "averages",
    "benchmarks",
    "checks",
    "cli",
    "core",
    "data",
    "distributed",
    "fused",
    "lab",
    "optim",
    "remedies",
    "schedules",
    "train",
)
#: names taken from a module other than :mod:`optimlab.optim` (which gives every optimizer)
_FROM = {"EWA": "averages", "ewa": "averages"}
_BASE = ["BEYOND_NOTES", "EWA", "OPTIMIZERS", "REGISTRY", "__version__"]
_BASE += ["data", "distributed", "ewa", "optim", "schedules"]


def _exports() -> list[str]:
    """``__all__``: the names above and every name :mod:`optimlab.optim` exports."""
    optim = importlib.import_module(".optim", __name__)
    return _BASE + [name for name in optim.__all__ if name not in _BASE]


def __getattr__(name: str) -> Any:
    if name == "__all__":
        value: Any = _exports()
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    elif name in _FROM:
        value = getattr(importlib.import_module(f".{_FROM[name]}", __name__), name)
    else:
        optim = importlib.import_module(".optim", __name__)
        if name not in optim.__all__:
            raise AttributeError(f"module 'optimlab' has no attribute {name!r}")
        value = getattr(optim, name)
    globals()[name] = value  # found once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULES, *_exports()})
