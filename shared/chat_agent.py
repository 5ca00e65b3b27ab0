"""The chat agent: answers with the LLM using the user's memories and the session's earlier turns,
then records the turn and what it learned.

A turn is recorded fully or not at all. "Fully" means: the session holds the exchange, and the
memories the LLM extracted from it are stored. Nothing is written until the answer exists; the
extraction (mem0 `add` with inference) writes only after its own LLM call succeeded; if storing
the session turn then fails, the memories just added are deleted again. So an LLM outage at any
step answers 503 and leaves no trace.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from shared.errors import LlmNotConfigured, utc_now_iso
from shared.memory_service import MemoryService, vector_store_calls
from shared.models import ChatMessageResponse, MemoryRecord
from shared.sessions import SessionStore, Turn
from shared.settings import Settings

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = """You are a helpful assistant with long-term memory of this user.
Use the memories below when they are relevant; do not invent memories. If they conflict, prefer
the most recent. Answer in the language the user writes in.

What you remember about the user:
{memories}
"""


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
        messages = self.build_prompt(memories, history, message)
        answer = self.llm.complete(messages)
        added = self._learn(user_id, session_id, message, answer)
        turn = Turn(
            user_message=message,
            assistant_message=answer,
            timestamp=utc_now_iso(),
            memories_used=[m.id for m in memories],
        )
        try:
            self.sessions.append_turn(user_id, session_id, turn)
        except Exception:
            logger.exception("session write failed; undoing the %d memories learned from this turn", len(added))
            for memory_id in added:
                try:
                    self.service.delete_memory(memory_id, user_id)
                except Exception:
                    logger.exception("could not undo memory %s", memory_id)
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
    def build_prompt(memories: list[MemoryRecord], history: list[Turn], message: str) -> list[dict[str, str]]:
        listed = "\n".join(f"- {m.memory}" for m in memories) or "- (nothing yet)"
        messages = [{"role": "system", "content": SYSTEM_PROMPT.format(memories=listed)}]
        for turn in history:
            messages.append({"role": "user", "content": turn.user_message})
            messages.append({"role": "assistant", "content": turn.assistant_message})
        messages.append({"role": "user", "content": message})
        return messages

    def _learn(self, user_id: str, session_id: str, message: str, answer: str) -> list[str]:
        """Let mem0 extract facts from the exchange (LLM inference); returns the ids it added."""
        exchange = [{"role": "user", "content": message}, {"role": "assistant", "content": answer}]
        with vector_store_calls():
            result = self.service.memory.add(
                exchange, user_id=user_id, metadata={"source": "chat", "session_id": session_id}, infer=True
            )
        added = [str(item["id"]) for item in result.get("results", []) if item.get("event") == "ADD"]
        self.service.forget_cached(user_id)
        return added


def build_chat_agent(settings: Settings, service: MemoryService, sessions: SessionStore) -> ChatAgent:
    if not settings.llm_configured:
        raise LlmNotConfigured()
    return ChatAgent(settings, service, sessions, service.memory.llm)
