"""Our two prompts for learning, and strict readers of the model's JSON answers.

Learning a turn costs two model calls (shared/memory/learning.py runs them): the extraction reads
what the user said and answers the facts worth remembering; the decision sees every new fact beside
the user's most similar current memories and answers, per fact, ADD, SUPERSEDE (ids), INVALIDATE
(ids) or NONE. Both answers are JSON objects checked here against their schema: an answer that does
not fit raises `Malformed`, and the caller falls back (learning.py).

The memories shown to the decision are named by short handles ("m1", "m2", ...) rather than their
UUIDs, which models copy unreliably; an id in the answer must be one of the handles shown (or the
exact id behind one), anything else is ignored. Each prompt opens with a tag (`EXTRACT_TAG`,
`DECIDE_TAG`) by which the scripted model (tools/harness/fake_openai/scripted.py) recognises it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Action = Literal["ADD", "SUPERSEDE", "INVALIDATE", "NONE"]
ACTIONS: tuple[Action, ...] = ("ADD", "SUPERSEDE", "INVALIDATE", "NONE")

EXTRACT_TAG = "[memory-layer: extract facts v1]"
DECIDE_TAG = "[memory-layer: reconcile facts v1]"
MAX_FACTS = 20  # facts kept from one learning event (a longer answer is cut here)
MAX_FACT_CHARS = 500

EXTRACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"facts": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_FACTS}},
    "required": ["facts"],
    "additionalProperties": False,
}

DECISION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "decisions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "fact": {"type": "integer", "minimum": 0},
                    "action": {"enum": list(ACTIONS)},
                    "ids": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["fact", "action"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["decisions"],
    "additionalProperties": False,
}

EXTRACTION_PROMPT = f"""{EXTRACT_TAG}
You extract durable facts about a user from one message they wrote to an assistant (the assistant's
reply is given for context only; never extract facts from it).

Rules:
- One short, self-contained sentence per fact, e.g. "Lives in Berlin", "Works as a nurse at St. Mary's",
  "Is allergic to peanuts". Keep names, places, dates and numbers exactly as the user gave them.
- Write every fact in the language the user wrote it in. A Chinese message gives Chinese facts
  (e.g. "住在上海"); an English message gives English facts. Never translate.
- A fact about someone else stays about them: "My sister moved to Shanghai" gives "User's sister moved
  to Shanghai" (Chinese: "用户的妹妹搬到了上海"), never a fact about the user.
- When the user says something is no longer true ("I no longer eat meat", "我不再喝咖啡了"), state it
  as such ("No longer eats meat", "不再喝咖啡"): the next step uses it to retire the old fact.
- Leave out greetings, questions, small talk and anything only the assistant said. No facts: [].

Answer with a JSON object only, matching this JSON schema:
{json.dumps(EXTRACTION_SCHEMA)}"""

DECISION_PROMPT = f"""{DECIDE_TAG}
You keep a user's memory true. You are given the memories the user has now ("memories", each with
an id, its text and when it was recorded) and new facts just learned from the user ("facts", each
with its number and the ids of the memories most similar to it). Decide for EVERY new fact:

- "ADD": new information; it contradicts nothing shown. Two facts can both be true (likes tea, and
  now likes coffee too): ADD.
- "SUPERSEDE" with "ids": the new fact replaces those memories (moved to another city, a new job, a
  changed preference, an updated number). The new fact is stored; the old ones stop being current.
- "INVALIDATE" with "ids": the user says those memories are no longer true and gives no replacement
  ("I no longer eat meat", "我不再喝咖啡了"). Nothing new is stored.
- "NONE": the fact is already known (same meaning, perhaps in other words or another language).

Facts about someone else (the user's sister, a friend) only supersede facts about that same person.
Use only ids from "memories". Answer with a JSON object only, one decision per fact, matching this
JSON schema:
{json.dumps(DECISION_SCHEMA)}"""


class Malformed(ValueError):
    """The model's answer does not fit the schema asked for."""


@dataclass(frozen=True)
class Shown:
    """A current memory shown to the decision: its handle in the prompt, its id, text and date."""

    handle: str
    id: str
    text: str
    recorded: str | None


@dataclass(frozen=True)
class Decision:
    action: Action
    ids: tuple[str, ...] = ()  # memory ids (never handles), only for SUPERSEDE and INVALIDATE


def extraction_messages(message: str, answer: str | None) -> list[dict[str, str]]:
    said = {"user_message": message}
    if answer:
        said["assistant_reply"] = answer
    return [
        {"role": "system", "content": EXTRACTION_PROMPT},
        {"role": "user", "content": json.dumps(said, ensure_ascii=False)},
    ]


def _json_object(raw: str) -> dict[str, Any]:
    text = raw.strip()
    if text.startswith("```"):  # a fenced answer: the object inside the fence
        text = text.strip("`").removeprefix("json").strip()
    try:
        value = json.loads(text)
    except ValueError as error:
        raise Malformed(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise Malformed("not a JSON object")
    return value


def parse_facts(raw: str) -> list[str]:
    """The facts of an extraction answer: non-empty strings, stripped, duplicates dropped, at most MAX_FACTS."""
    facts = _json_object(raw).get("facts")
    if not isinstance(facts, list) or not all(isinstance(fact, str) for fact in facts):
        raise Malformed("'facts' must be a list of strings")
    kept = [fact.strip()[:MAX_FACT_CHARS] for fact in facts if fact.strip()]
    return list(dict.fromkeys(kept))[:MAX_FACTS]


def decision_messages(
    facts: Sequence[str], shown: Sequence[Shown], similar: Sequence[Sequence[str]]
) -> list[dict[str, str]]:
    """The decision's prompt: the memories shown (by handle) and each fact with its similar handles."""
    body = {
        "memories": [{"id": s.handle, "text": s.text, "recorded": s.recorded} for s in shown],
        "facts": [
            {"fact": index, "text": fact, "similar": list(handles)}
            for index, (fact, handles) in enumerate(zip(facts, similar, strict=True))
        ],
    }
    return [
        {"role": "system", "content": DECISION_PROMPT},
        {"role": "user", "content": json.dumps(body, ensure_ascii=False)},
    ]


def parse_decisions(raw: str, fact_count: int, shown: Sequence[Shown]) -> list[Decision]:
    """One decision per fact. Structural faults (not JSON, wrong types, an unknown action, a fact
    number out of range or given twice) raise `Malformed`; a fact the answer leaves out is ADD (nothing
    learned is lost); ids not shown are dropped, and a SUPERSEDE left without ids is an ADD, an
    INVALIDATE left without ids is NONE."""
    items = _json_object(raw).get("decisions")
    if not isinstance(items, list):
        raise Malformed("'decisions' must be a list")
    known: dict[str, str] = {}
    for s in shown:
        known[s.handle] = s.id
        known[s.id] = s.id
    decided: dict[int, Decision] = {}
    for item in items:
        if not isinstance(item, Mapping):
            raise Malformed("a decision must be an object")
        index, action, ids = item.get("fact"), item.get("action"), item.get("ids") or []
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < fact_count:
            raise Malformed(f"decision for an unknown fact {index!r}")
        if index in decided:
            raise Malformed(f"two decisions for fact {index}")
        if action not in ACTIONS:
            raise Malformed(f"unknown action {action!r}")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise Malformed("'ids' must be a list of strings")
        decided[index] = _checked(action, [known[i] for i in ids if i in known])
    return [decided.get(index, Decision("ADD")) for index in range(fact_count)]


def _checked(action: Action, ids: list[str]) -> Decision:
    ids = list(dict.fromkeys(ids))
    if action == "SUPERSEDE":
        return Decision("SUPERSEDE", tuple(ids)) if ids else Decision("ADD")
    if action == "INVALIDATE":
        return Decision("INVALIDATE", tuple(ids)) if ids else Decision("NONE")
    return Decision(action)
