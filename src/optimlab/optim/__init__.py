"""Optimizer classes: drop-in ``torch.optim.Optimizer`` subclasses over the functional core.

The notes' optimizers live in :mod:`.sgd` and :mod:`.adaptive`; those beyond the notes in one
module per family, each with an ``OPTIMIZERS`` table that :data:`BEYOND_NOTES` gathers.
"""

from . import adam_family, classic, layerwise, tuning_free
from .adam_family import Adamax, Lion, NAdam, RAdam
from .adaptive import Adam, AdamW, RMSprop
from .base import NONFINITE_POLICIES, NonFiniteGradientError, Optimizer, evaluation_weights
from .classic import ASGD, Adadelta, Adagrad, Rprop
from .layerwise import LAMB, LARS, Adafactor, Muon
from .sgd import MOMENTUM_FORMS, SGD, Momentum
from .tuning_free import Prodigy, ScheduleFreeAdamW, ScheduleFreeSGD

#: the optimizers beyond the notes, by the name ``optimlab list`` and the lab use
BEYOND_NOTES: dict[str, type] = {
    name: cls
    for family in (adam_family, classic, layerwise, tuning_free)
    for name, cls in family.OPTIMIZERS.items()
}

__all__ = [
    "ASGD",
    "BEYOND_NOTES",
    "LAMB",
    "LARS",
    "MOMENTUM_FORMS",
    "NONFINITE_POLICIES",
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
    "evaluation_weights",
]
