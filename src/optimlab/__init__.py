"""optimlab: the optimizers that train neural networks, on one small functional core.

    >>> import torch, optimlab
    >>> model = torch.nn.Linear(3, 1)
    >>> opt = optimlab.Adam(model.parameters(), lr=1e-3)
"""

from . import data, distributed, schedules
from .averages import EWA, ewa
from .optim import *  # noqa: F403  (the classes beyond the notes, listed in optim.__all__)
from .optim import (
    BEYOND_NOTES,
    SGD,
    Adam,
    AdamW,
    Momentum,
    NonFiniteGradientError,
    Optimizer,
    RMSprop,
    evaluation_weights,
)

__version__ = "0.1.0"

#: Every optimizer class, by the name ``optimlab list`` and the lab use.
OPTIMIZERS = {
    "sgd": SGD,
    "momentum": Momentum,
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
    **BEYOND_NOTES,
}

__all__ = [
    "EWA",
    "OPTIMIZERS",
    "SGD",
    "Adam",
    "AdamW",
    "Momentum",
    "NonFiniteGradientError",
    "Optimizer",
    "RMSprop",
    "__version__",
    "data",
    "distributed",
    "schedules",
    "ewa",
    "evaluation_weights",
] + [cls.__name__ for cls in BEYOND_NOTES.values()]
