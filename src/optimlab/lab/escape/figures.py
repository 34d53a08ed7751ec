"""The escape study's figures. Everything drawn here was computed by :mod:`.study`; this module
only draws (matplotlib, ``pip install optimlab[plots]``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed, or wanted, on a server

import matplotlib.pyplot as plt  # noqa: E402

from ...files import whole_file  # noqa: E402

REMEDY_COLORS = {
    "plain": "#4d4d4d",
    "noise": "#1f77b4",
    "restarts": "#2ca02c",
    "annealing": "#d62728",
}


def _panels(count: int, columns: int = 4, size: tuple[float, float] = (4.0, 3.2)):
    rows = max(1, math.ceil(count / columns))
    columns = min(columns, max(count, 1))
    fig, axes = plt.subplots(
        rows, columns, figsize=(size[0] * columns, size[1] * rows), squeeze=False
    )
    flat = list(axes.flat)
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def _bar_panel(
    ax: Any,
    cells: Sequence[Any],
    remedies: Sequence[str],
    remedy_labels: Mapping[str, str],
    value: str,
    log: bool,
) -> list[str]:
    """Draw one problem's bars (a group per method, a bar per remedy); return the methods.

    A cell with no value (no seed succeeded: no steps to success) gets no bar. A panel left
    with no bar above zero says so in words instead: a log axis cannot hold no positive value
    (matplotlib raises when the figure is saved), and an empty or flat panel reads as missing.
    """
    names = list(dict.fromkeys(c.method for c in cells))
    width = 0.8 / max(len(remedies), 1)
    drawn = []
    for j, remedy in enumerate(remedies):
        xs, heights, low, high = [], [], [], []
        for i, method in enumerate(names):
            cell = next((c for c in cells if c.method == method and c.remedy == remedy), None)
            if cell is None or getattr(cell, value) is None:
                continue
            xs.append(i + (j - (len(remedies) - 1) / 2) * width)
            # A log axis cannot show 0 steps (a random restart that starts at the target).
            heights.append(max(getattr(cell, value), 1) if log else getattr(cell, value))
            if value == "success_rate":
                # max(0, ...): rounding can put the interval a hair inside the rate
                low.append(max(0.0, cell.success_rate - cell.ci_low))
                high.append(max(0.0, cell.ci_high - cell.success_rate))
        drawn += heights
        errors = [low, high] if value == "success_rate" and xs else None
        ax.bar(xs, heights, width, yerr=errors, capsize=2, color=REMEDY_COLORS.get(remedy),
               label=remedy_labels[remedy])  # fmt: skip
    nothing = not any(h > 0 for h in drawn)
    if nothing:
        ax.text(0.5, 0.5, "no seed succeeded" + (": no steps to show" if log else ""),
                transform=ax.transAxes, ha="center", va="center", fontsize=9)  # fmt: skip
    if not log:
        ax.set_ylim(0, 1.05)
    elif nothing:
        ax.set_yticks([])  # a linear axis with no bars: its numbers would mean nothing
    else:
        ax.set_yscale("log")
    return names


def _bars(
    out: Path,
    name: str,
    summaries: Sequence[Any],
    methods: Mapping[str, Any],
    remedy_labels: Mapping[str, str],
    value: str,
    title: str,
    ylabel: str,
    log: bool,
) -> Path:
    """One panel per problem of ``value`` per method and remedy (:func:`_bar_panel`)."""
    problems = list(dict.fromkeys(c.problem for c in summaries))
    fig, axes = _panels(len(problems))
    remedies = [r for r in remedy_labels if any(c.remedy == r for c in summaries)]
    for ax, problem in zip(axes, problems):
        cells = [c for c in summaries if c.problem == problem]
        names = _bar_panel(ax, cells, remedies, remedy_labels, value, log)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([methods[m].name for m in names], fontsize=8)
        ax.set_title(problem, fontsize=10)
        ax.set_ylabel(ylabel, fontsize=8)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    path = out / name
    with whole_file(path) as partial:
        fig.savefig(partial, dpi=110)
    plt.close(fig)
    return path


def _paths(out: Path, data: Mapping[str, Any], remedy_labels: Mapping[str, str]) -> Path:
    problems = [p for p in data["problems"] if p in data["paths"]]
    fig, axes = _panels(max(len(problems), 1), columns=3, size=(4.2, 3.8))
    for ax, problem in zip(axes, problems):
        grid = data["grids"][problem]
        f = grid["f"]
        flat = sorted(v for row in f for v in row)
        low, high = flat[0], flat[-1]
        # Contour levels spaced by rank: equal steps of the value would crowd every level into
        # the deep parts of functions like Rastrigin.
        levels = sorted({flat[int(q * (len(flat) - 1))] for q in [i / 24 for i in range(25)]})
        if len(levels) < 2:
            levels = [low, high + 1e-12]
        ax.contourf(grid["x"], grid["y"], f, levels=levels, cmap="Greys", alpha=0.55)
        ax.contour(grid["x"], grid["y"], f, levels=levels, colors="k", linewidths=0.3, alpha=0.4)
        for remedy, runs in data["paths"][problem].items():
            color = REMEDY_COLORS.get(remedy, "k")
            for k, path in enumerate(runs):
                xs = [p[0] for p in path]
                ys = [p[1] for p in path]
                label = remedy_labels.get(remedy, remedy) if k == 0 else None
                ax.plot(
                    xs,
                    ys,
                    "-",
                    lw=1.0 if remedy != "restarts" else 0.7,
                    color=color,
                    label=label,
                    alpha=0.9,
                )
                ax.plot(xs[-1:], ys[-1:], "o", ms=3, color=color)
        ax.set_title(f"{problem}: GD, seed 0 (darker = higher)", fontsize=9)
        ax.tick_params(labelsize=7)
    if problems:
        axes[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = out / "escape_paths.png"
    with whole_file(path) as partial:
        fig.savefig(partial, dpi=110)
    plt.close(fig)
    return path


def _acceptance(out: Path, data: Mapping[str, Any]) -> Path:
    problems = [p for p in data["problems"] if p in data["acceptance"]]
    fig, axes = _panels(max(len(problems), 1), columns=4, size=(4.0, 3.0))
    for ax, problem in zip(axes, problems):
        series = data["acceptance"][problem]
        ax.plot(series["step"], series["rate"], color=REMEDY_COLORS["annealing"])
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("accepted (last 20 steps)", fontsize=8)
        ax.set_xlabel("step", fontsize=8)
        twin = ax.twinx()
        twin.plot(series["step"], series["temperature"], color="#7f7f7f", ls="--")
        twin.set_ylim(bottom=0)
        twin.set_ylabel("temperature (dashed)", fontsize=8)
        ax.set_title(f"{problem}: GD + annealing, seed 0", fontsize=9)
        ax.tick_params(labelsize=7)
        twin.tick_params(labelsize=7)
    fig.tight_layout()
    path = out / "escape_annealing.png"
    with whole_file(path) as partial:
        fig.savefig(partial, dpi=110)
    plt.close(fig)
    return path


def draw_all(
    out: Path,
    summaries: Sequence[Any],
    data: Mapping[str, Any],
    methods: Mapping[str, Any],
    remedy_labels: Mapping[str, str],
) -> list[Path]:
    """Draw the four figures into ``out`` and return their paths."""
    return [
        _bars(
            out,
            "escape_success.png",
            summaries,
            methods,
            remedy_labels,
            "success_rate",
            "Share of seeds that escaped / reached the global minimum (95% Wilson interval)",
            "success rate",
            log=False,
        ),
        _bars(
            out,
            "escape_steps.png",
            summaries,
            methods,
            remedy_labels,
            "median_steps_to_target",
            "Median steps to success (successful seeds only)",
            "steps",
            log=True,
        ),
        _paths(out, data, remedy_labels),
        _acceptance(out, data),
    ]
