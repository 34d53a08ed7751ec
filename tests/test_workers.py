"""Worker processes (``optimlab.workers``): a Ctrl-C stops the command and its workers at once,
with one line, not a traceback per worker, and leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from optimlab import workers

SCRIPT = textwrap.dedent(
    """
    import signal, sys, time
    from optimlab import workers

    # a terminal's foreground job: Ctrl-C raises KeyboardInterrupt (a job a non-interactive
    # shell started in the background, as a test runner may be, inherits SIGINT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def wait(x):  # a run that would go on for a long time
        time.sleep(600)
        return x

    if __name__ == "__main__":
        try:
            with workers.worker_pool(2) as pool:
                futures = workers.submit_all(pool, wait, [1, 2, 3])
                print("submitted", flush=True)
                [f.result() for f in workers.completed(futures)]
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(130)
    """
)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes in /proc")
def test_ctrl_c_reaches_the_command_alone_and_stops_the_workers(tmp_path):
    script = tmp_path / "runs.py"
    script.write_text(SCRIPT)
    # its own process group, as a terminal's foreground job: SIGINT goes to every process
    job = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert job.stdout.readline() == "submitted\n"  # the workers are starting or running
        os.killpg(job.pid, signal.SIGINT)
        try:
            out, err = job.communicate(timeout=120)  # (only catches a hang)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 120 s after Ctrl-C: {_running_in_group(job.pid)}")
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 130, err
    assert out == "interrupted\n"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    # nothing of the group is left running (multiprocessing's resource tracker, which is not
    # a worker, ends when it reads that the command is gone: waited for, as an event)
    deadline = time.monotonic() + 120  # (only catches a hang)
    while _running_in_group(job.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running_in_group(job.pid) == []


def _wait_for(condition, what: str, limit: float = 120):
    deadline = time.monotonic() + limit  # (only catches a hang)
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting after {limit} s for {what}")
        time.sleep(0.05)


def _workers_in_group(group: int) -> list[str]:
    return [c for c in _running_in_group(group) if "spawn_main" in c]  # (not the tracker)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes in /proc")
def test_workers_end_when_the_command_is_killed_outright(tmp_path):
    """SIGKILL (or SIGTERM where nothing handles it) gives the command no chance to stop its
    workers; they see their parent gone and end, instead of waiting for work forever."""
    script = tmp_path / "runs.py"
    script.write_text(SCRIPT)
    job = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, start_new_session=True)  # fmt: skip
    try:
        assert job.stdout.readline() == "submitted\n"
        _wait_for(lambda: len(_workers_in_group(job.pid)) == 2, "the two workers")
        os.kill(job.pid, signal.SIGKILL)  # the command alone
        job.wait(timeout=120)
        _wait_for(lambda: _running_in_group(job.pid) == [], "the orphaned workers to end")
    finally:
        if _running_in_group(job.pid):
            os.killpg(job.pid, signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes in /proc")
def test_sigterm_stops_a_command_and_its_workers_and_marks_the_run_interrupted(tmp_path):
    """``kill PID`` (SIGTERM: job schedulers, CI cancels) on `optimlab compare -j 2`: one line,
    exit 143, no process left, run.json "interrupted" (it died at once, workers orphaned)."""
    import json

    out = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "optimlab",
        "compare",
        "--optimizers",
        "sgd,adam",
        "--problems",
        "none",
        "--seeds",
        "2",
        "--epochs",
        "30",
        "-j",
        "2",
        "--out",
        str(out),
    ]
    job = subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        _wait_for(lambda: len(_workers_in_group(job.pid)) == 2, "compare's two workers", 600)
        os.kill(job.pid, signal.SIGTERM)  # the command alone, as `kill PID` does
        err = job.communicate(timeout=120)[1]
        _wait_for(lambda: _running_in_group(job.pid) == [], "every process of the command")
    finally:
        if _running_in_group(job.pid):
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 143, err
    assert err.strip().splitlines()[-1] == "Error: terminated (SIGTERM)", err
    assert "Traceback" not in err
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"


def _running_in_group(group: int) -> list[str]:
    """The command lines of the live (not zombie) processes of process group ``group``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # (gone meanwhile)
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            found.append(command)
    return found


def test_results_come_back_in_order_and_a_failure_raises():
    with workers.worker_pool(2) as pool:
        assert [f.result() for f in workers.submit_all(pool, abs, [-3, 1, -2])] == [3, 1, 2]
    with pytest.raises(TypeError), workers.worker_pool(2) as pool:
        [f.result() for f in workers.submit_all(pool, abs, ["not a number"])]
