"""Retrieval quality on LoCoMo, with a fixed protocol so that results stay comparable over time.

One user per conversation; every dialog turn is one memory ("{speaker}: {text}", plus
" [shares {blip_caption}]" when the turn shares an image), with metadata dia_id, session and
session_date. Every QA item of categories 1-4 whose evidence names at least one existing dia_id is
asked as a search with limit 10; the ranking is the dia_id of each returned memory, in order.
"""

from __future__ import annotations

import functools
import json
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from shared.observability.percentiles import percentile
from tools.bench.common import BenchError

CATEGORIES = (1, 2, 3, 4)
# LoCoMo's category ids as mem0's evaluation names them; 5 (adversarial) has no answer to retrieve.
CATEGORY_NAMES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
BATCH_SIZE = 100
SEARCH_LIMIT = 10
_SESSION_KEY = re.compile(r"session_(\d+)")
_EVIDENCE_SPLIT = re.compile(r"[;,\s]+")


@dataclass(frozen=True)
class Turn:
    dia_id: str
    session: int
    session_date: str
    content: str

    @property
    def metadata(self) -> dict[str, Any]:
        return {"dia_id": self.dia_id, "session": self.session, "session_date": self.session_date}


@dataclass(frozen=True)
class Question:
    question: str
    category: int
    gold: tuple[str, ...]
    gold_sessions: frozenset[int]


@dataclass
class Conversation:
    sample_id: str
    turns: list[Turn]
    questions: list[Question]
    skipped_questions: int = 0
    session_of: dict[str, int] = field(default_factory=dict)


class Backend(Protocol):
    """A memory system under the protocol: ours over HTTP, or plain mem0 in-process."""

    name: str

    def add_turns(self, user_id: str, turns: Sequence[Turn]) -> None: ...

    def search(self, user_id: str, query: str, limit: int) -> list[str | None]: ...

    def cpu_seconds(self) -> float | None:
        """CPU time used so far by the system under test, if it can be read."""
        ...


# --- the data ------------------------------------------------------------------------------------
def turn_content(turn: dict[str, Any]) -> str:
    content = f"{turn['speaker']}: {turn.get('text', '')}"
    caption = turn.get("blip_caption")
    if caption:
        content += f" [shares {caption}]"
    return content


def parse_evidence(evidence: Iterable[Any]) -> list[str]:
    """Dia ids named by a QA item; one evidence string may hold several, separated by ; , or spaces."""
    ids: list[str] = []
    for item in evidence:
        for token in _EVIDENCE_SPLIT.split(str(item)):
            if token and token not in ids:
                ids.append(token)
    return ids


def _sessions(conversation: dict[str, Any]) -> list[tuple[int, list[dict[str, Any]], str]]:
    found = []
    for key, value in conversation.items():
        match = _SESSION_KEY.fullmatch(key)
        if match and isinstance(value, list):
            number = int(match.group(1))
            found.append((number, value, str(conversation.get(f"{key}_date_time") or "")))
    return sorted(found, key=lambda s: s[0])


def parse_conversation(sample: dict[str, Any], index: int) -> Conversation:
    sample_id = str(sample.get("sample_id") or f"conv-{index}")
    turns: list[Turn] = []
    for number, session_turns, date in _sessions(sample["conversation"]):
        for turn in session_turns:
            turns.append(Turn(str(turn["dia_id"]), number, date, turn_content(turn)))
    session_of = {t.dia_id: t.session for t in turns}
    questions: list[Question] = []
    skipped = 0
    for qa in sample.get("qa", []):
        if qa.get("category") not in CATEGORIES:
            continue
        gold = tuple(d for d in parse_evidence(qa.get("evidence") or []) if d in session_of)
        if not gold:
            skipped += 1  # the evidence names no turn of this conversation: nothing to retrieve
            continue
        sessions = frozenset(session_of[d] for d in gold)
        questions.append(Question(str(qa["question"]), int(qa["category"]), gold, sessions))
    return Conversation(sample_id, turns, questions, skipped, session_of)


def load_locomo(path: Path) -> list[Conversation]:
    if not path.is_file():
        raise BenchError(
            f"LoCoMo data not found at {path}: pass --data FILE "
            "(the team copy is ../shared/data/locomo/locomo_dev.json beside the repo)"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BenchError(f"cannot read LoCoMo data {path}: {error}") from error
    if not isinstance(raw, list) or not raw:
        raise BenchError(f"{path} is not LoCoMo data: expected a non-empty list of conversations")
    try:
        return [parse_conversation(sample, i) for i, sample in enumerate(raw)]
    except (KeyError, TypeError, ValueError) as error:
        raise BenchError(f"{path} is not LoCoMo-shaped: {error!r}") from error


# --- scoring -------------------------------------------------------------------------------------
def turn_recall(gold: Sequence[str], ranking: Sequence[str | None], k: int) -> float:
    """|gold ∩ top k| / |gold|."""
    top = set(ranking[:k])
    return sum(1 for d in gold if d in top) / len(gold)


def ranked_sessions(ranking: Sequence[str | None], session_of: dict[str, int]) -> list[int]:
    """Sessions in order of their first appearance in the ranking."""
    order: list[int] = []
    for dia_id in ranking:
        session = session_of.get(dia_id) if dia_id is not None else None
        if session is not None and session not in order:
            order.append(session)
    return order


def session_recall(gold_sessions: frozenset[int], sessions: Sequence[int], k: int) -> float:
    top = set(sessions[:k])
    return sum(1 for s in gold_sessions if s in top) / len(gold_sessions)


@dataclass
class Scores:
    r5: list[float] = field(default_factory=list)
    r10: list[float] = field(default_factory=list)
    s10: list[float] = field(default_factory=list)

    def add(self, question: Question, ranking: Sequence[str | None], session_of: dict[str, int]) -> None:
        self.r5.append(turn_recall(question.gold, ranking, 5))
        self.r10.append(turn_recall(question.gold, ranking, 10))
        self.s10.append(session_recall(question.gold_sessions, ranked_sessions(ranking, session_of), 10))

    def summary(self) -> dict[str, Any]:
        def mean(values: list[float]) -> float | None:
            return round(statistics.fmean(values), 4) if values else None

        return {
            "questions": len(self.r10),
            "turn_recall@5": mean(self.r5),
            "turn_recall@10": mean(self.r10),
            "session_recall@10": mean(self.s10),
        }


# --- the protocol --------------------------------------------------------------------------------
T = TypeVar("T")


class Meter:
    """Wall time of each call, and the CPU time the system under test spent on them.

    CPU time is the worker's (or, in-process, this process's): on a machine shared with other work
    it is inflated much less than wall time, so it is the fairer figure for comparing overheads.
    """

    def __init__(self, cpu: Callable[[], float | None]) -> None:
        self._cpu = cpu
        self.wall_ms: list[float] = []
        self.cpu_s: float | None = 0.0

    def __call__(self, call: Callable[[], T]) -> T:
        cpu_before = self._cpu()
        began = time.perf_counter()
        try:
            return call()
        finally:
            self.wall_ms.append((time.perf_counter() - began) * 1000)
            cpu_after = self._cpu()
            if self.cpu_s is not None and cpu_before is not None and cpu_after is not None:
                self.cpu_s += cpu_after - cpu_before
            else:
                self.cpu_s = None

    def cpu_ms_per(self, count: int) -> float | None:
        return round(self.cpu_s / count * 1000, 2) if self.cpu_s is not None and count else None


def run_protocol(backend: Backend, conversations: Sequence[Conversation], run_tag: str) -> dict[str, Any]:
    """Add every conversation, then ask its questions; return the scores and timings."""
    overall = Scores()
    by_category: dict[int, Scores] = {c: Scores() for c in CATEGORIES}
    adds, searches = Meter(backend.cpu_seconds), Meter(backend.cpu_seconds)
    for conversation in conversations:
        user_id = f"{run_tag}-{backend.name}-{conversation.sample_id}"
        adds(functools.partial(backend.add_turns, user_id, conversation.turns))
        for question in conversation.questions:
            ranking = searches(functools.partial(backend.search, user_id, question.question, SEARCH_LIMIT))
            overall.add(question, ranking, conversation.session_of)
            by_category[question.category].add(question, ranking, conversation.session_of)
        print(
            f"[{backend.name}] {conversation.sample_id}: {len(conversation.turns)} turns, "
            f"{len(conversation.questions)} questions",
            file=sys.stderr,
            flush=True,
        )
    memories = sum(len(c.turns) for c in conversations)
    add_seconds = sum(adds.wall_ms) / 1000
    result = overall.summary()
    result.update(
        {
            "per_category": {
                str(category): {"name": CATEGORY_NAMES[category], **scores.summary()}
                for category, scores in by_category.items()
                if scores.r10
            },
            "search_ms_p50": round(percentile(searches.wall_ms, 50), 2),
            "search_ms_p95": round(percentile(searches.wall_ms, 95), 2),
            "add_per_s": round(memories / add_seconds, 1) if add_seconds > 0 else None,
            "memories": memories,
            "add_s": round(add_seconds, 2),
            "skipped_questions": sum(c.skipped_questions for c in conversations),
            "cpu_ms_per_search": searches.cpu_ms_per(len(searches.wall_ms)),
            "cpu_ms_per_memory_added": adds.cpu_ms_per(memories),
        }
    )
    return result


class HttpBackend:
    """Our service, through its public API: batch-add in batches of at most 100, then search."""

    name = "ours"

    def __init__(self, api: Any, batch_size: int = BATCH_SIZE, cpu: Callable[[], float | None] | None = None) -> None:
        self.api = api
        self.batch_size = batch_size
        self._cpu = cpu

    def cpu_seconds(self) -> float | None:
        return self._cpu() if self._cpu is not None else None

    def add_turns(self, user_id: str, turns: Sequence[Turn]) -> None:
        for start in range(0, len(turns), self.batch_size):
            chunk = turns[start : start + self.batch_size]
            self.api.batch_add(user_id, [{"content": t.content, "metadata": t.metadata} for t in chunk])

    def search(self, user_id: str, query: str, limit: int) -> list[str | None]:
        return [(item.get("metadata") or {}).get("dia_id") for item in self.api.search(user_id, query, limit)]
