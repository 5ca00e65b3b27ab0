"""`tools/` under the product's rules (issue 23): packages by purpose, no module over 500 lines, no import
circle (imports inside functions and those only for type checkers count), and every `python -m tools...`
command the repository names is one that runs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.helpers import REPO

TOOLS = REPO / "tools"
SKIPPED_DIRS = {"__pycache__", "neo4j_launcher"}
MAX_MODULE_LINES = 500
# What may sit at the top of tools/ besides its packages: the two entry points of the README.
TOP_LEVEL_FILES = {"__init__.py", "dev.sh"}
_COMMAND = re.compile(r"python3? -m (tools(?:\.\w+)+)")


def tools_modules() -> dict[str, Path]:
    found = {}
    for path in sorted(TOOLS.rglob("*.py")):
        relative = path.relative_to(REPO)
        if SKIPPED_DIRS.intersection(relative.parts):
            continue
        parts = relative.with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(path: Path, module: str) -> set[str]:
    """Every module name `module` imports, at any depth, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*kept, base] if base else kept)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the tools/ modules it imports; a package importing its own submodules is left out."""
    modules = tools_modules()
    return {
        name: {t for t in imports_of(path, name) if t in modules and t != name and not t.startswith(f"{name}.")}
        for name, path in modules.items()
    }


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The modules of each import circle (strongly connected components of more than one module)."""
    order: list[str] = []
    seen: set[str] = set()

    def finish_order(node: str) -> None:  # iterative DFS: the first pass of Kosaraju's algorithm
        stack = [(node, iter(sorted(graph.get(node, ()))))]
        seen.add(node)
        while stack:
            current, targets = stack[-1]
            target = next((t for t in targets if t not in seen), None)
            if target is None:
                order.append(current)
                stack.pop()
            else:
                seen.add(target)
                stack.append((target, iter(sorted(graph.get(target, ())))))

    for node in sorted(graph):
        if node not in seen:
            finish_order(node)
    reverse: dict[str, set[str]] = {}
    for source, targets in graph.items():
        for target in targets:
            reverse.setdefault(target, set()).add(source)
    assigned: set[str] = set()
    found = []
    for node in reversed(order):
        if node in assigned:
            continue
        component, pending = [], [node]
        assigned.add(node)
        while pending:
            current = pending.pop()
            component.append(current)
            for source in reverse.get(current, ()):
                if source not in assigned:
                    assigned.add(source)
                    pending.append(source)
        if len(component) > 1:
            found.append(sorted(component))
    return sorted(found)


def test_tools_holds_packages_by_purpose_and_no_loose_script() -> None:
    loose = sorted(p.name for p in TOOLS.iterdir() if p.is_file() and p.name not in TOP_LEVEL_FILES)
    assert not loose, (
        f"loose files in tools/: {loose}; put each in the package of its purpose (devhost, harness, bench, "
        "ops, build, lab)"
    )
    packages = [p for p in TOOLS.iterdir() if p.is_dir() and p.name not in SKIPPED_DIRS]
    assert all((p / "__init__.py").is_file() for p in packages), "every folder of tools/ is a package"


def test_no_module_of_tools_is_over_500_lines() -> None:
    long = [
        f"{path.relative_to(REPO)}: {count} lines"
        for path in tools_modules().values()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    ]
    assert long == []


def test_no_import_circle_in_tools() -> None:
    graph = import_graph()
    assert "tools.devhost.routing" in graph["tools.devhost.asgi"], "the graph must see the dev host's imports"
    assert circles(graph) == []


def test_the_circle_check_sees_a_circle_and_reads_imports_at_any_depth() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e2"}, "e2": {"e"}}
    assert circles(graph) == [["a", "b", "c"], ["e", "e2"]]
    source = TOOLS / "devhost" / "host.py"  # imports its triggers inside create_asgi_app, keys for types only
    assert {"tools.devhost.queues", "tools.devhost.keys"} <= imports_of(source, "tools.devhost.host")


def named_commands() -> dict[str, set[str]]:
    """`python -m tools...` module -> the files that name it (docs, messages, tests, the tools themselves)."""
    sources = [REPO / "README.md", REPO / "function_app.py", *(REPO / "docs").glob("*.md")]
    for folder in ("shared", "functions", "tests", "tools", "infra", ".ci"):
        sources += [
            p
            for p in (REPO / folder).rglob("*")
            if p.is_file()
            and p.suffix in {".py", ".md", ".sh", ".bicep", ".yaml", ".json", ""}
            and not SKIPPED_DIRS.intersection(p.parts)
        ]
    found: dict[str, set[str]] = {}
    for path in sources:
        for module in _COMMAND.findall(path.read_text(encoding="utf-8", errors="replace")):
            found.setdefault(module, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_tools_command_the_repository_names_runs() -> None:
    commands = named_commands()
    assert {"tools.devhost", "tools.ops.migrate_store", "tools.build.gen_docs"} <= set(commands)
    modules = tools_modules()

    def runs(module: str) -> bool:  # a module, or a package with a __main__
        path = modules.get(module)
        return path is not None and (path.name != "__init__.py" or (path.parent / "__main__.py").is_file())

    stale = {module: sorted(where) for module, where in commands.items() if not runs(module)}
    assert not stale, f"commands that no longer run (the module moved?): {stale}"
