"""The dependency direction of the product code, read from its source (function-local and
TYPE_CHECKING imports included): no import cycle between modules, none between package
directories (a directory's own modules counted as one unit), and the layer rules the README's
architecture section states."""

from __future__ import annotations

import ast
import functools
import re
from collections import defaultdict
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("moodle_assets", "resources", "schedules", "sensors")
OURS = (*PRODUCT, "moodle_emulator", "benchmarks", "tests")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


@functools.cache
def product_modules() -> dict[str, Path]:
    modules = {}
    for top in PRODUCT:
        for path in (REPO_ROOT / top).rglob("*.py"):
            if "migrations" in path.parts and "versions" in path.parts:
                continue  # Alembic revision scripts import only alembic/sqlalchemy
            modules[_module_name(path)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path] | None = None) -> set[str]:
    """Every module of ours that `name` imports, wherever the import statement is.

    `from pkg import sub` counts as importing `pkg.sub` when that is a module, else `pkg`."""
    modules = product_modules() if modules is None else modules
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if _is_package(path) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem for a in node.names]
        else:
            continue
        found.update(t for t in targets if t.split(".")[0] in OURS)
    return found


def resolve(target: str, modules: dict[str, Path]) -> str | None:
    """The product module `target` refers to (a module, or the package `__init__` it names)."""
    while target:
        if target in modules:
            return target
        target = target.rpartition(".")[0]
    return None


@functools.cache
def module_graph() -> dict[str, set[str]]:
    modules = product_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = {resolve(t, modules) for t in imports_of(name, path, modules)}
        graph[name] = {e for e in edges if e and e != name}
    return graph


def unit_of(module: str, modules: dict[str, Path]) -> str:
    """The directory a module lives in (a package's `__init__` lives in its own directory)."""
    return module if _is_package(modules[module]) else module.rpartition(".")[0]


def unit_graph() -> dict[str, set[str]]:
    modules = product_modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for source, targets in module_graph().items():
        a = unit_of(source, modules)
        graph[a]
        for target in targets:
            b = unit_of(target, modules)
            if a != b:
                graph[a].add(b)
    return dict(graph)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def reaches(graph: dict[str, set[str]], source: str, prefix: str) -> list[str]:
    """Modules under `prefix` that `source` imports directly."""
    return sorted(t for t in graph.get(source, ()) if t == prefix or t.startswith(prefix + "."))


def test_the_checker_finds_a_cycle_it_is_shown():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules():
    assert cycles(module_graph()) == []


def test_no_import_cycle_between_package_directories():
    assert cycles(unit_graph()) == []


def test_the_graph_sees_function_local_imports():
    graph = module_graph()
    # moodle_assets.cli.main imports the web process's `serve` inside a function
    assert "moodle_assets.web.serve" in graph["moodle_assets.cli.main"]


@pytest.mark.parametrize(
    "layer, forbidden",
    [
        ("moodle_assets.mappers", ("moodle_assets", "resources", "schedules", "sensors")),
        ("moodle_assets.core", ("moodle_assets", "resources", "schedules", "sensors")),
        ("moodle_assets.store", ("resources", "schedules", "sensors", "moodle_assets.settings",
                                 "moodle_assets.history", "moodle_assets.sync", "moodle_assets.web")),
        ("moodle_assets.sync", ("moodle_assets.settings", "moodle_assets.history", "moodle_assets.orchestration",
                                "moodle_assets.web", "sensors", "schedules", "resources.moodle",
                                "resources.app_db")),
        ("moodle_assets.history", ("moodle_assets.settings", "resources", "sensors", "moodle_assets.web")),
        ("resources", ("moodle_assets.settings", "moodle_assets.web", "moodle_assets.orchestration",
                       "moodle_assets.cli", "sensors")),
        ("schedules", ("moodle_assets.settings", "moodle_assets.history", "resources", "sensors",
                       "moodle_assets.web")),
        ("sensors", ("moodle_assets.settings", "moodle_assets.web", "moodle_assets.cli")),
        ("moodle_assets.orchestration", ("moodle_assets.web", "moodle_assets.cli")),
        ("moodle_assets.web", ("moodle_assets.cli",)),
    ],
)
def test_layer_rules(layer, forbidden):
    """Lower layers never reach up: mappers import nothing of ours, the store neither the client
    nor scheduling, and nothing below the entry points reads the settings."""
    graph = module_graph()
    offenders = []
    for module, targets in graph.items():
        if module != layer and not module.startswith(layer + "."):
            continue
        for target in targets:
            if target == layer or target.startswith(layer + "."):
                continue  # within the layer
            for prefix in forbidden:
                stem = prefix.rstrip(".")
                if target == stem or target.startswith(stem + "."):
                    offenders.append(f"{module} -> {target}")
    assert offenders == []


def test_the_client_modules_are_dagster_free():
    """The HTTP client, its errors, the retry maths and the throttle import no Dagster (so the
    engine and the benchmark load them in milliseconds); only the resource module does."""
    for name in ("moodle_client", "moodle_errors", "retry", "throttle"):
        source = (REPO_ROOT / "resources" / f"{name}.py").read_text()
        assert "dagster" not in {n.split(".")[0] for n in _all_imported_names(source)}, name


def _all_imported_names(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_emulator_is_imported_only_by_the_demo_wiring():
    users = sorted(
        str(path.relative_to(REPO_ROOT))
        for name, path in product_modules().items()
        if any(t.split(".")[0] == "moodle_emulator" for t in imports_of(name, path))
    )
    assert users == ["moodle_assets/web/demo.py"]


def test_dagster_internals_are_used_in_one_module_only():
    """`dagster._core` only where no public name exists (the webserver seam), and no
    `dagster_graphql.implementation` at all: runs are launched through GraphQL `launchRun`."""
    users = {}
    for name, path in product_modules().items():
        private = sorted(n for n in _all_imported_names(path.read_text())
                         if n.startswith(("dagster._", "dagster_graphql.implementation")))
        if private:
            users[str(path.relative_to(REPO_ROOT))] = private
    assert users == {
        "moodle_assets/web/app.py": ["dagster._core.workspace.context", "dagster._core.workspace.load_target"],
    }


def test_package_directories_and_their_dependencies_snapshot():
    """The import graph between package directories, as the README's architecture section shows it."""
    graph = unit_graph()
    assert set(graph) == {
        "moodle_assets", "moodle_assets.cli", "moodle_assets.core", "moodle_assets.history",
        "moodle_assets.mappers", "moodle_assets.orchestration", "moodle_assets.settings", "moodle_assets.store",
        "moodle_assets.store.migrations", "moodle_assets.sync", "moodle_assets.web", "resources", "schedules",
        "sensors",
    }
    assert graph["moodle_assets.mappers"] == set()
    assert graph["moodle_assets.core"] == set()


def _unit(name: str) -> str:
    name = name.strip().strip("`")
    if name in ("resources", "schedules", "sensors"):
        return name
    if name in ("definitions", "moodle_assets"):
        return "moodle_assets"
    return name if name.startswith("moodle_assets.") else f"moodle_assets.{name}"


def test_readme_architecture_table_is_the_import_graph():
    """The README's layer table lists, for each package directory, exactly what it imports."""
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme.split("| layer (top to bottom) | imports |", 1)[1].split("\n\n", 1)[0]
    documented: dict[str, set[str]] = {}
    for line in table.strip().splitlines()[1:]:
        layer_cell, imports_cell = (cell.strip() for cell in line.strip().strip("|").split("|"))
        layers = [_unit(part.split("(")[0]) for part in layer_cell.split(",")]
        text = re.sub(r"\([^)]*\)", "", imports_cell).split(":", 1)[-1].strip()
        names = set() if text.startswith("nothing") else {
            _unit(part.split("(")[0]) for part in text.replace(";", ",").split(",") if part.strip()
        }
        for layer in layers:
            documented[layer] = names
    graph = unit_graph()
    actual = {unit: targets - {"moodle_assets.store.migrations"} for unit, targets in graph.items()
              if unit != "moodle_assets.store.migrations"}
    assert documented == actual
