"""The package's shape (issues 10, 18): no import cycle between modules, no upward import of the benchmarks, the CLI
or the test fixtures by the library, and one definition of the compression contract."""
from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "liteframe"


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Modules of liteframe that `path` imports at module level or inside functions, resolved to module names."""
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("liteframe")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.startswith("liteframe"):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in SRC.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle between modules (packages' `__init__` re-exports excluded), or None."""
    edges = {n: {m for m in deps if not _is_parent(m, n)} for n, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def _is_parent(package: str, module: str) -> bool:
    return module.startswith(package + ".")


def test_no_import_cycle_between_modules(graph):
    packages = {n for n in graph if (SRC.parent / n.replace(".", "/") / "__init__.py").exists()}
    # a package's __init__ re-exports its modules; a cycle through it is a cycle of its modules
    modules = {n: {m for m in deps if m not in packages} for n, deps in graph.items() if n not in packages}
    assert _cycle(modules) is None, f"import cycle: {' -> '.join(_cycle(modules))}"


def test_the_library_never_imports_the_benchmarks_or_the_cli(graph):
    upward = {(name, dep) for name, deps in graph.items() for dep in deps
              if not name.startswith(("liteframe.bench", "liteframe.cli"))
              and dep.startswith(("liteframe.bench", "liteframe.cli"))}
    assert not upward, f"library modules import the benchmarks or the CLI: {sorted(upward)}"


def test_the_library_never_imports_the_test_fixtures(graph):
    """`liteframe.testing` (tiny checkpoints, random large models, synthetic videos) serves the tests and `bench/`."""
    users = {(name, dep) for name, deps in graph.items() for dep in deps
             if not name.startswith(("liteframe.bench", "liteframe.cli", "liteframe.testing"))
             and dep.startswith("liteframe.testing")}
    assert not users, f"library modules import the test fixtures: {sorted(users)}"


def _code(path: Path) -> str:
    """The file's code without its strings and comments."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return " ".join(t.string for t in tokens if t.type not in (tokenize.STRING, tokenize.COMMENT))


def test_the_compression_contract_is_defined_once():
    # the block, the clip length and the ratio are written only in compression.py; everything else derives them
    literal = re.compile(r"\(\s*4\s*,\s*2\s*,\s*2\s*\)|\bCLIP_LEN\b|\bblock_for\b|%\s*4\b")
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if p.name != "compression.py" and literal.search(_code(p))]
    assert not offenders, f"the compression contract is written again in {offenders}"
