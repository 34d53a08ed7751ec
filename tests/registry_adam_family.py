"""Registry cases for NAdam, RAdam, Adamax and Lion (see ``registry.py`` and ``case.py``)."""

from __future__ import annotations

from typing import Any

from case import Case

CASES: list[Case] = []
CLASSES: list[type] = []
# (class, keyword arguments, exception type, regex the message must match); the generic checks
# (lr, weight_decay, maximize, foreach, nonfinite_grads) are added by registry.py for every class
BAD_INPUTS: list[tuple[type, dict[str, Any], type, str]] = []
