"""The OpenAPI document API Management imports (infra/openapi.json) is the one the app generates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from infra_support import INFRA, REPO_ROOT

COMMITTED = INFRA / "openapi.json"
# Bicep's loadTextContent() refuses files of more characters than this.
LOAD_TEXT_CONTENT_LIMIT = 131_072


def _differences(committed: Any, generated: Any, path: str = "$") -> list[str]:
    if type(committed) is not type(generated):
        return [f"{path}: {type(committed).__name__} in the file, {type(generated).__name__} generated"]
    if isinstance(committed, dict):
        out = []
        for key in sorted(set(committed) | set(generated)):
            if key not in generated:
                out.append(f"{path}.{key}: only in the committed file")
            elif key not in committed:
                out.append(f"{path}.{key}: missing from the committed file")
            else:
                out += _differences(committed[key], generated[key], f"{path}.{key}")
        return out
    if isinstance(committed, list) and len(committed) == len(generated):
        return [
            d
            for i, (a, b) in enumerate(zip(committed, generated, strict=True))
            for d in _differences(a, b, f"{path}[{i}]")
        ]
    return [] if committed == generated else [f"{path}: differs"]


def test_committed_document_is_loadable_by_bicep() -> None:
    text = COMMITTED.read_text(encoding="utf-8")
    assert len(text) < LOAD_TEXT_CONTENT_LIMIT, (
        f"infra/openapi.json has {len(text)} characters;"
        f" Bicep's loadTextContent() accepts at most {LOAD_TEXT_CONTENT_LIMIT}"
    )
    document = json.loads(text)
    assert str(document.get("openapi", "")).startswith("3."), "API Management imports an OpenAPI 3 document"
    assert document.get("paths"), "the document has no paths"
    operation_ids = [
        op.get("operationId") for item in document["paths"].values() for op in item.values() if isinstance(op, dict)
    ]
    assert all(operation_ids) and len(operation_ids) == len(set(operation_ids)), (
        "every operation needs a unique operationId (APIM operation names)"
    )


def test_committed_document_equals_the_generated_one() -> None:
    if not (REPO_ROOT / "shared" / "openapi.py").exists():
        pytest.skip("shared/openapi.py is not written yet; infra/openapi.json is a placeholder")
    from function_app import app
    from shared.openapi import build_openapi_document

    generated = json.loads(json.dumps(build_openapi_document(app)))
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    differences = _differences(committed, generated)
    assert not differences, (
        "infra/openapi.json is stale: regenerate it with `python -m tools.export_openapi` and commit it.\n"
        + "\n".join(differences[:20])
    )


def test_routes_match_the_function_host_prefix() -> None:
    # routePrefix "" means the app routes carry api/ themselves, exactly as the API contract writes them.
    host = json.loads(Path(REPO_ROOT / "host.json").read_text())
    assert host["extensions"]["http"]["routePrefix"] == ""
    paths = json.loads(COMMITTED.read_text(encoding="utf-8"))["paths"]
    assert "/health" in paths
    assert all(path == "/" or not path.startswith("/api/api/") for path in paths)
