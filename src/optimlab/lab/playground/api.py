"""The playground's answers: plain functions from a request's JSON to the reply's JSON.

Every function here takes the decoded body of one request, checks all of it (raising
:class:`BadRequest`, whose message the page shows on one line) and computes the answer with
optimlab's own optimizers, schedules and averages, so the page shows what the library does. The
web server (:mod:`.server`) only decodes, calls and encodes; the tests call these functions
through it.

Nothing a request says can make the server read or write a file (a CSV comes in the body, as
text), run long or hold much memory: every size has a cap (:data:`LIMITS`), and the caps are
named in the errors.

    >>> reply = paths({"function": "quadratic_bowl", "steps": 3,
    ...                "optimizers": [{"name": "sgd", "settings": {"lr": 0.1}}]})
    >>> [round(x, 4) for x in reply["paths"][0]["x"]]
    [-9.0, -8.82, -8.6436, -8.4707]
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ...averages import ewa as exponentially_weighted_average
from ...optim.base import evaluation_weights
from ...optim.registry import REGISTRY
from ..averages import NOTES_EXAMPLE, parse_column, temperature_series
from ..functions import FUNCTIONS, TestFunction
from ..landscape import grid
from ..problems import FunctionProblem
from ..rundir import LabError
from ..schedule_curves import parse_schedule
from .controls import PLAYGROUND_OPTIMIZERS, arguments, catalog_entry, code_line, update_rule

__all__ = ["LIMITS", "BadRequest", "batch_sizes", "catalog", "ewa", "paths", "schedules", "surface"]


class BadRequest(ValueError):
    """A request the playground refuses; its message is one line for the page."""


#: The caps on what one request may ask for.
LIMITS = {
    "body_bytes": 512 * 1024,
    "steps": 2000,
    "optimizers": 8,
    "series": 10_000,
    "betas": 6,
    "schedules": 6,
    "schedule_steps": 1_000_000,
    "schedule_points": 1000,
    "batch_sizes": 5,
    "epochs": 20,
    "batch_steps": 6000,
}

# One computation at a time: two cores, and a page that fires a request per slider movement;
# the lock also bounds the memory that requests in flight can hold.
_COMPUTING = threading.Lock()


# --- checking the request ---------------------------------------------------------------------


def _object(body: Any, where: str, keys: Sequence[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(f"{where} must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - set(keys))
    if unknown:
        raise BadRequest(f"{where} has no field {unknown[0]!r}; its fields are: {', '.join(keys)}")
    return body


def _integer(body: dict, key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{key} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise BadRequest(f"{key} must be between {low} and {high}, got {value}")
    return value


def _number(value: Any, key: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"{key} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise BadRequest(f"{key} must be in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _list(body: dict, key: str, default: Any, low: int, high: int) -> list:
    value = body.get(key, default)
    if not isinstance(value, list):
        raise BadRequest(f"{key} must be a list, got {value!r}")
    if not low <= len(value) <= high:
        raise BadRequest(f"{key} must hold {low} to {high} items, got {len(value)}")
    return value


def _choice(value: Any, what: str, valid: Any) -> str:
    """``value`` if it is one of the names ``valid``; BadRequest naming it and them if not (a
    list or object where a name belongs included)."""
    if not isinstance(value, str) or value not in valid:
        raise BadRequest(f"unknown {what} {value!r}; valid names: {', '.join(valid)}")
    return value


def _function(body: dict) -> TestFunction:
    return FUNCTIONS[_choice(body.get("function", "quadratic_bowl"), "function", FUNCTIONS)]


def _optimizer(item: Any, where: str) -> tuple[str, dict[str, Any]]:
    item = _object(item, where, ("name", "settings"))
    name = _choice(item.get("name"), "optimizer", PLAYGROUND_OPTIMIZERS)
    settings = item.get("settings", {})
    if not isinstance(settings, dict):
        raise BadRequest(f"{where}.settings must be a JSON object, got {settings!r}")
    try:
        return name, arguments(settings, name)
    except ValueError as error:
        raise BadRequest(f"{name}: {error}") from None


# --- the catalog --------------------------------------------------------------------------------


def catalog() -> dict[str, Any]:
    """Everything the page builds its controls from: functions, optimizers, limits, examples."""
    functions = []
    for f in FUNCTIONS.values():
        functions.append(
            {
                "name": f.name,
                "title": f.title,
                "formula": f.formula,
                "about": f.about,
                "start": list(f.start),
                "bounds": [list(b) for b in f.bounds],
                "minima": [list(m) for m in f.minima],
                "critical_points": [list(c) for c in f.critical_points],
                "minimum_value": f.minimum_value,
            }
        )
    return {
        "functions": functions,
        "optimizers": [catalog_entry(name) for name in PLAYGROUND_OPTIMIZERS],
        "limits": LIMITS,
        "datasets": list(BATCH_DATASETS),
        "ewa_example": {"beta": NOTES_EXAMPLE[0], "temperatures": list(NOTES_EXAMPLE[1])},
    }


# --- the contour surface ------------------------------------------------------------------------


def surface(body: Any) -> dict[str, Any]:
    """The function on a 101 x 101 grid, with ``level``: where each value falls between the
    lab's contour levels (:func:`optimlab.lab.landscape.grid`), so that evenly spaced contours
    of ``level`` are the lab's contours of ``f``."""
    body = _object(body, "the request", ("function",))
    function = _function(body)
    g = grid(function, points=101, levels=24)
    values = np.asarray(g.values)
    level = np.interp(values, g.levels, np.arange(len(g.levels)))
    return {
        "function": function.name,
        "x": g.x,
        "y": g.y,
        "f": np.round(values, 6).tolist(),
        "level": np.round(level, 4).tolist(),
        "levels": len(g.levels),
    }


# --- paths ------------------------------------------------------------------------------------

# Paths by everything they depend on: moving one optimizer's slider recomputes that path only.
_PATHS: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
_PATHS_KEPT = 64  # at most 64 x 2,001 points: a few MB


def _hashable(args: dict[str, Any]) -> tuple:
    return tuple(sorted(args.items()))


def trajectory(
    function: TestFunction, start: tuple[float, float], steps: int, name: str, args: dict
) -> dict[str, Any]:
    """Run optimizer ``name`` with ``args`` on ``function`` for ``steps`` steps from ``start``.

    The optimizer is optimlab's class, stepping a float64 2-vector whose gradient is the
    function's closed form. The path stops early (``diverged_at``) once the point leaves ten
    plot widths around the plot or a value stops being finite.
    """
    key = (function.name, start, steps, name, _hashable(args))
    if key in _PATHS:
        _PATHS.move_to_end(key)
        return _PATHS[key]
    trial = FunctionProblem(function, start=start).trial(seed=0)  # the lab's: point, reach
    point, centre, reach = trial.point, trial.centre, trial.reach
    try:
        # the loop below checks each gradient itself (a diverged path ends there)
        optimizer = REGISTRY[name].cls([point], **args, nonfinite_grads="ignore")
    except (ValueError, TypeError) as error:
        raise BadRequest(f"{name}: {error}") from None
    evaluated = callable(getattr(optimizer, "eval", None))  # schedule-free: drawn at x
    # The gradient and the point are read and written through NumPy views of the tensors'
    # memory: two numbers per step, without a tensor made or a torch call for each.
    point.grad = torch.zeros(2, dtype=torch.float64)
    grad, here = point.grad.numpy(), point.detach().numpy()
    xs, ys = [start[0]], [start[1]]
    diverged_at = None
    for step in range(1, steps + 1):
        if function.gradient is not None:
            gx, gy = function.gradient(float(here[0]), float(here[1]))
            if not (math.isfinite(gx) and math.isfinite(gy)):
                diverged_at = step
                break
            grad[0], grad[1] = gx, gy
        else:
            point.grad.zero_()
            function.f(point).backward()
        optimizer.step()
        if evaluated:
            with evaluation_weights(optimizer):
                ex, ey = point.tolist()
        else:
            ex, ey = float(here[0]), float(here[1])
        if not (math.isfinite(ex) and math.isfinite(ey)) or (
            max(abs(ex - centre[0]), abs(ey - centre[1])) > reach
        ):
            diverged_at = step
            break
        xs.append(ex)
        ys.append(ey)
    with torch.no_grad():
        values = function.f(torch.tensor([xs, ys], dtype=torch.float64).T).tolist()
    minimum = function.minimum_value
    answer = {
        "name": name,
        "x": xs,
        "y": ys,
        "f": values,
        "gap": [v - minimum for v in values] if minimum is not None else None,
        "diverged_at": diverged_at,
        "rule": update_rule(name, args),
        "code": code_line(name, args),
    }
    _PATHS[key] = answer
    while len(_PATHS) > _PATHS_KEPT:
        _PATHS.popitem(last=False)
    return answer


def paths(body: Any) -> dict[str, Any]:
    """Each optimizer's path over a test function from a start point.

    Request: ``{"function": "rosenbrock", "start": [x, y], "steps": 300, "optimizers": [{"name":
    "adam", "settings": {"lr": 0.01, "betas.0": 0.9, "eps_inside_sqrt": true}}, ...]}``
    (``start`` defaults to the function's; settings to the class's defaults). Reply: the path
    of each, its values ``f`` and ``gap`` (f - f*, None without a minimum), ``diverged_at``, the
    update rule (LaTeX lines) and the line of optimlab code that makes it.
    """
    body = _object(body, "the request", ("function", "start", "steps", "optimizers"))
    function = _function(body)
    steps = _integer(body, "steps", 300, 1, LIMITS["steps"])
    start = body.get("start", list(function.start))
    (x_lo, x_hi), (y_lo, y_hi) = function.bounds
    width = max(x_hi - x_lo, y_hi - y_lo)
    if not isinstance(start, list) or len(start) != 2:
        raise BadRequest(f"start must be a list [x, y], got {start!r}")
    start_point = (
        _number(start[0], "start x", x_lo - width, x_hi + width),
        _number(start[1], "start y", y_lo - width, y_hi + width),
    )
    optimizers = [
        _optimizer(item, f"optimizers[{i}]")
        for i, item in enumerate(_list(body, "optimizers", None, 1, LIMITS["optimizers"]))
    ]
    started = time.perf_counter()
    with _COMPUTING:
        found = [trajectory(function, start_point, steps, n, a) for n, a in optimizers]
    return {
        "function": function.name,
        "start": list(start_point),
        "steps": steps,
        "minimum_value": function.minimum_value,
        "paths": found,
        "seconds": time.perf_counter() - started,
    }


# --- exponentially weighted averages ---------------------------------------------------------


def ewa(body: Any) -> dict[str, Any]:
    """A series averaged with each beta, plain and bias-corrected, and the notes' example.

    Request: ``{"betas": [0.5, 0.9, 0.98], "days": 180, "seed": 0}`` for the generated
    temperatures, or ``{"betas": [...], "csv": "day,temp\\n1,20\\n...", "column": "temp"}``.
    """
    body = _object(body, "the request", ("betas", "days", "seed", "csv", "column"))
    betas = [
        _number(b, f"betas[{i}]", 0.0, 0.9999)
        for i, b in enumerate(_list(body, "betas", [0.5, 0.9, 0.98], 1, LIMITS["betas"]))
    ]
    text = body.get("csv")
    if text is not None:
        if not isinstance(text, str):
            raise BadRequest(f"csv must be the file's text, got {type(text).__name__}")
        column = body.get("column")
        if column is not None and not isinstance(column, str):
            raise BadRequest(f"column must be a column's name, got {column!r}")
        too_long = BadRequest(
            f"csv: more than {LIMITS['series']} rows; the playground takes up to that"
        )
        # (every line break the CSV reader takes: \n, \r\n and a lone \r, as old Macs wrote)
        if len(text.splitlines()) > LIMITS["series"] + 1:
            raise too_long
        try:
            name, series = parse_column(text, "csv", column)
        except LabError as error:
            raise BadRequest(str(error)) from None
        if len(series) > LIMITS["series"]:
            raise too_long
    else:
        days = _integer(body, "days", 180, 2, LIMITS["series"])
        seed = _integer(body, "seed", 0, 0, 2**31 - 1)
        name, series = "temperature", temperature_series(days, seed)
    beta, temperatures = NOTES_EXAMPLE
    return {
        "name": name,
        "series": series,
        "averages": [
            {
                "beta": b,
                "window": (1 / (1 - b)),
                "plain": exponentially_weighted_average(series, b).tolist(),
                "corrected": exponentially_weighted_average(
                    series, b, bias_correction=True
                ).tolist(),
            }
            for b in betas
        ],
        "example": {
            "beta": beta,
            "temperatures": list(temperatures),
            "plain": exponentially_weighted_average(list(temperatures), beta).tolist(),
            "corrected": exponentially_weighted_average(
                list(temperatures), beta, bias_correction=True
            ).tolist(),
        },
    }


# --- learning-rate schedules -------------------------------------------------------------------


def schedules(body: Any) -> dict[str, Any]:
    """``lr(step)`` of each spec (``"step_decay:lr=0.1,gamma=0.5,step_size=100"``).

    Request: ``{"specs": [...], "steps": 1000}``. Reply: each curve at up to
    ``LIMITS["schedule_points"]`` evenly spaced steps (every step when there are fewer).
    """
    body = _object(body, "the request", ("specs", "steps"))
    specs = _list(body, "specs", None, 1, LIMITS["schedules"])
    steps = _integer(body, "steps", 1000, 1, LIMITS["schedule_steps"])
    points = min(steps, LIMITS["schedule_points"])
    at = sorted({round(i * (steps - 1) / max(points - 1, 1)) for i in range(points)})
    curves = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, str) or not spec.strip():
            raise BadRequest(
                f"specs[{i}] must be a schedule spec such as step_decay:lr=0.1, got {spec!r}"
            )
        try:
            schedule = parse_schedule(spec.strip())
            lr = [float(schedule(t)) for t in at]
        except (ValueError, TypeError, KeyError) as error:
            raise BadRequest(f"{spec.strip()}: {error}") from None
        curves.append({"spec": spec.strip(), "steps": at, "lr": lr})
    return {"steps": steps, "schedules": curves}


# --- batch, mini-batch and stochastic descent ---------------------------------------------------

#: The data sets the batch-size view trains on (the lab's smaller ones).
BATCH_DATASETS = ("breast_cancer", "wine", "iris", "digits")


def batch_sizes(body: Any) -> dict[str, Any]:
    """The same network trained with each batch size: loss against steps and seconds.

    Request: ``{"dataset": "breast_cancer", "batch_sizes": [1, 16, null], "epochs": 3,
    "optimizer": {"name": "sgd", "settings": {"lr": 0.05}}, "hidden": 16, "seed": 0}``
    (``null``: the whole training set, batch gradient descent).
    """
    from ..batch_size import batch_label
    from ..contenders import Contender
    from ..problems import make_problem
    from ..runner import RunSpec, run_one

    body = _object(
        body, "the request", ("dataset", "batch_sizes", "epochs", "optimizer", "hidden", "seed")
    )
    dataset = _choice(body.get("dataset", "breast_cancer"), "dataset", BATCH_DATASETS)
    sizes = _list(body, "batch_sizes", [1, 16, None], 1, LIMITS["batch_sizes"])
    for i, size in enumerate(sizes):
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise BadRequest(f"batch_sizes[{i}] must be a whole number >= 1 or null, got {size!r}")
    epochs = _integer(body, "epochs", 3, 1, LIMITS["epochs"])
    hidden = _integer(body, "hidden", 16, 0, 256)
    seed = _integer(body, "seed", 0, 0, 2**31 - 1)
    name, args = _optimizer(
        body.get("optimizer", {"name": "sgd", "settings": {"lr": 0.05}}), "optimizer"
    )
    contender = Contender(name, REGISTRY[name].title, name, tuple(args.items()))
    try:
        problems = [make_problem(dataset, batch_size=s, hidden=hidden, split_seed=0) for s in sizes]
        total = sum(p.steps_per_epoch() * epochs for p in problems)
    except ImportError as error:
        raise BadRequest(f"the data sets need scikit-learn ({error})") from None
    if total > LIMITS["batch_steps"]:
        raise BadRequest(
            f"{total} steps in all ({epochs} epochs of each batch size); the playground takes "
            f"up to {LIMITS['batch_steps']}: fewer epochs or larger batches"
        )
    runs = []
    with _COMPUTING:
        for size, problem in zip(sizes, problems):
            per_epoch = problem.steps_per_epoch()
            every = max(1, per_epoch // 4)
            spec = RunSpec(problem, contender, args["lr"], seed, per_epoch * epochs, every)
            result = run_one(spec)
            runs.append(
                {
                    "batch_size": size,
                    "label": batch_label(problem),
                    "steps_per_epoch": per_epoch,
                    "step": result.history["step"],
                    "epoch": [s / per_epoch for s in result.history["step"]],
                    "seconds": result.history["seconds"],
                    "train_loss": result.history["train_loss"],
                    "diverged": result.diverged,
                }
            )
    return {"dataset": dataset, "epochs": epochs, "runs": runs}
