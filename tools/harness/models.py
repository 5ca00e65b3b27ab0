"""Where tests, benchmarks and tools find the local embedding model and the benchmark data.

The default model is installed with the service (the pinned package's int8 all-MiniLM-L6-v2 and
the tokenizer in the repository, `shared/ai/local_models.py`), so tests and benchmarks need
nothing beside the checkout for it. LOCAL_EMBEDDING_MODEL_PATH, when set, names another model
folder (e.g. the fp32 export in the team's shared folder, to compare against). The team's shared
folder beside the checkout is the source of the benchmark data only; the data is never copied into
the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = REPO_ROOT.parent / "shared"
# The fp32 export of all-MiniLM-L6-v2 in the team's folder: what the packaged int8 model is compared with.
SHARED_MODEL = SHARED_DIR / "models" / "all-MiniLM-L6-v2-onnx"
DEFAULT_LOCOMO = SHARED_DIR / "data" / "locomo" / "locomo_dev.json"


class ModelMissing(RuntimeError):
    """The local embedding model is neither installed nor where LOCAL_EMBEDDING_MODEL_PATH says."""


def local_model_path() -> Path | None:
    """The model folder LOCAL_EMBEDDING_MODEL_PATH names, or None for the installed default model."""
    from shared.ai.local_models import INSTALL_HINT, packaged_minilm
    from shared.ai.onnx_encoder import is_model_folder

    configured = os.environ.get("LOCAL_EMBEDDING_MODEL_PATH")
    if configured:
        path = Path(configured)
        if not is_model_folder(path):
            raise ModelMissing(
                f"LOCAL_EMBEDDING_MODEL_PATH={path} holds no model.onnx with its tokenizer.json: unset it to use "
                "the installed default model"
            )
        return path.resolve()
    if packaged_minilm() is None:
        raise ModelMissing(f"the default local embedding model is not installed: {INSTALL_HINT}")
    return None


def model_env() -> dict[str, str]:
    """The environment that gives a service process the same model: the folder when one is configured."""
    path = local_model_path()
    return {"LOCAL_EMBEDDING_MODEL_PATH": str(path)} if path is not None else {}
