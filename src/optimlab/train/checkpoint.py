"""Crash-safe checkpoints, so that a training loop resumes exactly where it stopped.

Atomicity rule
--------------
A checkpoint file is never written in place. :func:`save_checkpoint` writes the payload with
``torch.save`` into a temporary file in the *same folder*, flushes it and ``os.fsync``-s it,
renames it onto the final name with ``os.replace`` (an atomic rename on POSIX and Windows when
source and target are on the same file system, hence the same folder), then fsyncs the folder so
that the rename itself is durable.

Why: a process can die at any instant (SIGKILL, OOM killer, preemption, power loss). If it dies
while writing, only the temporary file is incomplete; the final name still points at the previous
complete file, so a crash during a write never corrupts the newest good checkpoint. A reader sees
either the old file or the new one, never half of one. :class:`CheckpointManager` deletes old
checkpoints only *after* the new one is safely in place, and ignores (and later removes) the
temporary files that a killed writer leaves behind.

Loading uses ``torch.load(weights_only=True)``, which cannot run arbitrary code from a file.
That is why :func:`save_checkpoint` refuses, before writing anything, a payload holding anything
but tensors, numbers, strings, bools, ``None``, lists, tuples and dicts (plus ``bytes``,
``torch.Size``, ``torch.dtype`` and ``torch.device``, which ``weights_only`` also reads back):
better a clear ``TypeError`` at save time than a checkpoint that cannot be loaded after a crash.
Random number generator states are converted to such values by :func:`capture_rng_state`.

Integrity
---------
A file can load and still be wrong: one flipped byte in a tensor's data goes through
``torch.load`` unnoticed (the zip format's checksums are not checked). So :func:`save_checkpoint`
records the SHA-256 digest of the bytes it writes, and :func:`load_checkpoint` checks it before
unpickling anything: a file whose bytes changed since it was written raises
:class:`CheckpointError`. The digest lives in the file itself, as the comment of the zip archive
that ``torch.save`` writes (the zip format's own place for free text at the very end of the file):
the file stays one file, renamed atomically, and stays a valid archive that
``torch.load(path, weights_only=True)`` and :mod:`zipfile` read as before. The digest covers every
byte before it except the two bytes that give the comment's length; those, and the comment, are
checked for their exact layout. Files written before digests existed (no such comment) still load,
unverified.

Storage errors
--------------
A full disk, a read-only folder or a permission refused while saving raise
:class:`CheckpointWriteError` (an ``OSError``, with the ``errno`` of the failure), whose message
names the file and what to do. The temporary file is removed and the previous checkpoints are left
exactly as they were, so a run that stops there resumes from the newest good checkpoint.

Example::

    manager = CheckpointManager("runs/exp1", keep_last=3)
    resumed = manager.load_latest()
    if resumed is None:
        start = 0
    else:
        _, ck = resumed
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        restore_rng_state(ck["rng"])
        start = ck["step"] + 1
    for step in range(start, n_steps):
        train_step(...)
        if step % 100 == 0:
            manager.save(step, {
                "step": step,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": capture_rng_state(),
            })
"""

from __future__ import annotations

import collections
import errno
import hashlib
import operator
import os
import random
import re
import secrets
import stat
import struct
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CheckpointError",
    "CheckpointManager",
    "CheckpointWriteError",
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
    "validate_payload",
    "written_checkpoints",
]

_TMP_SUFFIX = ".tmp"
_SCALARS = (int, float, bool, complex, str, bytes, type(None), torch.dtype, torch.device)
_SEQUENCES = (list, tuple, torch.Size)
_MAPPINGS = (dict, collections.OrderedDict)
_TENSORS = (torch.Tensor, torch.nn.Parameter)
_ALLOWED_TEXT = "tensors, numbers, strings, bools, None, lists, tuples and dicts"

#: The zip archive's end record, which ``torch.save`` writes last: 22 bytes, of which the last two
#: give the length of the archive's comment (0 as torch writes it).
_END_RECORD = struct.Struct("<4s4H2LH")
_END_SIGNATURE = b"PK\x05\x06"
#: The digest record, stored as the archive's comment.
_DIGEST_MAGIC = b"optimlab-checkpoint-sha256:"
_DIGEST_SIZE = len(_DIGEST_MAGIC) + 64
_CHUNK = 1 << 20


class CheckpointError(ValueError):
    """A checkpoint file cannot be loaded (empty, truncated, corrupted, not a checkpoint).

    ``path`` is the file (or, from :meth:`CheckpointManager.load_latest`, the folder) and
    ``reason`` a short description of what is wrong.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot load checkpoint {self.path}: {reason}")

    def __reduce__(self) -> tuple:  # picklable (worker processes) despite two arguments
        return (type(self), (self.path, self.reason))


class CheckpointWriteError(OSError):
    """A checkpoint cannot be written: disk full, read-only folder, permission refused, ...

    ``path`` is the file being written (or the folder that cannot be created), ``reason`` what
    went wrong and what to do, ``errno`` the operating system's error number (``None`` when the
    failure carried none), and the original ``OSError`` is chained as ``__cause__``. The
    previous checkpoints are unchanged and no temporary file is left behind.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, code: int | None = None) -> None:
        if code is None:
            super().__init__(reason)
        else:
            super().__init__(code, reason)
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot save checkpoint {self.path}: {self.reason}"

    def __reduce__(self) -> tuple:
        return (type(self), (self.path, self.reason, self.errno))


_NO_SPACE = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _write_error(
    final: Path, exc: OSError, *, written: bool = False, what: str | None = None
) -> CheckpointWriteError:
    """``exc``, raised while writing checkpoint ``final``, as one line: what and what to do."""
    folder = final.parent
    code = exc.errno
    detail = exc.strerror or str(exc) or type(exc).__name__
    if what is not None:
        detail = f"{what} ({detail})"
    if code in _NO_SPACE:
        advice = (
            f"free space on the disk that holds {folder}, or write checkpoints to another folder"
        )
    elif code == errno.EROFS:
        advice = f"{folder} is on a read-only file system: write checkpoints to a writable folder"
    elif code in (errno.EACCES, errno.EPERM):
        advice = (
            f"make {folder} writable for this user (chmod u+w), or write checkpoints to "
            "another folder"
        )
    else:
        advice = f"check that {folder} is writable and its disk works, or use another folder"
    if written:
        outcome = "the new checkpoint is in place but may not survive a power loss"
    else:
        outcome = "no file was left behind and the previous checkpoints are unchanged"
    return CheckpointWriteError(final, f"{detail}; {advice}; {outcome}", code)


# --------------------------------------------------------------------------------------------
# payload validation


def _type_name(obj: object) -> str:
    return type(obj).__qualname__


def _refuse(path: str, obj: object) -> TypeError:
    hint = ""
    if type(obj).__module__ == "numpy":
        hint = " (convert NumPy values with .item(), .tolist() or torch.from_numpy())"
    return TypeError(
        f"{path}: got object of type {_type_name(obj)}{hint}; a checkpoint may only hold "
        f"{_ALLOWED_TEXT}, so that torch.load(weights_only=True) can read it back"
    )


def _validate(obj: Any, path: str, active: set[int], done: set[int]) -> None:
    t = type(obj)
    if t in _SCALARS or t in _TENSORS:
        return
    if t not in _SEQUENCES and t not in _MAPPINGS:
        raise _refuse(path, obj)
    oid = id(obj)
    if oid in done:  # the same container reached twice (shared, not cyclic): already checked
        return
    if oid in active:
        raise ValueError(f"{path}: the payload contains itself (a reference cycle)")
    active.add(oid)
    if t in _MAPPINGS:
        for key, value in obj.items():
            if type(key) not in _SCALARS and type(key) is not tuple:
                raise TypeError(
                    f"{path}: dict key {key!r} is of type {_type_name(key)}; "
                    "keys must be strings, numbers, bools, None or tuples"
                )
            if type(key) is tuple:
                _validate(key, f"{path}: dict key {key!r}", active, done)
            _validate(value, f"{path}[{key!r}]", active, done)
    else:
        for i, value in enumerate(obj):
            _validate(value, f"{path}[{i}]", active, done)
    active.discard(oid)
    done.add(oid)


def validate_payload(payload: Any) -> None:
    """Raise ``TypeError`` unless ``payload`` is a dict that ``weights_only`` loading reads back.

    The message names the key path of the first offending value, e.g.
    ``payload['history'][3]: got object of type Foo``.
    """
    if type(payload) not in _MAPPINGS:
        raise TypeError(f"payload must be a dict, got object of type {_type_name(payload)}")
    _validate(payload, "payload", set(), set())


# --------------------------------------------------------------------------------------------
# atomic save and checked load


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where directories cannot be opened)."""
    if os.name == "nt":  # pragma: no cover - Windows cannot open directories
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:  # pragma: no cover - some file systems refuse fsync on directories
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _open_temporary(final: Path) -> tuple[int, Path]:
    """Create and open a fresh temporary file next to ``final`` (mode follows the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(6)}{_TMP_SUFFIX}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue


class _DigestWriter:
    """The file object ``torch.save`` writes to: passes the bytes on to ``file`` and hashes them,
    except the last two (the zip end record's comment length), which :meth:`finish` replaces by
    the digest record's length before it appends the record as the archive's comment.

    The last 22 bytes are held back until :meth:`finish`, which checks that they are the end
    record it expects. An ``OSError`` from ``file`` is kept in ``error``: torch reports a failed
    write as a ``RuntimeError`` that no longer says why.
    """

    def __init__(self, file: Any) -> None:
        self._file = file
        self._hash = hashlib.sha256()
        self._held = b""
        self.error: OSError | None = None

    def _emit(self, data: bytes | memoryview) -> None:
        if len(data):
            self._hash.update(data)
            self._file.write(data)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        n = _END_RECORD.size
        try:
            if len(view) >= n:
                self._emit(self._held)
                self._emit(view[:-n])
                self._held = bytes(view[-n:])
            else:
                joined = self._held + bytes(view)
                cut = max(0, len(joined) - n)
                self._emit(joined[:cut])
                self._held = joined[cut:]
        except OSError as e:
            self.error = e
            raise
        return len(view)

    def flush(self) -> None:
        try:
            self._file.flush()
        except OSError as e:
            self.error = e
            raise

    # What a file object offers besides, for code that wraps torch.save (fault injection in
    # tests). No seek: the digest is of the bytes in the order they are written.
    def tell(self) -> int:
        return self._file.tell() + len(self._held)

    def truncate(self, size: int | None = None) -> int:
        return self._file.truncate(size)

    def fileno(self) -> int:
        return self._file.fileno()

    def finish(self) -> bool:
        """Write the held-back end record and the digest record; False if there was no end
        record to attach it to (the file is then written as torch wrote it, without digest)."""
        end = self._held
        try:
            if len(end) != _END_RECORD.size or not _is_plain_end_record(end):
                self._emit(end)
                return False
            self._emit(end[:-2])
            record = _DIGEST_MAGIC + self._hash.hexdigest().encode("ascii")
            self._file.write(struct.pack("<H", len(record)) + record)
        except OSError as e:
            self.error = e
            raise
        return True


def _is_plain_end_record(end: bytes) -> bool:
    return end[:4] == _END_SIGNATURE and _END_RECORD.unpack(end)[-1] == 0


def save_checkpoint(path: str | os.PathLike[str], payload: dict) -> Path:
    """Write ``payload`` to ``path`` atomically; return the final path.

    The payload is validated first (see :func:`validate_payload`): nothing is written if it
    holds a value that ``torch.load(weights_only=True)`` would refuse. Then ``torch.save``
    writes into a temporary file in the same folder, which is flushed, fsync-ed and renamed
    onto ``path`` with ``os.replace``; finally the folder is fsync-ed. If anything fails (or
    the process is interrupted) before the rename, ``path`` keeps its previous content and the
    temporary file is removed, so a crash during a write never corrupts the newest good
    checkpoint. The SHA-256 digest of the bytes written is stored in the file (see the module's
    *Integrity*) and checked by :func:`load_checkpoint`. A file written again keeps its
    permissions; a symbolic link stays, and the file it names is written.

    Raises:
        TypeError, ValueError: the payload holds something ``weights_only`` loading refuses.
        FileNotFoundError: the folder does not exist.
        CheckpointWriteError: the file cannot be written (disk full, read-only folder,
            permission refused, ...); the message names the file and what to do.

    Example::

        save_checkpoint("run/last.pt", {"step": 10, "model": model.state_dict()})
        payload = load_checkpoint("run/last.pt")
    """
    validate_payload(payload)
    final = Path(path)
    if final.is_symlink():  # the link stays; the file it names is written
        final = Path(os.path.realpath(final))
    folder = final.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot save checkpoint {final}: folder {folder} does not exist")
    try:
        fd, tmp = _open_temporary(final)
    except OSError as e:
        raise _write_error(final, e, what="cannot create a file in the folder") from e
    try:  # a file written again keeps its permissions (one made private stays private)
        os.chmod(tmp, stat.S_IMODE(final.stat().st_mode))
    except FileNotFoundError:
        pass
    except OSError as e:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise _write_error(final, e, what="cannot give the new file the old one's mode") from e
    writer = None
    try:
        with os.fdopen(fd, "wb") as f:
            writer = _DigestWriter(f)
            torch.save(payload, writer)
            digested = writer.finish()
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        cause = writer.error if writer is not None and writer.error is not None else e
        if isinstance(e, Exception) and isinstance(cause, OSError):
            raise _write_error(final, cause) from cause
        raise
    try:
        _fsync_dir(folder)
    except OSError as e:
        raise _write_error(final, e, written=True, what="cannot sync the folder") from e
    if not digested:
        warnings.warn(
            f"checkpoint {final} was written without a digest: torch.save's output did not end "
            "with the zip end record expected, so its content will not be verified on load",
            stacklevel=2,
        )
    return final


def _first_line(text: str, limit: int = 200) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _diagnose(head: bytes, size: int, exc: BaseException) -> str:
    message = str(exc)
    unpickler = re.search(r"WeightsUnpickler error:\s*(.+)", message)
    if unpickler:  # torch's long advice on weights_only buries the actual reason
        detail = f"{type(exc).__name__}: {_first_line(unpickler.group(1))}"
    else:
        detail = f"{type(exc).__name__}: {_first_line(message)}"
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    if refused:
        return (
            f"it holds an object of type {refused.group(1)}, which weights_only loading "
            "refuses (not a checkpoint written by save_checkpoint)"
        )
    if head.startswith(b"PK\x03\x04"):
        return f"truncated or corrupted file of {size} bytes ({detail})"
    try:
        head.decode("utf-8")
        looks_text = all(c >= 32 or c in b"\t\n\r" for c in head)
    except UnicodeDecodeError:
        looks_text = False
    if looks_text:
        return f"not a checkpoint: looks like a text file ({detail})"
    if "weights only load failed" in message.lower():
        return f"not a checkpoint: weights_only loading refused its content ({detail})"
    return f"not a checkpoint, or corrupted ({detail})"


#: how far from the end a digest record is looked for when bytes were added after it
_PADDING_SEARCHED = 1 << 20


def _check_digest(f: Any, size: int, path: Path) -> bool:
    """Check the digest record of the open checkpoint ``f``; False if it has none (a file
    written before digests existed). Raises CheckpointError if the record or the bytes it
    covers have changed."""
    n = _END_RECORD.size + _DIGEST_SIZE
    if size < n:
        return False
    f.seek(size - n)
    tail = f.read(n)
    end, record = tail[: _END_RECORD.size], tail[_END_RECORD.size :]
    has_record = record.startswith(_DIGEST_MAGIC)
    end_points_at_it = end[:4] == _END_SIGNATURE and _END_RECORD.unpack(end)[-1] == _DIGEST_SIZE
    if not has_record and not end_points_at_it:
        if b"optimlab-checkpoint" in tail:
            raise CheckpointError(path, "its digest record is damaged (the file was changed)")
        # bytes added after the record (a copy's padding, an append) hide it from the end:
        # look for it in the file's last MiB, where any such padding leaves it
        start = max(0, size - _PADDING_SEARCHED)
        f.seek(start)
        found = f.read(size - start).rfind(_DIGEST_MAGIC)
        if found >= 0:
            extra = size - (start + found + _DIGEST_SIZE)
            raise CheckpointError(
                path,
                f"{extra} bytes follow its digest record: the file was changed after it was "
                "written (appended to, or padded by a copy), so its data cannot be trusted",
            )
        return False
    if not (has_record and end_points_at_it):
        raise CheckpointError(
            path, "its digest record is damaged: the file was changed after it was written"
        )
    digest = hashlib.sha256()
    f.seek(0)
    remaining = size - _DIGEST_SIZE - 2
    buffer = bytearray(min(_CHUNK, remaining))
    view = memoryview(buffer)
    while remaining > 0:
        got = f.readinto(view[: min(len(buffer), remaining)])
        if not got:
            raise CheckpointError(path, "the file shrank while it was being read")
        digest.update(view[:got])
        remaining -= got
    if digest.hexdigest().encode("ascii") != record[len(_DIGEST_MAGIC) :]:
        raise CheckpointError(
            path,
            "its content does not match the SHA-256 digest recorded when it was written "
            "(damaged on disk or in a copy since): its data cannot be trusted",
        )
    return True


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = None) -> dict:
    """Load a checkpoint dict with ``torch.load(weights_only=True)``, verifying its digest first.

    The SHA-256 digest that :func:`save_checkpoint` stores in the file is checked before
    anything is unpickled. Files without one (written before digests existed, or by plain
    ``torch.save``) load as before, unverified.

    Raises:
        CheckpointError: the file is empty, truncated, corrupted, changed since it was written
            (its digest fails), not a checkpoint, or does not hold a dict; the message names
            the file and what is wrong, and the error from torch, if any, is chained as
            ``__cause__``.
        FileNotFoundError, PermissionError, OSError: the file cannot be opened at all.
    """
    p = Path(path)
    with open(p, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise CheckpointError(p, "empty file (0 bytes)")
        _check_digest(f, size, p)
        f.seek(0)
        head = f.read(64)
        f.seek(0)
        try:
            payload = torch.load(f, map_location=map_location, weights_only=True)
        except MemoryError:
            raise
        except Exception as e:
            if map_location is not None and _loads_on_cpu(f):
                raise  # the file is fine; map_location is the problem
            raise CheckpointError(p, _diagnose(head, size, e)) from e
    if not isinstance(payload, dict):
        raise CheckpointError(
            p, f"it holds an object of type {_type_name(payload)}, not a checkpoint dict"
        )
    return payload


def _loads_on_cpu(f: Any) -> bool:
    try:
        f.seek(0)
        torch.load(f, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return True


# --------------------------------------------------------------------------------------------
# a folder of numbered checkpoints


class CheckpointManager:
    """Numbered checkpoints ``<prefix>-00000123.pt`` in one folder, newest = highest step.

    ``save`` writes atomically (see :func:`save_checkpoint`) and only then deletes checkpoints
    beyond ``keep_last``; ``load_latest`` loads the newest checkpoint that is readable, warning
    about and skipping corrupted ones. Temporary files left by a killed writer are ignored, and
    removed by the next ``save`` (or :meth:`remove_temporary_files`). One process should write
    to a folder at a time; any number may read.

    Example::

        manager = CheckpointManager("runs/exp1", keep_last=3)
        manager.save(100, {"step": 100, "model": model.state_dict()})
        path, payload = manager.load_latest()
    """

    def __init__(
        self, folder: str | os.PathLike[str], keep_last: int = 3, prefix: str = "ckpt"
    ) -> None:
        if isinstance(keep_last, bool) or not isinstance(keep_last, int):
            raise TypeError(f"keep_last must be an int >= 1, got {keep_last!r}")
        if keep_last < 1:
            raise ValueError(f"keep_last must be an int >= 1, got {keep_last!r}")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty string, got {prefix!r}")
        if (
            prefix.startswith(".")
            or "/" in prefix
            or os.sep in prefix
            or (os.altsep and os.altsep in prefix)
        ):
            raise ValueError(
                f"prefix must be a plain file name part (no separator, no leading dot), "
                f"got {prefix!r}"
            )
        self.folder = Path(folder)
        self.keep_last = keep_last
        self.prefix = prefix
        self._pattern = re.compile(rf"{re.escape(prefix)}-(\d{{8,}})\.pt")
        self._tmp_pattern = re.compile(
            rf"\.{re.escape(prefix)}-\d{{8,}}\.pt\.[0-9a-f]+{re.escape(_TMP_SUFFIX)}"
        )
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _write_error(self.folder, e, what="cannot create the folder") from e

    def __repr__(self) -> str:
        return (
            f"CheckpointManager({str(self.folder)!r}, keep_last={self.keep_last}, "
            f"prefix={self.prefix!r})"
        )

    def path_for(self, step: int) -> Path:
        """The file name used for ``step``."""
        return self.folder / f"{self.prefix}-{self._check_step(step):08d}.pt"

    @staticmethod
    def _check_step(step: int) -> int:
        if isinstance(step, bool):
            raise TypeError(f"step must be an int >= 0, got {step!r}")
        try:
            s = operator.index(step)
        except TypeError:
            raise TypeError(
                f"step must be an int >= 0, got {step!r} ({type(step).__name__})"
            ) from None
        if s < 0:
            raise ValueError(f"step must be an int >= 0, got {s}")
        return s

    def _entries(self) -> list[tuple[int, Path]]:
        found = []
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        for name in names:
            m = self._pattern.fullmatch(name)
            if m is None:
                continue
            step = int(m.group(1))
            if f"{step:08d}" != m.group(1):  # not a name this manager writes
                continue
            path = self.folder / name
            if path.is_file():
                found.append((step, path))
        found.sort(key=lambda e: e[0], reverse=True)
        return found

    def list(self) -> list[Path]:
        """Checkpoint files, newest (highest step) first; temporary files are not listed."""
        return [p for _, p in self._entries()]

    def latest(self) -> Path | None:
        """The newest checkpoint file, or ``None`` (it is not opened: see ``load_latest``)."""
        entries = self._entries()
        return entries[0][1] if entries else None

    def remove_temporary_files(self) -> list[Path]:
        """Delete temporary files left by a writer that was killed; return them.

        Only call this when no other process is writing to the folder (``save`` does).
        """
        removed = []
        for name in os.listdir(self.folder):
            if self._tmp_pattern.fullmatch(name):
                path = self.folder / name
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                removed.append(path)
        return removed

    def save(self, step: int, payload: dict) -> Path:
        """Write ``payload`` as the checkpoint of ``step`` atomically, then prune; return its path.

        After the new file is safely in place, older checkpoints beyond ``keep_last`` are
        deleted. Checkpoints with a *higher* step than ``step`` belong to a run that was
        abandoned (for example, training resumed from an older file because the newest was
        corrupted); ``load_latest`` would prefer them over the new one, so they are deleted
        too, with a warning. Saving a step that already exists replaces it atomically.
        """
        path = self.path_for(step)
        step = self._check_step(step)
        validate_payload(payload)  # before touching the folder at all
        try:
            self.remove_temporary_files()
        except OSError as e:
            raise _write_error(path, e, what="cannot remove old temporary files") from e
        save_checkpoint(path, payload)
        kept = 1
        for other_step, other in self._entries():
            if other == path:
                continue
            if other_step > step:
                warnings.warn(
                    f"deleting checkpoint {other}: its step {other_step} is newer than the "
                    f"step {step} just saved, so it belongs to an abandoned run",
                    stacklevel=2,
                )
            elif kept < self.keep_last:
                kept += 1
                continue
            try:
                other.unlink(missing_ok=True)
            except OSError as e:  # the new checkpoint is safe: say so rather than fail
                warnings.warn(f"cannot delete old checkpoint {other}: {e}", stacklevel=2)
        return path

    def load_latest(
        self,
        map_location: Any = None,
        validate: Callable[[dict], None] | None = None,
    ) -> tuple[Path, dict] | None:
        """Load the newest good checkpoint: ``(path, payload)``, or ``None`` if there is none.

        A checkpoint that cannot be loaded (damaged, truncated, its digest fails: see
        :func:`load_checkpoint`) is skipped with a warning naming the file and the reason, and
        the previous one is tried, and so on. With ``validate``, a checkpoint that loads is
        passed to ``validate(payload)``, which should raise ``ValueError``, ``KeyError`` (any
        ``LookupError``) or ``TypeError`` when the payload lacks what the caller needs; such a
        checkpoint is skipped in the same way, with a warning that names it and quotes the
        error. Other exceptions from ``validate`` propagate.

        Raises:
            CheckpointError: checkpoint files exist but none of them can be loaded (or passes
                ``validate``); the message names every file and what is wrong with it.
        """
        if validate is not None and not callable(validate):
            raise TypeError(f"validate must be callable or None, got {validate!r}")
        entries = self._entries()
        if not entries:
            return None
        failures = []
        for _, path in entries:
            reason = self._problem(path, map_location, validate)
            if isinstance(reason, dict):
                return path, reason
            failures.append(f"{path.name}: {reason}")
            warnings.warn(
                f"skipping checkpoint {path}: {reason}; trying an older one", stacklevel=2
            )
        raise CheckpointError(
            self.folder,
            f"none of the {len(entries)} checkpoints in the folder can be loaded: "
            + "; ".join(failures),
        )

    @staticmethod
    def _problem(
        path: Path, map_location: Any, validate: Callable[[dict], None] | None
    ) -> dict | str:
        """The payload of ``path`` if it loads and passes ``validate``, else what is wrong."""
        try:
            payload = load_checkpoint(path, map_location=map_location)
        except CheckpointError as e:
            return e.reason
        except FileNotFoundError:  # deleted since it was listed
            return "file disappeared while loading"
        if validate is not None:
            try:
                validate(payload)
            except (ValueError, LookupError, TypeError) as e:
                return (
                    "it loads but does not hold what this run expects "
                    f"({type(e).__name__}: {_first_line(str(e))})"
                )
        return payload


def written_checkpoints(folder: str | os.PathLike[str], prefix: str = "ckpt") -> list[Path]:
    """The files in ``folder`` that a :class:`CheckpointManager` with ``prefix`` wrote: named
    as it names its checkpoints and ending in the digest record :func:`save_checkpoint`
    writes, or named as its temporary files. Nothing is created or changed.

    So that whoever replaces a run's files (``optimlab train --overwrite``) can remove the
    previous run's checkpoints and only those: a file of the user's, even a checkpoint of
    another tool with the same name, is not one of them.
    """
    folder = Path(folder)
    names = re.compile(rf"{re.escape(prefix)}-\d{{8,}}\.pt")
    temporary = re.compile(
        rf"\.{re.escape(prefix)}-\d{{8,}}\.pt\.[0-9a-f]+{re.escape(_TMP_SUFFIX)}"
    )
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return []
    found = []
    for name in entries:
        path = folder / name
        if path.is_symlink() or not path.is_file():
            continue
        if temporary.fullmatch(name) or names.fullmatch(name) and _has_digest_record(path):
            found.append(path)
    return found


def _has_digest_record(path: Path) -> bool:
    """Whether ``path`` ends as :func:`save_checkpoint` ends a file (end record, digest)."""
    n = _END_RECORD.size + _DIGEST_SIZE
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < n:
                return False
            f.seek(size - n)
            tail = f.read(n)
    except OSError:
        return False
    end = tail[: _END_RECORD.size]
    return (
        end[:4] == _END_SIGNATURE
        and _END_RECORD.unpack(end)[-1] == _DIGEST_SIZE
        and tail[_END_RECORD.size :].startswith(_DIGEST_MAGIC)
    )


# --------------------------------------------------------------------------------------------
# random number generator states


def capture_rng_state() -> dict:
    """The states of torch's (CPU and CUDA), NumPy's global and Python's random generators.

    Every value is a tensor, int, float, str, None, list or dict, so the result can be stored
    in a checkpoint and read back with ``torch.load(weights_only=True)``. Restore it with
    :func:`restore_rng_state`.
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    np_state = np.random.get_state(legacy=True)
    if not isinstance(np_state, tuple):  # pragma: no cover - global generator replaced
        raise TypeError("NumPy's global generator is not the legacy MT19937 RandomState")
    name, keys, pos, has_gauss, cached_gaussian = np_state
    state["numpy"] = {
        "bit_generator": str(name),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }
    version, internal, gauss_next = random.getstate()
    state["python"] = [int(version), [int(x) for x in internal], gauss_next]
    return state


def restore_rng_state(state: dict) -> None:
    """Restore generator states captured by :func:`capture_rng_state` (missing parts are left
    alone; CUDA states are restored only where CUDA is available)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"].to("cpu", torch.uint8))
    cuda_states = state.get("cuda")
    if cuda_states and torch.cuda.is_available():
        n = torch.cuda.device_count()
        if len(cuda_states) != n:
            warnings.warn(
                f"the checkpoint holds {len(cuda_states)} CUDA generator states but "
                f"{n} CUDA devices are visible; restoring the first {min(n, len(cuda_states))}",
                stacklevel=2,
            )
        for i, s in enumerate(cuda_states[:n]):
            torch.cuda.set_rng_state(s.to("cpu", torch.uint8), i)
    if "numpy" in state:
        s = state["numpy"]
        keys = s["keys"].to("cpu").numpy().astype(np.uint32)
        np.random.set_state(
            (
                s["bit_generator"],
                keys,
                int(s["pos"]),
                int(s["has_gauss"]),
                float(s["cached_gaussian"]),
            )
        )
    if "python" in state:
        version, internal, gauss_next = state["python"]
        random.setstate((int(version), tuple(int(x) for x in internal), gauss_next))
