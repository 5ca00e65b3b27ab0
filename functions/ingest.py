"""The ingestion queue's function: runs the events that asynchronous adds and chat turns put on
`memory-ingest` (shared/memory/ingest.py does the work and makes a redelivery harmless).

Each delivery runs through the invocation pipeline (functions/invocation.py) with the event's id as
its request id (the message's id when the body names no event), so every log line and span of an
event's attempts carries the id its 202 answer gave. A failed attempt raises, so the host makes the
message visible again after host.json's `visibilityTimeout` and, once `maxDequeueCount` deliveries
failed, moves it to `memory-ingest-poison`; the last attempt marks the event `failed` with the reason first.
"""

from __future__ import annotations

import json
import logging

import azure.functions as func

from functions import invocation
from functions.http import blueprint
from shared.context import new_request_id
from shared.runtime import get_ingestion
from shared.stores.queues import INGEST_QUEUE

bp = blueprint()
logger = logging.getLogger("memory_layer.ingest")


@bp.function_name("memory_ingest")
@bp.queue_trigger(arg_name="msg", queue_name=INGEST_QUEUE, connection="AzureWebJobsStorage")
def memory_ingest(msg: func.QueueMessage, context: func.Context) -> None:
    try:
        event: tuple[str, str] | None = read_event(msg)
        unreadable: ValueError | None = None
    except ValueError as error:  # raised inside the pipeline, so it is logged and counted
        event, unreadable = None, error

    def work() -> None:
        if unreadable is not None:
            raise unreadable
        assert event is not None
        process(msg, *event)

    invocation.run(
        invocation.QUEUE,
        "memory_ingest",
        new_request_id(event[0] if event is not None else msg.id),
        context.trace_context,
        work,
        label=f"queue {INGEST_QUEUE} message {msg.id} (delivery {msg.dequeue_count})",
    )


def read_event(msg: func.QueueMessage) -> tuple[str, str]:
    """The event id and user id a message names."""
    try:
        body = json.loads(msg.get_body())
        return str(body["event_id"]), str(body["user_id"])
    except (ValueError, KeyError, TypeError) as error:
        # Never valid on a later try either: raising sends it to the poison queue for a look.
        raise ValueError(f"ingestion message {msg.id} is not an event message: {error}") from None


def process(msg: func.QueueMessage, event_id: str, user_id: str) -> None:
    from shared.stores.queues import queue_rules

    last_attempt = (msg.dequeue_count or 1) >= queue_rules().max_dequeue_count
    logger.info("event %s: delivery %s (message %s)", event_id, msg.dequeue_count, msg.id)
    get_ingestion().process(event_id, last_attempt=last_attempt, user_id=user_id)
