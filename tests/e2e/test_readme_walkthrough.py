"""The curl walk-through of the API manual (docs/api.md, "A walk-through with curl"), run as written
against the dev host (the README links to it; the file keeps its name).

The commands are read from docs/api.md itself (continuation lines joined, `$BASE` and `MEMORY_ID`
filled in), in their order, so an example a newcomer copies cannot drift from the service: each
must answer 200 with the shape asserted here. The host is the zero-setup default (embedded store,
the installed local model, local files) plus a fake OpenAI-compatible LLM, since the chat example
needs one. `MEMORY_ID` is the id of the memory the walk-through last created (the chat turn's
learned memory, then the added one), as a reader would paste it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.memory.reconcile import DECIDE_TAG, EXTRACT_TAG
from tests.helpers import REPO, DevHost
from tools.harness.fake_openai import FakeOpenAIServer

WALKTHROUGH = REPO / "docs" / "api.md"
SECTION = "\n## A walk-through with curl"
LEARNED = "喜欢科幻电影，特别是《星际穿越》"


@dataclass(frozen=True)
class Curl:
    method: str
    url: str
    body: Any
    line: str


def walkthrough(page: Path = WALKTHROUGH) -> list[Curl]:
    """The curl commands of the first bash block under SECTION, in order."""
    text = page.read_text(encoding="utf-8")
    assert SECTION in text, f"{page.name}: no section {SECTION.strip()!r}"
    section = text.split(SECTION, 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, f"{page.name}: no bash block under {SECTION.strip()!r}"
    joined = re.sub(r"\\\n\s*", " ", block.group(1))
    commands = []
    pending = ""
    for raw in joined.splitlines():
        line = f"{pending}\n{raw}" if pending else raw
        if not line.startswith("curl "):
            continue
        try:  # a quoted body may go on over the next lines
            words = shlex.split(line, comments=True)
        except ValueError:
            pending = line
            continue
        pending = ""
        method, body, url = "GET", None, None
        i = 1
        while i < len(words):
            word = words[i]
            if word == "-X":
                method, i = words[i + 1], i + 2
            elif word == "-H":
                i += 2
            elif word == "-d":
                body, i = json.loads(words[i + 1]), i + 2
            else:
                url, i = word, i + 1
        assert url is not None, line
        commands.append(Curl(method if body is None or method != "GET" else "POST", url, body, line))
    return commands


# What each example's answer holds, by method and path (MEMORY_ID and user ids as the page writes
# them): ("data", keys) for the envelope {success, message, data, request_id, timestamp}, ("body", keys)
# for the answers that are not in it (the seed's chat answer, the system endpoints).
ENVELOPE = {"success", "message", "data", "request_id", "timestamp"}
SHAPES: dict[tuple[str, str], tuple[str, set[str]]] = {
    ("POST", "/api/chat/message"): ("body", {"response", "user_id", "session_id", "memories_used", "timestamp"}),
    ("POST", "/api/chat/search-memories"): ("data", {"results"}),
    ("GET", "/api/chat/memories/alice"): ("data", {"results", "total"}),
    ("DELETE", "/api/chat/memory/MEMORY_ID"): ("data", {"memory_id"}),
    ("DELETE", "/api/chat/memories/alice"): ("data", {"deleted"}),
    ("POST", "/api/memory/add"): ("data", {"memory_id", "user_id", "content"}),
    ("POST", "/api/memory/batch-add"): ("data", {"count", "memory_ids"}),
    ("POST", "/api/memory/search"): ("data", {"results"}),
    ("GET", "/api/memory/user/alice"): ("data", {"results", "total"}),
    ("PUT", "/api/memory/update"): ("data", {"memory_id", "content"}),
    ("GET", "/api/memory/memory/MEMORY_ID"): ("data", {"id", "memory", "user_id", "metadata", "created_at"}),
    ("GET", "/api/memory/memory/MEMORY_ID/history"): ("data", {"memory_id", "history"}),
    ("DELETE", "/api/memory/memory/MEMORY_ID"): ("data", {"memory_id"}),
    ("DELETE", "/api/memory/user/alice"): ("data", {"deleted"}),
    ("GET", "/api/memory/stats/alice"): (
        "data",
        {"user_id", "total_memories", "date_distribution", "category_distribution"},
    ),
    ("GET", "/api/memory/export/alice"): ("data", {"user_id", "exported_at", "memories", "sessions"}),
    ("GET", "/api/memory/graph/alice"): ("data", {"user_id", "enabled", "nodes", "edges"}),
    ("GET", "/health"): ("body", {"status", "timestamp", "version"}),
    ("GET", "/health/detail"): ("body", {"status", "timestamp", "version", "checks"}),
    ("GET", "/metrics"): ("body", {"total_requests", "active_connections", "timestamp"}),
    ("GET", "/"): ("body", {"name", "version", "docs", "health"}),
}


def test_the_walkthrough_is_read_from_the_api_manual() -> None:
    commands = walkthrough()
    paths = [(c.method, c.url.split("?")[0].replace("$BASE", "")) for c in commands]
    assert paths == list(SHAPES), "docs/api.md's walk-through changed: update SHAPES (and the service, if it must)"
    add = next(c for c in commands if c.url.endswith("/api/memory/add"))
    assert add.body["content"] == "用户偏好使用Python进行数据分析"  # the seed's first example


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevHost]:
    with FakeOpenAIServer() as llm:
        # The chat turn's learning: our extraction answers the fact; a decision (if asked) adds it.
        llm.when(EXTRACT_TAG, role="system", reply={"facts": [LEARNED]})
        llm.when(DECIDE_TAG, role="system", reply={"decisions": []})
        env = {"LLM_PROVIDER": "openai", "OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "k"}
        if url := os.environ.get("QDRANT_TEST_URL"):  # the same walk-through against a Qdrant server
            env.update({"QDRANT_URL": url, "COLLECTION_NAME": f"readme_{uuid.uuid4().hex[:8]}"})
        server = DevHost(tmp_path_factory.mktemp("readme") / "data", env, name="readme-host").start()
        yield server
        server.stop()


def test_every_walkthrough_example_answers_200_with_its_shape(host: DevHost) -> None:
    memory_id: str | None = None
    answers: dict[tuple[str, str], Any] = {}
    for curl in walkthrough():
        url = curl.url.replace("$BASE", "")
        path = url.split("?")[0]
        if "MEMORY_ID" in url or (curl.body and "MEMORY_ID" in json.dumps(curl.body)):
            assert memory_id, f"no memory to stand for MEMORY_ID yet: {curl.line}"
            url = url.replace("MEMORY_ID", memory_id)
        body = json.loads(json.dumps(curl.body).replace("MEMORY_ID", memory_id or "")) if curl.body else None
        response = host.client.request(curl.method, url, json=body)
        assert response.status_code == 200, f"{curl.line}\n-> {response.status_code} {response.text[:500]}"
        payload = response.json()
        kind, keys = SHAPES[(curl.method, path)]
        if kind == "data":
            assert set(payload) == ENVELOPE and payload["success"] is True, curl.line
            held = set(payload["data"] or {})
        else:
            held = set(payload)
        assert keys <= held, f"{curl.line}: {kind} has {sorted(held)}, wants {sorted(keys)}"
        answers[(curl.method, path)] = payload
        memory_id = _next_memory_id(path, payload, memory_id)

    chat = answers[("POST", "/api/chat/message")]
    assert chat["user_id"] == "alice" and chat["session_id"] == "session_001" and chat["response"]
    found = answers[("POST", "/api/chat/search-memories")]["data"]["results"]
    assert [r["memory"] for r in found] == [LEARNED]  # what the chat turn learned, found by 电影偏好
    searched = answers[("POST", "/api/memory/search")]["data"]["results"]
    assert searched and searched[0]["memory"] == "用户偏好使用Python进行数据分析"  # the category filter keeps it alone
    history = answers[("GET", "/api/memory/memory/MEMORY_ID/history")]["data"]["history"]
    assert [h["event"] for h in history] == ["ADD", "UPDATE"]
    stats = answers[("GET", "/api/memory/stats/alice")]["data"]
    assert stats["total_memories"] == 0  # the walk-through deleted alice before asking
    assert answers[("GET", "/health/detail")]["checks"]["embedder"]["status"] == "ok"


def _next_memory_id(path: str, payload: Any, current: str | None) -> str | None:
    """The id a reader would paste as MEMORY_ID next: the newest memory the walk-through made."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if path in ("/api/chat/memories/alice", "/api/memory/user/alice") and data and data.get("results"):
        return current or str(data["results"][0]["id"])
    if path == "/api/memory/add":
        return str(data["memory_id"])
    if path.endswith("/MEMORY_ID") and not path.endswith("/history") and path.startswith(("/api/chat/memory/",)):
        return None  # deleted
    return current
