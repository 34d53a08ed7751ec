"""The math of every optimizer: pure update rules over lists of tensors, and their backends.

:mod:`.rules` holds each update rule once; :mod:`.ops` runs it per tensor or multi-tensor.
Nothing here compiles, loads libraries or touches files: the fused path, which records a rule
and compiles it into one loop, is the package :mod:`optimlab.fused`.
"""

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
