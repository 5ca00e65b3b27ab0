"""Telemetry of a worker's last seconds: a worker that stops flushes its exporters, so the spans of
the calls it served just before arrive at Application Insights (here the ingestion stand-in)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import DevHost
from tools.harness.ingestion import DEPENDENCY, MESSAGE, METRIC, REQUEST, IngestionServer, base_data, kind

pytestmark = pytest.mark.e2e


def test_the_spans_of_calls_just_before_a_stop_arrive(tmp_path: Path, ingestion: IngestionServer) -> None:
    host = DevHost(tmp_path / "data", ingestion.exporter_env(), name="stopping").start()
    request_ids = []
    try:
        for i in range(3):
            response = host.client.post(
                "/api/memory/add", json={"user_id": f"u{uuid.uuid4().hex[:6]}", "content": f"x{i}"}
            )
            assert response.status_code == 200, response.text
            request_ids.append(response.headers["x-request-id"])
    finally:
        host.stop()  # at once: the exporters' batch interval (5 s) has not come round

    def arrived(items: list[dict[str, Any]]) -> bool:
        requests = {str(props(i).get("request_id")): i for i in items if kind(i) == REQUEST}
        if not set(request_ids) <= set(requests):
            return False
        operations = {
            str(i.get("tags", {}).get("ai.operation.id")) for rid, i in requests.items() if rid in request_ids
        }
        dependencies = {str(i.get("tags", {}).get("ai.operation.id")) for i in items if kind(i) == DEPENDENCY}
        logs = {str(props(i).get("request_id")) for i in items if kind(i) == MESSAGE}
        added = sum(1 for i in items if kind(i) == METRIC and "memories.added" in json.dumps(base_data(i)))
        return operations <= dependencies and set(request_ids) <= logs and added >= 1

    ingestion.wait_for(arrived, timeout=20)


def props(item: dict[str, Any]) -> dict[str, Any]:
    return dict(base_data(item).get("properties") or {})
