"""The shape of the house (issue 14), checked so that it stays: no import cycle, a core of pure
math, the fused path's machinery in ``fused/`` alone, and functions short enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SOURCE / "optimlab"
MODULES = {
    ".".join(path.relative_to(SOURCE).with_suffix("").parts).removesuffix(".__init__"): path
    for path in sorted(PACKAGE.rglob("*.py"))
}
#: the fused path's tools: compilers run as processes, libraries loaded through ctypes, the
#: kernel cache's locks and temporary files
MACHINERY = {"subprocess", "ctypes", "fcntl", "tempfile"}
#: the one function allowed past the limit: fit, whose body reads top to bottom (about 95
#: lines) under its signature and the docstring of a public function with 25 arguments
LONG_FUNCTIONS_ALLOWED = {("optimlab.train.loop", "fit")}
LIMIT = 80


def _imports(module: str) -> set[str]:
    """Every module ``module`` imports, at module level or inside a function (lazily)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from . import data` imports the module optimlab.data
                name = f"{target}.{alias.name}"
                found.add(name if name in MODULES else target)
    return found


GRAPH = {module: {m for m in _imports(module) if m in MODULES} - {module} for module in MODULES}


def test_no_import_cycle_in_src():
    assert "optimlab.fused.steps" in GRAPH["optimlab.optim.base"]  # the graph sees imports
    # counting lazy imports too: a cycle closed inside a function is still a cycle of design
    # (cli.py once imported its subcommands at the bottom, and they imported it back)
    visiting: list[str] = []
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        visiting.append(module)
        for target in sorted(GRAPH[module]):
            if target in visiting:
                cycles.append(visiting[visiting.index(target) :] + [target])
            elif target not in done:
                visit(target)
        visiting.pop()
        done.add(module)

    for module in MODULES:
        if module not in done:
            visit(module)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("optimlab.core")])
def test_core_is_pure_math(module):
    imported = _imports(module)
    assert not {name.split(".")[0] for name in imported} & MACHINERY
    inside = {name for name in imported if name.startswith("optimlab")}
    assert all(name.startswith("optimlab.core") for name in inside), inside


def test_the_fused_machinery_lives_in_fused_alone():
    # the benchmarks may make a temporary folder: an empty kernel cache for `optimlab build`
    allowed = {"optimlab.benchmarks.bench_commands": {"tempfile"}}
    users = {
        module
        for module in MODULES
        if {name.split(".")[0] for name in _imports(module)}
        & MACHINERY - {"subprocess"} - allowed.get(module, set())
    }
    assert all(module.startswith("optimlab.fused") for module in users), users


def test_no_function_runs_past_80_lines():
    long = [
        (module, node.name, node.end_lineno - node.lineno + 1)
        for module, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > LIMIT
        and (module, node.name) not in LONG_FUNCTIONS_ALLOWED
    ]
    assert not long, f"functions past {LIMIT} lines (find the pieces they are made of): {long}"
