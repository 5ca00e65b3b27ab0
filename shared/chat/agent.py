"""The chat agent: answers with the LLM using the user's memories and the session's earlier turns,
then records the turn and what it learned.

A turn is recorded fully or not at all. "Fully" means: the session holds the exchange, and the
memories the LLM extracted from it are stored. Nothing is written until the answer exists; the
extraction (mem0 `add` with inference) writes only after its own LLM call succeeded. Every memory
learned in a turn carries that turn's id, so if anything after the first write fails (a store
dropping mid-extraction, the session write), the turn's memories are found by that id and
deleted before the error is answered. An LLM outage at any step answers 503 and leaves no trace.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from shared.contract import RESERVED_METADATA_KEYS, ChatMessageResponse, MemoryRecord
from shared.errors import LlmNotConfigured, utc_now_iso
from shared.memory.service import MemoryService, vector_store_calls
from shared.observability import meters
from shared.settings import Settings
from shared.stores.state.sessions import SessionStore, Turn

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = """You are a helpful assistant with long-term memory of this user.
Use the memories below when they are relevant; do not invent memories. If they conflict, prefer
the most recent. Answer in the language the user writes in.

What you remember about the user:
{memories}
{relations}"""


class ChatAgent:
    def __init__(self, settings: Settings, service: MemoryService, sessions: SessionStore, llm: Any) -> None:
        self.settings = settings
        self.service = service
        self.sessions = sessions
        self.llm = llm

    def chat(
        self, user_id: str, message: str, session_id: str | None, metadata: dict[str, Any] | None = None
    ) -> ChatMessageResponse:
        session_id = session_id or f"session_{uuid.uuid4().hex[:16]}"
        history = self.sessions.recent_turns(user_id, session_id, self.settings.chat_history_turns)
        memories = self._relevant_memories(user_id, message)
        graph = self.service.search_relations(user_id, message)
        if graph is not None and graph.warning and graph.warning.get("code") == "graph_unavailable":
            # The turn's graph write would fail too: say so before spending two LLM calls.
            from shared.graph import GraphUnavailable

            raise GraphUnavailable(graph.warning.get("message") or "the graph store is unavailable; retry later")
        relations = graph.relations if graph is not None else []
        messages = self.build_prompt(memories, history, message, relations)
        answer = self.llm.complete(messages)
        turn_id = uuid.uuid4().hex
        turn = Turn(
            user_message=message,
            assistant_message=answer,
            timestamp=utc_now_iso(),
            memories_used=[m.id for m in memories],
        )
        graph_write = None
        try:
            learned = self._learn(user_id, session_id, turn_id, message, answer, metadata)
            if self.service.graph is not None:
                # What the user said is what the graph learns from ("I" is the user's own node).
                graph_write = self.service.graph.extract_and_store(user_id, message, learned)
            self.sessions.append_turn(user_id, session_id, turn)
        except Exception:
            self._forget_turn(user_id, turn_id, graph_write)
            raise
        return ChatMessageResponse(
            response=answer,
            user_id=user_id,
            session_id=session_id,
            memories_used=turn.memories_used,
            timestamp=turn.timestamp,
        )

    def _relevant_memories(self, user_id: str, message: str) -> list[MemoryRecord]:
        if self.settings.chat_memory_limit == 0:
            return []
        return self.service.search_memories(user_id, message, self.settings.chat_memory_limit)

    @staticmethod
    def build_prompt(
        memories: list[MemoryRecord], history: list[Turn], message: str, relations: list[dict[str, Any]] | None = None
    ) -> list[dict[str, str]]:
        listed = "\n".join(f"- {m.memory}" for m in memories) or "- (nothing yet)"
        known = ""
        if relations:
            from shared.graph import format_relations

            heading = "How the things the user mentioned relate (from their graph memory):"
            known = f"\n{heading}\n{format_relations(relations)}\n"
        messages = [{"role": "system", "content": SYSTEM_PROMPT.format(memories=listed, relations=known)}]
        for turn in history:
            messages.append({"role": "user", "content": turn.user_message})
            messages.append({"role": "assistant", "content": turn.assistant_message})
        messages.append({"role": "user", "content": message})
        return messages

    def _learn(
        self,
        user_id: str,
        session_id: str,
        turn_id: str,
        message: str,
        answer: str,
        metadata: dict[str, Any] | None,
    ) -> list[str]:
        """Let mem0 extract facts from the exchange (LLM inference); returns the ids it added."""
        exchange = [{"role": "user", "content": message}, {"role": "assistant", "content": answer}]
        # The request's flat metadata travels with what was learned (mem0's own keys cannot be set).
        learned = {
            k: v
            for k, v in (metadata or {}).items()
            if isinstance(v, str | int | float | bool) and k not in RESERVED_METADATA_KEYS
        }
        learned.update({"learned_from": "chat", "session_id": session_id, "turn_id": turn_id})
        with vector_store_calls():
            result = self.service.memory.add(exchange, user_id=user_id, metadata=learned, infer=True)
        added = [str(item["id"]) for item in result.get("results", []) if item.get("event") == "ADD"]
        meters.memories_added(len(added), "chat")
        return added

    def _forget_turn(self, user_id: str, turn_id: str, graph_write: Any = None) -> None:
        """Delete whatever a failed turn had already learned (best effort: the error is reported anyway)."""
        if graph_write is not None and self.service.graph is not None:
            try:
                self.service.graph.revert_write(user_id, graph_write)
            except Exception:
                logger.exception("turn %s failed and its graph write could not be reverted", turn_id)
        try:
            removed = self.service.delete_where(user_id, {"turn_id": turn_id})
            if removed:
                logger.warning("turn %s failed after learning %d memories; removed them", turn_id, removed)
        except Exception:
            logger.exception("turn %s failed and its memories could not be removed", turn_id)


def build_chat_agent(settings: Settings, service: MemoryService, sessions: SessionStore) -> ChatAgent:
    if not settings.llm_configured:
        raise LlmNotConfigured()
    return ChatAgent(settings, service, sessions, service.memory.llm)
