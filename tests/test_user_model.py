"""``optimlab compare --model FILE.py:FUNCTION --data FILE`` and ``compare_model``: the fair
comparison on the user's own model and data, on small files the tests write."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from optimlab.cli import main
from optimlab.lab import compare_model
from optimlab.lab.user import UserInputError, infer_task, load_arrays

MODEL = """import torch
def make(features, outputs):
    return torch.nn.Sequential(torch.nn.Linear(features, 8), torch.nn.Tanh(),
                               torch.nn.Linear(8, outputs))
def broken(features, outputs):
    return "not a module"
"""


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    (tmp_path / "net.py").write_text(MODEL)
    np.savez(tmp_path / "classes.npz", X=X, y=(X[:, 0] > 0).astype(int))
    target = X @ np.array([1.0, -1.0, 0.5]) + 0.05 * rng.normal(size=120)
    np.savetxt(tmp_path / "values.csv", np.c_[X, target], delimiter=",",
               header="a,b,c,y", comments="")  # fmt: skip
    return tmp_path


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("data, task, score", [("classes.npz", "classification", "test accuracy"),
                                               ("values.csv", "regression", "test mean squared error")])  # fmt: skip
def test_compare_on_your_model_and_data(files, data, task, score):
    out = files / "run"
    result = invoke("compare", "--model", files / "net.py:make", "--data", files / data,
                    "-o", "sgd,adam", "--seeds", "3", "--epochs", "2", "-j", "1",
                    "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"{task}" in result.stderr and "inferred from the targets" in result.stderr
    verdicts = json.loads((out / "metrics.json").read_text())["verdicts"]
    assert len(verdicts) == 1 and verdicts[0]["problem"] == "user"  # only your problem
    assert f"On {data} with net.py:make" in result.stdout and score in result.stdout
    assert (out / "figures" / "user_curves.png").exists()
    assert score in (out / "summary.md").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "{d}/net.py:make"], "--model and --data go together"),
        (["--model", "{d}/net.py", "--data", "{d}/classes.npz"], "expected FILE.py:FUNCTION"),
        (["--model", "{d}/net.py:nope", "--data", "{d}/classes.npz"], "has no function 'nope'"),
        (["--model", "{d}/net.py:broken", "--data", "{d}/classes.npz"], "expected a torch.nn.Module"),
        (["--model", "{d}/net.py:make", "--data", "{d}/net.py"], "expected a .npz"),
        (["--model", "{d}/missing.py:make", "--data", "{d}/classes.npz"], "is not a file"),
    ],
)  # fmt: skip
def test_mistakes_in_your_model_or_data_are_user_errors(files, args, message):
    result = invoke("compare", *[a.format(d=files) for a in args], "--out", files / "x")
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_the_task_is_inferred_and_arrays_are_read(files):
    assert infer_task(np.array([0, 1, 2, 1])) == "classification"
    assert infer_task(np.arange(100)) == "regression"  # too many values for classes
    assert infer_task(np.array([0.5, 1.0])) == "regression"
    X, y = load_arrays(files / "values.csv")
    assert X.shape == (120, 3) and y.shape == (120,)
    np.savez(files / "bad.npz", inputs=X)
    with pytest.raises(UserInputError, match=r"holds arrays \['inputs'\]; expected X"):
        load_arrays(files / "bad.npz")


def test_compare_model_in_python_with_a_function_and_arrays():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 2))
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    result = compare_model(lambda f, o: torch.nn.Linear(f, o), (X, y), ["sgd", "adam"],
                           seeds=3, epochs=2, lr_grid=(0.01, 0.1, 1.0))  # fmt: skip
    (verdict,) = result.verdicts
    assert verdict.sentence.startswith("On your data with <lambda>")
    assert set(verdict.ranking) == {"sgd", "adam"}
