"""No import cycles between dp2's modules at load time.

Only module-level imports count: an import inside a function runs after every module has loaded,
and one under ``if TYPE_CHECKING:`` never runs, so those are the sanctioned ways to reach "up" a
layer (the run layer :mod:`dp2.run` sits below :mod:`dp2.cli`; dataset and Ray code import the
run layer, never the CLI).
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dp2"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(tree: ast.Module):
    """Import nodes that run when the module loads: not in functions, not under ``if TYPE_CHECKING:``."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                todo.extend(node.body)
            todo.extend(node.orelse)
        elif isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            todo.extend(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                todo.extend(handler.body)
        elif isinstance(node, (ast.With, ast.For, ast.While)):
            todo.extend(node.body + getattr(node, "orelse", []))
        elif isinstance(node, ast.ClassDef):  # a class body runs at import time
            todo.extend(node.body)


def import_graph() -> dict[str, set[str]]:
    """dp2 module -> the dp2 modules it imports at load time (a package's import also loads its parents)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}

    def resolve(name: str) -> str | None:
        while name and name not in modules:  # "dp2.io.kinds.InputKind" -> "dp2.io.kinds"
            name = name.rpartition(".")[0]
        return name or None

    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        for node in _module_level_imports(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package
                    for _ in range(node.level - 1):
                        base = base.rpartition(".")[0]
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                if not (target == "dp2" or target.startswith("dp2.")):
                    continue
                found = resolve(target)
                if found is not None and found != name:
                    graph[name].add(found)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_finds_a_cycle_when_there_is_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_graph_sees_relative_and_absolute_imports():
    graph = import_graph()
    assert "dp2.io.kinds" in graph["dp2.cli"]  # from .io.kinds import ...
    assert "dp2.run" in graph["dp2.cli"]


def test_no_module_level_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle at module level: " + " -> ".join(cycle)


def test_dataset_and_ray_code_do_not_import_the_cli():
    """They build runs through :mod:`dp2.run`; only the run layer reads the command's option declarations."""
    for path in (PACKAGE / "dataset.py", *(PACKAGE / "distributed").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):  # any import, lazy ones too
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                assert module not in ("cli", "dp2.cli"), f"{path.name} imports the CLI ({ast.unparse(node)})"
            if isinstance(node, ast.Import):
                assert "dp2.cli" not in [a.name for a in node.names], f"{path.name} imports the CLI"
