"""The import rules of the layout (issue 12), read from the source with `ast`, so an import inside a
function counts as much as one at the top of a module:

* `tools/` never imports `tests/`: the servers tests and benchmarks share live in tools/harness;
* `shared/` (the core) never imports the HTTP face, `functions/` or `function_app`;
* every test lives in the folder of its kind (tests/unit, integration, e2e, infra), which sets its marker.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

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
