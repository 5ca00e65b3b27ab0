"""`python -m tools.bench updates`: does learning keep a user's memory true, with a given model?

Runs tests/data/updates_scenarios.json (issue 22's labelled set, English and Chinese) through the
service: for each scenario a fresh user, each turn an add with `"infer": true` (the model extracts
and reconciles), then the user's current memories are read back and compared with the labelled
current facts. Prints precision and recall of the current facts per language (micro-averaged over
every turn's checkpoint, and over the scenarios' final states), the duplicate rate (current
memories that say what another current memory of the user says), and each learning event's latency.

The model is any OpenAI-compatible endpoint (`--base-url`, `--model`, `--api-key`), which the dev
host the command starts is configured with; `--scripted` starts the scripted model instead (the
fake OpenAI server answering from the labels: tools/harness/fake_openai/scripted.py), which must
score 1.0, with `--latency-ms` its delay per call.

A real model words facts its own way, so a stored fact matches a labelled one when it is the same
text once normalised, or holds most of the labelled fact's distinctive words (English: words beyond
a small list of common ones; Chinese: character pairs beyond common ones); each stored fact matches
at most one labelled fact.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tools.bench.common import BenchError
from tools.bench.host import ServiceHost

SCENARIOS = Path(__file__).resolve().parents[2] / "tests" / "data" / "updates_scenarios.json"
MATCH_SHARE = 0.6
DUPLICATE_SHARE = 0.8

_EN_COMMON = frozenset(
    [
        "a",
        "an",
        "the",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "to",
        "of",
        "in",
        "on",
        "at",
        "for",
        "and",
        "or",
        "with",
        "my",
        "i",
        "me",
        "user",
        "user's",
        "users",
        "has",
        "have",
        "had",
        "now",
        "also",
        "too",
        "as",
        "by",
        "from",
        "that",
        "this",
        "it",
        "its",
        "no",
        "not",
        "any",
        "anymore",
        "longer",
        "does",
        "do",
        "did",
        "got",
        "get",
        "am",
        "live",
        "living",
        "moved",
        "move",
        "relocated",
        "based",
        "currently",
        "work",
        "working",
    ]
)
_ZH_COMMON = set("用户的我是在了有也都还")


@dataclass
class Checkpoint:
    scenario: str
    lang: str
    turn: int
    expected: list[str]
    stored: list[str]
    final: bool


@dataclass
class Tally:
    matched: int = 0
    stored: int = 0
    expected: int = 0
    duplicates: int = 0

    def add(self, point: Checkpoint) -> None:
        pairs = match(point.expected, point.stored)
        self.matched += len(pairs)
        self.stored += len(point.stored)
        self.expected += len(point.expected)
        self.duplicates += duplicate_count(point.stored)

    def figures(self) -> dict[str, Any]:
        return {
            "precision": round(self.matched / self.stored, 4) if self.stored else 1.0,
            "recall": round(self.matched / self.expected, 4) if self.expected else 1.0,
            "duplicate_rate": round(self.duplicates / self.stored, 4) if self.stored else 0.0,
            "stored": self.stored,
            "expected": self.expected,
        }


@dataclass
class UpdatesRun:
    checkpoints: list[Checkpoint] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)


# --- matching ------------------------------------------------------------------------------------
def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"[\s\W_]+", " ", text).strip()


def keys(text: str) -> set[str]:
    """The distinctive parts of a fact: English words beyond common ones, Chinese character pairs."""
    norm = normalise(text)
    words = {w.removesuffix("s") for w in re.findall(r"[a-z0-9]+", norm) if w not in _EN_COMMON} - _EN_COMMON - {""}
    han = "".join(ch for ch in norm if "\u4e00" <= ch <= "\u9fff" and ch not in _ZH_COMMON)
    pairs = {han[i : i + 2] for i in range(len(han) - 1)} or ({han} if han else set())
    return words | pairs


def same_fact(expected: str, stored: str, share: float = MATCH_SHARE) -> bool:
    if normalise(expected) == normalise(stored):
        return True
    wanted = keys(expected)
    return bool(wanted) and len(wanted & keys(stored)) / len(wanted) >= share


def match(expected: Sequence[str], stored: Sequence[str]) -> list[tuple[int, int]]:
    """Pairs (expected index, stored index), each at most once; exact matches are paired first."""
    pairs: list[tuple[int, int]] = []
    used: set[int] = set()
    for exact in (True, False):
        for e, fact in enumerate(expected):
            if any(p[0] == e for p in pairs):
                continue
            for s, text in enumerate(stored):
                same = normalise(fact) == normalise(text) if exact else same_fact(fact, text)
                if s not in used and same:
                    pairs.append((e, s))
                    used.add(s)
                    break
    return pairs


def duplicate_count(stored: Sequence[str]) -> int:
    """Stored facts beyond the first that say the same thing (the same normalised text, or 80 % of
    each other's distinctive parts both ways)."""
    dups = 0
    for i, text in enumerate(stored):
        if any(
            same_fact(text, other, DUPLICATE_SHARE) and same_fact(other, text, DUPLICATE_SHARE) for other in stored[:i]
        ):
            dups += 1
    return dups


def score(run: UpdatesRun) -> dict[str, Any]:
    by_lang: dict[str, dict[str, Tally]] = {}
    for point in run.checkpoints:
        tallies = by_lang.setdefault(point.lang, {"every_turn": Tally(), "final": Tally()})
        tallies["every_turn"].add(point)
        if point.final:
            tallies["final"].add(point)
    overall = Tally()
    for point in run.checkpoints:
        overall.add(point)
    lat = sorted(run.latencies_ms)
    return {
        "per_language": {
            lang: {name: tally.figures() for name, tally in tallies.items()}
            for lang, tallies in sorted(by_lang.items())
        },
        "overall": overall.figures(),
        "learning_ms_p50": round(lat[len(lat) // 2], 1) if lat else None,
        "learning_ms_p95": round(lat[min(len(lat) - 1, int(len(lat) * 0.95))], 1) if lat else None,
        "learning_events": len(lat),
        "misses": [
            {"scenario": p.scenario, "turn": p.turn, "expected": p.expected, "stored": p.stored}
            for p in run.checkpoints
            if len(match(p.expected, p.stored)) != len(p.expected) or len(p.stored) != len(p.expected)
        ][:30],
    }


# --- the run -------------------------------------------------------------------------------------
def current_facts(records: Sequence[dict[str, Any]]) -> list[str]:
    """The texts of the memories whose validity has not ended (`valid_until` unset)."""
    return sorted(
        str(r["memory"]) for r in records if not (r.get("valid_until") or (r.get("metadata") or {}).get("valid_until"))
    )


def run_scenarios(url: str, scenarios: Sequence[dict[str, Any]], tag: str) -> UpdatesRun:
    run = UpdatesRun()
    with httpx.Client(base_url=url, timeout=300) as client:
        for scenario in scenarios:
            user = f"{tag}-{scenario['id']}"
            for number, turn in enumerate(scenario["turns"], 1):
                began = time.perf_counter()
                answer = client.post("/api/memory/add", json={"user_id": user, "content": turn["say"], "infer": True})
                run.latencies_ms.append((time.perf_counter() - began) * 1000)
                if answer.status_code != 200:
                    raise BenchError(f"add with infer answered {answer.status_code}: {answer.text[:500]}")
                listed = client.get(f"/api/memory/user/{user}", params={"limit": 100})
                if listed.status_code != 200:
                    raise BenchError(f"list answered {listed.status_code}: {listed.text[:500]}")
                records = _records(listed.json().get("data"))
                final = number == len(scenario["turns"])
                point = Checkpoint(
                    scenario["id"], scenario["lang"], number, turn["current"], current_facts(records), final
                )
                run.checkpoints.append(point)
    return run


def _records(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, dict):
        for key in ("memories", "results", "items"):
            if isinstance(data.get(key), list):
                return list(data[key])
    return list(data or [])


@contextmanager
def _model(args: Any) -> Iterator[dict[str, str]]:
    """The model's settings for the dev host: the endpoint given, or the scripted model started here."""
    if not args.scripted:
        if not args.base_url or not args.model:
            raise BenchError("give --base-url and --model (an OpenAI-compatible endpoint), or --scripted")
        yield {"OPENAI_BASE_URL": args.base_url, "OPENAI_MODEL": args.model, "OPENAI_API_KEY": args.api_key or "none"}
        return
    from tools.harness.fake_openai import FakeOpenAIServer
    from tools.harness.fake_openai.scripted import script_learning

    with FakeOpenAIServer(latency=args.latency_ms / 1000) as server:
        script_learning(server)
        yield {"OPENAI_BASE_URL": server.base_url, "OPENAI_MODEL": "scripted", "OPENAI_API_KEY": "scripted"}


def run_updates(args: Any, root: Path) -> dict[str, Any]:
    import json

    path = (args.data or SCENARIOS).expanduser().resolve()
    scenarios = json.loads(path.read_text(encoding="utf-8"))["scenarios"]
    if args.limit:
        scenarios = scenarios[: args.limit]
    tag = f"upd-{time.strftime('%Y%m%d%H%M%S')}"
    with _model(args) as model:
        env = {"LLM_PROVIDER": "openai", "LLM_MAX_RETRIES": "2", **model}
        host = ServiceHost(root / "service" / "data", env, name="updates-host")
        host.start()
        try:
            run = run_scenarios(host.url, scenarios, tag)
        finally:
            host.stop()
    result = {
        "benchmark": "updates",
        "data": str(path),
        "scenarios": len(scenarios),
        "model": "scripted" if args.scripted else args.model,
        **score(run),
    }
    return result


def updates_table(result: dict[str, Any]) -> str:
    lines = [f"updates: {result['scenarios']} scenarios, model {result['model']}"]
    lines.append(f"{'language':<10}{'checkpoints':<14}{'precision':>10}{'recall':>8}{'duplicates':>12}")
    for lang, figures in result["per_language"].items():
        for name in ("every_turn", "final"):
            f = figures[name]
            row = f"{lang:<10}{name:<14}{f['precision']:>10.3f}{f['recall']:>8.3f}{f['duplicate_rate']:>12.3f}"
            lines.append(row)
    o = result["overall"]
    lines.append(f"{'all':<10}{'every_turn':<14}{o['precision']:>10.3f}{o['recall']:>8.3f}{o['duplicate_rate']:>12.3f}")
    lines.append(
        f"learning event (add with infer): p50 {result['learning_ms_p50']} ms, p95 {result['learning_ms_p95']} ms"
        f" over {result['learning_events']} events"
    )
    return "\n".join(lines)
