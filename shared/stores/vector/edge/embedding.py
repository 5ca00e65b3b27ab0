"""Which embedding model a shard's vectors come from: recorded in the shard, compared when it opens.

Vectors of two models cannot be compared, even at the same size (a 384-dimension MiniLM vector
means nothing to another 384-dimension model), so a shard that holds memories keeps the id and
size of the model that embedded them in `embedding_model.json` inside its folder (the engine
ignores the file; a compaction carries it over; a re-embedding writes the new one in the same swap
as the new vectors). Opening a shard with memories under another model is refused with the
command that moves them (`python -m tools.ops.migrate_store --reembed`); an empty shard simply takes
the configured model. A shard written before the record existed is taken to hold the configured
model's vectors (the only one it could have been opened with at that size) and gets the record.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.errors import ConfigurationProblem

logger = logging.getLogger(__name__)

MODEL_FILE = "embedding_model.json"
REEMBED_COMMAND = "python -m tools.ops.migrate_store --reembed"


class EmbeddingModelChanged(ConfigurationProblem):
    """The shard holds vectors of another embedding model than the configured one."""


def recorded(folder: Path) -> dict[str, Any] | None:
    """{"model", "dims"} recorded in the shard at `folder`, or None."""
    try:
        data = json.loads((Path(folder) / MODEL_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) and "model" in data else None


def record(folder: Path, model: str, dims: int) -> None:
    """Writes the record atomically (a crash leaves the old one or the new one, never half of one)."""
    target = Path(folder) / MODEL_FILE
    scratch = target.with_name(f"{MODEL_FILE}.tmp")
    scratch.write_text(json.dumps({"model": model, "dims": dims}) + "\n", encoding="utf-8")
    os.replace(scratch, target)


def check_model(folder: Path, collection_name: str, model: str, dims: int, points: Callable[[], int]) -> None:
    """Refuses a shard whose memories another model embedded; records the model where nothing is recorded."""
    found = recorded(folder)
    if found is not None and found.get("model") == model and found.get("dims") == dims:
        return
    count = points()
    if found is not None and count:
        raise EmbeddingModelChanged(
            f"collection '{collection_name}' at {folder} holds {count} memories embedded with "
            f"{found.get('model')} ({found.get('dims')} dimensions), but the configured embedder is {model} "
            f"({dims} dimensions): vectors of two models cannot be compared. Stop the service and run "
            f"`{REEMBED_COMMAND}` to re-embed them with the configured model (the old shard is kept beside it), "
            "or configure the previous model again, or use another COLLECTION_NAME"
        )
    if found is None and count:
        logger.warning(
            "collection '%s' at %s has no record of its embedding model (written before it was recorded): "
            "recording the configured %s (%d dimensions)",
            collection_name,
            folder,
            model,
            dims,
        )
    record(folder, model, dims)


def stored_dims(folder: Path) -> int | None:
    """The vector size a shard was created with (its `edge_config.json`), or None."""
    try:
        config = json.loads((Path(folder) / "edge_config.json").read_text(encoding="utf-8"))
        return int(config["vectors"][""]["size"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
