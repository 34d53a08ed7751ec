"""Run PyTorch's own optimizer test suite on torch.optim or on optimlab's twins, and sum it up.

PyTorch checks its optimizers with ``test/test_optim.py``, class ``TestOptimRenewed``: every
test is instantiated once per ``OptimizerInfo`` of
``torch.testing._internal.common_optimizers.optim_db``, and reads the class to test from its
``optim_cls``. This script runs that class on the CPU, either as shipped (``--classes torch``)
or with ``optim_cls`` replaced, before collection and in every xdist worker, by the optimlab
class of the same name (``--classes optimlab``: the registry's ``torch_twin`` first, then equal
class names; LBFGS and SparseAdam stay torch's). It prints one line of counts and the failures
grouped by the first line of their message (numbers and addresses blanked), by test function
and by optimizer.

test_optim.py is not shipped with optimlab, nor in the torch wheel: take it from a pytorch
checkout at the installed torch's version (``git checkout v$(python -c 'import torch;
print(torch.__version__.split("+")[0])')``, file ``test/test_optim.py``). Its first lines import
``optim.test_lrscheduler``, ``optim.test_optim`` and ``optim.test_swa_utils`` (other test
classes, from ``test/optim/``): run the file where it lies in the checkout, or delete those
three imports from a copy.

    python scripts/torch_optim_suite.py PATH/TO/test_optim.py [--classes torch|optimlab] \
        [-- extra pytest args, e.g. -k test_errors --tb=short -n 0]

Needs pytest, expecttest (torch.testing._internal imports it) and, for ``-n 2``, pytest-xdist.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import re
import sys
from collections import Counter
from pathlib import Path

_ENV = "OPTIMLAB_TORCH_SUITE_CLASSES"
_CLASS = "TestOptimRenewedCPU"
_KINDS = ("passed", "failed", "errors", "skipped", "xfailed", "xpassed")
_VOLATILE = re.compile(r"0x[0-9a-fA-F]+|(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def twins() -> tuple[dict[str, type], set[str]]:
    """optimlab's class for each torch.optim class name (by the registry's ``torch_twin``, else
    by equal class names), and the names matched by name only."""
    from optimlab.optim.registry import REGISTRY

    by_twin = {
        e.torch_twin.__name__: e.cls
        for e in REGISTRY.values()
        if getattr(e, "torch_twin", None) is not None
    }
    by_name = {e.cls.__name__: e.cls for e in REGISTRY.values() if e.cls.__name__ not in by_twin}
    return {**by_name, **by_twin}, set(by_name)


def swap_classes() -> list[str]:
    """Point every OptimizerInfo of optim_db that optimlab has a twin for at that twin (again:
    a no-op); the names swapped, those matched by name only marked so."""
    from torch.testing._internal.common_optimizers import optim_db

    mapping, name_only = twins()
    swapped = []
    for info in optim_db:
        name = info.optim_cls.__name__
        if name in mapping:
            info.optim_cls = mapping[name]
            swapped.append(name + (" (by name: no torch_twin)" if name in name_only else ""))
    return swapped


def pytest_configure(config) -> None:
    """Loaded with ``-p torch_optim_suite``, in the main process and in each xdist worker."""
    if os.environ.get(_ENV) == "optimlab":
        swap_classes()


class Outcomes:
    """A pytest plugin that keeps each test's outcome and first line of failure."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.failures: list[tuple[str, str]] = []  # (test id, first line of its message)

    def pytest_runtest_logreport(self, report) -> None:
        if report.failed:
            kind = "failed" if report.when == "call" else "errors"
            if report.when == "call" and hasattr(report, "wasxfail"):
                kind = "xpassed"  # a strict xfail that passed
            self.counts[kind] += 1
            crash = getattr(report.longrepr, "reprcrash", None)
            text = (crash.message if crash else str(report.longrepr)).strip()
            self.failures.append((report.nodeid, text.splitlines()[0] if text else "?"))
        elif report.skipped:
            self.counts["xfailed" if hasattr(report, "wasxfail") else "skipped"] += 1
        elif report.when == "call":
            self.counts["xpassed" if hasattr(report, "wasxfail") else "passed"] += 1


def summary(outcomes: Outcomes, test_file: Path, classes: str, swapped: list[str]) -> str:
    from torch.testing._internal.common_optimizers import optim_db

    tree = ast.parse(test_file.read_text())
    functions = sorted(
        {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)},
        key=len,
        reverse=True,
    )  # longest first, so that test_complex_2d_... is not taken for test_complex
    optimizers = {info.optim_cls.__name__ for info in optim_db}

    def function_of(test: str) -> str:
        return next((f for f in functions if test.startswith(f)), test)

    def optimizer_of(test: str) -> str:
        return next((p for p in test.split("_") if p in optimizers), "-")

    c = outcomes.counts
    lines = [
        f"==== torch_optim_suite: classes={classes}, {test_file}",
        "optimlab classes swapped in: " + (", ".join(sorted(swapped)) or "none"),
        " ".join(f"{kind} {c[kind]}" for kind in _KINDS) + f" (total {sum(c.values())})",
    ]
    if not outcomes.failures:
        return "\n".join(lines)
    groups: dict[str, list[tuple[str, str]]] = {}
    for test, first in outcomes.failures:
        groups.setdefault(_VOLATILE.sub("#", first), []).append((test, first))
    lines.append(f"\nfailures and errors by cause ({len(groups)} causes):")
    for members in sorted(groups.values(), key=len, reverse=True):
        test, first = members[0]
        lines += [f"{len(members):5d}  {first}", f"       e.g. {test}"]
    names = [test.rsplit("::", 1)[-1] for test, _ in outcomes.failures]
    for title, key in (("test function", function_of), ("optimizer", optimizer_of)):
        lines.append(f"\nfailures and errors by {title}:")
        lines += [f"{n:5d}  {k}" for k, n in Counter(map(key, names)).most_common()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("test_file", type=Path, help="pytorch's test/test_optim.py")
    parser.add_argument("--classes", choices=("torch", "optimlab"), default="torch")
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = parser.parse_args(argv[:cut]), argv[cut + 1 :]  # after --: pytest's
    test_file = args.test_file.resolve()
    if not test_file.is_file():
        parser.error(f"no such file: {test_file}")

    import pytest

    here = str(Path(__file__).resolve().parent)  # so that xdist workers find -p torch_optim_suite
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, here)
    os.environ[_ENV] = args.classes
    os.environ["PYTORCH_TESTING_DEVICE_ONLY_FOR"] = "cpu"  # instantiate the CPU tests only

    pytest_args = [f"{test_file}::{_CLASS}", "--rootdir", str(test_file.parent)]
    pytest_args += ["-c", os.devnull]  # no pytest configuration from the folders around
    pytest_args += ["-p", "no:cacheprovider", "-p", "torch_optim_suite", "-q", "--tb=no", "-rN"]
    if importlib.util.find_spec("xdist") is not None:
        pytest_args += ["-n", "2"]
    outcomes = Outcomes()
    code = pytest.main(pytest_args + extra, plugins=[outcomes])
    swapped = swap_classes() if args.classes == "optimlab" else []
    print("\n" + summary(outcomes, test_file, args.classes, swapped))
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
