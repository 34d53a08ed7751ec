"""The run folder: where one lab command writes everything, starting with how to repeat it.

``run.json`` holds the exact command line, the seed, every option, the versions of Python,
optimlab and the libraries that shaped the numbers, the machine, the start, end and wall time,
and ``files``: every file the run wrote. The other files are the command's own: metrics as CSV
and JSON, ``figures/`` (PNG and SVG), ``report.html`` and ``summary.md``.

No folder is ever deleted or emptied. A run goes into a new or empty folder; into one that holds
anything only when asked:

- ``overwrite``: the run writes into a hidden staging folder inside (``.optimlab-staging-*``),
  and only once it has finished do its files replace the previous run's (those its ``run.json``
  lists, and the checkpoints ``optimlab train`` wrote, which a run killed in place never
  listed); an interrupted run leaves the previous run's files as they were. Files that are not a
  run's (the user's) are never deleted: only the files this run writes replace theirs.
- ``keep``: the run continues the newest staging folder whose run stopped before finishing
  (suspended by a signal, or its process killed), else the folder in place
  (``optimlab train --resume`` finds its checkpoints there).

A staging folder whose process is gone (``kill -9``, a crash of the machine) is ours, not the
user's: the next ``overwrite`` or ``keep`` run into the folder removes it (``keep`` continues
the newest one first) and lists it in :attr:`RunFolder.removed`.

Each run has a ``run_id`` (in ``run.json``), which a continued run keeps, so that its
checkpoints can be told from another run's.

Otherwise :meth:`RunFolder.create` raises :class:`FolderInUse`.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> folder = RunFolder.create(out, ["ewa", "--seed", "3"], subcommand="ewa", seed=3, options={})
    >>> sorted(p.name for p in folder.path.iterdir()), folder.record["command"]
    (['figures', 'run.json'], 'optimlab ewa --seed 3')
    >>> RunFolder.create(out, ["ewa"], subcommand="ewa", seed=0, options={})
    Traceback (most recent call last):
    ...
    optimlab.lab.rundir.FolderInUse: ... is not empty
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import os
import platform
import secrets
import shlex
import shutil
import socket
import sys
import time
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from ..files import write_text

__all__ = ["FolderInUse", "LabError", "RunFolder", "versions"]


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


class FolderInUse(LabError):
    """The run folder holds files, and neither overwriting nor continuing them was asked for."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"{path} is not empty")


_STAGING = ".optimlab-staging-"


class RunFolder:
    """A run's output folder; :meth:`create` it, write files into it, :meth:`publish` it.

    :meth:`publish` writes the report, then calls :meth:`finish` (which a run without a report
    calls itself). ``path`` is where the run writes now: the folder itself, or with
    ``overwrite`` its staging folder until :meth:`finish` moves the files into ``final``.
    """

    def __init__(
        self,
        path: Path,
        record: dict[str, Any],
        *,
        final: Path | None = None,
        previous: frozenset[str] = frozenset(),
        before: Mapping[str, int] | None = None,
    ) -> None:
        self.path = path
        self.final = path if final is None else final
        self.record = record
        self._previous = previous  # the files the previous run in ``final`` wrote
        self._before = dict(before or {})  # files in ``path`` at the start, with their mtimes
        self._started = time.perf_counter()
        #: dead runs' staging folders this run removed (see the module's docstring)
        self.removed: list[Path] = []

    @property
    def staged(self) -> bool:
        """Whether the run writes into a staging folder (until :meth:`finish` publishes it)."""
        return self.path != self.final

    @classmethod
    def create(
        cls,
        path: Path,
        argv: list[str],
        *,
        subcommand: str,
        seed: int | None,
        options: Mapping[str, Any],
        overwrite: bool = False,
        keep: bool = False,
    ) -> RunFolder:
        """Make the folder (or its staging folder) and write ``run.json`` with status running.

        ``argv`` is the command line after ``optimlab``, exactly as given. A folder that holds
        anything raises :class:`FolderInUse` unless ``overwrite`` (the run is staged and
        replaces the previous run's files when it finishes) or ``keep`` (the run continues
        the folder in place, as ``optimlab train --resume`` does).
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise LabError(f"--out {path}: exists and is not a folder")
        held = path.is_dir() and any(path.iterdir())
        if held and not (overwrite or keep):
            raise FolderInUse(path)
        previous = _previous_files(path) if held else frozenset()
        continued = _resumable_staging(path) if held and keep else None
        try:
            path.mkdir(parents=True, exist_ok=True)
            write = _staging_folder(path) if held and not keep else continued or path
            (write / "figures").mkdir(exist_ok=True)
        except OSError as error:
            raise LabError(f"--out {path}: cannot create the folder ({error.strerror})") from None
        # continuing in place, files there before are not this run's unless it writes them
        before = {name: _mtime(path / name) for name in _files(path)} if write == path else {}
        earlier = _record(write / "run.json") if keep else {}
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
            # a continued run is the same run: its checkpoints carry this id
            "run_id": earlier.get("run_id") or secrets.token_hex(8),
            "owner": _owner(),
        }
        folder = cls(write, record, final=path, previous=previous, before=before)
        folder.write_json("run.json", record)
        if held:  # (after run.json names this process the owner of the staging folder)
            folder.removed = _remove_dead_staging(path, keep=write)
        return folder

    @staticmethod
    def continued(path: Path) -> dict[str, Any] | None:
        """The ``run.json`` record of the run that ``keep`` would continue in ``path`` (the
        newest resumable staging folder's, else the folder's own), or None where there is no
        optimlab run to continue. Read before :meth:`create`, which starts a new record."""
        path = Path(path)
        if not path.is_dir():
            return None
        staging = _resumable_staging(path)
        record = _record((staging or path) / "run.json")
        return dict(record, staged=staging is not None) if record else None

    def file(self, name: str) -> Path:
        """The path of ``name`` inside the folder (sub-folders are made as needed)."""
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write_json(self, name: str, data: Any) -> Path:
        text = json.dumps(_plain(data), indent=2, allow_nan=False) + "\n"
        return write_text(self.file(name), text)

    def write_csv(self, name: str, rows: Iterable[Mapping[str, Any]]) -> Path:
        """Write rows of dicts; the columns are every key, in the order first seen."""
        rows = list(rows)
        columns = list(dict.fromkeys(k for row in rows for k in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
        return write_text(self.file(name), text.getvalue())

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
            ("folder", str(self.final)),
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
        return self.final / "report.html"

    def finish(self, status: str = "finished") -> None:
        """Record the end time, the wall time, the status and the run's files in ``run.json``.

        A staged run that finished then replaces the previous run's files with its own.
        """
        self.record.update(
            finished=_now(),
            wall_seconds=round(time.perf_counter() - self._started, 3),
            status=status,
        )
        self.record["files"] = sorted(self._written() | {"run.json"})
        self.write_json("run.json", self.record)
        if self.staged and status == "finished":
            self._replace_previous()

    def suspend(self) -> None:
        """Keep a staged run that stopped to be continued (``fit`` was preempted after writing
        a checkpoint): its staging folder stays, marked, and ``keep`` (``optimlab train
        --resume``) continues it there; it replaces the previous run only once it finishes."""
        if self.staged and self.record["status"] == "running":
            self.record["status"] = "suspended"
            self.write_json("run.json", self.record)

    def abandon(self) -> None:
        """Close a run that stopped before :meth:`finish` (no-op after finish).

        In place, its ``run.json`` says interrupted (Ctrl-C, or a signal that preempted it:
        ``fit`` exits with ``Preempted``, a SystemExit) or failed; a staged run's files are
        removed, and the previous run's stay as they were.
        """
        if self.record["status"] != "running":
            return
        # called while the exception that stopped the run propagates (click closes the
        # command's context on the way out)
        stopped_by = sys.exc_info()[1]
        stopped = isinstance(stopped_by, (KeyboardInterrupt, SystemExit))
        status = "interrupted" if stopped else "failed"
        if self.staged:
            self.record["status"] = status
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            self.finish(status)

    def _written(self) -> set[str]:
        """The files of this run in ``path``: not those that were there before it, untouched,
        unless the previous run wrote them (``keep`` continues that run)."""
        found = set()
        for name in _files(self.path):
            old = self._before.get(name)
            if old is None or name in self._previous or _mtime(self.path / name) != old:
                found.add(name)
        return found

    def _replace_previous(self) -> None:
        """Move the staged files into the folder, remove the previous run's files that this run
        did not write again, then remove the (empty) staging folder; run.json goes last."""
        files = self.record["files"]
        for name in [*(n for n in files if n != "run.json"), "run.json"]:
            target = self.final / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path / name, target)
        for name in sorted(self._previous - set(files), reverse=True):
            _remove_file(self.final, name)
        shutil.rmtree(self.path, ignore_errors=True)
        self.path = self.final


def _record(path: Path) -> dict[str, Any]:
    """An optimlab ``run.json`` as a dict; empty where it is missing, unreadable or another's."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) and record.get("tool") == "optimlab" else {}


def _owner() -> dict[str, Any]:
    """This process, as the owner a ``run.json`` names (a staging folder's is alive or dead)."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's process: alive
        return True
    return True


def _staging_state(staging: Path) -> str:
    """The state of a staging folder: "live" (its process runs, or it cannot be told: another
    machine's), "resumable" (its run stopped before finishing and its process is gone:
    suspended, or killed) or "dead" (its process is gone, and no run.json says what ran)."""
    record = _record(staging / "run.json")
    if record.get("status") == "suspended":  # its process saved and exited
        return "resumable"
    owner = record.get("owner")
    if isinstance(owner, dict) and isinstance(owner.get("pid"), int):
        if owner.get("host") != socket.gethostname():
            return "live"  # (its process cannot be seen from here: never touched)
        pid = owner["pid"]
    else:  # written before run.json named its owner, or killed before writing it
        digits = staging.name[len(_STAGING) :].partition("-")[0]
        if not digits.isdigit():
            return "live"
        pid = int(digits)
    if pid == os.getpid() or _alive(pid):
        return "live"
    return "resumable" if record.get("status") == "running" else "dead"


def _stagings(path: Path) -> list[tuple[int, Path, str]]:
    """The staging folders in ``path``, newest last, each with its mtime and state."""
    found = []
    for staging in path.glob(f"{_STAGING}*"):
        if staging.is_dir() and not staging.is_symlink():
            found.append((_mtime(staging / "run.json"), staging, _staging_state(staging)))
    return sorted(found)


def _resumable_staging(path: Path) -> Path | None:
    """The newest staging folder in ``path`` whose run stopped before finishing and can be
    continued: suspended (a signal) or killed (its process is gone), if any."""
    found = [staging for _, staging, state in _stagings(path) if state == "resumable"]
    return found[-1] if found else None


def _remove_dead_staging(path: Path, keep: Path) -> list[Path]:
    """Remove the staging folders in ``path`` whose process is gone (but ``keep``): optimlab
    made them, for runs that never finished and that no later run can reach (``keep``
    continues the newest); return them. A live one (another process's) is left alone."""
    removed = []
    for _, staging, state in _stagings(path):
        if state != "live" and staging != keep:
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
    return removed


def _staging_folder(path: Path) -> Path:
    """A new hidden folder inside ``path``, where an ``overwrite`` run writes until it ends."""
    while True:
        staging = path / f"{_STAGING}{os.getpid()}-{os.urandom(4).hex()}"
        try:
            staging.mkdir()
        except FileExistsError:
            continue
        return staging


def _files(root: Path) -> list[str]:
    """Every file under ``root`` (relative, with /), outside staging folders."""
    found = []
    for folder, subfolders, names in os.walk(root):
        if Path(folder) == root:
            subfolders[:] = [d for d in subfolders if not d.startswith(_STAGING)]
        relative = Path(folder).relative_to(root)
        found += [(relative / name).as_posix() for name in names]
    return found


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


def _listed_files(folder: Path) -> frozenset[str]:
    """The files an earlier optimlab run in ``folder`` says (in its run.json) it wrote.

    Names that would point outside the folder are dropped: a listed file is removed later.
    """
    try:
        record = json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return frozenset()
    if not isinstance(record, dict) or record.get("tool") != "optimlab":
        return frozenset()
    files = record.get("files")
    if not isinstance(files, list):
        return frozenset()
    safe = set()
    for name in files:
        parts = Path(name).parts if isinstance(name, str) else ()
        if parts and not Path(name).is_absolute() and ".." not in parts:
            if not parts[0].startswith(_STAGING):
                safe.add(Path(name).as_posix())
    return frozenset(safe)


def _previous_files(folder: Path) -> frozenset[str]:
    """The files of the optimlab run in ``folder``: those its run.json lists, and the
    checkpoints ``optimlab train`` wrote in ``checkpoints/`` (a run killed in place never
    listed its files; its checkpoints are known by their names and their digest records)."""
    listed = _listed_files(folder)
    if not _record(folder / "run.json"):
        return listed
    from ..train.checkpoint import written_checkpoints

    found = written_checkpoints(folder / "checkpoints")
    return listed | {f"checkpoints/{p.name}" for p in found}


def _remove_file(root: Path, name: str) -> None:
    """Remove ``root/name`` if it is a file, then its folders up to ``root`` that are empty.

    Nothing is removed through a linked folder that leads out of ``root``.
    """
    target = root / name
    if not target.parent.resolve().is_relative_to(root.resolve()):
        return
    if target.is_file() or target.is_symlink():
        target.unlink(missing_ok=True)
    parent = target.parent
    while parent != root:
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break
        parent = parent.parent


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return value
