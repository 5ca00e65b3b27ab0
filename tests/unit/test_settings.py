"""Settings validation: an inconsistent configuration fails naming the variables to fix (pydantic wraps
the ConfigurationError it raises in a ValidationError, a ValueError)."""

from __future__ import annotations

import pytest

from shared.settings import Settings


def test_the_embedded_store_is_refused_on_an_azure_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "a1b2c3")
    with pytest.raises(ValueError, match="QDRANT_URL"):
        Settings(vector_store="qdrant", qdrant_url=None)
    assert Settings(vector_store="qdrant", qdrant_url="https://q.example:6333").qdrant_url
    assert Settings(vector_store="chroma", chroma_host="chroma.internal").chroma_host == "chroma.internal"


def test_the_embedded_store_is_the_default_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBSITE_INSTANCE_ID", raising=False)
    assert Settings().qdrant_url is None


def test_missing_and_placeholder_values_are_named() -> None:
    with pytest.raises(ValueError, match="CHROMA_HOST"):
        Settings(vector_store="chroma", chroma_host=None)
    with pytest.raises(ValueError, match="NEO4J_PASSWORD still holds a placeholder"):
        Settings(graph_store="neo4j", neo4j_uri="bolt://x:7687", neo4j_password="your_neo4j_password")
