"""A scripted model for learning: the fake answers our extraction and decision prompts from the labels
of tests/data/updates_scenarios.json, over HTTP like any model.

- Extraction (a request whose system message opens with `EXTRACT_TAG`): the facts labelled for the
  turn whose text the user message carries (`{"facts": []}` for a text the set does not hold).
- Decision (`DECIDE_TAG`): per fact, the labelled action; its ids are the handles of the memories
  shown whose text is one of the label's targets. A fact the set does not label is ADD.

So the set's expected current facts are exactly what a correct service stores: the e2e tests and
`python -m tools.bench updates` check the mechanics (candidates shown, ids mapped back, writes,
history) with a model whose answers are known.

    server = FakeOpenAIServer().start()
    script_learning(server)                  # rules for the two prompts; other chats as before
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from shared.memory.reconcile import DECIDE_TAG, EXTRACT_TAG
from tools.harness.fake_openai.replies import message_text
from tools.harness.fake_openai.server import FakeOpenAIServer

SCENARIOS = Path(__file__).resolve().parents[3] / "tests" / "data" / "updates_scenarios.json"


@cache
def load_scenarios(path: Path = SCENARIOS) -> tuple[dict[str, Any], ...]:
    return tuple(json.loads(path.read_text(encoding="utf-8"))["scenarios"])


class LearningScript:
    """The labels, indexed: turn text -> facts, fact text -> (action, target texts)."""

    def __init__(self, scenarios: Iterable[dict[str, Any]]) -> None:
        self.facts: dict[str, list[str]] = {}
        self.labels: dict[str, tuple[str, list[str]]] = {}
        for scenario in scenarios:
            for turn in scenario["turns"]:
                self.facts[turn["say"]] = [fact["text"] for fact in turn["facts"]]
                for fact in turn["facts"]:
                    self.labels[fact["text"]] = (fact["action"], list(fact.get("targets") or []))
        self.extractions = 0
        self.decisions = 0

    def extract(self, request: dict[str, Any]) -> dict[str, Any]:
        self.extractions += 1
        said = json.loads(message_text(request["messages"][-1]))
        return {"facts": self.facts.get(str(said.get("user_message", "")).strip(), [])}

    def decide(self, request: dict[str, Any]) -> dict[str, Any]:
        self.decisions += 1
        body = json.loads(message_text(request["messages"][-1]))
        shown = [(m["id"], m["text"]) for m in body.get("memories", [])]
        decisions = []
        for fact in body.get("facts", []):
            action, targets = self.labels.get(fact["text"], ("ADD", []))
            ids = [handle for handle, text in shown if text in targets]
            decisions.append({"fact": fact["fact"], "action": action, "ids": ids})
        return {"decisions": decisions}


def _system_opens(tag: str) -> Any:
    def match(request: dict[str, Any]) -> bool:
        messages = request.get("messages") or []
        return bool(messages) and message_text(messages[0]).startswith(tag)

    return match


def script_learning(server: FakeOpenAIServer, scenarios: Iterable[dict[str, Any]] | None = None) -> LearningScript:
    """Adds the two rules to `server` (before any the test adds later) and returns the script."""
    script = LearningScript(scenarios if scenarios is not None else load_scenarios())
    server.when(match=_system_opens(EXTRACT_TAG), reply=script.extract)
    server.when(match=_system_opens(DECIDE_TAG), reply=script.decide)
    return script
