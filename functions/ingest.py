"""The ingestion queue's function: runs the events that asynchronous adds and chat turns put on
`memory-ingest` (shared/memory/ingest.py does the work and makes a redelivery harmless).

A failed attempt raises, so the host makes the message visible again after host.json's
`visibilityTimeout` and, once `maxDequeueCount` deliveries failed, moves it to
`memory-ingest-poison`; the last attempt marks the event `failed` with the reason first.
"""

from __future__ import annotations

import json
import logging

import azure.functions as func

from functions.http import blueprint
from shared.runtime import get_ingestion
from shared.stores.queues import INGEST_QUEUE

bp = blueprint()
logger = logging.getLogger("memory_layer.ingest")


@bp.function_name("memory_ingest")
@bp.queue_trigger(arg_name="msg", queue_name=INGEST_QUEUE, connection="AzureWebJobsStorage")
def memory_ingest(msg: func.QueueMessage) -> None:
    from shared.stores.queues import queue_rules

    try:
        body = json.loads(msg.get_body())
        event_id, user_id = str(body["event_id"]), str(body["user_id"])
    except (ValueError, KeyError, TypeError) as error:
        # Never valid on a later try either: raising sends it to the poison queue for a look.
        raise ValueError(f"ingestion message {msg.id} is not an event message: {error}") from None
    last_attempt = (msg.dequeue_count or 1) >= queue_rules().max_dequeue_count
    logger.info("event %s: delivery %s (message %s)", event_id, msg.dequeue_count, msg.id)
    get_ingestion().process(event_id, last_attempt=last_attempt, user_id=user_id)
