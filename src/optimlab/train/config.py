"""``optimlab train --config run.toml``: a whole training run described in one TOML file.

A run file names the data, the model, the optimizer, the schedule and the training settings;
every key is checked, and a bad one is reported with its table, key and value. Example::

    seed = 0

    [data]
    name = "digits"          # digits, breast_cancer, iris, wine, synthetic_classification,
                             # synthetic_regression, or your own: csv, npz, idx
    validation = 0.2
    test = 0.2

    [model]
    kind = "mlp"             # logistic, mlp, cnn
    hidden = [64]

    [optimizer]
    name = "adam"            # any name of optimlab.OPTIMIZERS, with its own arguments
    lr = 0.003

    [schedule]               # optional: a one-line spec of optimlab.schedules
    spec = "cosine_decay:lr=0.003,decay_steps=400"

    [training]
    epochs = 10
    batch_size = 32          # or "full" for batch gradient descent
    accumulation = 1
    checkpoint_every = 50

Your own data: ``name = "csv"`` with ``path`` (and ``target``, the target column, default the
last); ``name = "npz"`` with ``path`` holding arrays ``X`` and ``y``; ``name = "idx"`` with
``images`` and ``labels``, files in the MNIST IDX format. A relative data path is read from the
run file's folder (the run file and its data move together); ``out`` and ``--out``, like every
command's run folder, from the working directory.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import math
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

BUILT_IN = ("digits", "breast_cancer", "iris", "wine", "synthetic_classification",
            "synthetic_regression")  # fmt: skip
FROM_FILES = ("csv", "npz", "idx")
#: the [data] keys that name files: relative to the run file's folder
DATA_FILE_KEYS = ("path", "images", "labels")
MODELS = ("logistic", "mlp", "cnn")
TASKS = ("classification", "regression")
#: what early stopping may follow: the validation loss, and the accuracy (classes)
METRICS = ("val_loss", "val_accuracy")
_PRECISIONS = ("fp32", "bf16")  # (fit's fp16 needs a CUDA model; train's model is on the CPU)


class ConfigError(ValueError):
    """A run file, or a data file it names, is wrong; the message says where and how."""


# --- reading and checking the run file ----------------------------------------------------


_SCHEMA: dict[str, dict[str, Any]] = {
    "data": {
        "name": str, "path": str, "target": str, "images": str, "labels": str,
        "samples": int, "features": int, "classes": int, "noise": float,
        "validation": float, "test": float, "task": str,
    },
    "model": {"kind": str, "hidden": list, "dropout": float},
    "schedule": {"spec": str},
    "training": {
        "epochs": int, "steps": int, "batch_size": (int, str), "accumulation": int,
        "clip_norm": float, "clip_value": float, "checkpoint_every": int, "keep_last": int,
        "eval_every": int, "precision": str, "early_stopping_metric": str,
        "early_stopping_patience": int, "nonfinite_loss": str, "read_every": int,
    },
}  # fmt: skip
_TOP_LEVEL = {"seed": int, "out": str}


@dataclasses.dataclass
class RunConfig:
    seed: int
    out: str | None
    data: dict[str, Any]
    model: dict[str, Any]
    optimizer: dict[str, Any]
    schedule: dict[str, Any]
    training: dict[str, Any]
    source: str

    @property
    def data_files(self) -> dict[str, Any]:
        """The [data] table with its files (``path``, ``images``, ``labels``) found from the
        run file's folder, as a run file's data paths are (absolute ones as written), so that
        the run file and its data move together and run from any working directory."""
        base = Path(self.source).parent
        return {k: str(base / v) if k in DATA_FILE_KEYS and isinstance(v, str) else v
                for k, v in self.data.items()}  # fmt: skip


def _type_ok(value: Any, expected: Any) -> bool:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool):
        return bool in kinds
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def _type_name(expected: Any) -> str:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    names = {int: "an integer", float: "a number", str: "a string", list: "a list"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def load_config(path: str | Path) -> RunConfig:
    """Read and check a run file; :class:`ConfigError` names the bad table, key or value."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such run file")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file ({e.reason})") from e
    tables = set(_SCHEMA) | {"optimizer"}
    for key, value in raw.items():
        if isinstance(value, dict):
            if key not in tables:
                raise ConfigError(f"{path}: unknown table [{key}]; expected {_names(tables)}")
        elif key not in _TOP_LEVEL:
            raise ConfigError(f"{path}: unknown key {key!r}; expected {_names(_TOP_LEVEL)}")
        elif not _type_ok(value, _TOP_LEVEL[key]):
            raise ConfigError(f"{path}: {key} = {value!r} should be {_type_name(_TOP_LEVEL[key])}")
    for table, schema in _SCHEMA.items():
        for key, value in raw.get(table, {}).items():
            if key not in schema:
                raise ConfigError(
                    f"{path}: [{table}] unknown key {key!r}; expected {_names(schema)}"
                )
            if not _type_ok(value, schema[key]):
                raise ConfigError(
                    f"{path}: [{table}] {key} = {value!r} should be {_type_name(schema[key])}"
                )
    for table in ("data", "optimizer", "training"):
        if table not in raw:
            raise ConfigError(f"{path}: missing table [{table}]")
    config = RunConfig(
        seed=raw.get("seed", 0),
        out=raw.get("out"),
        data=dict(raw["data"]),
        model=dict(raw.get("model", {"kind": "mlp"})),
        optimizer=dict(raw["optimizer"]),
        schedule=dict(raw.get("schedule", {})),
        training=dict(raw["training"]),
        source=str(path),
    )
    _check_values(config)
    return config


def _check_data_file(config: RunConfig, key: str) -> None:
    written = config.data[key]
    if not isinstance(written, str):
        return
    found = Path(config.data_files[key])
    if found.is_file():
        return
    where = f"[data] {key} = {written!r} in {config.source}"
    if not Path(written).is_absolute() and Path(written).is_file():
        where += (  # the file is where the working directory would have found it
            f"; a run file's data paths are read from its folder: write "
            f"{str(Path(written).resolve())!r}, or the path from {str(found.parent)!r}"
        )
    raise ConfigError(f"{found}: no such data file ({where})")


def _names(keys: Any) -> str:
    return ", ".join(sorted(keys))


def _check_values(config: RunConfig) -> None:
    where = config.source
    name = config.data.get("name")
    if name not in BUILT_IN + FROM_FILES:
        raise ConfigError(
            f"{where}: [data] name = {name!r} is not a data set; expected one of "
            f"{', '.join(BUILT_IN + FROM_FILES)}"
        )
    needs = {"csv": ("path",), "npz": ("path",), "idx": ("images", "labels")}.get(name, ())
    for key in needs:
        if key not in config.data:
            raise ConfigError(f"{where}: [data] name = {name!r} needs the key {key!r}")
    task = config.data.get("task")
    if task is not None and (name not in ("csv", "npz") or task not in TASKS):
        raise ConfigError(
            f"{where}: [data] task = {task!r}; expected 'classification' or 'regression', "
            "with name = 'csv' or 'npz' (the task of the other data sets is known)"
        )
    for key in ("validation", "test"):
        value = config.data.get(key, 0.2)
        if not 0 <= value < 1:
            raise ConfigError(f"{where}: [data] {key} = {value!r} should be in [0, 1)")
    kind = config.model.get("kind", "mlp")
    if kind not in MODELS:
        raise ConfigError(f"{where}: [model] kind = {kind!r}; expected one of {', '.join(MODELS)}")
    hidden = config.model.get("hidden", [64])
    if not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden):
        raise ConfigError(f"{where}: [model] hidden = {hidden!r} should be positive integers")
    import optimlab

    opt_name = config.optimizer.get("name")
    if opt_name not in optimlab.OPTIMIZERS:
        raise ConfigError(
            f"{where}: [optimizer] name = {opt_name!r}; expected one of "
            f"{_names(optimlab.OPTIMIZERS)}"
        )
    _check_optimizer(config, where)
    training = config.training
    if "epochs" not in training and "steps" not in training:
        raise ConfigError(f"{where}: [training] needs epochs or steps")
    counts = ("epochs", "steps", "accumulation", "checkpoint_every", "keep_last", "eval_every",
              "read_every", "early_stopping_patience")  # fmt: skip
    for key in counts:
        if key in training and training[key] < 1:
            raise ConfigError(f"{where}: [training] {key} = {training[key]!r} should be >= 1")
    batch = training.get("batch_size", 32)
    if isinstance(batch, str) and batch != "full" or isinstance(batch, int) and batch < 1:
        raise ConfigError(
            f"{where}: [training] batch_size = {batch!r} should be a positive integer or 'full'"
        )
    _check_settings(config, where)
    for key in needs:  # last: a key's mistake is said before a missing file
        _check_data_file(config, key)


def _check_settings(config: RunConfig, where: str) -> None:
    """The values ``fit``, the data sets and the model would refuse only once the run has
    started (its folder written, maybe after an epoch): a mistake in the run file is said
    here, with its table and key, before anything is written."""
    if not 0 <= config.seed < 2**32:  # (NumPy's seed)
        raise ConfigError(f"{where}: seed = {config.seed!r} should be in [0, 2**32)")
    dropout = config.model.get("dropout", 0.0)
    if not 0 <= dropout < 1:
        raise ConfigError(f"{where}: [model] dropout = {dropout!r} should be in [0, 1)")
    data = config.data
    for key, least in (("samples", 1), ("features", 1), ("classes", 2), ("noise", 0)):
        if key in data and not (math.isfinite(data[key]) and data[key] >= least):
            raise ConfigError(f"{where}: [data] {key} = {data[key]!r} should be >= {least}")
    training = config.training
    _choice(where, training, "precision", _PRECISIONS, "fp16 needs CUDA; train runs on the CPU")
    _choice(where, training, "nonfinite_loss", ("raise", "skip"))
    if training.get("nonfinite_loss") == "skip" and training.get("read_every", 1) != 1:
        raise ConfigError(
            f"{where}: [training] read_every = {training['read_every']!r} with nonfinite_loss "
            "= 'skip' should be 1 (whether a step is applied depends on its loss)"
        )
    for key in ("clip_norm", "clip_value"):
        value = training.get(key)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(
                f"{where}: [training] {key} = {value!r} should be a finite number > 0"
            )
    validation = config.data.get("validation", 0.2) > 0
    if "early_stopping_metric" in training or "early_stopping_patience" in training:
        _choice(where, training, "early_stopping_metric", METRICS)
        if not validation:
            raise ConfigError(
                f"{where}: [training] early stopping follows the validation set, and [data] "
                "validation = 0; give validation > 0, or remove the early_stopping keys"
            )
    if "spec" in config.schedule:
        from ..schedules import ReduceOnPlateau, from_spec

        spec = config.schedule["spec"]
        try:
            schedule = from_spec(spec)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{where}: [schedule] spec = {spec!r}: {e}") from e
        if isinstance(schedule, ReduceOnPlateau) and not validation:
            raise ConfigError(
                f"{where}: [schedule] spec = {spec!r} follows the validation loss, and [data] "
                "validation = 0; give validation > 0"
            )


def _choice(where: str, table: dict, key: str, valid: tuple, note: str = "") -> None:
    if key in table and table[key] not in valid:
        raise ConfigError(
            f"{where}: [training] {key} = {table[key]!r}; expected one of "
            f"{', '.join(map(repr, valid))}" + (f" ({note})" if note else "")
        )


def check_with_data(config: RunConfig, data: Data) -> None:
    """What the run file asks of its data: a metric to follow it has (accuracy is for
    classes), square images for a cnn. Checked once the data is loaded, before the run."""
    metric = config.training.get("early_stopping_metric")
    if metric == "val_accuracy" and not data.classes:
        raise ConfigError(
            f"{config.source}: [training] early_stopping_metric = 'val_accuracy', but "
            f"{config.data['name']} is a regression data set; expected 'val_loss'"
        )
    features = data.X_train.shape[1]
    outputs = data.classes or 1
    try:
        build_model(config.model, features, outputs, data.image_side)
    except ConfigError as e:
        raise ConfigError(f"{config.source}: {e}") from None


def optimizer_arguments(config: RunConfig) -> dict[str, Any]:
    """The ``[optimizer]`` table's arguments (TOML arrays as tuples: ``betas = [0.9, 0.999]``)."""
    arguments = {k: v for k, v in config.optimizer.items() if k != "name"}
    for key, value in arguments.items():
        if isinstance(value, list):
            arguments[key] = tuple(value)
    return arguments


def _check_optimizer(config: RunConfig, where: str) -> None:
    """The ``[optimizer]`` table's keys are the optimizer's arguments, and its values pass the
    optimizer's checks (tried on a stand-in parameter): a mistake is the user's, said before
    any data is loaded."""
    import inspect

    import optimlab

    name = config.optimizer["name"]
    cls = optimlab.OPTIMIZERS[name]
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "params")]
    arguments = optimizer_arguments(config)
    unknown = sorted(set(arguments) - set(valid))
    if unknown:
        raise ConfigError(
            f"{where}: [optimizer] unknown key {unknown[0]!r} for {name!r}; expected name or one "
            f"of {', '.join(valid)}"
        )
    try:
        cls([torch.zeros(2, 2, requires_grad=True)], **arguments)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: [optimizer] {e}") from e


# --- resuming: the run file must be the one the run started with --------------------------

#: what a key left out of the run file means, so that writing the default out is no change
_DEFAULTS = {
    ("", "seed"): 0, ("data", "validation"): 0.2, ("data", "test"): 0.2,
    ("model", "kind"): "mlp", ("model", "hidden"): [64], ("model", "dropout"): 0.0,
    ("training", "batch_size"): 32, ("training", "accumulation"): 1,
    ("training", "keep_last"): 3, ("training", "precision"): "fp32",
    ("training", "nonfinite_loss"): "raise",
}  # fmt: skip
#: keys that may change between a run and its resumption: when it stops (a run resumed with
#: more epochs or steps ends as one that was given them from the start: no step depends on
#: the total) and how it is kept and watched (read_every only delays reading the same
#: losses), not what any step computes
RESUMABLE_CHANGES = (("training", "epochs"), ("training", "steps"), ("training", "keep_last"),
                     ("training", "checkpoint_every"), ("training", "read_every"))  # fmt: skip


def settings(config: RunConfig) -> dict[str, Any]:
    """Everything in the run file that determines the run (all but ``out``), as JSON values,
    with a digest of each data file it names: stored in ``run.json``, compared on resume."""
    import hashlib

    found: dict[str, Any] = {"seed": config.seed, "data": dict(config.data),
                             "model": dict(config.model), "optimizer": dict(config.optimizer),
                             "schedule": dict(config.schedule),
                             "training": dict(config.training)}  # fmt: skip
    digests = {}
    files = config.data_files
    for key in DATA_FILE_KEYS:
        if isinstance(files.get(key), str) and Path(files[key]).is_file():
            digest = hashlib.sha256()
            with open(files[key], "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            digests[key] = digest.hexdigest()
    found["data files (sha256)"] = digests
    return found


def run_file_changes(saved: dict[str, Any], config: RunConfig) -> list[str]:
    """How ``config`` differs from ``saved`` (:func:`settings` of the run file a run started
    with): one "[table] key: old then, new now" per key, but :data:`RESUMABLE_CHANGES`.

    A resumed run continues the checkpoint with the settings it is given now: a new seed
    re-splits the data (the test set would hold samples the checkpoint trained on), a new
    schedule or clip_norm mixes two runs. So every difference is refused."""
    now = settings(config)
    changes = []
    for table in sorted(set(saved) | set(now)):
        old, new = saved.get(table), now.get(table)
        if not isinstance(old, dict) or not isinstance(new, dict):
            old, new, table = {table: old}, {table: new}, ""
        for key in sorted(set(old) | set(new)):
            if (table, key) in RESUMABLE_CHANGES:
                continue
            default = _DEFAULTS.get((table, key), "(not set)")
            before, after = old.get(key, default), new.get(key, default)
            if before != after:
                where = f"[{table}] {key}" if table else key
                changes.append(f"{where}: {_shown(before)} then, {_shown(after)} now")
    return changes


def _shown(value: Any) -> str:
    if value == "(not set)":
        return value
    if isinstance(value, str) and len(value) == 64:  # a digest: its start tells them apart
        return value[:12] + "..."
    return repr(value)


# --- data ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Data:
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    classes: int  # 0 for regression
    image_side: int | None  # set when each sample is a square image


def load_arrays(data: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The samples, targets and task ("classification" or "regression") a [data] table names."""
    name = data["name"]
    if name in ("digits", "breast_cancer", "iris", "wine"):
        import sklearn.datasets

        X, y = getattr(sklearn.datasets, f"load_{name}")(return_X_y=True)
        return X.astype(np.float32), y.astype(np.int64), "classification"
    if name == "synthetic_classification":
        from sklearn.datasets import make_classification

        X, y = make_classification(
            n_samples=data.get("samples", 1000), n_features=data.get("features", 20),
            n_informative=min(data.get("features", 20), 10), n_redundant=0,
            n_classes=data.get("classes", 2), random_state=seed,
        )  # fmt: skip
        return X.astype(np.float32), y.astype(np.int64), "classification"
    if name == "synthetic_regression":
        from sklearn.datasets import make_regression

        X, y = make_regression(
            n_samples=data.get("samples", 1000), n_features=data.get("features", 20),
            noise=data.get("noise", 0.1), random_state=seed,
        )  # fmt: skip
        return X.astype(np.float32), y.astype(np.float32), "regression"
    if name == "csv":
        return read_csv(Path(data["path"]), data.get("target"), data.get("task"))
    if name == "npz":
        return read_npz(Path(data["path"]), data.get("task"))
    return read_idx(Path(data["images"])), read_idx(Path(data["labels"])), "classification"


def _task_of(y: np.ndarray, where: Path, task: str | None = None) -> tuple[np.ndarray, str]:
    """The targets of a data file and their task: ``task`` (``[data] task``) where given,
    else inferred as ``optimlab compare --data`` infers it (:func:`optimlab.lab.user.
    infer_task`: whole numbers with 2 to 50 values are classes, anything else is
    regression), so that one file means the same to both."""
    from ..lab.user import infer_task

    if y.dtype.kind not in "biuf":  # (strings, objects: no number to learn)
        shown = ", ".join(map(repr, np.unique(y.astype(str))[:3].tolist()))
        raise ConfigError(
            f"{where}: the targets are {y.dtype} values ({shown}...), not numbers; give class "
            "labels as whole numbers, or regression targets as numbers"
        )
    y = y.reshape(len(y), -1)
    if y.shape[1] != 1:
        raise ConfigError(f"{where}: y has {y.shape[1]} values per sample; expected one")
    y = y[:, 0]
    if not np.isfinite(y).all():
        raise ConfigError(f"{where}: the targets hold NaN or Inf values")
    if task == "classification" and not np.all(np.mod(y, 1) == 0):
        raise ConfigError(f"{where}: [data] task = 'classification', but the targets are not "
                          "all whole numbers (class labels)")  # fmt: skip
    if (task or infer_task(y)) == "classification":
        return y.astype(np.int64), "classification"
    return y.astype(np.float32), "regression"


def read_csv(
    path: Path, target: str | None, task: str | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """A CSV file with a header row; ``target`` names the target column (default: the last)."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such data file")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        # (each row with its line; blank lines, such as a trailing one, hold no sample)
        rows = [(reader.line_num, row) for row in reader if row]
    if len(rows) < 2:
        raise ConfigError(f"{path}: a CSV data file needs a header row and at least one sample")
    header, body = rows[0][1], rows[1:]
    column = len(header) - 1 if target is None else None
    if target is not None:
        if target not in header:
            raise ConfigError(f"{path}: no column {target!r}; the columns are {', '.join(header)}")
        column = header.index(target)
    values = np.empty((len(body), len(header)), dtype=np.float64)
    for k, (line, row) in enumerate(body):
        if len(row) != len(header):
            raise ConfigError(
                f"{path}: line {line} has {len(row)} values, the header {len(header)}"
            )
        for j, text in enumerate(row):
            try:
                values[k, j] = float(text)
            except ValueError:
                raise ConfigError(
                    f"{path}: line {line}, column {header[j]!r}: {text!r} is not a number"
                ) from None
    if not np.isfinite(values).all():
        raise ConfigError(f"{path}: holds NaN or Inf values")
    y, task = _task_of(values[:, column], path, task)
    X = np.delete(values, column, axis=1).astype(np.float32)
    return X, y, task


def read_npz(path: Path, task: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """An ``.npz`` file with arrays ``X`` (samples in rows) and ``y``."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such data file")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError) as e:
        raise ConfigError(f"{path}: not a readable .npz file ({e})") from e
    missing = {"X", "y"} - set(arrays)
    if missing:
        raise ConfigError(f"{path}: missing arrays {sorted(missing)}; it has {sorted(arrays)}")
    X, y = arrays["X"], arrays["y"]
    if len(X) != len(y) or len(X) == 0:
        raise ConfigError(f"{path}: X has {len(X)} samples and y {len(y)}; they must match")
    y, task = _task_of(np.asarray(y), path, task)
    return X.reshape(len(X), -1).astype(np.float32), y, task


_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An array in the IDX format of MNIST (optionally gzipped): magic, shape, big-endian data."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such data file")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ConfigError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    dims = raw[3]
    if len(raw) < 4 + 4 * dims:
        raise ConfigError(f"{path}: IDX header is truncated")
    shape = struct.unpack(f">{dims}I", raw[4 : 4 + 4 * dims])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = 4 + 4 * dims + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise ConfigError(
            f"{path}: IDX header promises shape {shape} ({expected} bytes) but the file has "
            f"{len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * dims).reshape(shape)


def load_data(data: dict[str, Any], seed: int) -> Data:
    """Load, split (stratified for classification) and standardize with training statistics."""
    from sklearn.model_selection import train_test_split

    X, y, task = load_arrays(data, seed)
    where = data.get("path") or data.get("images") or data["name"]
    if X.ndim > 2:
        X = X.reshape(len(X), -1)
    X = X.astype(np.float32)
    if len(X) != len(y):
        raise ConfigError(f"{where}: {len(X)} samples but {len(y)} targets")
    side = math.isqrt(X.shape[1])
    image_side = side if side * side == X.shape[1] and side >= 4 else None
    val_share, test_share = data.get("validation", 0.2), data.get("test", 0.2)
    if task == "classification":  # labels as 0 .. k-1, as compare --data takes them
        _, y = np.unique(y, return_inverse=True)
        y = y.astype(np.int64)
    stratify = y if task == "classification" else None
    try:
        X_rest, X_test, y_rest, y_test = _split(X, y, test_share, seed, stratify)
        share = val_share / (1 - test_share)
        X_train, X_val, y_train, y_val = _split(
            X_rest, y_rest, share, seed, y_rest if stratify is not None else None
        )
    except ValueError as e:
        hint = ""
        if task == "classification" and data["name"] in FROM_FILES:
            hint = (f" (its targets were taken as {len(np.unique(y))} classes: whole numbers "
                    "with at most 50 values; if they are not classes, set [data] task = "
                    "'regression')")  # fmt: skip
        raise ConfigError(f"{where}: cannot split {len(X)} samples: {e}{hint}") from e
    mean, std = X_train.mean(0), X_train.std(0)
    std[std == 0] = 1.0  # features constant in training carry no information
    scale = lambda a: torch.from_numpy((a - mean) / std)  # noqa: E731
    target = (lambda a: torch.from_numpy(a)) if task == "classification" else (
        lambda a: torch.from_numpy(a.astype(np.float32)).unsqueeze(1)
    )  # fmt: skip
    classes = int(y.max()) + 1 if task == "classification" else 0
    _ = train_test_split  # imported above so a missing scikit-learn fails early
    return Data(scale(X_train), target(y_train), scale(X_val), target(y_val), scale(X_test),
                target(y_test), classes, image_side)  # fmt: skip


def _split(X, y, share, seed, stratify):
    from sklearn.model_selection import train_test_split

    if share == 0:
        return X, X[:0], y, y[:0]
    return train_test_split(X, y, test_size=share, random_state=seed, stratify=stratify)


# --- models --------------------------------------------------------------------------------


def build_model(model: dict[str, Any], features: int, outputs: int, image_side: int | None):
    """logistic: one linear layer; mlp: ReLU layers of ``hidden`` widths; cnn: two 3x3
    convolutions with pooling, for square images."""
    kind, hidden = model.get("kind", "mlp"), model.get("hidden", [64])
    dropout = model.get("dropout", 0.0)
    nn = torch.nn
    if kind == "logistic":
        return nn.Linear(features, outputs)
    if kind == "mlp":
        layers: list[nn.Module] = []
        width = features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        return nn.Sequential(*layers, nn.Linear(width, outputs))
    if image_side is None:
        raise ConfigError(
            f"[model] kind = 'cnn' needs square images; these samples have {features} features"
        )
    return nn.Sequential(
        nn.Unflatten(1, (1, image_side, image_side)),
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Dropout(dropout), nn.Linear(16, outputs),
    )  # fmt: skip


# --- the run -------------------------------------------------------------------------------


def run(
    config: RunConfig,
    out: Path,
    resume: bool = False,
    progress: bool | None = None,
    *,
    data: Data | None = None,
    run_id: str | None = None,
):
    """Train as the run file says; write ``history.csv`` and ``metrics.json`` to ``out``
    (checkpoints in ``out/checkpoints``). Returns the :class:`TrainResult` and the metrics.

    ``data``: the run file's data, loaded already (:func:`load_data` with its seed), so that
    a caller can check it before it writes anything. ``run_id`` goes into every checkpoint,
    and resuming takes only checkpoints of that run (see ``fit``)."""
    import optimlab
    from optimlab.data import MiniBatches

    from ..schedules import from_spec
    from .loop import EarlyStopping, evaluate, fit

    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    if data is None:
        data = load_data(config.data_files, config.seed)
    outputs = data.classes if data.classes else 1
    model = build_model(config.model, data.X_train.shape[1], outputs, data.image_side)
    arguments = optimizer_arguments(config)
    try:
        optimizer = optimlab.OPTIMIZERS[config.optimizer["name"]](model.parameters(), **arguments)
    except TypeError as e:
        raise ConfigError(f"{config.source}: [optimizer] {e}") from e
    except ValueError as e:
        raise ConfigError(f"{config.source}: [optimizer] {e}") from e
    training = config.training
    batch = training.get("batch_size", 32)
    plan = MiniBatches(data.X_train, data.y_train, batch_size=None if batch == "full" else batch,
                       seed=config.seed)  # fmt: skip
    loss_fn = torch.nn.functional.cross_entropy if data.classes else torch.nn.functional.mse_loss
    stopping = None
    if "early_stopping_metric" in training or "early_stopping_patience" in training:
        metric = training.get("early_stopping_metric", "val_loss")
        stopping = EarlyStopping(metric, patience=training.get("early_stopping_patience", 5),
                                 mode="max" if metric == "val_accuracy" else "min")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    eval_data = (data.X_val, data.y_val) if len(data.X_val) else None
    result = fit(
        model, optimizer, plan, epochs=training.get("epochs"), steps=training.get("steps"),
        loss_fn=loss_fn,
        schedule=from_spec(config.schedule["spec"]) if "spec" in config.schedule else None,
        accumulation=training.get("accumulation", 1), clip_norm=training.get("clip_norm"),
        clip_value=training.get("clip_value"), eval_data=eval_data,
        eval_every=training.get("eval_every"), early_stopping=stopping,
        checkpoint_dir=out / "checkpoints", checkpoint_every=training.get("checkpoint_every"),
        keep_last=training.get("keep_last", 3), resume=resume,
        history_path=out / "history.csv", precision=training.get("precision", "fp32"),
        nonfinite_loss=training.get("nonfinite_loss", "raise"),
        read_every=training.get("read_every"), progress=progress, run_id=run_id,
    )  # fmt: skip
    metrics = {"steps": result.steps, "epochs": result.epochs, "stop_reason": result.stop_reason,
               **result.final_metrics}  # fmt: skip
    if len(data.X_test):
        metrics.update({f"test_{k}": v for k, v in evaluate(model, (data.X_test, data.y_test),
                                                             loss_fn).items()})  # fmt: skip
    from ..files import write_text

    write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return result, metrics


def report(config: RunConfig, result: Any, metrics: dict[str, Any], folder: Any) -> Any:
    """The lab's report of a training run: final metrics, and loss against step (a figure)."""
    from ..lab import plots
    from ..lab.report import Document, Figure, Section, Table

    rows = [r for r in result.history if not r.get("skipped")]
    lines = [plots.Line("training loss", [r["step"] for r in rows], [r["loss"] for r in rows])]
    validation = [r for r in rows if "val_loss" in r]
    if validation:
        lines.append(plots.Line("validation loss", [r["step"] for r in validation],
                                [r["val_loss"] for r in validation], style="markers"))  # fmt: skip
    panel = plots.Panel("Loss during training", "step", "loss", lines, yscale="log")
    plots.draw([panel], folder.file("figures/loss"), columns=1, size=(6.5, 4))
    table = Table(
        "metrics",
        "Where training ended",
        ["metric", "value"],
        [[k, f"{v:.4g}" if isinstance(v, float) else str(v)] for k, v in metrics.items()],
    )
    what = (
        f"{config.optimizer['name']} on {config.data['name']} ({config.model.get('kind', 'mlp')})"
    )
    arguments = ", ".join(f"{k}={v}" for k, v in config.optimizer.items() if k != "name")
    section = Section(
        "Result",
        paragraphs=[f"Run file {config.source}; optimizer arguments: {arguments or 'defaults'}."
                    + (f" Resumed from {result.resumed_from.name}."
                       if result.resumed_from else "")],
        tables=[table],
        figures=[Figure("figures/loss.png", "Training loss at every step; validation loss at "
                        "every evaluation.")],
    )  # fmt: skip
    return Document(f"Training run: {what}", f"stopped: {result.stop_reason}", [section])
