"""`tools/` under the product's rules (issue 23): packages by purpose, no module over 500 lines, and every
`python -m tools...` command the repository names is one that runs. No import circle in tools/ is checked
with the rest of the repository in test_layout.py."""

from __future__ import annotations

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
