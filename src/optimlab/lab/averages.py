"""``optimlab ewa``: the notes' exponentially-weighted-average demonstration.

A daily series (a seeded, temperature-like one, or a column of your CSV) is averaged with
:func:`optimlab.ewa` for several ``beta``, with and without bias correction::

    v_t = beta * v_{t-1} + (1 - beta) * x_t,   v_0 = 0        (about 1 / (1 - beta) days)
    v_t / (1 - beta**t)                                       (bias-corrected)

and the weight that day ``n``'s average gives to day ``i``, ``beta**(n - i) * (1 - beta)``, is
tabulated for each beta (seed 000, eqs. 7-8).

    >>> series = temperature_series(days=5, seed=0)
    >>> len(series), all(-10 < t < 40 for t in series)
    (5, True)
    >>> [round(w, 4) for w in weights(day=3, beta=0.8)]
    [0.128, 0.16, 0.2]
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..averages import ewa
from . import plots
from .formatting import value
from .report import Document, Figure, Section, Table
from .rundir import LabError, RunFolder

__all__ = [
    "EWAOptions",
    "notes_example_table",
    "parse_column",
    "read_column",
    "run_ewa",
    "temperature_series",
    "weights",
]


def temperature_series(days: int = 180, seed: int = 0) -> list[float]:
    """A seeded daily temperature: a seasonal swing of +-10 degrees around 14, plus noise.

    Day 1 is early spring: the series warms for about three months, then starts to cool, and
    each day adds normal noise with a standard deviation of 3 degrees.
    """
    rng = np.random.default_rng(seed)
    day = np.arange(1, days + 1)
    season = 14 + 10 * np.sin(2 * np.pi * (day - 15) / 365)
    return (season + rng.normal(0.0, 3.0, size=days)).round(1).tolist()


def weights(day: int, beta: float) -> list[float]:
    """``beta**(day - i) * (1 - beta)`` for ``i = 1 .. day``: what day ``day`` owes each day."""
    return [beta ** (day - i) * (1 - beta) for i in range(1, day + 1)]


def read_column(path: Path, column: str | None) -> tuple[str, list[float]]:
    """The numbers of one column of the CSV file at ``path`` (see :func:`parse_column`)."""
    try:
        with open(path, encoding="utf-8-sig") as handle:  # (a byte-order mark: no data)
            text = handle.read()
    except UnicodeDecodeError:
        raise LabError(f"{path}: not a text CSV file (it is not UTF-8)") from None
    except OSError as error:
        raise LabError(f"{path}: cannot read it ({error.strerror})") from None
    return parse_column(text, str(path), column)


def parse_column(text: str, source: str, column: str | None) -> tuple[str, list[float]]:
    """The numbers of one column of CSV ``text`` (the last numeric one when ``column`` is None).

    Raises :class:`LabError` naming ``source`` and what is wrong: empty, not CSV, no such
    column (listing those there are), a cell that is not a number, fewer than two values.

        >>> parse_column("day,temp\n1,20\n2,23\n", "t.csv", None)
        ('temp', [20.0, 23.0])
    """
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise LabError(f"{source}: not a valid CSV file ({error})") from None
    if not rows:
        raise LabError(f"{source}: no data rows (a header line and at least two rows are needed)")
    names = [n for n in rows[0] if n is not None]
    if column is None:  # the last numeric column: an index (day, step) usually comes first
        column = next((n for n in reversed(names) if _number(rows[0][n]) is not None), None)
        if column is None:
            raise LabError(f"{source}: no column holds numbers; columns are: {', '.join(names)}")
    elif column not in names:
        raise LabError(f"{source}: no column {column!r}; columns are: {', '.join(names)}")
    values = []
    for line, row in enumerate(rows, start=2):
        number = _number(row.get(column))
        if number is None:
            raise LabError(
                f"{source}: line {line}, column {column!r}: {row.get(column)!r} is not a number"
            )
        values.append(number)
    if len(values) < 2:
        raise LabError(f"{source}: column {column!r} has {len(values)} value; need at least 2")
    return column, values


def _number(text: str | None) -> float | None:
    try:
        number = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class EWAOptions:
    """What ``optimlab ewa`` averages: ``days`` generated (or a CSV's column), with each of
    ``betas``; ``day`` is the day whose weights are tabulated (None: day 20, or the last day
    of a shorter series)."""

    days: int = 180
    betas: tuple[float, ...] = (0.5, 0.8, 0.9, 0.98)
    day: int | None = None
    seed: int = 0
    csv_path: Path | None = None
    column: str | None = None


@dataclass
class EWAResult:
    options: EWAOptions
    name: str
    series: list[float]
    averages: dict[float, list[float]] = field(default_factory=dict)
    corrected: dict[float, list[float]] = field(default_factory=dict)
    weights: dict[float, list[float]] = field(default_factory=dict)


def run_ewa(options: EWAOptions) -> EWAResult:
    """Average the series for every beta, with and without correction; tabulate the weights."""
    if options.csv_path is not None:
        name, series = read_column(options.csv_path, options.column)
    else:
        name, series = "temperature", temperature_series(options.days, options.seed)
    day = min(20, len(series)) if options.day is None else options.day
    if not 1 <= day <= len(series):  # (not the last day, silently)
        raise ValueError(
            f"day={day} is past the series' last day ({len(series)}); choose a day from 1 "
            f"to {len(series)}"
        )
    result = EWAResult(options, name, series)
    for beta in options.betas:
        result.averages[beta] = ewa(series, beta).tolist()
        result.corrected[beta] = ewa(series, beta, bias_correction=True).tolist()
        result.weights[beta] = weights(day, beta)
    return result


def _label(beta: float) -> str:
    return f"beta = {beta:g} (~{1 / (1 - beta):.3g} days)"


def _data_rows(result: EWAResult, days: list[int], day: int) -> tuple[list[dict], list[dict]]:
    """One row per day (the series and every average) and one per past day (the weights)."""
    rows = []
    for i, d in enumerate(days):
        row = {"day": d, result.name: result.series[i]}
        for beta in result.options.betas:
            row[f"ewa_{beta:g}"] = result.averages[beta][i]
            row[f"ewa_{beta:g}_bias_corrected"] = result.corrected[beta][i]
        rows.append(row)
    weight_rows = [
        {"day": i, **{f"weight_{b:g}": result.weights[b][i - 1] for b in result.options.betas}}
        for i in range(1, day + 1)
    ]
    return rows, weight_rows


def _draw_averages(result: EWAResult, folder: RunFolder, days: list[int]) -> None:
    """figures/ewa: the series with its plain averages, and with the bias-corrected ones."""
    betas = list(result.options.betas)
    data = plots.Line(result.name, days, result.series, style="points", color="0.45")
    panels = [
        plots.Panel(
            "Exponentially weighted averages, v_0 = 0",
            "day",
            result.name,
            [data, *[plots.Line(_label(b), days, result.averages[b]) for b in betas]],
        ),
        plots.Panel(
            "With bias correction, v_t / (1 - beta^t)",
            "day",
            result.name,
            [data, *[plots.Line(_label(b), days, result.corrected[b]) for b in betas]],
        ),
    ]
    plots.draw(panels, folder.file("figures/ewa"), order=[_label(b) for b in betas], size=(6, 4))


def _draw_weights(result: EWAResult, folder: RunFolder, day: int) -> None:
    """figures/ewa_weights: the weight day ``day``'s average gives to each past day."""
    betas = list(result.options.betas)
    weight_panel = plots.Panel(
        f"Weights that day {day}'s average gives to past days",
        "day i",
        "beta^(n - i) (1 - beta)",
        [
            plots.Line(_label(b), list(range(1, day + 1)), result.weights[b], style="markers")
            for b in betas
        ],
    )
    plots.draw(
        [weight_panel],
        folder.file("figures/ewa_weights"),
        order=[_label(b) for b in betas],
        size=(6.5, 4),
    )


def _first_days_table(result: EWAResult, days: list[int]) -> Table:
    """The data and every average, plain and corrected, over the first five days."""
    first = min(5, len(days))

    def row(b: float, corrected: bool) -> list[str]:
        averages = (result.corrected if corrected else result.averages)[b][:first]
        name = f"{b:g}{' corrected' if corrected else ''}"
        return [name, f"{1 / (1 - b):.3g}", *[value(x, "float") for x in averages]]

    return Table(
        "first-days",
        f"The first {first} days: the zero start pulls the plain average down",
        ["beta", "window 1/(1-beta)", *[f"day {d}" for d in days[:first]]],
        [
            [f"{result.name} (data)", "", *[value(x, "float") for x in result.series[:first]]],
            *[row(b, corrected) for b in result.options.betas for corrected in (False, True)],
        ],
    )


def _weights_table(result: EWAResult, day: int) -> Table:
    """The weights of the last five days before ``day``, and their sum over all days."""
    return Table(
        "weights",
        f"Weight of the last five days in day {day}'s average, and the total weight",
        ["beta", *[f"day {i}" for i in range(max(1, day - 4), day + 1)], "sum over all days"],
        [
            [
                f"{b:g}",
                *[f"{w:.4f}" for w in result.weights[b][-5:]],
                f"{math.fsum(result.weights[b]):.4f} = 1 - beta^{day}",
            ]
            for b in result.options.betas
        ],
    )


#: the notes' worked example (seed 000, eqs. 4-6): temperatures 20, 23, 17 averaged with
#: beta 0.8 give 4, 7.8 and 9.64 (bias-corrected: 20, 21.67, 19.75)
NOTES_EXAMPLE = (0.8, (20.0, 23.0, 17.0))


def notes_example_table() -> Table:
    """The notes' worked example, computed by :func:`optimlab.ewa`, plain and corrected."""
    beta, temperatures = NOTES_EXAMPLE
    plain = ewa(list(temperatures), beta)
    corrected = ewa(list(temperatures), beta, bias_correction=True)
    return Table(
        "notes-example",
        f"The notes' example (seed 000): beta {beta:g} over the temperatures "
        + ", ".join(f"{t:g}" for t in temperatures),
        ["day t", "temperature x_t", "v_t = beta v_{t-1} + (1-beta) x_t", "v_t / (1 - beta^t)"],
        [
            [str(t), f"{x:g}", f"{v:.4g}", f"{c:.4g}"]
            for t, (x, v, c) in enumerate(zip(temperatures, plain, corrected), start=1)
        ],
    )


def write_ewa(result: EWAResult, folder: RunFolder) -> Document:
    """series.csv, weights.csv, figures (averages; corrected averages; weights), the summary."""
    days = list(range(1, len(result.series) + 1))
    day = len(next(iter(result.weights.values())))
    rows, weight_rows = _data_rows(result, days, day)
    folder.write_csv("series.csv", rows)
    folder.write_csv("weights.csv", weight_rows)
    folder.write_json("metrics.json", {"series": rows, "weights": weight_rows})
    _draw_averages(result, folder, days)
    _draw_weights(result, folder, day)
    source = (
        str(result.options.csv_path)
        if result.options.csv_path
        else (f"generated, {len(days)} days, seed {result.options.seed}")
    )
    return Document(
        "optimlab ewa",
        f"Exponentially weighted averages of {result.name} ({source})",
        [
            Section(
                "The notes' example",
                [
                    "Seed 000 works the average out by hand for three days; optimlab's "
                    "`ewa` gives the same numbers (4, 7.8, 9.64; corrected: 20, 21.67, 19.75)."
                ],
                [notes_example_table()],
            ),
            Section(
                "Averages",
                [
                    "A larger beta averages over more days (about 1/(1 - beta)): a smoother "
                    "curve that lags behind. Started at zero, the plain average is too low at "
                    "first; dividing by 1 - beta^t removes that pull."
                ],
                [_first_days_table(result, days)],
                [
                    Figure(
                        "figures/ewa.png",
                        "The series and its averages, without and with bias correction.",
                    )
                ],
            ),
            Section(
                "Weights",
                [
                    "The weights fall off exponentially into the past and sum to 1 - beta^n, "
                    "which is why the first averages are too small."
                ],
                [_weights_table(result, day)],
                [Figure("figures/ewa_weights.png", "beta^(n-i) (1-beta) for each past day i.")],
            ),
        ],
    )
