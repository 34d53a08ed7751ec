"""Optimizer classes: drop-in ``torch.optim.Optimizer`` subclasses over the functional core."""

from .adaptive import Adam, AdamW, RMSprop
from .base import NONFINITE_POLICIES, NonFiniteGradientError, Optimizer
from .sgd import MOMENTUM_FORMS, SGD, Momentum

__all__ = [
    "MOMENTUM_FORMS",
    "NONFINITE_POLICIES",
    "SGD",
    "Adam",
    "AdamW",
    "Momentum",
    "NonFiniteGradientError",
    "Optimizer",
    "RMSprop",
]
