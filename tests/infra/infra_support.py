"""Paths and helpers of the infrastructure checks, and readers of the pycep JSON of a Bicep file
(see bicep_dump.py for how it is produced).

pycep renders an expression as nested dicts ({"function": ...}, {"operator": ...}); identifiers and
string literals both become plain strings. These helpers only walk that structure.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"


def infra_venv() -> Path:
    """The venv of the infra tools (requirements-infra.txt): .cache/infra-venv, or $INFRA_VENV."""
    return Path(os.environ.get("INFRA_VENV", REPO_ROOT / ".cache" / "infra-venv"))


def infra_tool(name: str) -> Path:
    """A program of the infra venv; skips the calling test, saying how to create it, when it is missing."""
    path = infra_venv() / "bin" / name
    if not path.exists():
        pytest.skip(
            f"{path} is missing: create the infra tool venv with `python3.11 -m venv .cache/infra-venv "
            "&& .cache/infra-venv/bin/pip install -r requirements-infra.txt`"
        )
    return path


def dump_bicep(folder: Path) -> dict[str, dict[str, Any]]:
    """Every .bicep file under `folder`, keyed by its path relative to it, as both parsers see it
    (bicep_dump.py, run with the infra venv's interpreter)."""
    completed = subprocess.run(
        [str(infra_tool("python")), str(Path(__file__).with_name("bicep_dump.py")), str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, f"bicep_dump.py failed:\n{completed.stderr}"
    parsed: dict[str, dict[str, Any]] = json.loads(completed.stdout)
    return parsed


def module_body(module: dict[str, Any]) -> dict[str, Any]:
    """The `{ name, scope, params }` object of a module, also when it is conditional (`= if (...)`)."""
    config = module["config"]
    return config["config"] if "condition" in config and "config" in config else config


def resource_body(resource: dict[str, Any]) -> dict[str, Any]:
    config = resource["config"]
    return config["config"] if "condition" in config and "config" in config else config


def has_default(parameter: dict[str, Any]) -> bool:
    return "default" in parameter and parameter["default"] is not None


def description(parameter: dict[str, Any]) -> str | None:
    for decorator in parameter.get("decorators") or []:
        if decorator.get("type") == "description":
            return str(decorator.get("argument") or "")
    return None


def decorator(parameter: dict[str, Any], kind: str) -> Any:
    """The argument of a parameter's decorator (`allowed`, `min_value`, `max_value`, `metadata`...), or None."""
    for item in parameter.get("decorators") or []:
        if item.get("type") == kind:
            return item.get("argument")
    return None


def is_secure(parameter: dict[str, Any]) -> bool:
    return any(decorator.get("type") == "secure" for decorator in parameter.get("decorators") or [])


def object_literals(
    expression: Any, variables: dict[str, Any], seen: frozenset[str] = frozenset()
) -> Iterator[dict[str, Any]]:
    """Every object literal an expression can evaluate to, following variable references.

    Function and operator nodes are walked through (every branch of a condition, every argument of
    union()); a string naming a variable of the template is replaced by that variable's value.
    """
    if isinstance(expression, str):
        if expression in variables and expression not in seen:
            yield from object_literals(variables[expression]["value"], variables, seen | {expression})
        return
    if isinstance(expression, list):
        for item in expression:
            yield from object_literals(item, variables, seen)
        return
    if not isinstance(expression, dict):
        return
    if len(expression) == 1 and "function" in expression:
        for argument in (expression["function"].get("parameters") or {}).values():
            yield from object_literals(argument, variables, seen)
        return
    if len(expression) == 1 and "operator" in expression:
        for operand in (expression["operator"].get("operands") or {}).values():
            yield from object_literals(operand, variables, seen)
        return
    yield expression


def strings(expression: Any) -> Iterator[str]:
    """Every string anywhere in an expression (identifiers and literals alike)."""
    if isinstance(expression, str):
        yield expression
    elif isinstance(expression, dict):
        for key, value in expression.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(expression, list):
        for item in expression:
            yield from strings(item)
