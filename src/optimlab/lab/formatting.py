"""How numbers are written in tables and sentences: one place, so every report reads alike.

>>> stat(0.9712, 0.0031, "percent"), stat(3.2e-05, 1.1e-06, "sci"), stat(120.0, 9.5, "steps")
('97.1% ± 0.3', '3.2e-05 ± 1.1e-06', '120 ± 10')
>>> value(float("inf"), "float"), value(float("nan"), "seconds"), value(0.003, "lr")
('diverged', '—', '0.003')
"""

from __future__ import annotations

import math

__all__ = ["kind_of", "stat", "value"]


def kind_of(key: str, percent: bool = False) -> str:
    """The format for an outcome, from its name: percent, steps, seconds, sci or float."""
    if percent or "accuracy" in key:
        return "percent"
    if key.startswith("steps"):
        return "steps"
    if "seconds" in key:
        return "seconds"
    if "gap" in key or "distance" in key:
        return "sci"
    return "float"


def value(x: float, kind: str) -> str:
    """One number: ``inf`` reads "diverged" and NaN (nothing to report) reads "—"."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if math.isinf(x):
        return "diverged" if x > 0 else "-inf"
    if kind == "percent":
        return f"{100 * x:.1f}%"
    if kind == "steps":
        return f"{x:.0f}"
    if kind == "seconds":
        return f"{x:.3g} s"
    if kind == "sci":
        return f"{x:.2g}"
    if kind == "lr":
        return f"{x:.3g}"
    return f"{x:.4g}"


def _spread(x: float, kind: str) -> str:
    if kind == "percent":
        return f"{100 * x:.1f}"
    if kind == "steps":
        return f"{x:.2g}" if x >= 10 else f"{x:.0f}"
    return value(x, kind).removesuffix(" s")


def stat(mean: float, std: float, kind: str) -> str:
    """``mean ± std`` (the spread over seeds), or just the mean when there is no spread."""
    text = value(mean, kind)
    if math.isnan(mean) or math.isinf(mean) or math.isnan(std) or std == 0:
        return text
    spread = _spread(std, kind)
    if kind == "seconds":
        return f"{text.removesuffix(' s')} ± {spread} s"
    return f"{text} ± {spread}"
