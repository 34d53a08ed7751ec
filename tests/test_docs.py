"""The README's examples and the docstring examples run as written."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("index", range(len(re.findall(r"```python\n", README.read_text()))))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    block = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[index]
    monkeypatch.chdir(tmp_path)  # files the example writes land in a temporary folder
    exec(compile(block.replace("epochs=30", "epochs=2"), f"README block {index}", "exec"), {})


DOCUMENTED_MODULES = [
    "optimlab",
    "optimlab.averages",
    "optimlab.checks",
    "optimlab.schedules",
    "optimlab.core.rules",
    "optimlab.core.adam_family",
    "optimlab.core.classic",
    "optimlab.core.layerwise",
    "optimlab.core.tuning_free",
    "optimlab.optim.base",
    "optimlab.optim.sgd",
    "optimlab.optim.adaptive",
    "optimlab.optim.adam_family",
    "optimlab.optim.classic",
    "optimlab.optim.layerwise",
    "optimlab.optim.tuning_free",
    "optimlab.remedies",
    "optimlab.remedies.noise",
    "optimlab.remedies.annealing",
    "optimlab.remedies.restarts",
    "optimlab.lab.escape",
    "optimlab.lab.escape.descent",
    "optimlab.lab.escape.study",
]


@pytest.mark.parametrize("name", DOCUMENTED_MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
