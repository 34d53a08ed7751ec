"""Training: the loop, gradient accumulation and clipping, checkpoints and exact resume."""

from .checkpoint import (
    CheckpointError,
    CheckpointManager,
    CheckpointWriteError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from .clip import clip_grad_norm, clip_grad_value, first_nonfinite_grad, grads_are_finite
from .loop import (
    PREEMPT_SIGNALS,
    Callback,
    EarlyStopping,
    NonFiniteLossError,
    Preempted,
    ResumeRefused,
    RunState,
    TrainResult,
    TrainState,
    evaluate,
    fit,
    read_history,
)

__all__ = [
    "Callback",
    "CheckpointError",
    "CheckpointManager",
    "CheckpointWriteError",
    "EarlyStopping",
    "NonFiniteLossError",
    "PREEMPT_SIGNALS",
    "Preempted",
    "ResumeRefused",
    "RunState",
    "TrainResult",
    "TrainState",
    "capture_rng_state",
    "clip_grad_norm",
    "clip_grad_value",
    "evaluate",
    "first_nonfinite_grad",
    "fit",
    "grads_are_finite",
    "load_checkpoint",
    "read_history",
    "restore_rng_state",
    "save_checkpoint",
]
