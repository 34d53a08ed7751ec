"""The run folder: where one lab command writes everything, starting with how to repeat it.

``run.json`` holds the exact command line, the seed, every option, the versions of Python,
optimlab and the libraries that shaped the numbers, the machine, and the start, end and wall
time. The other files are the command's own: metrics as CSV and JSON, ``figures/`` (PNG and
SVG), ``report.html`` and ``summary.md``.

A folder is only reused when a previous optimlab run made it (its ``run.json`` says so); then it
is emptied first, so no file of an older run is mistaken for this one's.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> folder = RunFolder.create(out, ["ewa", "--seed", "3"], subcommand="ewa", seed=3, options={})
    >>> sorted(p.name for p in folder.path.iterdir()), folder.record["command"]
    (['figures', 'run.json'], 'optimlab ewa --seed 3')
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import platform
import shlex
import shutil
import time
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["LabError", "RunFolder", "versions"]

_LIBRARIES = ("optimlab", "torch", "numpy", "scikit-learn", "matplotlib", "click", "rich")


class LabError(Exception):
    """A failure to report to the user in one line (bad data file, unusable folder...)."""


def versions() -> dict[str, str]:
    """Python, the machine, and the installed version of each library the lab depends on."""
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in _LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _plain(value: Any) -> Any:
    """JSON-safe: non-finite floats become null (the CSVs keep inf and nan), paths strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy and torch scalars
        return _plain(value.item())
    return value


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


class RunFolder:
    """A run's output folder; :meth:`create` it, write files into it, :meth:`publish` it.

    :meth:`publish` writes the report, then calls :meth:`finish` (which a run without a report
    calls itself).
    """

    def __init__(self, path: Path, record: dict[str, Any]) -> None:
        self.path = path
        self.record = record
        self._started = time.perf_counter()

    @classmethod
    def create(
        cls,
        path: Path,
        argv: list[str],
        *,
        subcommand: str,
        seed: int | None,
        options: Mapping[str, Any],
        keep: bool = False,
    ) -> RunFolder:
        """Make (or empty a previous run's) folder and write ``run.json`` with status running.

        ``argv`` is the command line after ``optimlab``, exactly as given. With ``keep`` a
        previous run's folder is continued instead of emptied (``optimlab train --resume``
        finds its checkpoints there).
        """
        path = Path(path)
        if path.exists():
            if not path.is_dir():
                raise LabError(f"--out {path}: exists and is not a folder")
            if any(path.iterdir()):
                if not cls._is_run_folder(path):
                    raise LabError(
                        f"--out {path}: folder exists, is not empty and is not an optimlab run "
                        "folder; choose another --out"
                    )
                if not keep:
                    shutil.rmtree(path)
        try:
            (path / "figures").mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise LabError(f"--out {path}: cannot create the folder ({error.strerror})") from None
        record = {
            "tool": "optimlab",
            "subcommand": subcommand,
            "command": shlex.join(["optimlab", *argv]),
            "argv": list(argv),
            "seed": seed,
            "options": _plain(dict(options)),
            "versions": versions(),
            "started": _now(),
            "status": "running",
        }
        folder = cls(path, record)
        folder.write_json("run.json", record)
        return folder

    @staticmethod
    def _is_run_folder(path: Path) -> bool:
        try:
            return json.loads((path / "run.json").read_text()).get("tool") == "optimlab"
        except (OSError, ValueError, AttributeError):
            return False

    def file(self, name: str) -> Path:
        """The path of ``name`` inside the folder (sub-folders are made as needed)."""
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write_json(self, name: str, data: Any) -> Path:
        target = self.file(name)
        target.write_text(json.dumps(_plain(data), indent=2, allow_nan=False) + "\n")
        return target

    def write_csv(self, name: str, rows: Iterable[Mapping[str, Any]]) -> Path:
        """Write rows of dicts; the columns are every key, in the order first seen."""
        rows = list(rows)
        columns = list(dict.fromkeys(k for row in rows for k in row))
        target = self.file(name)
        with target.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, restval="")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _csv_value(v) for k, v in row.items()})
        return target

    def reproduce(self) -> list[tuple[str, str]]:
        """What a report shows under "Reproduce this run": command, seed, versions, times."""
        record = self.record
        libraries = ", ".join(f"{k} {v}" for k, v in record["versions"].items() if k != "platform")
        return [
            ("command", record["command"]),
            ("seed", str(record["seed"])),
            ("versions", libraries),
            ("machine", record["versions"]["platform"]),
            ("started", record["started"]),
            ("wall time", f"{time.perf_counter() - self._started:.1f} s"),
            ("folder", str(self.path)),
        ]

    def publish(self, document: Any) -> Path:
        """Write the report and summary (with how to reproduce the run), finish the folder.

        ``document`` is a :class:`optimlab.lab.report.Document`; returns the path of
        ``report.html`` (``summary.md`` lies beside it).
        """
        from .report import write_html, write_markdown

        document.meta = self.reproduce()
        write_html(document, self.path)
        write_markdown(document, self.path)
        self.finish()
        return self.path / "report.html"

    def finish(self, status: str = "finished") -> None:
        """Record the end time, the wall time and the status in ``run.json``."""
        self.record.update(
            finished=_now(),
            wall_seconds=round(time.perf_counter() - self._started, 3),
            status=status,
        )
        self.write_json("run.json", self.record)

    def abandon(self) -> None:
        """Mark a run that stopped before :meth:`finish` as failed (no-op after finish)."""
        if self.record["status"] == "running":
            self.finish("failed")


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return value
