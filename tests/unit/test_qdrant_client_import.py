"""qdrant-client is built without importing fastembed (shared/stores/vector/qdrant/client.py), and
fastembed stays importable afterwards for the local models that use it."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO

PROBE = """
import sys
import shared.stores.vector.qdrant  # the adapter package: imports qdrant-client
from shared.stores.vector.qdrant.client import qdrant_client
client = qdrant_client(location=":memory:")
client.get_collections()
print(sorted(m for m in ("fastembed", "onnxruntime", "PIL", "huggingface_hub") if m in sys.modules))
import fastembed
print(fastembed.TextEmbedding.__name__)
"""


def test_the_client_is_built_without_fastembed_and_fastembed_still_imports() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["[]", "TextEmbedding"], done.stdout


def test_without_the_guard_the_client_does_import_fastembed() -> None:
    # The reason for the guard, checked so it is removed when qdrant-client stops doing this.
    probe = "import sys\nimport qdrant_client\nprint('fastembed' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"
