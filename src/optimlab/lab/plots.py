"""Drawing only: figures described as plain data (panels of lines, bars and contours) to files.

Nothing here computes a result. The experiments produce every number (curves, means and
spreads, grids of function values, contour levels, chosen learning rates) and describe a figure
as :class:`Panel` and :class:`ContourPanel` records; :func:`draw` lays the panels out and
writes the figure as PNG and SVG, and :func:`animate` writes a GIF of paths being traced.

Colours follow ``order``: the same contender gets the same colour in every figure of a run.

    >>> import tempfile, pathlib
    >>> panel = Panel("f", "step", "loss", lines=[Line("sgd", [0, 1, 2], [3.0, 2.0, 1.5])])
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "example"
    >>> [p.suffix for p in draw([panel], out)]
    ['.png', '.svg']
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window, work without a display

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import animation  # noqa: E402
from PIL import Image  # noqa: E402

from ..files import whole_file  # noqa: E402

__all__ = ["Bars", "ContourPanel", "Line", "Panel", "animate", "draw"]

PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]


@dataclass
class Line:
    """A curve: ``y`` against ``x``; ``lower``/``upper`` shade a band (the spread over seeds)."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    lower: Sequence[float] | None = None
    upper: Sequence[float] | None = None
    style: str = "line"  # "line", "points", "steps" or "markers" (a line with dots)
    color: str | None = None
    width: float = 1.6


@dataclass
class Bars:
    """Bars with optional error bars, one per label."""

    labels: Sequence[str]
    values: Sequence[float]
    errors: Sequence[float] | None = None
    color_by_label: bool = True


@dataclass
class Panel:
    """One set of axes: lines and/or bars, scales, reference lines and marked points."""

    title: str
    xlabel: str
    ylabel: str
    lines: list[Line] = field(default_factory=list)
    bars: Bars | None = None
    xscale: str = "linear"
    yscale: str = "linear"
    hlines: list[tuple[float, str]] = field(default_factory=list)
    marks: list[tuple[str, float, float]] = field(default_factory=list)  # (label, x, y)
    #: (label, x): points that diverged, drawn as a cross at the top of the panel
    diverged: list[tuple[str, float]] = field(default_factory=list)
    ylim: tuple[float, float] | None = None
    legend: bool = True
    note: str = ""


@dataclass
class ContourPanel:
    """A 2-D function's contour lines with optimizer paths, minima, saddle points, start."""

    title: str
    x: Sequence[float]
    y: Sequence[float]
    values: Sequence[Sequence[float]]  # values[i][j] = f(x[j], y[i])
    levels: Sequence[float]
    paths: list[Line] = field(default_factory=list)
    minima: Sequence[tuple[float, float]] = ()
    saddles: Sequence[tuple[float, float]] = ()
    start: tuple[float, float] | None = None
    legend: bool = True
    #: x and y drawn to the same scale, so that an elongated function looks elongated
    equal_aspect: bool = True


def _dashes(color: str) -> dict:
    # Every other label is dashed and drawn on top, so that two optimizers taking the same path
    # (momentum in its two forms can) both stay visible.
    dashed = color in PALETTE and PALETTE.index(color) % 2 == 1
    return {"ls": "--" if dashed else "-", "zorder": 3 if dashed else 2}


def _colors(order: Sequence[str], panels: Sequence[Panel | ContourPanel]) -> dict[str, str]:
    labels = list(order)
    for panel in panels:
        lines = panel.paths if isinstance(panel, ContourPanel) else panel.lines
        labels += [line.label for line in lines]
        if isinstance(panel, Panel) and panel.bars is not None:
            labels += list(panel.bars.labels)
    unique = list(dict.fromkeys(labels))
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(unique)}


def _draw_line(ax, line: Line, color: str) -> None:
    if line.lower is not None and line.upper is not None:
        ax.fill_between(line.x, line.lower, line.upper, color=color, alpha=0.18, linewidth=0)
    if line.style == "points":
        ax.plot(line.x, line.y, ".", color=color, markersize=3, label=line.label, alpha=0.6)
    elif line.style == "steps":
        ax.step(line.x, line.y, where="post", color=color, lw=line.width, label=line.label)
    elif line.style == "markers":
        style = dict(**_dashes(color), color=color, lw=line.width, ms=3.5, label=line.label)
        ax.plot(line.x, line.y, "o", **style)
    else:
        ax.plot(line.x, line.y, **_dashes(color), color=color, lw=line.width, label=line.label)


def _set_scale(set_scale, axis: str, scale: str, values: Sequence[float]) -> list[str]:
    """Set an axis's scale; return the note a reader needs, if any.

    A log axis cannot show 0 or a negative value, and matplotlib drops such points without a
    word (a training loss that reaches exactly 0, a schedule that decays to lr 0). Then the axis
    is logarithmic down to the smallest positive value and linear below it (``symlog``), so
    every point is drawn, and the note says where the scale turns linear."""
    finite = [float(v) for v in values if v is not None and abs(float(v)) < float("inf")]
    if scale != "log" or all(v > 0 for v in finite):
        set_scale(scale)
        return []
    positive = [abs(v) for v in finite if v != 0]
    if not positive:
        set_scale("linear")
        return []
    threshold = min(positive)
    set_scale("symlog", linthresh=threshold)
    return [f"{axis}: logarithmic above {threshold:.3g}, linear below (values <= 0 shown)"]


def _draw_panel(ax, panel: Panel, colors: dict[str, str]) -> None:
    for line in panel.lines:
        _draw_line(ax, line, line.color or colors[line.label])
    for y, label in panel.hlines:
        ax.axhline(y, color="0.35", lw=0.9, ls="--", label=label)
    for label, x, y in panel.marks:
        ax.plot([x], [y], "o", color=colors.get(label, "black"), ms=7, mfc="none", mew=1.6)
    for label, x in panel.diverged:  # x in data, y at the top of the axes
        ax.plot([x], [0.96], "x", color=colors.get(label, "black"), ms=7, mew=1.8,
                transform=ax.get_xaxis_transform(), clip_on=False)  # fmt: skip
    if panel.diverged:
        ax.text(0.99, 0.90, "x: diverged", transform=ax.transAxes, ha="right", fontsize=7,
                color="0.3")  # fmt: skip
    notes = [panel.note] if panel.note else []
    notes += _set_scale(ax.set_xscale, "x", panel.xscale, [v for ln in panel.lines for v in ln.x])
    ys = [v for ln in panel.lines for v in (*ln.y, *(ln.lower or ()), *(ln.upper or ()))]
    notes += _set_scale(ax.set_yscale, "y", panel.yscale, ys + [y for y, _ in panel.hlines])
    if panel.ylim is not None:
        ax.set_ylim(*panel.ylim)
    if panel.bars is not None:  # after the scales, which reset the tick labels
        bars = panel.bars
        positions = range(len(bars.labels))
        bar_colors = [colors[b] for b in bars.labels] if bars.color_by_label else PALETTE[0]
        ax.bar(positions, bars.values, yerr=bars.errors, color=bar_colors, capsize=3)
        ax.set_xticks(list(positions), bars.labels, rotation=30, ha="right", fontsize=8)
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    ax.grid(True, alpha=0.25)
    if notes:
        ax.text(0.01, 0.01, "; ".join(notes), transform=ax.transAxes, fontsize=7, color="0.3")
    if panel.legend and (panel.lines or panel.hlines):
        ax.legend(fontsize=7, loc="best", framealpha=0.8)


def _draw_contour(ax, panel: ContourPanel, colors: dict[str, str]) -> list:
    ax.contour(
        panel.x,
        panel.y,
        panel.values,
        levels=panel.levels,
        cmap="viridis",
        linewidths=0.5,
        alpha=0.7,
    )
    artists = []
    for line in panel.paths:
        color = line.color or colors[line.label]
        (artist,) = ax.plot(
            line.x, line.y, **_dashes(color), color=color, lw=line.width, label=line.label
        )
        artists.append(artist)
    if panel.minima:
        xs, ys = zip(*panel.minima)
        ax.plot(xs, ys, "*", color="black", ms=11, mfc="gold", label="minimum")
    if panel.saddles:
        xs, ys = zip(*panel.saddles)
        ax.plot(xs, ys, "X", color="black", ms=8, mfc="white", label="saddle point")
    if panel.start is not None:
        ax.plot([panel.start[0]], [panel.start[1]], "o", color="black", ms=5, label="start")
    ax.set_xlim(panel.x[0], panel.x[-1])
    ax.set_ylim(panel.y[0], panel.y[-1])
    if panel.equal_aspect:
        ax.set_aspect("equal", adjustable="box")
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    if panel.legend:
        ax.legend(fontsize=6.5, loc="best", framealpha=0.8)
    return artists


def _layout(count: int, columns: int, size: tuple[float, float]):
    columns = max(1, min(columns, count))
    rows = (count + columns - 1) // columns
    fig, axes = plt.subplots(
        rows, columns, figsize=(size[0] * columns, size[1] * rows), squeeze=False
    )
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def draw(
    panels: Sequence[Panel | ContourPanel],
    stem: Path,
    *,
    columns: int = 2,
    size: tuple[float, float] = (5.2, 3.8),
    title: str | None = None,
    order: Sequence[str] = (),
    dpi: int = 110,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Draw ``panels`` in a grid and write ``stem.png`` and ``stem.svg``; return the paths."""
    colors = _colors(order, panels)
    fig, axes = _layout(len(panels), columns, size)
    for ax, panel in zip(axes, panels):
        if isinstance(panel, ContourPanel):
            _draw_contour(ax, panel, colors)
        else:
            _draw_panel(ax, panel, colors)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [_save(fig, stem.with_suffix(f".{fmt}"), dpi) for fmt in formats]
    plt.close(fig)
    return paths


def draw_job(job: tuple[Sequence[Panel | ContourPanel], Path, dict]) -> list[Path]:
    """:func:`draw` of ``(panels, stem, options)``: one figure, as a worker process takes it."""
    panels, stem, options = job
    return draw(panels, stem, **options)


def _save(fig, path: Path, dpi: int) -> Path:
    if path.suffix == ".png":
        # Line art needs few colours: a 256-colour palette makes the PNG 3-5 times smaller
        # (reports embed them, docs commit them) with no visible change.
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        image = Image.open(buffer).convert("RGB")
        with whole_file(path) as partial:
            image.quantize(256, method=Image.Quantize.FASTOCTREE).save(partial, optimize=True)
    else:
        # No creation date and ids hashed from a fixed salt (else a random one per file), so
        # the same run draws the same SVG, byte for byte.
        with matplotlib.rc_context({"svg.hashsalt": "optimlab"}), whole_file(path) as partial:
            fig.savefig(partial, dpi=dpi, metadata={"Date": None} if path.suffix == ".svg" else {})
    return path


def animate(
    panel: ContourPanel,
    path: Path,
    *,
    frames: Sequence[int],
    order: Sequence[str] = (),
    fps: int = 12,
    dpi: int = 80,
) -> Path:
    """Write a GIF in which each path of ``panel`` is traced; frame ``k`` shows the first
    ``frames[k]`` points of every path."""
    colors = _colors(order, [panel])
    fig, (ax,) = _layout(1, 1, (6.0, 4.8))
    artists = _draw_contour(ax, panel, colors)
    full = [(line.x, line.y) for line in panel.paths]

    def show(k: int):
        for artist, (xs, ys) in zip(artists, full):
            artist.set_data(xs[: frames[k]], ys[: frames[k]])
        return artists

    movie = animation.FuncAnimation(fig, show, frames=len(frames), blit=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with whole_file(path) as partial:
        movie.save(partial, writer=animation.PillowWriter(fps=fps), dpi=dpi)
    plt.close(fig)
    return path
