"""ScheduleFreeAdamW, ScheduleFreeSGD and Prodigy: drop-in optimizers beyond the notes, built from the core's parts."""

from __future__ import annotations

#: this module's optimizers, by the name ``optimlab list`` and the lab use
OPTIMIZERS: dict[str, type] = {}

__all__: list[str] = []
