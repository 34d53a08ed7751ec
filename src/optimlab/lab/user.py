"""The user's own model and data as a problem of ``optimlab compare``.

``optimlab compare --model net.py:make --data data.npz`` (or :func:`compare_model` in Python)
runs the same fair comparison as on the built-in problems, on a network the user's function
builds, ``make(features, outputs) -> torch.nn.Module``, trained on the user's arrays:

* data: ``.npz`` with arrays ``X`` (samples x features) and ``y``, or ``.csv`` with the target
  in the last column (a header row is skipped);
* the task is inferred and stated: integer targets with at most :data:`MAX_CLASSES` distinct
  values are classes (cross-entropy, accuracy; ``outputs`` = the number of classes), anything
  else is regression (mean squared error; ``outputs`` = 1); ``task=`` says it outright;
* the split, the standardization, the tuning protocol, the seeds, the verdicts and the report
  are those of the built-in data sets (60/20/20, statistics of the training part).

>>> import numpy as np
>>> infer_task(np.array([0, 1, 1, 2]))
'classification'
>>> infer_task(np.array([0.5, 1.25, 3.0]))
'regression'
"""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from .datasets import Split
from .problems import Column, DatasetTrial, Target
from .rundir import LabError

__all__ = [
    "MAX_CLASSES",
    "UserProblem",
    "compare_model",
    "infer_task",
    "load_arrays",
    "read_pairs",
]

#: integer targets with at most this many distinct values are classes
MAX_CLASSES = 50
TASKS = ("classification", "regression")


class UserInputError(LabError):
    """The user's model or data cannot be used as given (a user error: exit 2)."""


def infer_task(y: np.ndarray) -> str:
    """``"classification"`` for integer targets with at most :data:`MAX_CLASSES` values."""
    values = np.unique(y)
    whole = np.all(np.isfinite(y)) and np.all(np.equal(np.mod(y, 1), 0))
    return "classification" if whole and 2 <= len(values) <= MAX_CLASSES else "regression"


def load_arrays(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` from a ``.npz`` (arrays ``X`` and ``y``) or a ``.csv`` (target last)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"Invalid --data: {str(path)!r} is not a file")
    if path.suffix == ".npz":
        with np.load(path) as arrays:
            keys = {k.lower(): k for k in arrays.files}
            if "x" not in keys or "y" not in keys:
                raise UserInputError(
                    f"Invalid --data: {path.name} holds arrays {sorted(arrays.files)}; "
                    "expected X (samples x features) and y"
                )
            X, y = np.asarray(arrays[keys["x"]]), np.asarray(arrays[keys["y"]])
    elif path.suffix == ".csv":
        X, y = _read_csv(path)
    else:
        raise UserInputError(
            f"Invalid --data: {path.name}; expected a .npz (arrays X and y) or a .csv file"
        )
    return _checked(X, y, f"--data: {path.name}")


def read_pairs(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` from a :class:`torch.utils.data.DataLoader` or ``Dataset`` of ``(x, y)``
    pairs, read once in the order it yields them: the lab splits, standardizes and batches the
    samples itself, so that every optimizer sees the same batches."""
    from torch.utils.data import DataLoader

    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=256)
    xs, ys = [], []
    for i, batch in enumerate(loader):
        if not isinstance(batch, (list, tuple)) or len(batch) != 2:
            raise UserInputError(
                f"Invalid data: batch {i} of the {type(data).__name__} is a "
                f"{type(batch).__name__}; expected (inputs, targets) pairs"
            )
        xs.append(torch.as_tensor(batch[0]).reshape(len(batch[0]), -1))
        ys.append(torch.as_tensor(batch[1]).reshape(-1))
    if not xs:
        raise UserInputError(f"Invalid data: the {type(data).__name__} yields no samples")
    where = f"data: the {type(data).__name__}"
    return _checked(torch.cat(xs).double().numpy(), torch.cat(ys).numpy(), where)


def _checked(X: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``X`` as samples x features in float64 and ``y`` flat, refused where they cannot be
    the lab's data (``where`` names them in the error)."""
    X = X.reshape(len(X), -1).astype(np.float64) if X.ndim != 2 else X.astype(np.float64)
    y = y.reshape(-1)
    if len(X) != len(y) or len(y) < 10:
        raise UserInputError(
            f"Invalid {where} has {len(X)} samples and {len(y)} targets; expected as many of "
            "each, at least 10"
        )
    if not np.all(np.isfinite(X)) or not np.all(np.isfinite(y.astype(np.float64))):
        raise UserInputError(f"Invalid {where} holds NaN or infinite values")
    return X, y


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Rows of numbers, the target last; a first row without any number is a header. Blank
    lines hold no sample; a byte-order mark (Excel's "CSV UTF-8") is not part of the data."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        rows = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    if rows and not any(map(_is_number, rows[0][1])):
        rows = rows[1:]  # a header (a first row with some numbers is data, checked below)
    if not rows or len(rows[0][1]) < 2:
        one = rows[0][1][0] if rows else ""
        hint = " separated by commas" if any(c in one for c in ";\t") else ""
        raise UserInputError(
            f"Invalid --data: {path.name}; expected rows of features with the target last{hint}"
        )
    width = len(rows[0][1])
    for line, row in rows:
        if len(row) != width:
            raise UserInputError(
                f"Invalid --data: {path.name}: line {line} has {len(row)} values, the first "
                f"row {width}"
            )
        bad = next((cell for cell in row if not _is_number(cell)), None)
        if bad is not None:
            hint = " (values are separated by commas)" if any(c in bad for c in ";\t") else ""
            raise UserInputError(
                f"Invalid --data: {path.name}: line {line}: {bad!r} is not a number{hint}"
            )
    table = np.array([[float(cell) for cell in row] for _, row in rows], dtype=np.float64)
    return table[:, :-1], table[:, -1]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def load_model_function(spec: str) -> Any:
    """The function ``FILE.py:FUNCTION`` names, loaded from the file."""
    if ":" not in spec:
        raise UserInputError(f"Invalid --model: {spec!r}; expected FILE.py:FUNCTION")
    file, name = spec.rsplit(":", 1)
    path = Path(file)
    if not path.is_file():
        raise UserInputError(f"Invalid --model: {file!r} is not a file")
    module_name = f"optimlab_user_{abs(hash(str(path.resolve())))}"
    module = sys.modules.get(module_name)
    if module is None:
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise UserInputError(f"Invalid --model: {file!r} is not a Python file")
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
        sys.modules[module_name] = module
    function = getattr(module, name, None)
    if not callable(function):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise UserInputError(
            f"Invalid --model: {file} has no function {name!r}; it defines {', '.join(found)}"
        )
    return function


@dataclass(frozen=True, eq=False)  # compared by identity: it may hold arrays
class UserProblem:
    """The user's model (``model``: ``"FILE.py:FUNCTION"``, or the function itself) trained on
    the user's data (``data``: a path, ``(X, y)`` arrays, or a ``DataLoader`` or ``Dataset``
    of pairs, read once by :func:`read_pairs`) with mini-batches, on the task's loss or
    ``loss``."""

    model: Any
    data: Any
    task: str | None = None
    split_seed: int = 0
    batch_size: int | None = 32
    target_accuracy: float | None = None
    label: str = ""
    #: ``loss(output, target) -> scalar tensor`` instead of the task's (cross-entropy, MSE)
    loss: Any = None
    _cache: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    kind = "dataset"

    @cached_property
    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(self.data, (str, Path)):
            return load_arrays(self.data)
        if isinstance(self.data, torch.utils.data.Dataset | torch.utils.data.DataLoader):
            return read_pairs(self.data)
        X, y = self.data
        return np.asarray(X, np.float64).reshape(len(X), -1), np.asarray(y).reshape(-1)

    @property
    def task_found(self) -> str:
        if self.task is not None:
            if self.task not in TASKS:
                raise UserInputError(f"Invalid task: {self.task!r}; expected one of {TASKS}")
            return self.task
        return infer_task(self.arrays[1])

    @property
    def name(self) -> str:
        return "user"

    @property
    def title(self) -> str:
        if self.label:
            return self.label
        data = Path(self.data).name if isinstance(self.data, (str, Path)) else "your data"
        model = (
            self.model if isinstance(self.model, str) else getattr(self.model, "__name__", "model")
        )
        return f"{data} with {Path(str(model)).name}"

    @property
    def classification(self) -> bool:
        return self.task_found == "classification"

    @property
    def selection_metric(self) -> str:
        return "val_loss"

    @property
    def curve_metric(self) -> str:
        return "val_accuracy" if self.classification else "val_loss"

    @property
    def curve_names(self) -> list[str]:
        names = ["train_loss", "val_loss"]
        return names + ["val_accuracy"] if self.classification else names

    @property
    def best_metrics(self) -> dict[str, bool]:
        found = {"train_loss": False, "val_loss": False}
        return {**found, "val_accuracy": True} if self.classification else found

    @property
    def target(self) -> Target | None:
        if not self.classification or self.target_accuracy is None:
            return None
        t = self.target_accuracy
        return Target("val_accuracy", t, True, f"{t:.0%} val. accuracy")

    @property
    def loss_label(self) -> str:
        """What the loss columns call the loss: "MSE" for regression, unless ``loss`` is given."""
        return "loss" if self.classification or self.loss is not None else "MSE"

    @property
    def score(self) -> Column:
        if self.classification:
            return Column("test_accuracy", "test accuracy", True, percent=True)
        label = "mean squared error" if self.loss_label == "MSE" else "loss"
        return Column("test_loss", f"test {label}", False)

    @property
    def columns(self) -> tuple[Column, ...]:
        from .problems import _to_target_columns

        if self.classification:
            return (
                Column("test_accuracy", "test accuracy", True, percent=True),
                Column("test_loss", "test loss", False),
                Column("val_accuracy", "final val. accuracy", True, percent=True),
                Column("best_val_accuracy", "best val. accuracy", True, percent=True),
                Column("val_loss", "final val. loss", False),
                Column("train_loss", "final train loss", False),
                *_to_target_columns(self.target),
            )
        label = self.loss_label
        return (
            Column("test_loss", f"test {label}", False),
            Column("val_loss", f"final val. {label}", False),
            Column("best_val_loss", f"best val. {label}", False),
            Column("train_loss", f"final train {label}", False),
        )

    def split(self) -> Split:
        found = self._cache.get("split")
        if found is None:
            found = self._cache["split"] = _split(
                *self.arrays, self.classification, self.split_seed
            )
        return found

    def steps_per_epoch(self) -> int:
        m = len(self.split().y_train)
        return 1 if self.batch_size is None else math.ceil(m / self.batch_size)

    def steps(self, budget: Any) -> int:
        return int(budget.epochs) * self.steps_per_epoch()

    def trial(self, seed: int, device: str = "cpu") -> UserTrial:
        return UserTrial(self, seed, device)

    def about(self, epochs: int) -> str:
        split = self.split()
        outputs = split.classes if self.classification else 1
        loss = "your loss" if self.loss is not None else None
        task = (
            f"classification into {split.classes} classes ({loss or 'cross-entropy'}; the score "
            "is the test accuracy)"
            if self.classification
            else f"regression ({loss or 'mean squared error'}; the score is the test "
            f"{'MSE' if loss is None else 'loss'})"
        )
        stated = "as given" if self.task is not None else "inferred from the targets"
        return (
            f"Your model ({self.model if isinstance(self.model, str) else 'a function'}, built "
            f"for {split.features} features and {outputs} output{'s' if outputs != 1 else ''}) "
            f"on your data: {task}, "
            f"{stated}; {len(split.y_train)} training, {len(split.y_val)} validation and "
            f"{len(split.y_test)} test samples, mini-batches of {self.batch_size or 'all'}, "
            f"{epochs} epochs ({self.steps_per_epoch() * epochs} steps)."
        )

    def build(self, features: int, outputs: int) -> torch.nn.Module:
        function = load_model_function(self.model) if isinstance(self.model, str) else self.model
        model = function(features, outputs)
        if not isinstance(model, torch.nn.Module):
            raise UserInputError(
                f"Invalid --model: {self.model} returned {type(model).__name__}; expected a "
                "torch.nn.Module"
            )
        return model


def _split(X: np.ndarray, y: np.ndarray, classification: bool, seed: int) -> Split:
    """60/20/20 (stratified for classes), standardized with the training part's statistics."""
    from sklearn.model_selection import train_test_split

    labels = y
    if classification:
        labels, y = np.unique(y, return_inverse=True)  # labels as 0 .. k-1
    try:
        X_rest, X_test, y_rest, y_test = train_test_split(
            X, y, test_size=0.2, random_state=seed, stratify=y if classification else None
        )
        X_train, X_val, y_train, y_val = train_test_split(
            X_rest, y_rest, test_size=0.25, random_state=seed,
            stratify=y_rest if classification else None,
        )  # fmt: skip
    except ValueError as error:
        if not classification:
            raise UserInputError(
                f"Invalid --data: cannot split {len(y)} samples: {error}"
            ) from None
        counts = np.bincount(y)
        fewest = ", ".join(f"{labels[k]:g} ({counts[k]})" for k in np.argsort(counts)[:3])
        raise UserInputError(
            f"Invalid --data: {len(y)} samples in {len(labels)} classes cannot be split into "
            "training, validation and test parts (60/20/20) that each hold every class; the "
            f"classes with the fewest samples: {fewest}. If the targets are not classes, pass "
            "--task regression"
        ) from None
    mean, std = X_train.mean(0), X_train.std(0)
    std[std == 0] = 1.0

    def features(a: np.ndarray) -> torch.Tensor:
        return torch.tensor((a - mean) / std, dtype=torch.float32)

    def targets(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(a, dtype=torch.int64 if classification else torch.float32)

    classes = int(y.max()) + 1 if classification else 0
    return Split(
        "user", features(X_train), targets(y_train), features(X_val), targets(y_val),
        features(X_test), targets(y_test), classes,
    )  # fmt: skip


class UserTrial(DatasetTrial):
    """One training run of the user's model: the built-in data sets' trial with the user's
    network, and mean squared error for regression."""

    def __init__(self, problem: UserProblem, seed: int, device: str) -> None:
        self.classification = problem.classification
        self.user_loss = problem.loss
        super().__init__(problem, seed, device)

    def _network(self, problem: Any, split: Split) -> torch.nn.Module:
        return problem.build(split.features, split.classes if self.classification else 1)

    def _loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.user_loss is not None:
            return self.user_loss(output, y)
        if self.classification:
            return torch.nn.functional.cross_entropy(output, y)
        return torch.nn.functional.mse_loss(output.reshape(-1), y)


def compare_model(
    model: Any,
    data: Any,
    optimizers: tuple[str, ...] | list[str] | None = None,
    *,
    loss: Any = None,
    task: str | None = None,
    seeds: int = 3,
    epochs: int = 10,
    batch_size: int | None = 32,
    target_accuracy: float | None = None,
    out: str | Path | None = None,
    **options: Any,
) -> Any:
    """The fair comparison of ``optimlab compare`` on your model and data.

    Args:
        model: ``make(features, outputs) -> torch.nn.Module`` (or ``"FILE.py:FUNCTION"``).
        data: ``(X, y)`` arrays, a ``.npz``/``.csv`` path (see the module docstring), or a
            ``torch.utils.data.DataLoader`` or ``Dataset`` of ``(x, y)`` pairs, read once in
            the order it yields them (the lab splits, standardizes and batches the samples
            itself, the same for every optimizer).
        optimizers: contender names or specs (default: the notes' optimizers).
        loss: ``loss(output, target) -> scalar tensor`` to train, tune and score on instead of
            the task's (cross-entropy for classes, mean squared error otherwise).
        task: ``"classification"`` or ``"regression"``; None infers it from ``y``.
        seeds, epochs, batch_size: as ``optimlab compare``'s options.
        target_accuracy: for classification, the validation accuracy counted as reached.
        out: a run folder to write the report into (None: no files).
        options: further fields of :class:`optimlab.lab.compare.CompareOptions`.

    Returns:
        The :class:`~optimlab.lab.compare.CompareResult` (``.verdicts[0].sentence`` says
        what the seeds support).

    Example::

        >>> import numpy as np, torch
        >>> from optimlab.lab import compare_model
        >>> X = np.random.default_rng(0).normal(size=(200, 3)); y = (X[:, 0] > 0).astype(int)
        >>> result = compare_model(lambda f, o: torch.nn.Linear(f, o), (X, y),
        ...                        ["sgd", "adam"], seeds=3, epochs=2)  # doctest: +SKIP
    """
    from .compare import CompareOptions, run_compare, write_compare
    from .contenders import NOTES_CONTENDERS, parse_contender_list

    if isinstance(data, torch.utils.data.Dataset | torch.utils.data.DataLoader):
        data = read_pairs(data)  # arrays, which worker processes can take
    problem = UserProblem(
        model, data, task, batch_size=batch_size, target_accuracy=target_accuracy, loss=loss
    )
    problem.split()  # the data's and the task's mistakes, before anything runs
    names = optimizers or NOTES_CONTENDERS
    contenders = parse_contender_list(names if isinstance(names, str) else ",".join(names))
    settings = CompareOptions(
        contenders=tuple(contenders),
        functions=(),
        datasets=(),
        seeds=seeds,
        epochs=epochs,
        batch_size=batch_size,
        user_problems=(problem,),
        **options,
    )
    result = run_compare(settings)
    if out is not None:
        from .rundir import RunFolder

        folder = RunFolder.create(
            Path(out), ["compare_model"], subcommand="compare_model", seed=settings.seed,
            options={"optimizers": [c.name for c in contenders], "seeds": seeds},
        )  # fmt: skip
        folder.publish(write_compare(result, folder))
    return result
