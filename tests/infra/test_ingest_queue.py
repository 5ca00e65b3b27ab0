"""The ingestion queue as deployed: the queue the trigger and the app use, its poison queue, the
events table, and a queue role for the app's identity."""

from __future__ import annotations

from typing import Any

from infra_support import resource_body


def test_the_ingestion_queue_its_poison_queue_and_the_events_table_are_declared(
    templates: dict[str, dict[str, Any]], main_template: dict[str, Any]
) -> None:
    from shared.settings import Settings
    from shared.stores.queues import INGEST_QUEUE, POISON_SUFFIX

    variables = main_template["variables"]
    assert variables["ingestQueueName"]["value"] == INGEST_QUEUE  # what functions/ingest.py listens to
    assert variables["eventsTableName"]["value"] == Settings.model_fields["events_table"].default
    resources = templates["app/storage.bicep"]["resources"]
    assert resource_body(resources["ingestQueue"]) == {"parent": "queueServices", "name": "ingestQueueName"}
    poison = resource_body(resources["ingestPoisonQueue"])
    assert poison["name"] == "${ingestQueueName}" + POISON_SUFFIX  # the host's `<queue>-poison`
    assert resource_body(resources["eventsTable"])["name"] == "eventsTableName"


def test_the_apps_identity_may_send_receive_and_poison_queue_messages(templates: dict[str, dict[str, Any]]) -> None:
    rbac = templates["app/rbac.bicep"]
    body = resource_body(rbac["resources"]["functionQueueContributor"])
    assert body["scope"] == "storage"
    assert "storageQueueDataContributor" in str(body["properties"]["roleDefinitionId"])
    assert body["properties"]["principalId"] == "functionPrincipalId"
