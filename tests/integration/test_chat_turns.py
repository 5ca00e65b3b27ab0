"""A chat turn is recorded fully or not at all, through the real agent, stores and LLM client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import runtime
from shared.stores.state.sessions import _digest
from tests.helpers import model_env
from tools.harness.fake_openai import FakeOpenAIServer

FACT = {"facts": ["Owns a black cat named Miso"]}


@pytest.fixture
def agent_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, FakeOpenAIServer]]:
    with FakeOpenAIServer() as llm:
        for key, value in {
            "DATA_DIR": str(tmp_path),
            **model_env(),
            "LLM_PROVIDER": "openai",
            "OPENAI_BASE_URL": llm.base_url,
            "OPENAI_API_KEY": "k",
            "LLM_MAX_RETRIES": "0",
        }.items():
            monkeypatch.setenv(key, value)
        runtime.reset()
        yield tmp_path, llm
        runtime.reset()


def test_a_failed_session_write_removes_what_the_turn_learned(agent_env) -> None:
    data_dir, llm = agent_env
    llm.when(match=lambda r: bool(r.get("response_format")), reply=FACT)
    # The user's session folder is blocked by a file: reads see no session, the append fails.
    (data_dir / "sessions").mkdir()
    (data_dir / "sessions" / _digest("dora")).write_text("not a folder")
    agent = runtime.get_chat_agent()
    with pytest.raises(OSError):
        agent.chat("dora", "I have a black cat called Miso", "s1")
    assert runtime.get_memory_service().list_memories("dora") == []
    assert len(llm.chat_requests()) == 2  # the answer and the extraction did run


def test_a_complete_turn_keeps_memories_tagged_with_request_metadata(agent_env) -> None:
    _, llm = agent_env
    llm.when(match=lambda r: bool(r.get("response_format")), reply=FACT)
    agent = runtime.get_chat_agent()
    reply = agent.chat("erin", "I have a black cat called Miso", "s1", {"source": "web", "nested": {"x": 1}})
    (memory,) = runtime.get_memory_service().list_memories("erin")
    assert memory.memory == "Owns a black cat named Miso"
    assert memory.metadata["source"] == "web" and memory.metadata["learned_from"] == "chat"
    assert memory.metadata["session_id"] == "s1"
    assert "nested" not in memory.metadata and len(memory.metadata["turn_id"]) == 32
    assert reply.session_id == "s1"
    assert [t.user_message for t in agent.sessions.recent_turns("erin", "s1", 10)] == ["I have a black cat called Miso"]


def test_an_extraction_failure_after_a_good_answer_records_nothing(agent_env) -> None:
    _, llm = agent_env

    def answer_then_break_the_next_call(request: dict) -> str:
        llm.fail_next(1, status=500)  # the extraction, which comes next, fails (no retries configured)
        return "Noted!"

    llm.when(match=lambda r: not r.get("response_format"), reply=answer_then_break_the_next_call)
    agent = runtime.get_chat_agent()
    from shared.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable):
        agent.chat("finn", "remember my cat", "s1")
    assert [r.status for r in llm.chat_requests()] == [200, 500]
    assert runtime.get_memory_service().list_memories("finn") == []
    assert agent.sessions.recent_turns("finn", "s1", 10) == []
