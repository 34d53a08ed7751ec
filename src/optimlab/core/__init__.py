"""The math of every optimizer: pure update rules over lists of tensors, and their backends.

:mod:`.rules` holds each update rule once; :mod:`.ops` runs it per tensor or multi-tensor;
:mod:`.tape` records it and :mod:`.native` compiles the recording into one fused loop.
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
from .tape import Tape, TapeOps

__all__ = [
    "FOREACH",
    "LOOP",
    "ForeachOps",
    "LoopOps",
    "Tape",
    "TapeOps",
    "adam",
    "bias_correction",
    "descent_direction",
    "ema_momentum",
    "heavy_ball_momentum",
    "rms_denominator",
    "rmsprop",
    "sgd",
]
