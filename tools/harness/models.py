"""Where tests, benchmarks and tools find the local embedding model and the benchmark data.

The team's shared folder sits beside the checkout (in CI too); the model and the data are never
copied into the repository. A real deployment has neither: it is configured through
LOCAL_EMBEDDING_MODEL_PATH or uses Azure OpenAI embeddings.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = REPO_ROOT.parent / "shared"
SHARED_MODEL = SHARED_DIR / "models" / "all-MiniLM-L6-v2-onnx"
DEFAULT_LOCOMO = SHARED_DIR / "data" / "locomo" / "locomo_dev.json"


class ModelMissing(RuntimeError):
    """The local embedding model is not where LOCAL_EMBEDDING_MODEL_PATH (or the shared folder) says."""


def local_model_path() -> Path:
    """The local ONNX embedding model: LOCAL_EMBEDDING_MODEL_PATH, else the team's shared copy."""
    configured = os.environ.get("LOCAL_EMBEDDING_MODEL_PATH")
    path = Path(configured) if configured else SHARED_MODEL
    if not (path / "model.onnx").is_file():
        raise ModelMissing(
            f"the local embedding model is missing at {path}: set LOCAL_EMBEDDING_MODEL_PATH to a folder holding "
            "all-MiniLM-L6-v2 as ONNX (the team folder ../shared/models has one)"
        )
    return path.resolve()
