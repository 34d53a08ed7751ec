"""Targets of the user's data files in `optimlab train`: the task is inferred as `optimlab
compare --data` infers it (whole numbers with 2 to 50 values are classes), `[data] task`
says it outright, class labels become 0..k-1, and unusable targets are refused by name."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from optimlab.cli import main
from optimlab.train.config import ConfigError, load_config, load_data


def csv_file(tmp_path, targets, name="data.csv"):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(targets), 3))
    path = tmp_path / name
    lines = ["a,b,c,label"] + [
        ",".join(f"{v:.4f}" for v in x) + f",{t}" for x, t in zip(X, targets)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def loaded(path, **data):
    return load_data({"name": "csv", "path": str(path), **data}, seed=0)


@pytest.mark.parametrize("labels", [(-1, 1), (3, 10), (0, 1)])
def test_class_labels_become_0_to_k_minus_1(tmp_path, labels):
    data = loaded(csv_file(tmp_path, [labels[i % 2] for i in range(60)]))
    assert data.classes == 2
    seen = set(data.y_train.tolist()) | set(data.y_val.tolist()) | set(data.y_test.tolist())
    assert seen == {0, 1}


def test_minus_one_one_labels_train_from_the_command_line(tmp_path):
    path = csv_file(tmp_path, [(-1, 1)[i % 2] for i in range(60)])
    run_file = tmp_path / "run.toml"
    run_file.write_text(
        f'[data]\nname = "csv"\npath = "{path}"\n[optimizer]\nname = "sgd"\nlr = 0.1\n'
        "[training]\nepochs = 1\nbatch_size = 8\n"
    )
    result = CliRunner().invoke(
        main, ["train", "--config", str(run_file), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output


def test_whole_number_targets_with_more_than_50_values_are_regression(tmp_path):
    assert loaded(csv_file(tmp_path, list(range(60)) * 2)).classes == 0  # 60 values
    assert loaded(csv_file(tmp_path, list(range(40)) * 6)).classes == 40
    said = loaded(csv_file(tmp_path, list(range(40)) * 6), task="regression")
    assert said.classes == 0 and said.y_train.dtype.is_floating_point


def test_a_split_that_fails_on_inferred_classes_says_how_to_ask_for_regression(tmp_path):
    with pytest.raises(ConfigError, match=r"taken as 45 classes.*task = 'regression'"):
        loaded(csv_file(tmp_path, list(range(45)) + list(range(15))))


def test_unusable_targets_are_refused_with_the_file_named(tmp_path):
    path = tmp_path / "strings.npz"
    np.savez(path, X=np.zeros((4, 2)), y=np.array(["cat", "dog", "cat", "dog"]))
    with pytest.raises(ConfigError, match=r"strings.npz: the targets are <U3 values \('cat'"):
        load_data({"name": "npz", "path": str(path)}, seed=0)
    with pytest.raises(ConfigError, match="not all whole numbers"):
        loaded(csv_file(tmp_path, [0.5, 1.5] * 30), task="classification")


@pytest.mark.parametrize(
    "data",
    ['name = "wine"\ntask = "regression"', 'name = "csv"\npath = "x.csv"\ntask = "classes"'],
)
def test_a_bad_task_is_a_run_file_error(tmp_path, data):
    path = tmp_path / "run.toml"
    path.write_text(f'[data]\n{data}\n[optimizer]\nname = "sgd"\n[training]\nepochs = 1\n')
    with pytest.raises(ConfigError, match=r"run.toml: \[data\] task = "):
        load_config(path)


def test_blank_lines_hold_no_sample_and_errors_name_the_file_s_line(tmp_path):
    # a trailing blank line (as editors leave) and one inside are no samples; a bad value is
    # reported at its line in the file, blank lines counted
    path = csv_file(tmp_path, [i % 2 for i in range(60)])
    with_blanks = path.read_text().replace("\n", "\n\n", 3) + "\n\n"
    path.write_text(with_blanks)
    data = loaded(path)
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 60
    lines = with_blanks.splitlines()
    lines[7] = "1,2,x,0"  # (line 8 of the file)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"line 8, column 'c': 'x' is not a number"):
        loaded(path)
