"""Worker processes for runs side by side, which a Ctrl-C stops at once and cleanly.

A terminal sends SIGINT to the whole foreground process group: to the command and to each
of its workers. Left alone, every worker raises KeyboardInterrupt in whatever it was doing (a
traceback each, some while still importing torch), and the command, after its own
KeyboardInterrupt, waits for workers that wait for work. Here the workers never see it: they
start with SIGINT blocked (a blocked signal stays blocked across the ``exec`` of a spawned
worker, and Python leaves it so), the command alone raises KeyboardInterrupt, and leaving the
pool with any exception terminates the workers instead of waiting for their runs.

A command killed outright (SIGKILL, or SIGTERM where nothing handles it) cannot stop its
workers; orphaned, they would wait for work forever. So each worker watches the process that
started it and ends when it is gone.

>>> with worker_pool(2) as pool:
...     futures = submit_all(pool, abs, [-1, -2])
...     sorted(f.result() for f in completed(futures))
[1, 2]
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any


def spawn_pool(processes: int, initializer: Callable[[], None] | None = None) -> Any:
    """A pool of ``processes`` spawned workers (not forked: forking a process that has used
    torch's thread pool can hang). Submit with :func:`submit_all`, close with :func:`close`."""
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(
        processes, context, initializer=functools.partial(_start, os.getpid(), initializer)
    )


def _start(parent: int, initializer: Callable[[], None] | None) -> None:
    """A worker's first act: watch ``parent``, the process that started it (see the module's
    docstring; it may be gone already), then ``initializer``."""

    def watch() -> None:  # (a daemon thread: it ends with the worker)
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)  # the parent is gone: nothing can use this worker's results

    threading.Thread(target=watch, name="optimlab-parent-watch", daemon=True).start()
    if initializer is not None:
        initializer()


@contextlib.contextmanager
def worker_pool(processes: int, initializer: Callable[[], None] | None = None) -> Iterator[Any]:
    """:func:`spawn_pool` for the ``with`` block, closed by :func:`close` when it ends."""
    pool = spawn_pool(processes, initializer)
    try:
        yield pool
    except BaseException:
        close(pool, stop=True)
        raise
    close(pool, stop=False)


def submit_all(pool: Any, function: Callable[[Any], Any], items: Sequence[Any]) -> list[Future]:
    """``pool.submit(function, item)`` for each item, with SIGINT blocked meanwhile: the
    workers the pool starts for them inherit the block, and a Ctrl-C sent now reaches this
    process as soon as they are submitted (pending, not lost)."""
    with _sigint_blocked():
        return [pool.submit(function, item) for item in items]


def completed(futures: Sequence[Future]) -> Iterator[Future]:
    """The ``futures`` as they complete (a failure's exception is the caller's to raise).

    The wait wakes twice a second: a Ctrl-C that the kernel handed to another thread of this
    process (torch's, say) than the one waiting is then raised within half a second, where a
    plain wait would sleep until a run finished."""
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
        yield from done


def close(pool: Any, stop: bool) -> None:
    """Shut ``pool`` down: its workers finish their runs (``stop`` False), or are terminated
    first (``stop``: the command was interrupted or failed; nothing waits for their runs)."""
    if stop:
        # (ProcessPoolExecutor has no public way to do this before Python 3.14)
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    if not hasattr(signal, "pthread_sigmask"):  # (Windows: no signal masks)
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
