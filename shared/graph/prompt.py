"""The prompt of the one LLM call of a graph write, and relations as lines for the chat prompt."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

# The extraction system prompt starts with this; tests (and log readers) recognise the call by it.
EXTRACTION_PROMPT_MARKER = "You extract a knowledge graph"

EXTRACTION_PROMPT = (
    EXTRACTION_PROMPT_MARKER
    + """ of facts about one user from a conversation turn.

The user is the entity named {user}. When the text says "I", "me" or "my", use {user}.

Answer with one JSON object and nothing else:
{{"entities": [{{"name": "...", "type": "..."}}],
 "relations": [{{"source": "...", "relation": "...", "target": "..."}}],
 "invalidates": ["R1"]}}

Rules:
- Keep only facts the user states or confirms about themselves and their world. Ignore questions,
  the assistant's suggestions, hypotheticals and anything uncertain.
- name: short and specific, spelled as in the text (keep its language), at most 200 characters.
- type: one lowercase English word or snake_case phrase (person, film, genre, city, organization,
  programming_language, food, pet, ...).
- relation: an English verb phrase in UPPER_SNAKE_CASE from source to target (LIKES, DISLIKES,
  LIVES_IN, WORKS_AT, IS_A, HAS_PET, PREFERS, ...). Every source and target is an entity.
- At most {max_entities} entities and {max_relations} relations; empty lists when nothing is worth remembering.
- invalidates: refs of the existing relations below that the text makes no longer true (the user
  moved, changed job, stopped liking something, corrected an earlier statement). Never list a
  relation only because the text does not mention it.

Existing relations of this user that may be affected (one JSON object per line):
{existing}"""
)


def build_extraction_messages(
    user_id: str, text: str, existing: Sequence[tuple[str, dict[str, Any]]], max_entities: int, max_relations: int
) -> list[dict[str, str]]:
    # Names are user-derived text: JSON-encode them so quotes or newlines cannot reshape the prompt.
    lines = [
        json.dumps(
            {"ref": ref, "source": r["source"], "relation": r["relationship"], "target": r["destination"]},
            ensure_ascii=False,
        )
        for ref, r in existing
    ]
    system = EXTRACTION_PROMPT.format(
        user=json.dumps(user_id, ensure_ascii=False),
        existing="\n".join(lines) or "(none)",
        max_entities=max_entities,
        max_relations=max_relations,
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


def format_relations(relations: Sequence[dict[str, Any]]) -> str:
    """Relations as prompt lines for the chat agent; empty string when there are none."""
    return "\n".join(f"- {r['source']} -[{r['relationship']}]-> {r['destination']}" for r in relations)
