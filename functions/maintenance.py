"""Timer-triggered upkeep: the purge of expired memories.

An expired memory is already invisible on every read (the engines filter on `_expires`); the purge
erases it for good, with its history and its part of the graph (`MemoryService.purge_expired`).
The schedule is an NCRONTAB expression (six fields, seconds first): at minute 0 of every hour.
`run_on_startup` stays off, as the host's documentation advises for production.

A run goes through the invocation pipeline (functions/invocation.py) with the host's invocation id
as its request id; a failure is logged, counted and raised again, so the host records the run as failed.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions import invocation
from functions.http import blueprint
from shared.context import new_request_id
from shared.runtime import get_memory_service

bp = blueprint()
logger = logging.getLogger("memory_layer.maintenance")

PURGE_SCHEDULE = "0 0 * * * *"


@bp.function_name("memory_purge_expired")
@bp.timer_trigger(schedule=PURGE_SCHEDULE, arg_name="timer", run_on_startup=False)
def memory_purge_expired(timer: func.TimerRequest, context: func.Context) -> None:
    invocation.run(
        invocation.TIMER,
        "memory_purge_expired",
        new_request_id(context.invocation_id),
        context.trace_context,
        lambda: purge_expired(timer),
    )


def purge_expired(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logger.info("the expired-memory purge is running late")
    purged = get_memory_service().purge_expired()
    logger.info("expired-memory purge: %d memories erased", purged)
