"""Fixtures of the infrastructure checks: the parsed Bicep files and the infra tool venv.

The Bicep parsers and checkov live in their own venv (requirements-infra.txt), because checkov pins
versions of shared libraries that the app must not get. Its location is .cache/infra-venv, or the
INFRA_VENV environment variable. Tests that need it are skipped, with a reason, only when it is absent.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

# The tests of this folder import infra_support, and shared.settings from the repository root,
# whatever import mode pytest runs in.
for _path in (Path(__file__).resolve().parent, Path(__file__).resolve().parents[2]):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from infra_support import INFRA, dump_bicep  # noqa: E402


@pytest.fixture(scope="session")
def bicep_files() -> dict[str, dict[str, Any]]:
    """Every .bicep file under infra/, keyed by its path relative to infra/, as both parsers see it."""
    parsed = dump_bicep(INFRA)
    assert parsed, "no .bicep file found under infra/"
    return parsed


@pytest.fixture(scope="session")
def templates(bicep_files: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The pycep JSON of every .bicep file (only files that parse; test_bicep_syntax reports the rest)."""
    return {path: entry["pycep"] for path, entry in bicep_files.items() if entry["pycep"] is not None}


@pytest.fixture(scope="session")
def main_template(templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    assert "main.bicep" in templates, "infra/main.bicep is missing or does not parse"
    return templates["main.bicep"]
