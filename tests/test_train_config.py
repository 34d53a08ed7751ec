"""Run files for `optimlab train --config`: data sets, models, the user's files, bad input."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
import torch

from optimlab.train.config import ConfigError, load_config, read_idx, run


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def config_text(
    data,
    model='kind = "mlp"\nhidden = [16]',
    training="steps = 6\nbatch_size = 32",
    optimizer='name = "adam"\nlr = 0.01',
):
    return f"seed = 1\n[data]\n{data}\n[model]\n{model}\n[optimizer]\n{optimizer}\n[training]\n{training}\n"


@pytest.mark.parametrize(
    "data, model",
    [
        ('name = "digits"', 'kind = "logistic"'),
        ('name = "digits"', 'kind = "cnn"'),
        ('name = "breast_cancer"', 'kind = "mlp"\nhidden = [8, 8]\ndropout = 0.1'),
        ('name = "iris"', 'kind = "mlp"'),
        ('name = "wine"', 'kind = "logistic"'),
        (
            'name = "synthetic_classification"\nsamples = 300\nfeatures = 7\nclasses = 3',
            'kind = "mlp"',
        ),
        ('name = "synthetic_regression"\nsamples = 200\nfeatures = 5', 'kind = "mlp"'),
    ],
)
def test_built_in_data_sets_and_models_train(tmp_path, data, model):
    config = load_config(write(tmp_path, config_text(data, model)))
    result, metrics = run(config, tmp_path / "out", progress=False)
    assert result.steps == 6
    assert (tmp_path / "out" / "history.csv").stat().st_size > 100
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["steps"] == 6 and "test_loss" in saved
    assert ("test_accuracy" in saved) == ("regression" not in data)


def test_users_csv_npz_and_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 16)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    csv_path = tmp_path / "data.csv"
    lines = [",".join([f"f{i}" for i in range(16)] + ["label"])]
    lines += [",".join([f"{v:.6f}" for v in row] + [str(t)]) for row, t in zip(X, y)]
    csv_path.write_text("\n".join(lines) + "\n")
    np.savez(tmp_path / "data.npz", X=X, y=y)
    images = (np.abs(X) * 50).clip(0, 255).astype(np.uint8).reshape(120, 4, 4)
    header = struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">3I", 120, 4, 4)
    (tmp_path / "images.idx").write_bytes(header + images.tobytes())
    label_header = struct.pack(">BBBB", 0, 0, 0x08, 1) + struct.pack(">I", 120)
    (tmp_path / "labels.idx.gz").write_bytes(
        gzip.compress(label_header + y.astype(np.uint8).tobytes())
    )
    assert np.array_equal(read_idx(tmp_path / "images.idx"), images)
    for data in (
        f'name = "csv"\npath = "{csv_path}"\ntarget = "label"',
        f'name = "npz"\npath = "{tmp_path / "data.npz"}"',
        f'name = "idx"\nimages = "{tmp_path / "images.idx"}"\nlabels = "{tmp_path / "labels.idx.gz"}"',
    ):
        out = tmp_path / data.split('"')[1]
        result, metrics = run(load_config(write(tmp_path, config_text(data))), out, progress=False)
        assert result.steps == 6 and 0 <= metrics["test_accuracy"] <= 1


def test_resume_from_the_run_folder_is_exact(tmp_path):
    text = config_text(
        'name = "iris"', training="steps = 12\nbatch_size = 16\ncheckpoint_every = 4"
    )
    config = load_config(write(tmp_path, text))
    run(config, tmp_path / "whole", progress=False)
    short = load_config(write(tmp_path, text.replace("steps = 12", "steps = 5"), "short.toml"))
    run(short, tmp_path / "resumed", progress=False)
    result, _ = run(config, tmp_path / "resumed", resume=True, progress=False)
    assert result.resumed_from.name == "ckpt-00000005.pt"
    whole = torch.load(tmp_path / "whole" / "checkpoints" / "ckpt-00000012.pt", weights_only=True)
    resumed = torch.load(
        tmp_path / "resumed" / "checkpoints" / "ckpt-00000012.pt", weights_only=True
    )
    for key in whole["model"]:
        assert torch.equal(whole["model"][key], resumed["model"][key])


@pytest.mark.parametrize(
    "text, message",
    [
        ("seed = 1\n[data\nname = 1", r"run\.toml: not valid TOML: .*line 2"),
        ("speed = 1\n[data]\nname='iris'", r"unknown key 'speed'; expected out, seed"),
        ("[datas]\nname='iris'", r"unknown table \[datas\]"),
        (
            config_text('name = "mnist"'),
            r"\[data\] name = 'mnist' is not a data set; expected one of digits, breast_cancer, iris, wine",
        ),
        (config_text('name = "iris"\nsamplez = 3'), r"\[data\] unknown key 'samplez'; expected"),
        (
            config_text('name = "iris"', model='kind = "rnn"'),
            r"\[model\] kind = 'rnn'; expected one of logistic, mlp, cnn",
        ),
        (
            config_text('name = "iris"', model="hidden = [0]"),
            r"\[model\] hidden = \[0\] should be positive integers",
        ),
        (
            config_text('name = "iris"', optimizer='name = "adamz"'),
            r"\[optimizer\] name = 'adamz'; expected one of (\w+, )*adam, (\w+, )*sgd",
        ),
        (
            config_text('name = "iris"', training="batch_size = 4"),
            r"\[training\] needs epochs or steps",
        ),
        (
            config_text('name = "iris"', training="steps = 0"),
            r"\[training\] steps = 0 should be >= 1",
        ),
        (
            config_text('name = "iris"', training="steps = 2\nbatch_size = 'half'"),
            r"batch_size = 'half' should be a positive integer or 'full'",
        ),
        (
            config_text('name = "iris"', training='steps = "two"'),
            r"\[training\] steps = 'two' should be an integer",
        ),
        (config_text('name = "csv"'), r"\[data\] name = 'csv' needs the key 'path'"),
        (
            config_text('name = "iris"') + '[schedule]\nspec = "cosine:lr=1"',
            r"\[schedule\] spec = 'cosine:lr=1'",
        ),
        ("[data]\nname = 'iris'\n[optimizer]\nname = 'sgd'", r"missing table \[training\]"),
    ],
)
def test_bad_run_files(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    "optimizer, message",
    [
        ('name = "adam"\nlr = -1.0', r"\[optimizer\] Invalid learning rate: -1\.0 \(lr\)"),
        (
            'name = "adam"\nlrr = 0.01',
            r"\[optimizer\] unknown key 'lrr' for 'adam'; expected name or one of lr, betas",
        ),
        ('name = "sgd"\nmomentum = "high"', r"\[optimizer\] .*momentum"),
    ],
)
def test_bad_optimizer_arguments_are_the_users_mistakes_said_on_loading(
    tmp_path, optimizer, message
):
    # before any data is loaded, and `optimlab train` exits 2 (a user error) with the line
    text = config_text('name = "iris"', optimizer=optimizer)
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))
    from click.testing import CliRunner

    from optimlab.cli import main

    done = CliRunner().invoke(main, ["train", "--config", str(tmp_path / "run.toml")])
    assert done.exit_code == 2 and "[optimizer]" in done.output


def test_bad_data_files(tmp_path):
    def attempt(data):
        run(load_config(write(tmp_path, config_text(data))), tmp_path / "out", progress=False)

    with pytest.raises(ConfigError, match=r"missing\.csv: no such data file"):
        attempt(f'name = "csv"\npath = "{tmp_path / "missing.csv"}"')
    (tmp_path / "bad.csv").write_text("a,b,label\n1,2,0\n3,x,1\n")
    with pytest.raises(ConfigError, match=r"bad\.csv: line 3, column 'b': 'x' is not a number"):
        attempt(f'name = "csv"\npath = "{tmp_path / "bad.csv"}"')
    (tmp_path / "ragged.csv").write_text("a,b,label\n1,2,0\n3,1\n")
    with pytest.raises(ConfigError, match=r"ragged\.csv: line 3 has 2 values, the header 3"):
        attempt(f'name = "csv"\npath = "{tmp_path / "ragged.csv"}"')
    (tmp_path / "t.csv").write_text("a,b,label\n1,2,0\n")
    with pytest.raises(
        ConfigError, match=r"t\.csv: no column 'target'; the columns are a, b, label"
    ):
        attempt(f'name = "csv"\npath = "{tmp_path / "t.csv"}"\ntarget = "target"')
    np.savez(tmp_path / "half.npz", X=np.zeros((3, 2)))
    with pytest.raises(ConfigError, match=r"half\.npz: missing arrays \['y'\]"):
        attempt(f'name = "npz"\npath = "{tmp_path / "half.npz"}"')
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ConfigError, match=r"junk\.npz: not a readable \.npz file"):
        attempt(f'name = "npz"\npath = "{tmp_path / "junk.npz"}"')
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(
        ConfigError, match=r"bad\.idx: not an IDX file \(bad magic number 01020801\)"
    ):
        read_idx(tmp_path / "bad.idx")
    (tmp_path / "short.idx").write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 10) + b"abc")
    with pytest.raises(
        ConfigError,
        match=r"short\.idx: IDX header promises shape \(10,\) \(18 bytes\) but the file has 11 bytes",
    ):
        read_idx(tmp_path / "short.idx")


def test_optimlab_train_command_runs_resumes_and_reports(tmp_path):
    from click.testing import CliRunner
    from test_lab import assert_png

    from optimlab.cli import main

    path = write(
        tmp_path,
        config_text('name = "wine"', training="steps = 8\nbatch_size = 16\ncheckpoint_every = 4"),
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--config", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert record["command"] == f"optimlab train --config {path} --out {out}"
    assert record["status"] == "finished" and record["seed"] == 1
    assert_png(out / "figures" / "loss.png")
    assert "Where training ended" in (out / "report.html").read_text()
    assert "| steps | 8 |" in (out / "summary.md").read_text()
    (out / "notes.txt").write_text("mine")
    first = {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()}
    assert "ckpt-00000008.pt" in first
    again = CliRunner().invoke(main, ["train", "--config", str(path), "--out", str(out)])
    assert again.exit_code == 2  # a rerun without --resume or --overwrite deletes nothing
    assert again.output.count("\n") == 1 and f"--out {out} is not empty" in again.output
    assert "--resume to continue its run" in again.output and "--overwrite" in again.output
    assert {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()} == first
    both = CliRunner().invoke(
        main, ["train", "--config", str(path), "--out", str(out), "--resume", "--overwrite"]
    )
    assert both.exit_code == 2 and "choose one" in both.output
    longer = write(
        tmp_path,
        config_text('name = "wine"', training="steps = 12\nbatch_size = 16\ncheckpoint_every = 4"),
        "longer.toml",
    )
    result = CliRunner().invoke(
        main, ["train", "--config", str(longer), "--out", str(out), "--resume"]
    )
    assert result.exit_code == 0, result.output
    assert "Resumed from ckpt-00000008.pt" in (out / "report.html").read_text()
    assert json.loads((out / "metrics.json").read_text())["steps"] == 12
    resumed = {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()}
    assert resumed.keys() >= {*first, "ckpt-00000012.pt"}  # --resume keeps the checkpoints
    assert all(resumed[name] == data for name, data in first.items())
    assert (out / "notes.txt").read_text() == "mine"
    # --overwrite: a new run from step 0, whose files replace the previous run's at the end
    result = CliRunner().invoke(
        main, ["train", "--config", str(path), "--out", str(out), "--overwrite"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["steps"] == 8
    assert "Resumed" not in (out / "report.html").read_text()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == sorted(first)
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "run.json").read_text())["status"] == "finished"


def test_optimlab_train_bad_input_is_one_line(tmp_path):
    from click.testing import CliRunner

    from optimlab.cli import main

    bad = write(
        tmp_path, "[data]\nname = 'iris'\n[optimizer]\nname='sgd'\n[training]\nepochs = 'x'\n"
    )
    result = CliRunner().invoke(main, ["train", "--config", str(bad)])
    assert result.exit_code == 2
    assert (
        result.output.strip().count("\n") == 0
        and "[training] epochs = 'x' should be an integer" in result.output
    )
    missing = write(
        tmp_path, config_text(f'name = "csv"\npath = "{tmp_path / "nope.csv"}"'), "missing.toml"
    )
    result = CliRunner().invoke(
        main, ["train", "--config", str(missing), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and not (tmp_path / "o").exists()  # checked before writing
    assert "Traceback" not in result.output and "nope.csv: no such data file" in result.output


def test_a_run_files_data_paths_are_read_from_its_folder(tmp_path, monkeypatch):
    """A run file and its data move together: `path = "data.csv"` is the file beside the run
    file, whatever the working directory; a path that only the working directory finds is
    refused (exit 2), saying how to write it."""
    from click.testing import CliRunner

    from optimlab.cli import main

    project = tmp_path / "project"
    project.mkdir()
    rows = ["a,b,label"] + [f"{i % 7},{(i * 3) % 5},{i % 2}" for i in range(40)]
    (project / "data.csv").write_text("\n".join(rows) + "\n")
    run_file = write(project, config_text('name = "csv"\npath = "data.csv"'))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(main, ["train", "--config", str(run_file), "--out", "run"])
    assert result.exit_code == 0, result.output
    assert (elsewhere / "run" / "metrics.json").is_file()  # the run folder: working directory
    # a path written from the working directory, not the run file's folder
    monkeypatch.chdir(tmp_path)
    nested = write(project, config_text('name = "csv"\npath = "project/data.csv"'), "n.toml")
    result = CliRunner().invoke(main, ["train", "--config", str(nested), "--out", "o"])
    assert result.exit_code == 2 and not (tmp_path / "o").exists()
    said = " ".join(result.output.split())
    assert f"{project / 'project' / 'data.csv'}: no such data file" in said
    assert "read from its folder" in said and repr(str(project / "data.csv")) in said


def test_a_preempted_overwrite_run_waits_in_its_staging_folder_and_resume_finishes_it(
    tmp_path, monkeypatch
):
    # `optimlab train --overwrite` stopped by SIGTERM: the new run (with its checkpoint) is kept
    # beside the previous run, which stays whole; --resume continues the new run from its
    # checkpoint and, once it finishes, it replaces the previous run's files.
    from click.testing import CliRunner

    import optimlab.train.config as config_module
    from optimlab.cli import main
    from optimlab.train import Preempted

    path = write(
        tmp_path,
        config_text('name = "wine"', training="steps = 8\nbatch_size = 16\ncheckpoint_every = 4"),
    )
    out = tmp_path / "run"
    assert (
        CliRunner().invoke(main, ["train", "--config", str(path), "--out", str(out)]).exit_code == 0
    )
    previous = (out / "report.html").read_bytes()
    real_run = config_module.run

    def preempted_at_step_4(config, folder, resume=False, progress=None, **given):
        config.training["steps"] = 4  # the run is stopped after its checkpoint at step 4
        real_run(config, folder, resume=resume, **given)
        config.training["steps"] = 8
        raise Preempted(143)

    monkeypatch.setattr(config_module, "run", preempted_at_step_4)
    stopped = CliRunner().invoke(
        main, ["train", "--config", str(path), "--out", str(out), "--overwrite"]
    )
    assert stopped.exit_code == 143
    assert f"continue it with --resume --out {out}" in stopped.output
    (staging,) = out.glob(".optimlab-staging-*")
    assert json.loads((staging / "run.json").read_text())["status"] == "suspended"
    assert (staging / "checkpoints" / "ckpt-00000004.pt").exists()
    assert (out / "report.html").read_bytes() == previous  # the previous run is whole
    monkeypatch.setattr(config_module, "run", real_run)
    resumed = CliRunner().invoke(
        main, ["train", "--config", str(path), "--out", str(out), "--resume"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert "Resumed from ckpt-00000004.pt" in (out / "report.html").read_text()
    assert not list(out.glob(".optimlab-staging-*"))
    assert json.loads((out / "run.json").read_text())["status"] == "finished"


def test_resuming_a_run_file_whose_optimizer_changed_is_a_usage_error(tmp_path):
    from click.testing import CliRunner

    from optimlab.cli import main

    path = write(tmp_path, config_text('name = "wine"', training="steps = 4\nbatch_size = 16"))
    out = tmp_path / "run"
    assert (
        CliRunner().invoke(main, ["train", "--config", str(path), "--out", str(out)]).exit_code == 0
    )
    text = path.read_text().replace('name = "adam"', 'name = "adamw"')
    assert text != path.read_text()
    path.write_text(text)
    result = CliRunner().invoke(
        main, ["train", "--config", str(path), "--out", str(out), "--resume"]
    )
    assert result.exit_code == 2
    assert "[optimizer] name: 'adam' then, 'adamw' now" in result.output
    assert "resume_overrides" not in result.output  # (a Python argument, not the CLI's)
    assert result.output.strip().count("\n") == 0
    # a run folder of an older optimlab, whose run.json has no run file: fit still refuses
    # the checkpoint of another optimizer, in the command line's words
    record = json.loads((out / "run.json").read_text())
    del record["options"]["run_file"]
    (out / "run.json").write_text(json.dumps(record))
    result = CliRunner().invoke(
        main, ["train", "--config", str(path), "--out", str(out), "--resume"]
    )
    assert result.exit_code == 2
    assert "Cannot resume from" in result.output and "AdamW" in result.output
    assert "resume_overrides" not in result.output and "--overwrite" in result.output
    assert result.output.strip().count("\n") == 0


def test_a_run_preempted_in_place_is_marked_interrupted_not_failed(tmp_path, monkeypatch):
    # SIGTERM (a scheduler's preemption) makes fit write a checkpoint and exit 143: the run
    # stopped on request, and --resume continues it
    from click.testing import CliRunner

    import optimlab.train.config as config_module
    from optimlab.cli import main
    from optimlab.train import Preempted

    path = write(
        tmp_path,
        config_text('name = "wine"', training="steps = 8\nbatch_size = 16\ncheckpoint_every = 4"),
    )
    real_run = config_module.run

    def preempted_at_step_4(config, folder, resume=False, progress=None, **given):
        config.training["steps"] = 4
        real_run(config, folder, resume=resume, **given)
        config.training["steps"] = 8
        raise Preempted(143)

    monkeypatch.setattr(config_module, "run", preempted_at_step_4)
    out = tmp_path / "run"
    stopped = CliRunner().invoke(main, ["train", "--config", str(path), "--out", str(out)])
    assert stopped.exit_code == 143
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
