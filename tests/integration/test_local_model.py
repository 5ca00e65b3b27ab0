"""The local embedder without its model on disk and without a way to download it: a clear 503 at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.ai import embeddings
from shared.ai.embeddings import LocalEmbedder
from shared.errors import ConfigurationProblem


def test_a_model_that_cannot_be_had_fails_at_once_naming_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASTEMBED_CACHE_PATH", str(tmp_path / "empty-cache"))  # nothing cached
    monkeypatch.setattr(embeddings, "DOWNLOAD_HOST", "127.0.0.1")  # a download host that refuses
    embedder = LocalEmbedder("sentence-transformers/all-MiniLM-L6-v2", None, 384, 1)
    with pytest.raises(ConfigurationProblem) as raised:
        embedder.embed("hello")
    assert raised.value.status == 503 and raised.value.code == "misconfigured"
    assert "LOCAL_EMBEDDING_MODEL_PATH" in raised.value.message and "LOCAL_EMBEDDING_MODEL" in raised.value.message
    assert embedder.failure is raised.value  # what /health reports

    # The next request is answered from memory, without trying the cache or the network again.
    monkeypatch.setattr(embeddings, "_unreachable", lambda host: pytest.fail("tried the network again"))
    with pytest.raises(ConfigurationProblem):
        embedder.embed_batch(["a", "b"])
    assert embedder.failure is not None


def test_a_model_folder_without_the_model_is_named() -> None:
    embedder = LocalEmbedder("sentence-transformers/all-MiniLM-L6-v2", Path("/nonexistent"), 384, 1)
    with pytest.raises(ConfigurationProblem, match="LOCAL_EMBEDDING_MODEL_PATH=/nonexistent"):
        embedder.embed("hello")
