"""optimlab: the optimizers that train neural networks, on one small functional core.

>>> import torch, optimlab
>>> model = torch.nn.Linear(3, 1)
>>> opt = optimlab.Adam(model.parameters(), lr=1e-3)
"""

from . import data, distributed, schedules
from .averages import EWA, ewa
from .optim import (
    ASGD,
    BEYOND_NOTES,
    LAMB,
    LARS,
    SGD,
    Adadelta,
    Adafactor,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Lion,
    Momentum,
    Muon,
    NAdam,
    NonFiniteGradientError,
    Optimizer,
    Prodigy,
    RAdam,
    RMSprop,
    Rprop,
    ScheduleFreeAdamW,
    ScheduleFreeSGD,
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
    "ASGD",
    "EWA",
    "LAMB",
    "LARS",
    "OPTIMIZERS",
    "SGD",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Lion",
    "Momentum",
    "Muon",
    "NAdam",
    "NonFiniteGradientError",
    "Optimizer",
    "Prodigy",
    "RAdam",
    "RMSprop",
    "Rprop",
    "ScheduleFreeAdamW",
    "ScheduleFreeSGD",
    "__version__",
    "data",
    "distributed",
    "evaluation_weights",
    "ewa",
    "schedules",
]
