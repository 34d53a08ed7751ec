"""Building the fused path: ahead of time, one compiler at a time, nothing left behind.

What the C++ plan checks answer is tested in tests/test_fast_path.py and test_fused_spec.py
(every plan test runs with them and with the Python checks); here, how they and the kernels are
built: only by ``optimlab build`` (never in the background of a user's process), by a compiler
that dies with the process that started it, under a lock that lets one compiler run at a time,
into a cache that refuses files others could have written, with nothing left behind by a build
that was killed. Processes are waited for by events (a line in a file, a process gone), with
time-outs that only catch hangs.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from optimlab.fused import native, plancheck

HANG = 300.0  # seconds: only a hang takes this long

# A stand-in for a compiler: answers --version; otherwise logs "start <pid>", writes a file of
# its own in $TMPDIR (as gcc's cc*.s), starts a child (as gcc starts cc1) that logs its pid,
# waits for both, then writes the output file, removes its own and logs "end <pid>".
# $FAKE_CC_SLEEP: how long the child runs.
FAKE_COMPILER = textwrap.dedent(
    """\
    #!/bin/sh
    if [ "$1" = "--version" ]; then echo "fake 1.0"; exit 0; fi
    for a in "$@"; do if [ "$prev" = "-o" ]; then out="$a"; fi; prev="$a"; done
    echo "start $$" >> "$FAKE_CC_LOG"
    echo "assembly" > "${TMPDIR:-/tmp}/cc$$.s"
    sleep "${FAKE_CC_SLEEP:-0.3}" &
    echo "child $!" >> "$FAKE_CC_LOG"
    wait
    echo "built" > "$out"
    rm -f "${TMPDIR:-/tmp}/cc$$.s"
    echo "end $$" >> "$FAKE_CC_LOG"
    """
)


@pytest.fixture
def fake_compiler(tmp_path):
    path = tmp_path / "fakecc"
    path.write_text(FAKE_COMPILER)
    path.chmod(0o755)
    return path


@pytest.fixture
def fresh_plancheck(monkeypatch):
    """plancheck as in a new process (what it found is forgotten; restored afterwards)."""
    for name in ("_checker", "_unavailable"):
        monkeypatch.setattr(plancheck, name, None)
    monkeypatch.setattr(plancheck, "_looked", False)


def compile_in_subprocess(compiler, cache, log, name="optimlab_test.so", sleep="0.3"):
    code = (
        "import signal, sys; from pathlib import Path; from optimlab.fused import native\n"
        # Ctrl-C raises, as in a terminal (a suite started in the background by a
        # non-interactive shell inherits SIGINT ignored, and Python then keeps it so)
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        f"native.compile_library({str(compiler)!r}, [], 'int x;', Path({str(cache)!r}) / "
        f"{name!r})\n"
    )
    env = {**os.environ, "FAKE_CC_LOG": str(log), "FAKE_CC_SLEEP": sleep}
    env["OPTIMLAB_KERNEL_CACHE"] = str(cache)
    return subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)


def wait_for(condition, what):
    deadline = time.monotonic() + HANG
    while not condition():
        assert time.monotonic() < deadline, f"hung waiting for {what}"
        time.sleep(0.05)


def log_lines(log):
    return log.read_text().splitlines() if log.exists() else []


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except FileNotFoundError:
        return False


def test_a_killed_build_leaves_no_compiler_and_no_file(tmp_path, fake_compiler):
    cache, log = tmp_path / "cache", tmp_path / "log"
    cache.mkdir(mode=0o700)
    process = compile_in_subprocess(fake_compiler, cache, log, sleep="600")
    wait_for(lambda: any(line.startswith("child") for line in log_lines(log)), "the compiler")
    assert list(cache.glob(".build-*"))  # mid-build: the source is written
    process.kill()  # SIGKILL: no handler of the process runs
    process.wait()
    pids = [int(line.split()[1]) for line in log_lines(log)]
    assert len(pids) == 2  # the compiler and its child
    wait_for(lambda: not any(map(alive, pids)), "the compiler and its child to die")
    # The next process to open the cache removes what the killed build left.
    subprocess.run(
        [sys.executable, "-c", "from optimlab.fused import native; native.cache_dir()"],
        env={**os.environ, "OPTIMLAB_KERNEL_CACHE": str(cache)},
        check=True,
    )
    assert sorted(p.name for p in cache.iterdir()) == [".build.lock"]


def test_a_build_stopped_by_ctrl_c_leaves_no_compiler_and_no_file(tmp_path, fake_compiler):
    """Ctrl-C mid-build: the compiler is killed (it cannot remove its own temporary file, as
    gcc's cc*.s, which it was given in the build's own folder) and the build removes all."""
    cache, log = tmp_path / "cache", tmp_path / "log"
    cache.mkdir(mode=0o700)
    process = compile_in_subprocess(fake_compiler, cache, log, sleep="600")
    wait_for(lambda: any(line.startswith("child") for line in log_lines(log)), "the compiler")
    assert list(cache.glob(".build-*/cc*.s"))  # the compiler's own file, in the build's folder
    process.send_signal(signal.SIGINT)
    process.wait(timeout=HANG)
    pids = [int(line.split()[1]) for line in log_lines(log)]
    wait_for(lambda: not any(map(alive, pids)), "the compiler and its child to die")
    assert sorted(p.name for p in cache.iterdir()) == [".build.lock"]


def test_a_guard_stopped_while_it_starts_the_compiler_leaves_nothing_running(
    tmp_path, fake_compiler
):
    # SIGTERM (what the parent's death sends) at moments spread over the guard's start,
    # some inside its start of the compiler, before it knows the compiler's pid: whatever
    # was started dies (it once left such a compiler running, seen under load)
    log = tmp_path / "log"
    env = {**os.environ, "FAKE_CC_LOG": str(log), "FAKE_CC_SLEEP": "600"}
    command = [sys.executable, "-I", "-S", "-c", native._GUARD, str(os.getpid())]
    for k in range(40):
        guard = subprocess.Popen([*command, str(fake_compiler), "x"], env=env)
        time.sleep(k * 0.002)  # (where the signal lands; nothing asserted about time)
        guard.terminate()
        guard.wait(timeout=HANG)
    pids = [int(line.split()[1]) for line in log_lines(log)] if log.exists() else []
    wait_for(lambda: not any(map(alive, pids)), "every compiler started to die")


def test_one_compiler_at_a_time_and_the_same_library_is_built_once(tmp_path, fake_compiler):
    log = tmp_path / "log"
    caches = [tmp_path / "a", tmp_path / "a", tmp_path / "b"]  # two builds of one library
    for cache in caches:
        cache.mkdir(mode=0o700, exist_ok=True)
    processes = [compile_in_subprocess(fake_compiler, cache, log) for cache in caches]
    for process in processes:
        _, stderr = process.communicate(timeout=HANG)
        assert process.returncode == 0, stderr
    events = [line.split()[0] for line in log_lines(log) if not line.startswith("child")]
    assert events == ["start", "end", "start", "end"]  # never two at once; "a" built once
    for cache in set(caches):
        assert (cache / "optimlab_test.so").read_text() == "built\n"
        assert not list(cache.glob(".build-*"))
        mode = (cache / "optimlab_test.so").stat().st_mode
        assert not mode & 0o022


def test_a_compiler_that_fails_leaves_nothing_and_says_why(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    failing = tmp_path / "failcc"
    failing.write_text("#!/bin/sh\necho 'fatal: no such thing' >&2\nexit 1\n")
    failing.chmod(0o755)
    with pytest.raises(native.NativeUnavailable, match="no such thing"):
        native.compile_library(str(failing), [], "int x;", cache / "optimlab_x.so")
    assert sorted(p.name for p in cache.iterdir()) == [".build.lock"]


def test_the_cache_refuses_folders_and_files_others_can_write(tmp_path, monkeypatch, capfd):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("OPTIMLAB_KERNEL_CACHE", str(shared))
    monkeypatch.setattr(native, "_caches", {})
    monkeypatch.setattr(native, "_said", set())
    chosen = native.cache_dir()
    native._caches.clear()
    assert native.cache_dir() == chosen != shared
    err = capfd.readouterr().err
    assert err.count(f"not using the kernel cache {shared}: it is group- or world-writable") == 1
    library = chosen / "optimlab_writable.so"
    library.write_text("x")
    library.chmod(0o666)
    assert not native.trusted_file(library) and not native.trusted_file(library)
    err = capfd.readouterr().err
    assert err.count(f"not loading {library}: it is group- or world-writable") == 1
    library.chmod(0o755)
    assert native.trusted_file(library)
    library.unlink()


def test_a_users_process_never_compiles_the_plan_checks(tmp_path, monkeypatch, fresh_plancheck):
    monkeypatch.setenv("OPTIMLAB_KERNEL_CACHE", str(tmp_path))

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled in a user's process")

    monkeypatch.setattr(native, "compile_library", no_compiling)
    assert plancheck.checker() is None
    assert "`optimlab build` builds them" in plancheck.unavailable_reason()


def test_without_a_cxx_compiler_the_checks_say_why(monkeypatch, fresh_plancheck):
    monkeypatch.setattr(plancheck.shutil, "which", lambda name: None)
    assert plancheck.build() is None
    assert "no C++ compiler found" in plancheck.unavailable_reason()


def test_turned_off_with_the_fused_path(monkeypatch, tmp_path, fresh_plancheck):
    monkeypatch.setenv("OPTIMLAB_FUSED", "0")
    assert plancheck.build() is None
    assert "OPTIMLAB_FUSED=0" in plancheck.unavailable_reason()
    cache = tmp_path / "cache"
    done = subprocess.run(
        [sys.executable, "-m", "optimlab", "build"],
        env={**os.environ, "OPTIMLAB_FUSED": "0", "OPTIMLAB_KERNEL_CACHE": str(cache)},
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert done.returncode == 0 and "nothing to build" in done.stderr
    assert not cache.exists()  # builds nothing, creates nothing


@pytest.mark.skipif(
    not native.available(), reason=f"fused path unavailable: {native.unavailable_reason()}"
)
def test_optimlab_build_builds_what_the_default_optimizers_need(tmp_path):
    # A fresh cache: `optimlab build` compiles; then a process stepping the default optimizers
    # finds every kernel built and compiles nothing (it would say so on stderr).
    cache = tmp_path / "cache"
    env = {**os.environ, "OPTIMLAB_KERNEL_CACHE": str(cache)}
    built = subprocess.run(
        [sys.executable, "-m", "optimlab", "build"],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert built.returncode == 0, built.stderr
    assert "plan checks in C++ ready" in built.stderr
    code = textwrap.dedent(
        """
        import torch, optimlab
        from optimlab.fused import plancheck
        assert plancheck.checker() is not None, plancheck.unavailable_reason()
        for name, cls in optimlab.OPTIMIZERS.items():
            if cls._unfusable_reason is None:
                for dtype in (torch.float32, torch.float64):
                    p = torch.zeros(3, dtype=dtype, requires_grad=True)
                    opt = cls([p])
                    for _ in range(3):
                        p.grad = torch.ones_like(p)
                        opt.step()
        """
    )
    used = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=HANG
    )
    assert used.returncode == 0, used.stderr
    assert "compiling" not in used.stderr
    assert not list(cache.glob(".build-*"))
    for path in cache.iterdir():
        assert path.stat().st_uid == os.getuid() and not path.stat().st_mode & 0o022
        assert stat.S_ISREG(path.stat().st_mode)


def test_built_checks_load_and_answer(fresh_plancheck):
    checker = plancheck.build()
    assert checker is not None, plancheck.unavailable_reason()
    assert checker.codes[torch.float32] != checker.codes[torch.float64]


def test_killed_guard_parent_is_noticed_even_before_the_compiler_starts(tmp_path):
    # The guard checks its parent after asking for the death signal: a parent already gone
    # (here: a pid that is not its parent) stops it before it starts anything (it kills its
    # process group, itself included).
    log = tmp_path / "log"
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", native._GUARD, "1", "sh", "-c", f"echo ran > {log}"],
        timeout=HANG,
    )
    assert done.returncode == -signal.SIGKILL and not log.exists()
