"""optimlab: the optimizers that train neural networks, on one small functional core.

>>> import torch, optimlab
>>> model = torch.nn.Linear(3, 1)
>>> opt = optimlab.Adam(model.parameters(), lr=1e-3)
"""

from . import data, distributed, optim, schedules
from .averages import EWA, ewa
from .optim import *  # noqa: F403  (every optimizer class, derived from the registry)
from .optim import BEYOND_NOTES, OPTIMIZERS, REGISTRY

__version__ = "0.1.0"

__all__ = [
    "BEYOND_NOTES",
    "EWA",
    "OPTIMIZERS",
    "REGISTRY",
    "__version__",
    "data",
    "distributed",
    "ewa",
    "optim",
    "schedules",
]
__all__ += [name for name in optim.__all__ if name not in __all__]
