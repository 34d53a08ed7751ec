"""`optimlab train --resume` continues a run only with the run file it started with.

Every key that decides what a step computes (seed and split, data, model, optimizer,
schedule, accumulation, clipping...) is compared with the run file stored in ``run.json``;
a difference is a usage error (exit 2) naming each key with its old and new value, and the
run folder is left exactly as it was. When the run stops (epochs, steps) and how it is kept
(keep_last, checkpoint_every, read_every) may change.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from optimlab.cli import main

BASE = """seed = 3
[data]
name = "{data}"
{data_keys}
[model]
kind = "mlp"
hidden = [8]
[optimizer]
name = "adamw"
lr = 0.01
[training]
steps = 6
batch_size = 16
checkpoint_every = 2
"""


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def base(data="wine", data_keys=""):
    return BASE.format(data=data, data_keys=data_keys)


def train(*args):
    return CliRunner().invoke(main, ["train", *map(str, args)])


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "old, new, said",
    [
        ("seed = 3", "seed = 4", "seed: 3 then, 4 now"),
        ("steps = 6", "steps = 6\naccumulation = 2", "[training] accumulation: 1 then, 2 now"),
        ("steps = 6", "steps = 6\nclip_norm = 0.5", "[training] clip_norm: (not set) then, 0.5"),
        ("batch_size = 16", "batch_size = 8", "[training] batch_size: 16 then, 8 now"),
        ("hidden = [8]", "hidden = [4]", "[model] hidden: [8] then, [4] now"),
        ('name = "wine"', 'name = "iris"', "[data] name: 'wine' then, 'iris' now"),
        ("lr = 0.01", "lr = 0.02", "[optimizer] lr: 0.01 then, 0.02 now"),
        (
            "[training]",
            '[schedule]\nspec = "cosine_decay:lr=0.01,decay_steps=30"\n[training]',
            "[schedule] spec: (not set) then, 'cosine_decay:lr=0.01,decay_steps=30' now",
        ),
    ],
)
def test_resume_refuses_a_run_file_that_changed(tmp_path, old, new, said):
    path, out = write(tmp_path, base()), tmp_path / "run"
    assert train("--config", path, "--out", out).exit_code == 0
    before = snapshot(out)
    path.write_text(path.read_text().replace(old, new, 1))
    result = train("--config", path, "--out", out, "--resume")
    assert result.exit_code == 2
    message = result.output
    assert message.strip().count("\n") == 0
    assert f"--resume: {path} differs from the run file the run in {out} started with" in message
    assert said in message
    assert "--overwrite" in message and "another --out" in message
    assert "resume_overrides" not in message  # (a Python argument: the CLI has none)
    assert snapshot(out) == before  # refused before anything was touched


def test_resume_refuses_a_data_file_whose_contents_changed(tmp_path):
    data = tmp_path / "data.csv"
    rows = [f"{i % 7}.0,{(i * 3) % 5}.0,{i % 2}" for i in range(60)]
    data.write_text("a,b,label\n" + "\n".join(rows) + "\n")
    path, out = write(tmp_path, base("csv", f'path = "{data}"')), tmp_path / "run"
    assert train("--config", path, "--out", out).exit_code == 0
    data.write_text("a,b,label\n" + "\n".join(reversed(rows)) + "\n")
    result = train("--config", path, "--out", out, "--resume")
    assert result.exit_code == 2
    assert "[data files (sha256)] path:" in result.output


def test_resume_accepts_what_does_not_change_the_run(tmp_path):
    # more steps, other checkpoint bookkeeping, or a default written out: the same run
    path, out = write(tmp_path, base()), tmp_path / "run"
    assert train("--config", path, "--out", out).exit_code == 0
    edited = path.read_text().replace(
        "steps = 6\n", "steps = 10\naccumulation = 1\nkeep_last = 5\nread_every = 1\n"
    )
    path.write_text(edited.replace("checkpoint_every = 2", "checkpoint_every = 5"))
    result = train("--config", path, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["steps"] == 10
    assert "Resumed from ckpt-00000006.pt" in (out / "report.html").read_text()


def test_a_damaged_checkpoint_is_skipped_with_a_one_line_warning(tmp_path):
    """The newest checkpoint is cut short (a crash of the disk): --resume goes back to the one
    before it and says so on one line of stderr (not Python's two, the second the source
    line that warned)."""
    path, out = write(tmp_path, base()), tmp_path / "run"
    assert train("--config", path, "--out", out).exit_code == 0
    newest = out / "checkpoints" / "ckpt-00000006.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    result = train("--config", path, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if "skipping" in line]
    assert len(warned) == 1 and warned[0].startswith("Warning: skipping checkpoint ")
    assert str(newest) in warned[0] and warned[0].endswith("trying an older one")
    assert "warnings.warn(" not in result.stderr
    assert "Resumed from ckpt-00000004.pt" in (out / "report.html").read_text()


# --- values checked before anything is written (exit 2, the table and key named) -----------


@pytest.mark.parametrize(
    "old, new, said",
    [
        ("steps = 6", 'steps = 6\nprecision = "fp64"', "[training] precision = 'fp64'; expected"),
        ("steps = 6", 'steps = 6\nprecision = "fp16"', "fp16 needs CUDA"),
        ("steps = 6", 'steps = 6\nnonfinite_loss = "ignore"', "[training] nonfinite_loss = "),
        ("steps = 6", "steps = 6\nclip_norm = -1.0", "[training] clip_norm = -1.0 should be"),
        ("steps = 6", "steps = 6\nclip_value = 0", "[training] clip_value = 0 should be"),
        ("steps = 6", "steps = 6\nread_every = 0", "[training] read_every = 0 should be >= 1"),
        (
            "steps = 6",
            'steps = 6\nnonfinite_loss = "skip"\nread_every = 5',
            "[training] read_every = 5 with nonfinite_loss = 'skip' should be 1",
        ),
        (
            "steps = 6",
            'steps = 6\nearly_stopping_metric = "val_f1"',
            "[training] early_stopping_metric = 'val_f1'; expected one of 'val_loss', "
            "'val_accuracy'",
        ),
        (
            "steps = 6",
            "steps = 6\nearly_stopping_patience = 0",
            "[training] early_stopping_patience = 0 should be >= 1",
        ),
        (
            'name = "wine"',
            'name = "wine"\nvalidation = 0.0',  # (no validation set: nothing to follow)
            "[data] validation = 0",
        ),
        ("hidden = [8]", "hidden = [8]\ndropout = 1.5", "[model] dropout = 1.5 should be in"),
        ("seed = 3", "seed = -1", "seed = -1 should be in [0, 2**32)"),
        (
            'name = "wine"',
            'name = "synthetic_classification"\nfeatures = 0',
            "[data] features = 0 should be >= 1",
        ),
        (
            'name = "wine"',
            'name = "synthetic_classification"\nclasses = 1',
            "[data] classes = 1 should be >= 2",
        ),
        (
            'name = "wine"',
            'name = "synthetic_regression"\nsamples = 100',  # regression: no accuracy
            "early_stopping_metric = 'val_accuracy', but synthetic_regression is a regression",
        ),
        ('kind = "mlp"', 'kind = "cnn"', "[model] kind = 'cnn' needs square images"),
    ],
)
def test_bad_values_are_refused_before_anything_is_written(tmp_path, old, new, said):
    text = base().replace(old, new, 1)
    if "validation" in new or "regression" in new:
        text = text.replace("steps = 6", 'steps = 6\nearly_stopping_metric = "val_accuracy"')
    path, out = write(tmp_path, text), tmp_path / "run"
    result = train("--config", path, "--out", out)
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and "Traceback" not in result.output
    assert f"Error: {path}: " in result.output and said in result.output
    assert not out.exists()  # so the corrected command runs as it is


def test_early_stopping_on_accuracy_stops_when_accuracy_stops_rising(tmp_path):
    # val_accuracy is better when higher: early stopping follows it upwards (it once took it
    # as a loss, and stopped a run whose accuracy kept improving)
    from optimlab.train.config import load_config, run

    text = base().replace(
        "steps = 6", 'steps = 60\neval_every = 2\nearly_stopping_metric = "val_accuracy"\n'
        "early_stopping_patience = 3"
    )  # fmt: skip
    result, _ = run(load_config(write(tmp_path, text)), tmp_path / "run", progress=False)
    accuracies = [r["val_accuracy"] for r in result.history if "val_accuracy" in r]
    best, bad, stop_at = None, 0, None  # what "3 evaluations without a higher accuracy" says
    for i, accuracy in enumerate(accuracies):
        best, bad = (accuracy, 0) if best is None or accuracy > best else (best, bad + 1)
        if bad >= 3:
            stop_at = i + 1
            break
    assert len(accuracies) == (stop_at or len(accuracies))
    assert result.stop_reason.startswith("early stopping") == (stop_at is not None)
