"""Fixtures shared by the whole suite (the harness servers, the embedding model, the zero-setup dev
host) and the markers that say what kind each test is. Helpers that are not fixtures (DevHost,
local_model_path, ...) are in tests/helpers.py.

A test's kind is the folder it lives in, so `pytest -m unit` (or `tests/unit`) is the fast run:
  tests/unit         no server, no subprocess: pure functions and in-process objects (one exception:
                     test_indexing.py asks a fresh `python -c` what `import function_app` loads)
  tests/integration  real servers and stores: in process, or started by tools/harness
  tests/e2e          through the dev host, or a subprocess, over HTTP
  tests/infra        offline checks of the Bicep templates and the deployment files
A kind marker written on a test (an e2e test kept in an integration module) wins over its folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import FOLDER_MARKERS, DevHost, local_model_path

# No library phones home from a test run: mem0 and chromadb read these when they are first imported,
# which a test may do before the service's own setup (shared/memory/mem0_engine.py) sets them.
os.environ.setdefault("MEM0_TELEMETRY", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

# The harness fixtures (fake_openai, azurite, chroma_server, neo4j_server), available to every test.
pytest_plugins = ["tests.fixtures.harness"]

TESTS = Path(__file__).resolve().parent
KIND_MARKERS = frozenset(FOLDER_MARKERS.values())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            folder = item.path.resolve().relative_to(TESTS).parts[0]
        except ValueError:  # a test outside tests/ (pytest run on another path): no kind to give
            continue
        marker = FOLDER_MARKERS.get(folder)
        if marker is not None and not any(item.get_closest_marker(kind) for kind in KIND_MARKERS):
            item.add_marker(marker)


@pytest.fixture(scope="session", autouse=True)
def devhost_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Dev hosts built in tests keep their "storage" (timer leases, schedule status) out of the repository."""
    folder = tmp_path_factory.mktemp("devhost-state")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEVHOST_STATE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def model_path() -> Path | None:
    return local_model_path()


@pytest.fixture(scope="session")
def devhost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevHost]:
    """The zero-setup service, shared by the tests that only need a working API."""
    root = tmp_path_factory.mktemp("devhost")
    host = DevHost(root / "data").start()
    yield host
    host.stop()


@pytest.fixture
def api(devhost: DevHost) -> httpx.Client:
    return devhost.client
