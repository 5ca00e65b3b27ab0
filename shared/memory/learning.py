"""Learning with reconciliation: what a chat turn (or an add asking for inference) teaches, kept true.

One learning event makes at most two model calls, whatever the number of facts:

1. extraction (our prompt, shared/memory/reconcile.py): the facts the user stated, in their language;
2. for each fact, the most similar *current* memories of the same scope (tenant, user, agent, run)
   through the service's own search; then ONE decision call for all facts: per fact ADD,
   SUPERSEDE(ids), INVALIDATE(ids) or NONE. No memory to compare with: every fact is ADD and the
   call is not made.

Writes: the ADD and SUPERSEDE facts are stored in one batch through the service's raw add path
(`add_memories`, where the duplicate check applies), then each SUPERSEDE links the old memories to
the new one and each INVALIDATE ends the memories named. A malformed or failed decision answer
makes every fact an ADD (nothing learned is lost), logged and counted
(`memory_layer.learning.fallbacks`); a malformed extraction learns nothing, also counted. A
tenant's exhausted model budget (429) is raised: the event waits and runs again.

Idempotent: the memory a fact becomes has a deterministic id (`learned_id`: uuid5 of the event's
write id and the fact's index) and one that exists already is not written again, so a redelivered
event never creates a second successor; `supersede` and `invalidate` change nothing the second time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

from shared.ai.quota import bills_scope
from shared.contract import MemoryInput, MemoryRecord
from shared.errors import QuotaExceeded
from shared.memory.outages import vector_store_calls
from shared.memory.reconcile import (
    MAX_FACTS,
    Action,
    Decision,
    Malformed,
    Shown,
    decision_messages,
    extraction_messages,
    parse_decisions,
    parse_facts,
)
from shared.observability import meters

if TYPE_CHECKING:
    from shared.memory.ports import MemoryGraph
    from shared.scope import Scope
    from shared.stores.state.history import HistoryStore
    from shared.stores.vector.port import VectorStore

logger = logging.getLogger(__name__)

Then = Callable[[list[str]], None]
_LEARNED_IDS = uuid.UUID("6f1d2c84-5b7e-4c1a-9d3f-2a8e0b7c4d15")
CANDIDATES_PER_FACT = 5


class JsonLlm(Protocol):
    """The chat model as learning calls it (shared/ai/llm.py's `ChatModel`: quota and retries apply)."""

    def complete(self, messages: list[dict[str, str]], *, json_mode: bool = False) -> str: ...


class ValidityWrites(Protocol):
    """The validity primitives of the memory service (issue 22, shared/memory/validity.py)."""

    def supersede(self, scope: Scope, old_ids: Sequence[str], new_id: str, *, at: str | None = None) -> None: ...

    def invalidate(self, scope: Scope, ids: Sequence[str], *, at: str | None = None) -> None: ...


class LearningMemories(ValidityWrites, Protocol):
    """What learning needs of the memory service."""

    store: VectorStore
    history: HistoryStore
    llm: JsonLlm

    def search_memories(
        self,
        scope: Scope | str,
        query: str,
        limit: int,
        filters: Any = None,
        threshold: float | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
    ) -> list[MemoryRecord]: ...

    def add_memories(
        self,
        scope: Scope | str,
        items: Sequence[MemoryInput],
        ids: Sequence[str] | None = None,
        *,
        agent_id: str | None = None,
        run_id: str | None = None,
    ) -> list[str]: ...


def validity_of(service: LearningMemories) -> ValidityWrites:
    """The service's supersede/invalidate (shared/memory/validity.py)."""
    return service


@dataclass
class LearnedFact:
    fact: str
    event: Action
    memory_id: str | None = None  # the memory the fact is now (ADD, SUPERSEDE)
    ids: list[str] = field(default_factory=list)  # the memories it superseded or invalidated


@dataclass
class Learned:
    facts: list[LearnedFact] = field(default_factory=list)
    fallback: str | None = None  # why the decision was not the model's ("malformed", "failed"), if so

    @property
    def added(self) -> list[str]:
        """The ids of the memories this event stored or found stored (ADD and SUPERSEDE), in fact order."""
        return list(dict.fromkeys(f.memory_id for f in self.facts if f.memory_id is not None))


def learned_id(write_id: str, index: int) -> str:
    """The id of the memory fact `index` of the learning write `write_id` becomes."""
    return str(uuid.uuid5(_LEARNED_IDS, f"{write_id}:fact:{index}"))


def learned_ids(write_id: str) -> list[str]:
    """Every id a learning write may have used (a purge erases those that exist)."""
    return [learned_id(write_id, index) for index in range(MAX_FACTS)]


def graph_write(graph: MemoryGraph | None, scope: Scope, message: str, write_id: str) -> Then | None:
    """A chat turn's graph step as learning's `then`: the graph learns from what the user said."""
    if graph is None:
        return None

    def learns(ids: list[str]) -> None:
        graph.extract_and_store(scope.key, message, ids, write_id=write_id, self_name=scope.user_id)

    return learns


@bills_scope
def learn_from_text(
    memories: LearningMemories,
    scope: Scope,
    text: str,
    metadata: dict[str, Any] | None,
    *,
    write_id: str,
    answer: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    expiration_date: date | None = None,
    then: Then | None = None,
) -> Learned:
    """What `text` (the user's words) teaches, reconciled and written: a chat turn's learning, an add
    with `infer`. The model calls are charged to the scope's tenant. `then(ids)` runs once the facts
    are stored and before any memory is ended (the chat's graph write), so that a failure there
    leaves nothing superseded: the event's purge removes the new memories, and the old stay current."""
    with vector_store_calls():
        return learn(
            memories, memories.llm, scope, text, answer, metadata=dict(metadata or {}), write_id=write_id,
            agent_id=agent_id, run_id=run_id, expiration_date=expiration_date, then=then,
        )  # fmt: skip


def learn(
    memories: LearningMemories,
    llm: JsonLlm,
    scope: Scope,
    message: str,
    answer: str | None,
    *,
    metadata: dict[str, Any],
    write_id: str,
    agent_id: str | None = None,
    run_id: str | None = None,
    expiration_date: date | None = None,
    then: Then | None = None,
) -> Learned:
    """Extract, reconcile and write what `message` teaches (see the module's docstring)."""
    raw = llm.complete(extraction_messages(message, answer), json_mode=True)
    raw_ok = True
    try:
        facts = parse_facts(raw)
    except Malformed as error:
        raw_ok = False
        logger.warning("learning: malformed extraction answer (%s); nothing learned", error)
        meters.learning_fallback("extraction", "malformed")
        facts = []
    if not facts:
        if then is not None:
            then([])
        return Learned(fallback=None if raw_ok else "extraction_malformed")
    ids = [learned_id(write_id, index) for index in range(len(facts))]
    shown, similar = _candidates(memories, scope, facts, set(ids), agent_id, run_id)
    learned = Learned()
    decisions = [Decision("ADD") for _ in facts]
    if shown:
        decisions, learned.fallback = _decide(llm, facts, shown, similar)
    decisions = _disjoint(decisions)
    # Not validated again: the metadata is the request's (checked) plus the event's own tags.
    item = MemoryInput.model_construct(content="-", metadata=dict(metadata) or None, expiration_date=expiration_date)
    _write(memories, scope, facts, ids, decisions, item, agent_id, run_id, learned, then)
    return learned


def _candidates(
    memories: LearningMemories,
    scope: Scope,
    facts: Sequence[str],
    own: set[str],
    agent_id: str | None,
    run_id: str | None,
) -> tuple[list[Shown], list[list[str]]]:
    """The current memories most similar to each fact, of exactly this scope, named by handle."""
    shown: dict[str, Shown] = {}
    similar: list[list[str]] = []
    for fact in facts:
        found = memories.search_memories(scope, fact, 2 * CANDIDATES_PER_FACT, agent_id=agent_id, run_id=run_id)
        handles = []
        for record in found:
            if record.id in own or not _same_scope(record, agent_id, run_id) or not _current(record):
                continue
            if record.id not in shown:
                shown[record.id] = Shown(f"m{len(shown) + 1}", record.id, record.memory, record.created_at)
            handles.append(shown[record.id].handle)
            if len(handles) == CANDIDATES_PER_FACT:
                break
        similar.append(handles)
    return list(shown.values()), similar


def _same_scope(record: MemoryRecord, agent_id: str | None, run_id: str | None) -> bool:
    return (record.agent_id or None) == agent_id and (record.run_id or None) == run_id


def _current(record: MemoryRecord) -> bool:
    """Not ended: reads already leave ended memories out (validity.py); a guard for what a search returns."""
    ended = getattr(record, "valid_until", None) or (record.metadata or {}).get("valid_until")
    return not ended


def _decide(
    llm: JsonLlm, facts: Sequence[str], shown: Sequence[Shown], similar: Sequence[Sequence[str]]
) -> tuple[list[Decision], str | None]:
    try:
        raw = llm.complete(decision_messages(facts, shown, similar), json_mode=True)
    except QuotaExceeded:
        raise  # the tenant's budget: the event waits for its window, nothing is decided without the model
    except Exception as error:
        logger.warning("learning: the decision call failed (%r); every fact is added", error)
        meters.learning_fallback("decision", "failed")
        return [Decision("ADD") for _ in facts], "failed"
    try:
        decisions = parse_decisions(raw, len(facts), shown)
    except Malformed as error:
        logger.warning("learning: malformed decision answer (%s); every fact is added", error)
        meters.learning_fallback("decision", "malformed")
        return [Decision("ADD") for _ in facts], "malformed"
    return decisions, None


def _disjoint(decisions: Sequence[Decision]) -> list[Decision]:
    """A memory is ended by one fact only: the first decision naming it keeps it."""
    taken: set[str] = set()
    kept = []
    for decision in decisions:
        ids = tuple(i for i in decision.ids if i not in taken)
        taken.update(ids)
        if decision.action == "SUPERSEDE" and not ids:
            decision = Decision("ADD")
        elif decision.action == "INVALIDATE" and not ids:
            decision = Decision("NONE")
        else:
            decision = Decision(decision.action, ids)
        kept.append(decision)
    return kept


def _write(
    memories: LearningMemories,
    scope: Scope,
    facts: Sequence[str],
    ids: Sequence[str],
    decisions: Sequence[Decision],
    like: MemoryInput,
    agent_id: str | None,
    run_id: str | None,
    learned: Learned,
    then: Then | None,
) -> None:
    stored_as: dict[int, str] = {}
    wanted = [i for i, d in enumerate(decisions) if d.action in ("ADD", "SUPERSEDE")]
    existing = memories.store.fetch([ids[i] for i in wanted]) if wanted else {}
    for i in wanted:
        if ids[i] in existing:  # a redelivered event: written the first time
            stored_as[i] = ids[i]
    todo = [i for i in wanted if i not in stored_as]
    if todo:
        items = [like.model_copy(update={"content": facts[i]}) for i in todo]  # metadata, expiry: as given
        written = memories.add_memories(scope, items, [ids[i] for i in todo], agent_id=agent_id, run_id=run_id)
        stored_as.update(zip(todo, written, strict=True))  # a duplicate answers the existing memory's id
    if then is not None:
        then(list(dict.fromkeys(stored_as[i] for i in wanted)))
    validity = validity_of(memories)  # the memories are ended last: see `learn_from_text`
    for i, decision in enumerate(decisions):
        if decision.action == "SUPERSEDE" and stored_as[i] in decision.ids:  # the fact IS an old memory
            rest = tuple(old for old in decision.ids if old != stored_as[i])
            decision = Decision("SUPERSEDE", rest) if rest else Decision("NONE")
        fact = LearnedFact(facts[i], decision.action, stored_as.get(i), list(decision.ids))
        if decision.action == "SUPERSEDE":
            validity.supersede(scope, list(decision.ids), stored_as[i])
        elif decision.action == "INVALIDATE":
            validity.invalidate(scope, list(decision.ids))
        meters.learning_decision(decision.action)
        learned.facts.append(fact)
