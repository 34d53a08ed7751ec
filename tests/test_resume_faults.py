"""A run killed at any point resumes to bitwise the same result (issue 15).

Not random kills: ``fault_worker.py`` is killed (SIGKILL) at every occurrence of every event
of a small training (each step, each epoch's end, just after each evaluation, just after each
checkpoint, halfway through writing one, between writing and renaming it), then resumed until
it finishes; its parameters, optimizer state, lr, history and result must equal those of the
run that was never interrupted. Two set-ups cover the state that decides what happens next:
ReduceOnPlateau with early stopping and evaluation every epoch, and a warm-up-then-cosine
schedule with evaluation every 3 steps; both accumulate 2 micro-batches a step.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("fault_worker.py")
SETUPS = ("plateau", "schedule")
EVENTS = ("step", "epoch", "eval", "saved", "write", "rename")


class Worker:
    """``fault_worker.py --serve``: one process that forks each training run."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, setup, folder, out, *, resume=False, kill=None) -> int:
        """The exit status of one run: 0 when it finished, -9 when it was killed."""
        request = dict(
            setup=setup, checkpoint_dir=str(folder), out=str(out), resume=resume, kill=kill
        )
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.fixture
def worker():
    started = Worker()
    yield started
    started.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    results, worker = {}, Worker()
    for setup in SETUPS:
        folder = tmp_path_factory.mktemp(f"reference-{setup}")
        assert worker.run(setup, folder / "checkpoints", folder / "result.pt") == 0
        results[setup] = torch.load(folder / "result.pt", weights_only=False)
    worker.close()
    return results


def assert_same(result: dict, expected: dict, where: str) -> None:
    assert result["result"] == expected["result"], where
    assert result["history"] == expected["history"], where
    assert result["lr"] == expected["lr"], where
    for got, want in zip(result["params"], expected["params"], strict=True):
        assert torch.equal(got, want), where
    got, want = result["optimizer"], expected["optimizer"]
    assert got["param_groups"] == want["param_groups"], where
    for key in want["state"]:
        for name, value in want["state"][key].items():
            other = got["state"][key][name]
            same = torch.equal(other, value) if torch.is_tensor(value) else other == value
            assert same, f"{where}: optimizer state {key}/{name}"


@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize("setup", SETUPS)
def test_a_kill_at_every_occurrence_resumes_exactly(setup, event, reference, worker, tmp_path):
    expected = reference[setup]
    occurrences = expected["events"][event]
    assert occurrences > 0, f"the {setup} run never reaches a {event} event"
    for n in range(1, occurrences + 1):
        where = f"{setup}, killed at {event} {n} of {occurrences}"
        folder, out = tmp_path / f"{event}-{n}", tmp_path / f"{event}-{n}.pt"
        assert worker.run(setup, folder, out, kill=f"{event}:{n}") == -9, where
        assert worker.run(setup, folder, out, resume=True) == 0, where
        assert_same(torch.load(out, weights_only=False), expected, where)


@pytest.mark.parametrize("signal_name, code", [("term", 143), ("int", 130)])
def test_a_preemption_signal_saves_and_the_resumed_run_is_exact(
    signal_name, code, reference, worker, tmp_path
):
    expected = reference["schedule"]
    for n in (1, 5, 8, 13):  # mid-epoch, an epoch's last step, the step before a save, late
        where = f"{signal_name} at step {n}"
        folder, out = tmp_path / f"{n}", tmp_path / f"{n}.pt"
        assert worker.run("schedule", folder, out, kill=f"{signal_name}:{n}") == code, where
        saved = sorted(folder.glob("ckpt-*.pt"))
        assert saved and saved[-1].name == f"ckpt-{n:08d}.pt", where  # written at the signal
        assert worker.run("schedule", folder, out, resume=True) == 0, where
        assert_same(torch.load(out, weights_only=False), expected, where)


def test_a_damaged_newest_checkpoint_is_skipped_and_the_run_is_exact(reference, worker, tmp_path):
    expected = reference["plateau"]
    folder, out = tmp_path / "run", tmp_path / "run.pt"
    assert worker.run("plateau", folder, out, kill="saved:4") == -9
    newest = sorted(folder.glob("ckpt-*.pt"))[-1]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit, in the middle of the tensors
    newest.write_bytes(bytes(data))
    assert worker.run("plateau", folder, out, resume=True) == 0
    assert_same(torch.load(out, weights_only=False), expected, "flipped byte in the newest")


@pytest.mark.parametrize("fault", ["enospc", "erofs"])
def test_a_full_or_read_only_disk_stops_the_run_with_nothing_lost_and_the_resume_is_exact(
    fault, reference, worker, tmp_path
):
    expected = reference["plateau"]
    for n in (1, 3):
        folder, out = tmp_path / f"{n}", tmp_path / f"{n}.pt"
        assert worker.run("plateau", folder, out, kill=f"{fault}:{n}") == 1  # an error, said
        assert not list(folder.glob("*.tmp*")), "a temporary file was left behind"
        assert len(list(folder.glob("ckpt-*.pt"))) == n - 1  # the good ones are all there
        assert worker.run("plateau", folder, out, resume=True) == 0
        assert_same(torch.load(out, weights_only=False), expected, f"{fault} at save {n}")


def test_a_second_signal_stops_at_once(reference, worker, tmp_path):
    folder, out = tmp_path / "run", tmp_path / "run.pt"
    assert worker.run("schedule", folder, out, kill="term2:2") == -15  # SIGTERM's own end
    assert not list(folder.glob("ckpt-*.pt"))  # nothing was saved after the second signal
    assert worker.run("schedule", folder, out, resume=True) == 0
    assert_same(torch.load(out, weights_only=False), reference["schedule"], "second signal")


def test_a_newest_checkpoint_of_another_structure_is_skipped_and_the_run_is_exact(
    reference, worker, tmp_path
):
    from optimlab.train import load_checkpoint, save_checkpoint

    expected = reference["schedule"]
    folder, out = tmp_path / "run", tmp_path / "run.pt"
    assert worker.run("schedule", folder, out, kill="saved:3") == -9
    newest = sorted(folder.glob("ckpt-*.pt"))[-1]
    payload = load_checkpoint(newest)
    del payload["plan"]  # loads, digest and all, but lacks what a run needs
    save_checkpoint(newest, payload)
    assert worker.run("schedule", folder, out, resume=True) == 0
    assert_same(torch.load(out, weights_only=False), expected, "newest without its plan")
