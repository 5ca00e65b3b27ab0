"""Fixtures shared by the whole suite: the harness servers, the embedding model, and the zero-setup
dev host. Helpers that are not fixtures (DevHost, local_model_path, ...) are in tests/helpers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import DevHost, local_model_path

# The harness fixtures (fake_openai, azurite, chroma_server, neo4j_server), available to every test.
pytest_plugins = ["tests.fixtures.harness"]


@pytest.fixture(scope="session")
def model_path() -> Path:
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
