"""Ingestion as events: asynchronous adds (`Prefer: respond-async`) and a chat turn's learning.

A request creates an event (its input kept with it, see shared/stores/state/events.py) and then,
by the ingestion mode:
- `queue` (the host storage is configured): the event id goes on the `memory-ingest` queue and
  the queue-triggered function (functions/ingest.py) runs `process`; the request answers 202
  with the event still `queued`.
- `inline` (zero-setup default): `process` runs before the response, so the event is
  `succeeded` (or the request fails with the error the synchronous path would give).

`process` is idempotent by event id, because the queue delivers at least once (a worker that
dies mid-event, a visibility lease that runs out, a replay from the poison queue):
- `succeeded`: nothing to do.
- an earlier attempt started (`attempts > 0`): whatever it may have written is purged first, then
  the event is redone. Adds write memories whose ids derive from the event id (uuid5), so the
  purge knows them without a lookup and a redo can never add a second copy; a learning event
  tags what it learns with its turn id and its graph write with the event id.
A failed attempt purges what it wrote, so an event is all or nothing; the queue retries it
(host.json `maxDequeueCount`), and on the last attempt the event becomes `failed` with the reason.
An attempt refused because the tenant has spent its model budget (`QuotaExceeded`) is no failure:
the event goes back on the queue, hidden until the budget's window ends (`Retry-After`), and stays
`queued` (up to `MAX_DEFERRALS` times), so a bulk import sent asynchronously waits instead of failing.

Erasure is a barrier (shared/stores/state/erasure.py). An event holds its user's erasure epoch from
its creation; the epoch is read again after the event is created, before an attempt starts and
after it wrote. An event that finds its user erased since (a message still on the queue, an
attempt under way when `DELETE /api/memory/user/{id}` ran) is `cancelled`: what it may have written
is purged and the event itself deleted, so nothing of the erased user is left. Its queue message
is not searched for (a queue cannot be searched by user without taking every other message out
of the workers' hands); it is delivered as usual and its processing is this no-op, after which
the host deletes it like any other handled message.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from shared.context import iso_utc
from shared.contract import MemoryInput
from shared.errors import NotFound, QuotaExceeded, ServiceError
from shared.scope import Scope, as_scope, scope_of_key
from shared.stores.state.events import EventKind, EventStore, IngestEvent

if TYPE_CHECKING:
    from shared.memory.service import MemoryService
    from shared.settings import Settings
    from shared.stores.state.erasure import ErasureLedger

logger = logging.getLogger(__name__)

# Ids of the memories an add event writes: uuid5 of the event id and the item's position.
_MEMORY_IDS = uuid.UUID("0f5c4d0e-53a1-4c4e-9a43-2f0a1c9f7b6d")
# How many times an event waits for its tenant's model budget before it is treated as failing.
MAX_DEFERRALS = 30


class EventQueue(Protocol):
    """Where queued events wait for the ingestion function (shared/stores/queues.py's `IngestQueue`)."""

    def send(self, message: dict[str, Any], *, delay_seconds: int = 0) -> None: ...


class Learner(Protocol):
    """What a learning event needs of the chat agent."""

    def learn(self, user_id: str, job: dict[str, Any], write_id: str) -> list[str]: ...

    def forget(self, user_id: str, job: dict[str, Any], write_id: str) -> None: ...


def memory_ids_for(event_id: str, count: int) -> list[str]:
    return [str(uuid.uuid5(_MEMORY_IDS, f"{event_id}:{index}")) for index in range(count)]


def graph_write_id(event_id: str) -> str:
    return uuid.uuid5(_MEMORY_IDS, f"{event_id}:graph").hex


def is_valid_event_id(event_id: str) -> bool:
    try:
        uuid.UUID(event_id)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def describe_error(error: BaseException) -> str:
    """The reason an event failed, as a client may read it: our own errors say what happened; any
    other exception is named only as internal (its text can hold host names, paths or a library's
    internals, which the worker's log keeps)."""
    if isinstance(error, ServiceError):
        return f"{error.code}: {error.message}"[:500]
    return "internal_error: the event failed on an unexpected error; quote its event id when reporting it"


class Ingestion:
    """Creates, dispatches, runs and reports ingestion events."""

    def __init__(
        self,
        settings: Settings,
        events: EventStore,
        queue: EventQueue | None,
        memory_service: Callable[[], MemoryService],
        learner: Callable[[], Learner],
        erasure: ErasureLedger,
    ) -> None:
        self.settings = settings
        self.events = events
        self.erasure = erasure  # the users' erasure epochs, checked around every write
        self.queue = queue  # None: events run inline
        self._memory_service = memory_service
        self._learner = learner

    @property
    def inline(self) -> bool:
        return self.queue is None

    # --- the request side ----------------------------------------------------------------------
    def create(self, user_id: str, kind: EventKind, job: dict[str, Any], *, epoch: str | None = None) -> IngestEvent:
        """A new `queued` event holding its input; nothing runs yet. `epoch` is the user's erasure
        epoch when the work began (read now if not given): an event created while its user was
        being erased is deleted again and comes back `cancelled`."""
        if epoch is None:
            epoch = self.erasure.epoch(user_id)
        now = iso_utc()
        event = IngestEvent(str(uuid.uuid4()), user_id, kind, "queued", now, now, epoch=epoch)
        self.events.create(event, job)
        if self.erased_since(user_id, epoch):
            return self.cancel(event, job)
        return event

    def erased_since(self, user_id: str, epoch: str) -> bool:
        """Whether the user was erased since the work holding `epoch` began."""
        return self.erasure.epoch(user_id) != epoch

    def cancel(self, event: IngestEvent, job: dict[str, Any] | None) -> IngestEvent:
        """Ends an event whose user was erased: what it may have written is purged (`job` is its input,
        None when nothing ran) and the event deleted. Returns it `cancelled`, which is never stored."""
        if job is not None and (event.attempts > 0 or event.status != "queued"):
            self._purge(event, job)
            if event.kind == "learn":  # mem0 logged the exchange for its next extraction's context
                self._memory_service().erase_logged_messages(event.user_id)
        self.events.delete(event)
        logger.info("event %s cancelled: its user was erased", event.event_id)
        event.status, event.updated_at = "cancelled", iso_utc()
        return event

    def dispatch(self, event: IngestEvent) -> IngestEvent:
        """Queue mode: the event goes on the queue. Inline: it runs now (its error is raised)."""
        if event.status == "cancelled":
            return event
        if self.queue is None:
            return self.process(event.event_id, last_attempt=True) or event
        try:
            self.queue.send({"event_id": event.event_id, "user_id": event.user_id})
        except ServiceError as error:
            self.fail(event, describe_error(error))
            raise
        return event

    def submit(self, user_id: str, kind: EventKind, job: dict[str, Any]) -> IngestEvent:
        return self.dispatch(self.create(user_id, kind, job))

    def submit_memories(
        self,
        scope: Scope | str,
        items: list[MemoryInput],
        kind: EventKind = "batch_add",
        *,
        agent_id: str | None = None,
        run_id: str | None = None,
        allow_duplicates: bool = False,
        infer: bool = False,
    ) -> IngestEvent:
        """`infer`: the one item's facts are extracted and reconciled (shared/memory/learning.py)."""
        scope = as_scope(scope)
        job: dict[str, Any] = {"items": [item.model_dump(mode="json") for item in items], **scope_job(scope)}
        job.update({k: v for k, v in {"agent_id": agent_id, "run_id": run_id}.items() if v is not None})
        if allow_duplicates:
            job["allow_duplicates"] = True
        if infer:
            job["infer"] = True
        return self.submit(scope.key, kind, job)

    def fail(self, event: IngestEvent, reason: str) -> IngestEvent:
        event.status, event.error, event.updated_at = "failed", reason, iso_utc()
        self.events.save(event)  # not written back if the event was erased meanwhile
        return event

    def undo(self, event: IngestEvent, job: dict[str, Any], reason: str) -> None:
        """A succeeded event whose request failed after it (the chat turn's session write): purge it.
        `job` is the event's input as the caller gave it (a succeeded event no longer keeps its own)."""
        self._purge(event, job)
        self.fail(event, reason)

    def get_event(self, event_id: str, scope: Scope | str | None) -> IngestEvent:
        """The event, if it exists in the caller's tenant and (when the scope names a user) is that
        user's; 404 either way, so an id says nothing about anybody else's events."""
        scope = as_scope(scope)
        event = self.events.get(event_id) if is_valid_event_id(event_id) else None
        if event is None:
            raise NotFound(f"event {event_id!r} not found")
        mine = event.user_id == scope.key if scope.user_id is not None else scope.user_of(event.user_id) is not None
        if not mine:
            raise NotFound(f"event {event_id!r} not found")
        return event

    # --- the worker side -----------------------------------------------------------------------
    def process(self, event_id: str, *, last_attempt: bool, user_id: str | None = None) -> IngestEvent | None:
        """Run one event (a queue delivery, or inline). Raises when the attempt failed, so the queue retries."""
        event = self.events.get(event_id)
        if event is None or (user_id is not None and user_id != event.user_id):
            # Erased with its user, or a message naming someone else's event: nothing to do.
            logger.warning("ingestion message for unknown event %s dropped", event_id)
            return None
        if event.status == "succeeded":
            logger.info("event %s already succeeded; redelivery ignored", event_id)
            return event
        job = self.events.job(event_id)
        if self.erased_since(event.user_id, event.epoch):
            return self.cancel(event, job)
        if job is None:
            return self.fail(event, "the event's input is gone")
        if event.attempts > 0:
            logger.info("event %s: attempt %d after an unfinished one; purging first", event_id, event.attempts + 1)
            self._purge(event, job)
        event.status, event.attempts, event.updated_at = "processing", event.attempts + 1, iso_utc()
        if not self.events.save(event):  # deleted with its user since it was read
            return self.cancel(event, None)
        try:
            memory_ids = self._run(event, job)
        except Exception as error:
            # The log keeps what the client's answer leaves out: the exception itself, and its traceback.
            unexpected = not isinstance(error, ServiceError)
            logger.warning("event %s attempt %d failed: %r", event_id, event.attempts, error, exc_info=unexpected)
            try:
                self._purge(event, job)
            except Exception:  # the next attempt purges again (attempts > 0)
                logger.exception("event %s: could not purge a failed attempt", event_id)
            deferred = isinstance(error, QuotaExceeded) and self._defer(event, error)
            event.status = "queued" if deferred or not last_attempt else "failed"
            event.error, event.updated_at = describe_error(error), iso_utc()
            self.events.save(event)
            if deferred:
                return event
            raise
        event.status, event.memory_ids, event.error, event.updated_at = "succeeded", memory_ids, None, iso_utc()
        # After the writes: an erasure that began before this check finds the epoch moved (so this
        # attempt removes its writes); one that begins after it finds the writes (and removes them).
        if self.erased_since(event.user_id, event.epoch) or not self.events.save(event):
            return self.cancel(event, job)
        # The memories hold the text now; the event keeps no second copy of it.
        self.events.drop_job(event_id)
        return event

    def _defer(self, event: IngestEvent, refusal: QuotaExceeded) -> bool:
        """Queue mode: the event waits on the queue until its tenant's budget window ends."""
        if self.queue is None or event.attempts > MAX_DEFERRALS:
            return False
        try:
            self.queue.send({"event_id": event.event_id, "user_id": event.user_id}, delay_seconds=refusal.retry_after)
        except ServiceError as error:
            logger.warning("event %s could not be deferred: %s", event.event_id, describe_error(error))
            return False
        logger.info("event %s waits %d s for its tenant's model budget", event.event_id, refusal.retry_after)
        return True

    def _run(self, event: IngestEvent, job: dict[str, Any]) -> list[str]:
        if event.kind == "learn":
            return self._learner().learn(event.user_id, job, graph_write_id(event.event_id))
        items = [MemoryInput.model_validate(item) for item in job.get("items") or []]
        if job.get("infer"):
            from shared.memory.learning import learn_from_text

            [item] = items
            return learn_from_text(
                self._memory_service(), job_scope(event.user_id, job), item.content, item.metadata,
                write_id=graph_write_id(event.event_id), agent_id=job.get("agent_id"), run_id=job.get("run_id"),
                expiration_date=item.expiration_date,
            ).added  # fmt: skip
        ids = memory_ids_for(event.event_id, len(items))
        return list(  # the ids alone (a duplicate's is the existing memory's), as the event keeps them
            self._memory_service().add_memories(
                job_scope(event.user_id, job),
                items,
                ids=ids,
                agent_id=job.get("agent_id"),
                run_id=job.get("run_id"),
                allow_duplicates=bool(job.get("allow_duplicates")),
            )
        )

    def _purge(self, event: IngestEvent, job: dict[str, Any]) -> None:
        if event.kind == "learn":
            self._learner().forget(event.user_id, job, graph_write_id(event.event_id))
            return
        if job.get("infer"):
            from shared.memory.learning import learned_ids

            self._memory_service().erase_memories(learned_ids(graph_write_id(event.event_id)))
            return
        ids = memory_ids_for(event.event_id, len(job.get("items") or []))
        self._memory_service().erase_memories(ids)


def scope_job(scope: Scope) -> dict[str, Any]:
    """What an event's input records of the scope it acts in (its `user_id` is the storage key)."""
    return {"scope_user": scope.user_id, "scope_tenant": scope.tenant} if scope.tenant is not None else {}


def job_scope(user_key: str, job: dict[str, Any]) -> Scope:
    """The scope an event acts in: as recorded with its input, else the one the storage key names."""
    if job.get("scope_tenant") is not None:
        return Scope(str(job["scope_user"]), tenant=str(job["scope_tenant"]))
    return scope_of_key(user_key)
