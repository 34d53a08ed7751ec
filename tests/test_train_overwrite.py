"""`optimlab train --overwrite` and `--resume` after a run was killed (SIGKILL), and
checkpoints that belong to another run.

A killed process cleans nothing up: its staging folder (``--overwrite``) or its checkpoints (in
place) stay. The runs here are killed for real, in a child process that sends itself SIGKILL
right after a chosen optimizer step.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner

from optimlab.cli import main

#: run the optimlab CLI in a child process that SIGKILLs itself after optimizer step N
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import optimlab.train.loop as loop
    N = int(sys.argv[1])
    step = loop._Trainer.step
    def killing_step(self, *args):
        done = step(self, *args)
        if self.run.step == N:
            os.kill(os.getpid(), signal.SIGKILL)
        return done
    loop._Trainer.step = killing_step
    from optimlab.cli import main
    main(sys.argv[2:])
    """
)


def run_file(tmp_path, name="run.toml", lr=0.01, steps=12):
    path = tmp_path / name
    path.write_text(
        f'seed = 3\n[data]\nname = "wine"\n[model]\nkind = "mlp"\nhidden = [8]\n'
        f'[optimizer]\nname = "adamw"\nlr = {lr}\n'
        f"[training]\nsteps = {steps}\nbatch_size = 16\ncheckpoint_every = 2\nkeep_last = 2\n"
    )
    return path


def train(*args):
    return CliRunner().invoke(main, ["train", *map(str, args)])


def killed_at(step, *args):
    """Run ``optimlab train ARGS`` in a child process killed (SIGKILL) after ``step``."""
    child = subprocess.run(
        [sys.executable, "-c", KILLER, str(step), "train", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,  # only catches a hang
    )
    assert child.returncode == -signal.SIGKILL, child.stderr


def stagings(out):
    return sorted(out.glob(".optimlab-staging-*"))


def checkpoints(folder):
    return sorted(p.name for p in (folder / "checkpoints").iterdir())


def final_parameters(folder):
    (newest,) = checkpoints(folder)[-1:]
    payload = torch.load(folder / "checkpoints" / newest, weights_only=True)
    return payload["model"], payload["step"]


def test_resume_continues_an_overwrite_run_that_was_killed(tmp_path):
    # The killed --overwrite run's staging folder holds its checkpoints: --resume continues
    # that run (not the previous one in place), ends as an uninterrupted run of it would, and
    # then replaces the previous run; no staging folder is left.
    out, reference = tmp_path / "run", tmp_path / "reference"
    assert train("--config", run_file(tmp_path), "--out", out).exit_code == 0
    new = run_file(tmp_path, "new.toml", lr=0.02)
    killed_at(7, "--config", new, "--out", out, "--overwrite")
    (staging,) = stagings(out)
    assert json.loads((staging / "run.json").read_text())["status"] == "running"
    assert checkpoints(staging) == ["ckpt-00000004.pt", "ckpt-00000006.pt"]

    resumed = train("--config", new, "--out", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "continuing the new run that --overwrite started" in resumed.output
    assert "Resumed from ckpt-00000006.pt" in (out / "report.html").read_text()
    assert stagings(out) == []
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "finished" and record["options"]["config"] == str(new)
    assert checkpoints(out) == ["ckpt-00000010.pt", "ckpt-00000012.pt"]  # the new run's only
    assert train("--config", new, "--out", reference).exit_code == 0
    model, step = final_parameters(out)
    expected, expected_step = final_parameters(reference)
    assert step == expected_step == 12
    assert all(torch.equal(model[k], expected[k]) for k in expected)


def test_a_later_overwrite_removes_the_staging_folder_of_a_killed_run(tmp_path):
    out = tmp_path / "run"
    assert train("--config", run_file(tmp_path), "--out", out).exit_code == 0
    killed_at(3, "--config", run_file(tmp_path, "b.toml", lr=0.02), "--out", out, "--overwrite")
    (orphan,) = stagings(out)
    (out / "mine.txt").write_text("the user's")
    third = train("--config", run_file(tmp_path, "c.toml", lr=0.03), "--out", out, "--overwrite")
    assert third.exit_code == 0, third.output
    assert f"removed {orphan}" in third.output
    assert stagings(out) == [] and (out / "mine.txt").read_text() == "the user's"
    assert json.loads((out / "run.json").read_text())["options"]["config"].endswith("c.toml")


def test_overwrite_replaces_every_checkpoint_of_a_run_killed_in_place(tmp_path):
    # A run killed in place never listed its files; its checkpoints are still the previous
    # run's and go, so that --resume later finds only the new run's. The user's files in the
    # checkpoints folder (even one named like a checkpoint) stay.
    out = tmp_path / "run"
    killed_at(10, "--config", run_file(tmp_path, steps=12), "--out", out)
    assert checkpoints(out) == ["ckpt-00000006.pt", "ckpt-00000008.pt"]  # (killed before 10's)
    (out / "checkpoints" / "notes.txt").write_text("mine")
    (out / "checkpoints" / "ckpt-00000099.pt").write_text("not a checkpoint of optimlab's")
    shorter = run_file(tmp_path, "short.toml", steps=4)
    published = train("--config", shorter, "--out", out, "--overwrite")
    assert published.exit_code == 0, published.output
    assert checkpoints(out) == [
        "ckpt-00000002.pt", "ckpt-00000004.pt", "ckpt-00000099.pt", "notes.txt"
    ]  # fmt: skip
    (out / "checkpoints" / "ckpt-00000099.pt").unlink()  # (a resume would warn about it)
    again = train("--config", shorter, "--out", out, "--resume")
    assert again.exit_code == 0, again.output
    assert "Resumed from ckpt-00000004.pt" in (out / "report.html").read_text()


def test_fit_resumes_only_checkpoints_of_its_own_run(tmp_path):
    from optimlab.data import MiniBatches
    from optimlab.train import CheckpointError, fit

    def go(run_id, steps, resume):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        X, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
        return fit(
            model, torch.optim.SGD(model.parameters(), lr=0.1), MiniBatches(X, y, batch_size=8),
            steps=steps, checkpoint_dir=tmp_path, checkpoint_every=2, keep_last=5,
            resume=resume, run_id=run_id, progress=False,
        )  # fmt: skip

    go("first", 4, resume=False)
    with pytest.warns(UserWarning, match="written by run first, and this is run second"):
        with pytest.raises(CheckpointError, match="none of the 2 checkpoints"):
            go("second", 6, resume=True)  # never continues another run's checkpoint
    assert go("first", 6, resume=True).resumed_from.name == "ckpt-00000004.pt"
