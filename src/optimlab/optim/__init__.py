"""Optimizer classes: drop-in ``torch.optim.Optimizer`` subclasses over the functional core.

The notes' optimizers live in :mod:`.sgd` and :mod:`.adaptive`, those beyond the notes in one
module per family; :mod:`.registry` declares each once, and the names exported here (every
class, :data:`OPTIMIZERS`, :data:`BEYOND_NOTES`) come from it.
"""

from .base import NONFINITE_POLICIES, NonFiniteGradientError, Optimizer, evaluation_weights
from .registry import BEYOND_NOTES, OPTIMIZERS, REGISTRY, Entry
from .sgd import MOMENTUM_FORMS

# Every registered class, by its own name: optimlab.optim.Adam, ...
globals().update({entry.cls.__name__: entry.cls for entry in REGISTRY.values()})

__all__ = [
    "BEYOND_NOTES",
    "MOMENTUM_FORMS",
    "NONFINITE_POLICIES",
    "OPTIMIZERS",
    "REGISTRY",
    "Entry",
    "NonFiniteGradientError",
    "Optimizer",
    "evaluation_weights",
]
__all__ += [entry.cls.__name__ for entry in REGISTRY.values()]
