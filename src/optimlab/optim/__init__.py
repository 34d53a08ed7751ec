"""Optimizer classes: drop-in ``torch.optim.Optimizer`` subclasses over the functional core.

The notes' optimizers live in :mod:`.sgd` and :mod:`.adaptive`; those beyond the notes in one
module per family, each with an ``OPTIMIZERS`` table that :data:`BEYOND_NOTES` gathers.
"""

from . import adam_family, classic, layerwise, tuning_free
from .adam_family import *  # noqa: F403  (each family lists its classes in __all__)
from .adaptive import Adam, AdamW, RMSprop
from .base import NONFINITE_POLICIES, NonFiniteGradientError, Optimizer, evaluation_weights
from .classic import *  # noqa: F403
from .layerwise import *  # noqa: F403
from .sgd import MOMENTUM_FORMS, SGD, Momentum
from .tuning_free import *  # noqa: F403

_FAMILIES = (adam_family, classic, layerwise, tuning_free)

#: the optimizers beyond the notes, by the name ``optimlab list`` and the lab use
BEYOND_NOTES: dict[str, type] = {
    name: cls for family in _FAMILIES for name, cls in family.OPTIMIZERS.items()
}

__all__ = [
    "BEYOND_NOTES",
    "MOMENTUM_FORMS",
    "NONFINITE_POLICIES",
    "SGD",
    "Adam",
    "AdamW",
    "Momentum",
    "NonFiniteGradientError",
    "Optimizer",
    "RMSprop",
    "evaluation_weights",
] + [name for family in _FAMILIES for name in family.__all__]
