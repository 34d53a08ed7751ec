"""Files written whole or not at all: what a run writes (reports, figures, tables) is either
the complete file or, after a failure (a full disk, a signal), the file as it was before."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["whole_file", "write_text"]


@contextlib.contextmanager
def whole_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Write ``path`` whole or not at all: the block writes the path this yields (a hidden file
    beside ``path``, with its suffix, so that writers that go by the suffix still do), which
    becomes ``path`` when the block ends and is removed if it fails. So a full disk leaves no
    truncated report or figure, and the OSError it raises names ``path`` (the operating
    system's names no file when a write, not an open, fails).

        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
        >>> with whole_file(target) as partial:
        ...     _ = partial.write_text("all of it")
        >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
        ('all of it', ['notes.txt'])
    """
    path = Path(path)
    partial = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        yield partial
        os.replace(partial, path)
    except BaseException as error:
        partial.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename in (None, str(partial), partial):
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8, lines as given) to ``path``, whole or not at all (see
    :func:`whole_file`)."""
    with whole_file(path) as partial:
        with open(partial, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
    return Path(path)
