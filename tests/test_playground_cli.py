"""``optimlab playground`` as a user runs it: the real console script in a subprocess, talked to
over loopback, stopped with Ctrl-C (issue 19)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from optimlab.lab.playground.server import missing_assets  # noqa: E402

SCRIPT = Path(sys.executable).with_name("optimlab")
HANG = 120  # seconds: only a hang takes this long


def _start(*args: str) -> tuple[subprocess.Popen, list[str]]:
    """The playground in its own process group, and the lines of stderr as they come."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    process = subprocess.Popen(
        [str(SCRIPT), "playground", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,
    )
    return process, []


def _address(process: subprocess.Popen, lines: list[str]) -> str:
    """Read stderr until the line with the address (or the end, on failure)."""
    found: list[str] = []

    def read() -> None:
        for line in process.stderr:
            lines.append(line)
            if match := re.search(r"http://\S+/", line):
                found.append(match.group(0))
                return

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(HANG)
    assert found, "".join(lines)
    return found[0]


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=HANG) as response:
        return response.status, response.read()


def test_the_page_s_scripts_are_built():
    assert not missing_assets(), "the page's scripts are not built: run `make build`"


def test_it_serves_the_page_on_loopback_and_stops_on_ctrl_c():
    process, lines = _start("--no-browser", "--port", "0")
    try:
        url = _address(process, lines)
        assert url.startswith("http://127.0.0.1:")
        assert "Ctrl-C stops it" in lines[-1] and len(lines) == 1  # one line, no banner
        status, page = _get(url)
        assert status == 200 and b"optimlab playground" in page
        status, catalog = _get(url + "api/catalog")
        assert status == 200 and json.loads(catalog)["optimizers"]
        for vendored in (
            "static/vendor/plotly-cartesian.min.js",
            "static/vendor/katex/katex.min.js",
        ):
            assert _get(url + vendored)[0] == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(HANG) == 130
        rest = process.stderr.read()
        assert "interrupted" in rest and "Traceback" not in rest
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_taken_port_is_a_usage_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [str(SCRIPT), "playground", "--no-browser", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=HANG,
        )
    assert done.returncode == 2
    assert f"{port} is in use" in done.stderr and "--port" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_bad_port_is_a_usage_error():
    done = subprocess.run(
        [str(SCRIPT), "playground", "--port", "70000"], capture_output=True, text=True, timeout=HANG
    )
    assert done.returncode == 2 and "--port" in done.stderr and "70000" in done.stderr


def test_another_interface_only_when_asked_and_with_a_warning():
    process, lines = _start("--no-browser", "--port", "0", "--host", "0.0.0.0")
    try:
        url = _address(process, lines)
        assert any(line.startswith("Warning: serving on 0.0.0.0") for line in lines)
        port = url.rsplit(":", 1)[1].rstrip("/")
        assert _get(f"http://127.0.0.1:{port}/")[0] == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(HANG) == 130
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_unbuilt_scripts_are_named_with_the_command_that_builds_them(monkeypatch):
    from click.testing import CliRunner

    from optimlab.cli import main
    from optimlab.lab.playground import server

    monkeypatch.setattr(server, "missing_assets", lambda: ["vendor/plotly-cartesian.min.js"])
    result = CliRunner().invoke(main, ["playground", "--no-browser"])
    assert result.exit_code == 1
    assert "plotly-cartesian.min.js" in result.output and "make build" in result.output
