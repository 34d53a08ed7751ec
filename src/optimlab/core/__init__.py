"""The math of every optimizer: pure update rules over lists of tensors, and their backends."""

from .ops import FOREACH, LOOP, ForeachOps, LoopOps
from .rules import (
    adam,
    bias_correction,
    descent_direction,
    ema_momentum,
    heavy_ball_momentum,
    rms_denominator,
    rmsprop,
    sgd,
)

__all__ = [
    "FOREACH",
    "LOOP",
    "ForeachOps",
    "LoopOps",
    "adam",
    "bias_correction",
    "descent_direction",
    "ema_momentum",
    "heavy_ball_momentum",
    "rms_denominator",
    "rmsprop",
    "sgd",
]
