"""The workbook and the alert rules: wired into main.bicep, covering what the issue asks, and reading
metric names the service really records (shared/observability/meters.py)."""

from __future__ import annotations

import json
import re
from typing import Any

from infra_support import INFRA, module_body, strings

from shared.observability import meters

OBSERVABILITY = INFRA / "app" / "observability.bicep"
WORKBOOK = INFRA / "app" / "monitoring" / "workbook.json"
SERVICE_METRICS = {
    value
    for name, value in vars(meters).items()
    if name.isupper() and isinstance(value, str) and value.startswith("memory_layer.")
}


def _queries() -> dict[str, str]:
    document = json.loads(WORKBOOK.read_text())
    assert document["version"] == "Notebook/1.0"
    return {
        item["content"]["title"]: item["content"]["query"]
        for item in document["items"]
        if item["type"] == 3  # a KQL query step
    }


def test_workbook_shows_latency_errors_dependencies_tokens_and_memories() -> None:
    queries = _queries()
    text = "\n".join(queries.values())
    assert any(
        "percentile(duration, 50)" in q and "percentile(duration, 95)" in q and "by name" in q for q in queries.values()
    )
    assert any("resultCode" in q and ">= 500" in q for q in queries.values()), "no error-rate query"
    assert any(q.startswith("dependencies") and "by type, name" in q for q in queries.values())
    for metric in (meters.LLM_TOKENS, meters.MEMORIES_ADDED):
        assert f'"{metric}"' in text, f"the workbook does not chart {metric}"


def test_alerts_cover_5xx_latency_throttling_and_poison_with_the_action_group() -> None:
    text = OBSERVABILITY.read_text()
    rules = re.findall(r"name: '([a-z0-9-]+)'\n\s+displayName:", text)
    assert set(rules) == {"server-errors", "latency-p95", "llm-throttling", "poison-messages"}, rules
    assert f'"{meters.LLM_THROTTLES}"' in text and f'"{meters.QUEUE_POISON}"' in text
    assert "actionGroups: [\n    actionGroupId\n  ]" in text


def test_every_metric_the_infra_reads_is_one_the_service_records() -> None:
    read = set(re.findall(r'"(memory_layer\.[a-z_.]+)"', OBSERVABILITY.read_text() + WORKBOOK.read_text()))
    assert read, "no service metric is read"
    assert read <= SERVICE_METRICS, sorted(read - SERVICE_METRICS)


def test_main_wires_the_module_to_application_insights(main_template: dict[str, Any]) -> None:
    module = main_template["modules"]["observability"]
    assert module["detail"]["path"] == "app/observability.bicep"
    params = module_body(module)["params"]
    identifiers = set(strings(params["applicationInsightsId"]))
    assert {"monitoring", "outputs", "applicationInsightsId"} <= identifiers, identifiers
    assert "alertActionGroupId" in json.dumps(params["actionGroupId"])
