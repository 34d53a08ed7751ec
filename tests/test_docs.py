"""The README's examples and the docstring examples run as written."""

from __future__ import annotations

import doctest
import importlib
import inspect
import re
from pathlib import Path

import pytest

from optimlab.optim.registry import REGISTRY

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


def _documented_arguments(doc: str) -> list[str]:
    """The argument names of a Google-style ``Args:`` section (``a, b: ...`` names two; an
    entry may wrap onto more deeply indented lines, its names too)."""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Args:")
    indent = len(lines[start + 1]) - len(lines[start + 1].lstrip())
    entries: list[str] = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        if len(line) - len(line.lstrip()) == indent:
            entries.append(line.strip())
        else:
            entries[-1] += " " + line.strip()
    return [name.strip() for entry in entries for name in entry.split(":", 1)[0].split(",")]


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_optimizer_documents_each_argument_once(name):
    """help(optimlab.X) starts with the update rule and an Args section naming every
    argument of the constructor (issue 18), one convention throughout."""
    cls = REGISTRY[name].cls
    documented = _documented_arguments(cls.__doc__)
    expected = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert sorted(documented) == sorted(expected), cls.__name__
    assert len(documented) == len(set(documented)), cls.__name__
    doc = cls.__doc__
    args, example = doc.index("Args:"), doc.index("Example::")
    rule = doc.find("::")  # the update rule's block, where it is not written in prose (AdamW)
    assert args < example and (rule == example + len("Example") or rule < args), cls.__name__
