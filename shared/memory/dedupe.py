"""Duplicates, without an LLM: an added memory that is already one of the user's current memories.

A new memory (an add, a batch-add item, a learned fact) is a duplicate of a current memory of the
same scope (tenant and user: the storage key; agent and run: `_scope`) when

- its normalized text is the same (`normalize`: Unicode NFKC, so full-width letters, digits and
  punctuation are their plain forms; case folded; whitespace runs as one space; trailing
  punctuation, Chinese 。！？ among it, left out), found by `_norm`, a short hash of that text
  which the store adapters derive on every write and index as a keyword; or
- the cosine of its embedding and the memory's is at least the near-duplicate threshold of the
  embedding model (`THRESHOLDS`, measured by `python -m tools.lab.duplicates`; DUPLICATE_THRESHOLD
  overrides it). A model not measured has no threshold: only the same text is a duplicate there.

Both are one store round trip for a whole batch (`VectorStore.twins`: the `_norm` lookup and one
nearest-neighbour query per item, in one engine batch where the engine has one), under the store's
live condition, so "current" is what every read means by it. Items of one batch are also compared
with each other: a later one equal or near to an earlier one is a duplicate of it.

Two concurrent adds of one text can both be stored (the check is a read before the write; no
engine here has a unique constraint on a payload field). Memories written before `_norm` and
`_scope` existed are found by their embedding only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from shared.ai.local_models import MULTILINGUAL_MODEL_ID
from shared.contract import MemoryRecord, scope_filters
from shared.memory.outages import vector_store_calls
from shared.query.sameness import EXACT_ROOM as EXACT_ROOM
from shared.query.sameness import norm_key, numbers, scope_tag
from shared.query.sameness import normalize as normalize

if TYPE_CHECKING:
    from shared.contract import MemoryInput, SearchFilters
    from shared.settings import Settings
    from shared.stores.vector.port import Candidate, Hit, VectorStore

_CJK = re.compile(r"[\u1100-\u11ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


@dataclass(frozen=True)
class Near:
    """A near-duplicate threshold: the cosine, and whether the model tells texts in CJK scripts apart.

    Two texts whose numbers differ are never near duplicates, however near their embeddings: a changed
    year, age or count is a changed fact, and moves a long sentence's embedding very little (measured:
    "... moved to Portland in 2019" / "... in 2021", cosine 0.991 on all-MiniLM-L6-v2)."""

    cosine: float
    cjk: bool = True  # False: its vocabulary reads most CJK characters as one unknown token

    def applies(self, a: str, b: str) -> bool:
        """Whether the embeddings may judge these two texts at all."""
        if not self.cjk and (_CJK.search(a) or _CJK.search(b)):
            return False
        return numbers(a) == numbers(b)


# The near-duplicate cosine of each embedding model measured by `python -m tools.lab.duplicates` (docs/
# duplicates.md): the lowest 0.005 step above every labelled pair of different facts and every LoCoMo
# dev turn's nearest other turn that the check judges (the same numbers; CJK only where the model reads
# it). all-MiniLM-L6-v2 reads most Chinese characters as [UNK]: two different Chinese facts of one length
# have the same vector (cosine 1.0), so Chinese text gets the exact check only.
THRESHOLDS: dict[str, Near] = {
    "sentence-transformers/all-MiniLM-L6-v2": Near(0.99, cjk=False),
    MULTILINGUAL_MODEL_ID: Near(0.995),
}


def threshold_for(settings: Settings) -> Near | None:
    """The near-duplicate threshold in force: DUPLICATE_THRESHOLD, else the embedding model's measured one."""
    measured = THRESHOLDS.get(settings.embedding_model_id)
    if settings.duplicate_threshold is not None:
        return Near(settings.duplicate_threshold, measured.cjk if measured is not None else True)
    return measured


def scope_ids(scope_filters: SearchFilters | Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """The agent and run a scope filter names (`contract.scope_filters`, or a plain mapping)."""
    if scope_filters is None:
        return None, None
    named = scope_filters if isinstance(scope_filters, Mapping) else scope_filters.scope_ids()
    return named.get("agent_id") or None, named.get("run_id") or None


@dataclass
class Found:
    """Per item, the id of the memory it duplicates (None: new), and what the store returned of those."""

    ids: list[str | None]
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)


_UNSET: Any = object()


class Adder(Protocol):
    """What the checks of an add use of the memory service."""

    settings: Settings
    store: VectorStore


def find_duplicates(
    store: VectorStore,
    scope_key: str,
    scope_filters: SearchFilters | Mapping[str, Any] | None,
    texts: Sequence[str],
    vectors: Sequence[Sequence[float]],
    *,
    ids: Sequence[str] | None = None,
    threshold: Near | float | None = _UNSET,
) -> list[str | None]:
    """Per text, the id of the current memory of the scope it duplicates, or None.

    `ids` (the ids the new items will be stored under) also folds duplicates inside the batch: a
    later item equal or near to an earlier new one gets the earlier one's id. `threshold` defaults
    to the configured one (`threshold_for`); None checks the normalized text only.
    """
    if threshold is _UNSET or isinstance(threshold, int | float):
        from shared.settings import get_settings

        measured = threshold_for(get_settings())
        if isinstance(threshold, int | float):  # the model's CJK rule still holds
            measured = Near(float(threshold), measured.cjk if measured is not None else True)
        threshold = measured
    return screen(store, scope_key, scope_filters, texts, vectors, ids, threshold).ids


def screen(
    store: VectorStore,
    scope_key: str,
    scope_filters: SearchFilters | Mapping[str, Any] | None,
    texts: Sequence[str],
    vectors: Sequence[Sequence[float]],
    ids: Sequence[str] | None,
    threshold: Near | None,
) -> Found:
    """`find_duplicates`, with the payloads of the memories found."""
    if not texts:
        return Found([])
    keys = [norm_key(text) for text in texts]
    with vector_store_calls():
        twins = store.twins(scope_key, scope_tag(*scope_ids(scope_filters)), sorted(set(keys)), vectors)
    payloads: dict[str, dict[str, Any]] = {}
    exact: dict[str, Hit] = {}
    for hit in sorted(twins.exact, key=lambda h: (h.payload.get("_ts") or 0.0, h.payload.get("_seq") or 0, h.id)):
        exact.setdefault(str(hit.payload.get("_norm")), hit)
    unit = _units(vectors) if threshold is not None and len(texts) > 1 else None
    found: list[str | None] = []
    for i, key in enumerate(keys):
        twin: str | None = None
        if key in exact:
            twin = exact[key].id
            payloads[twin] = exact[key].payload
        elif ids is not None and key in keys[:i]:
            j = keys.index(key)
            twin = found[j] or ids[j]
        near = twins.nearest[i] if i < len(twins.nearest) else None
        if twin is None and threshold is not None and near is not None and _near(threshold, near, texts[i]):
            twin = near.id
            payloads[twin] = near.payload
        if twin is None and threshold is not None and ids is not None and unit is not None and i:
            cosines = unit[:i] @ unit[i]
            for j in np.argsort(-cosines):
                if float(cosines[j]) < threshold.cosine:
                    break
                if threshold.applies(texts[i], texts[j]):
                    twin = found[j] or ids[j]
                    break
        found.append(twin)
    return Found(found, payloads)


def _near(threshold: Near, near: Candidate, text: str) -> bool:
    return near.semantic >= threshold.cosine and threshold.applies(text, str(near.payload.get("data") or ""))


def _units(vectors: Sequence[Sequence[float]]) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.asarray(array / np.where(norms > 0, norms, 1.0))


class Added(list[str]):
    """A batch-add's ids (one per item, in order), with which of them are duplicates (existing ids)."""

    def __init__(self, ids: Iterable[str] = (), duplicate: Sequence[bool] | None = None) -> None:
        super().__init__(ids)  # any iterable, as a list's (`dataclasses.asdict` rebuilds lists so)
        self.duplicate = list(duplicate) if duplicate is not None else [False] * len(self)


class DuplicateRecord(MemoryRecord):
    """The existing memory an add duplicated (what `add_memory` returns then)."""


@dataclass
class Batch:
    """A batch after the duplicate check: the new items' positions, and the answer's ids."""

    fresh: list[int]
    answer: Added

    def keep(self, values: Sequence[Any]) -> list[Any]:
        return [values[i] for i in self.fresh]


def check_batch(
    service: Adder,
    scope_key: str,
    items: Sequence[MemoryInput],
    vectors: Sequence[Sequence[float]],
    ids: Sequence[str],
    agent_id: str | None,
    run_id: str | None,
    allow: bool,
) -> Batch:
    """Which items of a batch to store (all when `allow`), and the ids to answer with."""
    if allow:
        return Batch(list(range(len(ids))), Added(ids))
    texts = [item.content for item in items]
    limit = threshold_for(service.settings)
    twins = screen(service.store, scope_key, scope_filters(agent_id, run_id), texts, vectors, ids, limit)
    fresh = [i for i, twin in enumerate(twins.ids) if twin is None]
    answer = Added([twin or ids[i] for i, twin in enumerate(twins.ids)], [twin is not None for twin in twins.ids])
    return Batch(fresh, answer)
