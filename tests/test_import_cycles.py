"""No import cycles between dp2's modules at load time, and imports that respect the layers.

Cycles: only module-level imports count. An import inside a function runs after every module has
loaded, and one under ``if TYPE_CHECKING:`` never runs, so neither can close a cycle at load time.

Layers (README, "Architecture"): every import counts, lazy and type-only ones too, since each is
a dependency all the same. A module imports its own layer and those below, never one above, and
only the entry point ``python -m dp2`` imports :mod:`dp2.cli`. The few imports that break a rule
today are listed, with their reason, in ``ALLOWED_UPWARD``.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dp2"


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
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


def import_edges(package: Path = PACKAGE) -> list[tuple[str, str, str, bool]]:
    """Every import of one of the package's modules by another, lazy ones too.

    Returns:
        ``(importer, imported, "file:line", at_load)`` rows; ``at_load`` is True for an import that
        runs when the importer loads (see `_module_level_imports`).
    """
    root = package.name
    modules = {_module_name(p, package): p for p in package.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in modules:  # "dp2.io.kinds.InputKind" -> "dp2.io.kinds"
            name = name.rpartition(".")[0]
        return name or None

    edges = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package_name = name if is_package else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        at_load = {id(node) for node in _module_level_imports(tree)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package_name
                    for _ in range(node.level - 1):
                        base = base.rpartition(".")[0]
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                # "from pkg import sub" needs the module pkg.sub; "from pkg import name", pkg itself.
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            found = {resolve(t) for t in targets if t == root or t.startswith(root + ".")}
            for imported in sorted(found - {None, name}):
                edges.append((name, imported, f"{path.relative_to(package.parent)}:{node.lineno}",
                              id(node) in at_load))
    return edges


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """dp2 module -> the dp2 modules it imports at load time (a package's import also loads its parents)."""
    graph: dict[str, set[str]] = {_module_name(p, package): set() for p in package.rglob("*.py")}
    for importer, imported, _, at_load in import_edges(package):
        if at_load:
            graph[importer].add(imported)
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


# ----------------------------------------------------------------------------- layers

# Lowest first. A module may import its own layer and those below it. A dotted name covers its
# submodules; the bare package name "dp2" stands for dp2/__init__.py only, so a new module outside
# every layer fails `test_every_module_is_in_a_layer` until it is placed.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("structures", ("dp2.structures",)),
    ("ops", ("dp2.ops",)),
    # Shared services: media and files, weight files, configs, progress bars and log set-up.
    ("io", ("dp2.io", "dp2.weights", "dp2.weights_catalog", "dp2.config", "dp2.config_names", "dp2.progress",
            "dp2.cli_output")),
    ("detection", ("dp2.detection", "dp2.generation", "dp2.tracking", "dp2.visualize")),
    ("stages", ("dp2.stages",)),
    ("anonymizer", ("dp2.anonymizer",)),
    ("frame loop", ("dp2.runner",)),
    ("run", ("dp2.run", "dp2.options", "dp2.dataset")),
    ("entry points", ("dp2.cli", "dp2.cli_weights", "dp2.api", "dp2.distributed", "dp2.__main__", "dp2")),
)

# The command's module; only `CLI_IMPORTERS` may import it.
CLI_MODULE = "dp2.cli"
CLI_IMPORTERS = ("dp2.__main__",)

# Imports that break a rule today, (importer, imported) -> why. Each must still exist
# (`test_every_allowed_upward_import_still_exists`): delete the entry when the import goes.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
    ("dp2.weights", "dp2.generation.deep_privacy1"):
        "load_generator_state knows DeepPrivacy1's checkpoint layout; it belongs in dp2.generation, "
        "but tests import it from dp2.weights",
}


def layer_of(module: str, layers=LAYERS) -> int | None:
    """Index in `layers` of the entry that covers `module` (the longest match), or None."""
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            covers = module == prefix or ("." in prefix and module.startswith(prefix + "."))
            if covers and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def layer_violations(edges, layers=LAYERS, allowed=ALLOWED_UPWARD, cli_module=CLI_MODULE,
                     cli_importers=CLI_IMPORTERS) -> list[str]:
    """One line per import (rows of `import_edges`) that reaches up a layer or into the CLI."""
    problems = []
    for importer, imported, where, _ in edges:
        if (importer, imported) in allowed:
            continue
        low, high = layer_of(importer, layers), layer_of(imported, layers)
        if low is None or high is None:
            continue  # reported by test_every_module_is_in_a_layer
        if high > low:
            problems.append(f"{where}: {importer} (layer {layers[low][0]!r}) imports {imported} "
                            f"(layer {layers[high][0]!r}, higher)")
        elif imported == cli_module and importer not in cli_importers:
            problems.append(f"{where}: {importer} imports the command {cli_module}; only "
                            f"{', '.join(cli_importers)} may")
    return problems


def test_layer_checker_flags_upward_and_cli_imports():
    layers = (("low", ("pkg.low",)), ("mid", ("pkg.mid",)), ("top", ("pkg.cli", "pkg.api", "pkg.__main__")))
    edges = [
        ("pkg.mid.a", "pkg.low.b", "mid/a.py:1", True),  # down: fine
        ("pkg.mid.a", "pkg.mid.c", "mid/a.py:2", True),  # same layer: fine
        ("pkg.low.b", "pkg.mid.a", "low/b.py:3", False),  # up, lazily: still a violation
        ("pkg.api", "pkg.cli", "api.py:4", True),  # same layer, but the CLI
        ("pkg.__main__", "pkg.cli", "__main__.py:5", True),  # the entry point: fine
    ]

    def check(allowed):
        return layer_violations(edges, layers, allowed, cli_module="pkg.cli", cli_importers=("pkg.__main__",))

    assert check({}) == [
        "low/b.py:3: pkg.low.b (layer 'low') imports pkg.mid.a (layer 'mid', higher)",
        "api.py:4: pkg.api imports the command pkg.cli; only pkg.__main__ may",
    ]
    assert check({("pkg.low.b", "pkg.mid.a"): "why", ("pkg.api", "pkg.cli"): "why"}) == []


def test_layer_of_takes_the_longest_match_and_the_bare_package_only_for_itself():
    assert layer_of("dp2.io.video.reading") == layer_of("dp2.io")
    assert layer_of("dp2.cli_output") == layer_of("dp2.io") != layer_of("dp2.cli")
    assert layer_of("dp2") == layer_of("dp2.cli")
    assert layer_of("dp2.not_placed_yet") is None


def test_a_lazy_import_of_a_higher_layer_is_caught(tmp_path):
    """End to end on a fake package: parsing, relative resolution and the rules together."""
    fake = tmp_path / "dp2"
    for name, text in {
        "__init__.py": "",
        "cli.py": "def main():\n    pass\n",
        "anonymizer.py": "",
        "io/__init__.py": "",
        "io/ok.py": "from ..structures import x\n",
        "io/bad.py": "def f():\n    from ..cli import main\n    from dp2 import anonymizer\n",
        "structures/__init__.py": "x = 1\n",
    }.items():
        (fake / name).parent.mkdir(parents=True, exist_ok=True)
        (fake / name).write_text(text)
    problems = layer_violations(import_edges(fake), allowed={})
    assert problems == [
        "dp2/io/bad.py:2: dp2.io.bad (layer 'io') imports dp2.cli (layer 'entry points', higher)",
        "dp2/io/bad.py:3: dp2.io.bad (layer 'io') imports dp2.anonymizer (layer 'anonymizer', higher)",
    ]


def test_every_module_is_in_a_layer():
    unplaced = sorted(m for m in import_graph() if layer_of(m) is None)
    assert not unplaced, f"modules in no layer (add them to LAYERS and to the README's Architecture): {unplaced}"


def test_lower_layers_never_import_higher_ones():
    problems = layer_violations(import_edges())
    assert not problems, "imports against the layers (README, Architecture):\n" + "\n".join(problems)


def test_every_allowed_upward_import_still_exists():
    edges = {(importer, imported) for importer, imported, _, _ in import_edges()}
    stale = sorted(set(ALLOWED_UPWARD) - edges)
    assert not stale, f"these imports are gone: delete them from ALLOWED_UPWARD: {stale}"


def test_the_readme_shows_these_layers():
    text = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Architecture\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| ")][1:]  # skip the header
    table = tuple((name.strip(), tuple(m.strip(" `") for m in modules.split(","))) for name, modules in rows)
    assert table == LAYERS, "README's Architecture table and LAYERS differ"
