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


def test_a_csv_loses_no_sample_and_its_mistakes_name_the_line(tmp_path):
    """A first row without any number is a header; one with numbers is data (an empty cell in
    it was dropped with the row, silently). A byte-order mark (Excel's "CSV UTF-8") is no part
    of the first value (a header-less file lost its first sample)."""
    rows = [[i % 5, i % 3, i % 2] for i in range(20)]
    text = "\n".join(",".join(map(str, r)) for r in rows) + "\n"
    for name, content, encoding in [("plain.csv", text, "utf-8"),
                                    ("bom.csv", text, "utf-8-sig"),
                                    ("header.csv", "x1,x2,label\n" + text, "utf-8-sig")]:  # fmt: skip
        (tmp_path / name).write_text(content, encoding=encoding)
        X, y = load_arrays(tmp_path / name)
        np.testing.assert_array_equal(np.c_[X, y], np.array(rows, dtype=float))
    cases = [("1,,0\n" + text, r"line 1: '' is not a number"),
             (text + "1,2\n", r"line 21 has 2 values, the first row 3"),
             ("a,b,c\n" + text + "1,x,0\n", r"line 22: 'x' is not a number"),
             ("1;2;0\n3;4;1\n", r"target last separated by commas")]  # fmt: skip
    for content, message in cases:
        (tmp_path / "bad.csv").write_text(content)
        with pytest.raises(UserInputError, match=message):
            load_arrays(tmp_path / "bad.csv")


def test_classes_too_rare_to_split_are_named_by_the_users_label(files):
    """sklearn's stratified split refuses a class with one sample, naming it by its index
    among the classes (2, where the file says 7): a usage error naming the label instead."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(41, 2))
    y = np.r_[np.zeros(20), np.ones(20), [7]]
    np.savetxt(files / "rare.csv", np.c_[X, y], delimiter=",")
    result = invoke("compare", "--model", files / "net.py:make", "--data", files / "rare.csv",
                    "-o", "sgd", "--seeds", "1", "--epochs", "1", "--out", files / "x")  # fmt: skip
    assert result.exit_code == 2, result.output
    said = " ".join(result.stderr.split())
    assert "41 samples in 3 classes cannot be split" in said and "7 (1)" in said
    assert "--task regression" in said and "Traceback" not in result.output


def test_compare_model_in_python_with_a_function_and_arrays():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 2))
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    result = compare_model(lambda f, o: torch.nn.Linear(f, o), (X, y), ["sgd", "adam"],
                           seeds=3, epochs=2, lr_grid=(0.01, 0.1, 1.0))  # fmt: skip
    (verdict,) = result.verdicts
    assert verdict.sentence.startswith("On your data with <lambda>")
    assert set(verdict.ranking) == {"sgd", "adam"}


def _regression(seed: int = 2, n: int = 100):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=n)


def _numbers(result) -> dict:
    """The summaries without the times, which differ between any two runs."""
    return {
        key: {k: v for k, v in row.items() if "seconds" not in k}
        for key, row in result.summaries.items()
    }


def test_a_data_loader_is_read_once_into_the_same_samples():
    """A DataLoader (or Dataset) of pairs gives the comparison the arrays it yields: the same
    runs, bit for bit, as those arrays passed directly."""
    X, y = _regression()
    dataset = torch.utils.data.TensorDataset(torch.tensor(X), torch.tensor(y))
    loader = torch.utils.data.DataLoader(dataset, batch_size=7)
    kwargs = dict(seeds=1, epochs=2, task="regression")
    direct = compare_model(torch.nn.Linear, (X, y), ["sgd:lr=0.01"], **kwargs)
    for data in (loader, dataset):
        read = compare_model(torch.nn.Linear, data, ["sgd:lr=0.01"], **kwargs)
        assert _numbers(read) == _numbers(direct)
    with pytest.raises(UserInputError, match="expected \\(inputs, targets\\) pairs"):
        compare_model(torch.nn.Linear, torch.utils.data.TensorDataset(torch.tensor(X)), ["sgd"])


def test_your_loss_trains_tunes_and_scores():
    """loss= replaces the task's: twice the mean squared error at lr 0.01 takes exactly the
    steps of the mean squared error at lr 0.02 (gradients doubled, a power of two), and every
    loss it reports is exactly twice."""
    X, y = _regression()

    def doubled(output, target):
        return 2 * torch.nn.functional.mse_loss(output.reshape(-1), target)

    kwargs = dict(seeds=2, epochs=3, task="regression")
    mine = compare_model(torch.nn.Linear, (X, y), ["sgd:lr=0.01"], loss=doubled, **kwargs)
    plain = compare_model(torch.nn.Linear, (X, y), ["sgd:lr=0.02"], **kwargs)
    ours, theirs = mine.summaries[("user", "sgd:lr=0.01")], plain.summaries[("user", "sgd:lr=0.02")]
    for key in ("test_loss_mean", "val_loss_mean", "train_loss_mean"):
        assert ours[key] == pytest.approx(2 * theirs[key], rel=1e-6), key
    assert mine.verdicts[0].score.label == "test loss"
    assert plain.verdicts[0].score.label == "test mean squared error"
    assert "your loss" in mine.problems[0].about(3)
