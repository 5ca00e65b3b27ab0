"""The import rules of the layout (issues 12 and 23), read from the source with `ast`, so an import
inside a function, or one only for type checkers, counts as much as one at the top of a module:

* the packages of `shared/` form layers (`SHARED_LAYERS`, lowest first) and no import goes upward;
* no import circle between modules, in shared/, functions/ and tools/;
* `tools/` never imports `tests/`: the servers tests and benchmarks share live in tools/harness;
* `shared/` (the core) never imports the HTTP face, `functions/` or `function_app`;
* every test lives in the folder of its kind (tests/unit, integration, e2e, infra), which sets its marker.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import FOLDER_MARKERS, REPO

SKIPPED_DIRS = {".venv", ".cache", "__pycache__", "neo4j_launcher"}


def python_files(folder: str) -> list[Path]:
    root = REPO / folder
    files = [p for p in root.rglob("*.py") if not SKIPPED_DIRS.intersection(p.relative_to(root).parts)]
    assert files, f"no Python file found under {root}"
    return sorted(files)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, *, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, the code of `module`, at any depth,
    relative imports resolved. `importlib.import_module("x")` and `__import__("x")` with a literal
    name count too."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            yield node.lineno, name
            for alias in node.names:  # `from tests import helpers` imports tests.helpers
                yield node.lineno, f"{name}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def offences(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    found = set()
    for path in python_files(folder):
        source = path.read_text(encoding="utf-8")
        for line, name in imported_modules(source, module_name(path), is_package=path.name == "__init__.py"):
            if any(name == top or name.startswith(f"{top}.") for top in forbidden):
                found.add(f"{path.relative_to(REPO)}:{line} imports {name}")
    return sorted(found)


def test_the_import_reader_sees_imports_at_any_depth() -> None:
    # The rules below are only as good as this reader: it must not miss the imports it is there for.
    source = (
        "import tests.helpers\n"
        "def f():\n"
        "    from tests import helpers\n"
        "    class C:\n"
        "        def g(self):\n"
        "            import importlib\n"
        "            return importlib.import_module('tests.fixtures.harness')\n"
        "from .harness import ports\n"
        "from .. import function_app\n"
    )
    found = {name for _line, name in imported_modules(source, "tools.bench.probe")}
    assert {"tests.helpers", "tests", "tests.fixtures.harness"} <= found
    assert {"tools.bench.harness.ports", "tools.function_app"} <= found
    found = {name for _line, name in imported_modules("from . import ports", "tools.harness", is_package=True)}
    assert found == {"tools.harness", "tools.harness.ports"}


def test_tools_never_import_tests() -> None:
    found = offences("tools", ("tests",))
    assert not found, "tools/ must not import tests/ (move what both need to tools/harness):\n" + "\n".join(found)


def test_the_core_never_imports_the_http_face() -> None:
    found = offences("shared", ("functions", "function_app"))
    assert not found, "shared/ must not import functions/ or function_app (take the app as an argument):\n" + (
        "\n".join(found)
    )


# The one door to mem0 (issue 23): the service's only importer of it. The benchmark modules named here
# build or time mem0 itself, to measure the service against it.
MEM0_DOOR = "shared/memory/mem0_engine.py"
MEASURES_MEM0 = ("tools/bench/inproc.py", "tools/bench/profile.py")


def test_mem0_is_imported_by_one_module_only() -> None:
    found = [
        offence
        for folder in ("shared", "functions", "tools")
        for offence in offences(folder, ("mem0",))
        if not offence.startswith((MEM0_DOOR, *MEASURES_MEM0))
    ]
    app = imported_modules((REPO / "function_app.py").read_text(encoding="utf-8"), "function_app")
    found += [f"function_app.py:{line} imports {name}" for line, name in app if name.split(".")[0] == "mem0"]
    assert not found, f"only {MEM0_DOOR} imports mem0 (give the service what it needs there):\n" + "\n".join(found)
    door = {
        name
        for _line, name in imported_modules((REPO / MEM0_DOOR).read_text(encoding="utf-8"), "shared.memory.mem0_engine")
    }
    assert any(name.startswith("mem0") for name in door)  # the check reads the door itself


def test_the_harness_needs_no_pytest() -> None:
    # Benchmarks use the harness outside pytest; its fixtures live in tests/fixtures.
    found = offences("tools/harness", ("pytest", "_pytest"))
    assert not found, "the harness must not import pytest (put fixtures in tests/fixtures):\n" + "\n".join(found)


def test_every_test_module_lives_in_the_folder_of_its_kind() -> None:
    tests = REPO / "tests"
    misplaced = [
        str(path.relative_to(REPO))
        for path in tests.rglob("test_*.py")
        if path.relative_to(tests).parts[0] not in FOLDER_MARKERS
    ]
    assert not misplaced, f"test modules outside {sorted(FOLDER_MARKERS)}: {misplaced}"


MAX_MODULE_LINES = 500


def test_no_module_of_the_core_or_the_http_face_is_over_500_lines() -> None:
    # Past that a module holds more than one concern: split it along its sections (see the store packages).
    long = [
        f"{path.relative_to(REPO)}: {count} lines"
        for folder in ("shared", "functions")
        for path in python_files(folder)
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    ]
    assert long == []


# --- layers of the core ----------------------------------------------------------------------------
# Lowest first. A unit is a package or a module of shared/ (the longest name that matches wins); it may
# import units of lower layers, never one of its own layer or above. A new package must be placed here.
SHARED_LAYERS: tuple[tuple[str, ...], ...] = (
    # the service's name and version, errors, request context, API limits, the lazy holder, scopes,
    # the circuit breaker; the table of local embedding models (data only: the settings read it)
    ("shared", "shared.errors", "shared.context", "shared.constraints", "shared.lazy", "shared.scope"),
    ("shared.caller_signature",),  # the HMAC of the caller headers API Management signs (stdlib only)
    ("shared.breaker", "shared.ai.local_models"),
    ("shared.settings", "shared.observability"),  # logs, traces, metrics: below everything that reports
    ("shared.credentials", "shared.query"),  # the Entra ID credential; the filter grammar and text analysis
    ("shared.contract",),  # the API's models (their filters are parsed by the query language)
    ("shared.stores",),  # vector-store port and adapters, state tables, the ingestion queue
    ("shared.ai",),  # model clients and embedders (mem0's backends are given a store)
    ("shared.search", "shared.graph"),  # ranking over the store port; the graph memory
    ("shared.memory",),  # the memory service and ingestion
    ("shared.chat",),
    ("shared.factory",),  # the composition root
    ("shared.runtime",),  # one of each per worker
    ("shared.health",),  # looks at what the runtime holds without building it
)


def shared_unit(module: str) -> str | None:
    """The declared unit `module` belongs to (`shared` itself only by its own name), else None."""
    found = [
        unit
        for layer in SHARED_LAYERS
        for unit in layer
        if module == unit or (unit != "shared" and module.startswith(f"{unit}."))
    ]
    return max(found, key=len) if found else None


def layer_of(unit: str) -> int:
    return next(n for n, layer in enumerate(SHARED_LAYERS) if unit in layer)


def upward_imports(imports: dict[str, set[tuple[int, str]]]) -> list[str]:
    """`module:line imports name` for every import from a unit into one of its own layer or above."""
    found: dict[tuple[str, int, str], str] = {}  # one line per import statement, its shortest name
    for module, targets in imports.items():
        unit = shared_unit(module)
        assert unit is not None, f"{module} is in no layer: place its package in SHARED_LAYERS"
        for line, name in sorted(targets, key=lambda target: len(target[1]), reverse=True):
            target = shared_unit(name) if name.startswith("shared.") else None
            if target is not None and target != unit and layer_of(target) >= layer_of(unit):
                found[module, line, target] = f"{module}:{line} imports {name} ({target} is not below {unit})"
    return sorted(found.values())


def shared_imports() -> dict[str, set[tuple[int, str]]]:
    found = {}
    for path in python_files("shared"):
        module = module_name(path)
        source = path.read_text(encoding="utf-8")
        found[module] = set(imported_modules(source, module, is_package=path.name == "__init__.py"))
    return found


def test_the_core_imports_only_downward() -> None:
    found = upward_imports(shared_imports())
    assert not found, "an import goes up the layers of shared/ (see SHARED_LAYERS):\n" + "\n".join(found)


def test_the_layer_check_sees_an_upward_import_and_an_undeclared_package() -> None:
    imports = {
        "shared.stores.vector.port": {
            (3, "shared.query.text"),
            (9, "shared.search.hybrid"),
            (9, "shared.search.hybrid.rank"),
        },
        "shared.search.hybrid": {(5, "shared.stores.vector.port")},
        "shared.graph.store": {(7, "shared.search")},  # same layer
        "shared": set(),
    }
    assert upward_imports(imports) == [
        "shared.graph.store:7 imports shared.search (shared.search is not below shared.graph)",
        "shared.stores.vector.port:9 imports shared.search.hybrid (shared.search is not below shared.stores)",
    ]
    assert shared_unit("shared.ai.local_models") == "shared.ai.local_models"
    assert shared_unit("shared.ai.llm") == "shared.ai"
    assert shared_unit("shared.sharedish") is None
    with pytest.raises(AssertionError, match="in no layer"):
        upward_imports({"shared.newpackage.module": set()})


# --- circles --------------------------------------------------------------------------------------
CIRCLE_ROOTS = ("shared", "functions", "tools")


def module_graph() -> dict[str, set[str]]:
    """Module -> the modules of the repository it imports. A package importing its own submodules (to
    re-export them) is how a package is built and is left out; a submodule importing its package counts."""
    paths = {module_name(path): path for root in CIRCLE_ROOTS for path in python_files(root)}
    paths["function_app"] = REPO / "function_app.py"
    graph = {}
    for module, path in paths.items():
        source = path.read_text(encoding="utf-8")
        names = {name for _line, name in imported_modules(source, module, is_package=path.name == "__init__.py")}
        graph[module] = {
            name for name in names if name in paths and name != module and not name.startswith(f"{module}.")
        }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle() -> None:
    assert cycles(module_graph()) == []


def test_the_circle_check_sees_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_circle_graph_keeps_type_only_imports_and_leaves_out_a_package_building_itself() -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from shared.chat.agent import ChatAgent\n"
    assert "shared.chat.agent" in {name for _line, name in imported_modules(source, "shared.factory")}
    graph = module_graph()
    # chroma/__init__ re-exports its store: not an edge; the store imports a sibling through the package: one
    assert "shared.stores.vector.chroma.store" not in graph["shared.stores.vector.chroma"]
    assert "shared.stores.vector.chroma" in graph["shared.stores.vector.chroma.store"]
