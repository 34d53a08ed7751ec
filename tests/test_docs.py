"""The README's examples and the docstring examples run as written."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

import optimlab
import optimlab.averages
import optimlab.checks
import optimlab.core.rules
import optimlab.optim.adaptive
import optimlab.optim.sgd

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("index", range(len(re.findall(r"```python\n", README.read_text()))))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    block = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[index]
    monkeypatch.chdir(tmp_path)  # files the example writes land in a temporary folder
    exec(compile(block.replace("epochs=30", "epochs=2"), f"README block {index}", "exec"), {})


@pytest.mark.parametrize(
    "module",
    [
        optimlab,
        optimlab.averages,
        optimlab.checks,
        optimlab.core.rules,
        optimlab.optim.sgd,
        optimlab.optim.adaptive,
    ],
    ids=lambda m: m.__name__,
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
