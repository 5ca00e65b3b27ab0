"""Bounded reads over the fakes: the cursor, pages of a list and an export, and the stats' counts.

The page rule itself (newest first by `_seq` and id, strictly older than the cursor) and the stats from
an engine's counts are shared/stores/vector/reads.py, tested here on plain hits; every engine runs them
for real in tests/integration/test_store_contract.py, and the HTTP face in tests/e2e/test_api_paging.py.
"""

from __future__ import annotations

import base64
import uuid
from collections import Counter
from typing import Any

import pytest

from shared.errors import ValidationFailed
from shared.memory.listing import MAX_SEQ, decode_cursor, encode_cursor
from shared.scope import Scope
from shared.stores.vector.port import SEQ_KEY, Hit, Position
from shared.stores.vector.reads import FACET_LIMIT, newest_first, ordered_page, tally_by_facets
from tests.fixtures.fake_core import Core, build_core, fails


@pytest.fixture
def core() -> Core:
    return build_core(list_page_size=4)


def _ids(n: int) -> list[str]:
    return [str(uuid.UUID(int=i + 1)) for i in range(n)]


# --- the cursor -----------------------------------------------------------------------------------
def test_a_cursor_round_trips_and_every_string_of_its_form_is_one() -> None:
    place = (123_456, str(uuid.uuid4()))
    cursor = encode_cursor(place)
    assert len(cursor) == 32 and decode_cursor(cursor) == place
    assert decode_cursor("A" * 32) == (0, "00000000-0000-0000-0000-000000000000")
    # `_seq` past any real one reads as "older than anything": the first page, never an error
    assert decode_cursor("_" * 32)[0] == MAX_SEQ


@pytest.mark.parametrize("bad", ["", "A" * 31, "A" * 33, "A" * 31 + "=", "A" * 31 + "+", "Ä" * 32, "A" * 31 + " "])
def test_anything_else_is_a_422_naming_the_cursor(bad: str) -> None:
    error = fails(lambda: decode_cursor(bad))
    assert isinstance(error, ValidationFailed) and error.details[0]["loc"] == ["cursor"]


def test_the_cursor_is_opaque_url_safe_base64() -> None:
    cursor = encode_cursor((7, "c0ffee00-0000-4000-8000-000000000000"))
    raw = base64.urlsafe_b64decode(cursor)
    assert raw[:8] == (7).to_bytes(8, "big") and raw[8:] == uuid.UUID("c0ffee00-0000-4000-8000-000000000000").bytes


# --- the page rule --------------------------------------------------------------------------------
def _hit(seq: int, memory_id: str) -> Hit:
    return Hit(memory_id, {SEQ_KEY: seq})


def test_newest_first_orders_by_seq_then_id_and_keeps_what_is_strictly_older() -> None:
    a, b, c = _ids(3)
    hits = [_hit(1, a), _hit(2, b), _hit(2, c), _hit(0, c)]  # c twice: the later wins, once
    assert [h.id for h in newest_first(hits, None, 10)] == [b, a, c]
    assert [h.id for h in newest_first([_hit(1, a), _hit(2, b), _hit(2, c)], (2, c), 10)] == [b, a]
    assert newest_first([Hit(a, {})], None, 10) == []  # no `_seq`: no place in the order


def test_an_ordered_page_never_splits_a_tie_the_engine_orders_arbitrarily() -> None:
    """An engine that orders by `_seq` alone returns ties in any order and cuts a list anywhere: the
    pages still follow (`_seq`, id) exactly, every memory once."""
    ids = _ids(12)
    stored = [_hit(seq, memory_id) for seq, memory_id in zip([0, 1, 1, 1, 2, 3, 3, 4, 5, 5, 5, 6], ids, strict=True)]

    def older(below: int | None, count: int) -> list[Hit]:
        found = [h for h in stored if below is None or h.payload[SEQ_KEY] < below]
        found.sort(key=lambda h: (-h.payload[SEQ_KEY], h.id))  # ties in the "wrong" (ascending id) order
        return found[:count]

    def at(seq: int) -> list[Hit]:
        return [h for h in stored if h.payload[SEQ_KEY] == seq]

    expected = [h.id for h in sorted(stored, key=lambda h: (h.payload[SEQ_KEY], h.id), reverse=True)]
    for size in (1, 2, 3, 5, 12, 20):
        seen: list[str] = []
        before: Position | None = None
        while True:
            page = ordered_page(size, before, older, at, lambda _hit: True)
            seen += [h.id for h in page]
            if len(page) < size:
                break
            before = (page[-1].payload[SEQ_KEY], page[-1].id)
        assert seen == expected, size


# --- a list's pages -------------------------------------------------------------------------------
def _add(core: Core, user: Any, n: int, text: str = "memory", **metadata: Any) -> list[str]:
    """`n` memories "text 0", "text 1", ...: the same texts again are new memories here (no duplicate check)."""
    add = core.service.add_memory
    return [add(user, f"{text} {i}", metadata or None, allow_duplicates=True).id for i in range(n)]


def _follow(core: Core, user: Any, limit: int | None = None, between: Any = None, **scope: Any) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = core.service.list_page(user, limit=limit, cursor=cursor, **scope)
        pages.append([record.memory for record in page.items])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor
        if between is not None:
            between()


def test_pages_of_the_default_size_newest_first_and_a_cursor_until_the_last(core: Core) -> None:
    _add(core, "alice", 10)
    assert _follow(core, "alice") == [
        ["memory 9", "memory 8", "memory 7", "memory 6"],
        ["memory 5", "memory 4", "memory 3", "memory 2"],
        ["memory 1", "memory 0"],
    ]
    assert core.store.pages_read == [5, 5, 5]  # one more than the page: whether a next one exists
    assert core.service.list_page("alice", limit=10).next_cursor is None  # exactly a page: no next one
    assert core.service.list_memories("alice") == core.service.list_page("alice").items  # the first page


def test_following_the_cursors_yields_every_memory_once_while_others_are_added(core: Core) -> None:
    _add(core, "alice", 9)
    added: list[str] = []
    seen = [m for page in _follow(core, "alice", 2, lambda: added.extend(_add(core, "alice", 3, "new"))) for m in page]
    assert seen == [f"memory {i}" for i in reversed(range(9))]  # each once, in order; none of the new ones
    assert len(added) == 12 and core.service.count_memories("alice") == 21


def test_pages_keep_to_the_user_the_tenant_and_the_scopes(core: Core) -> None:
    _add(core, "alice", 3)
    _add(core, "bob", 5)
    _add(core, Scope("alice", tenant="acme"), 2)
    core.service.add_memory("alice", "the planner's", agent_id="planner")
    assert [len(p) for p in _follow(core, "alice", 2)] == [2, 2]
    assert [m for p in _follow(core, Scope("alice", tenant="acme"), 1) for m in p] == ["memory 1", "memory 0"]
    assert _follow(core, "alice", 2, agent_id="planner") == [["the planner's"]]
    assert core.service.list_page("carol").items == [] and core.service.list_page("carol").next_cursor is None


def test_an_expired_memory_is_on_no_page(core: Core) -> None:
    from datetime import date

    core.service.add_memory("alice", "old", expiration_date=date(2000, 1, 1))
    _add(core, "alice", 2)
    assert _follow(core, "alice", 1) == [["memory 1"], ["memory 0"]]


# --- an export's pages ----------------------------------------------------------------------------
def test_an_export_page_reads_its_histories_in_one_batch(core: Core) -> None:
    ids = _add(core, "alice", 6)
    first = core.service.export_memories("alice")
    assert [item["id"] for item in first.items] == ids[::-1][:4] and first.next_cursor is not None
    assert all(item["history"][0]["event"] == "ADD" for item in first.items)
    rest = core.service.export_memories("alice", cursor=first.next_cursor)
    assert [item["id"] for item in rest.items] == ids[1::-1] and rest.next_cursor is None
    assert core.history.batches_read == [4, 2]


# --- the stats ------------------------------------------------------------------------------------
def test_stats_come_from_the_stores_tally(core: Core) -> None:
    _add(core, "alice", 3, category="food")
    _add(core, "alice", 2)
    core.service.add_memory("alice", "empty category", {"category": ""})
    core.service.add_memory("bob", "not alice's", {"category": "food"})
    stats = core.service.stats("alice")
    assert stats.total_memories == 6 and stats.category_distribution == {"food": 3, "other": 3}
    assert sum(stats.date_distribution.values()) == 6 and list(stats.category_distribution) == ["food", "other"]


def test_stats_from_facets_count_what_no_facet_holds() -> None:
    """Facets count indexed strings: memories older than `_day` are counted from `created_at`, a
    category that is not a string (or one facet too many) from the `category` field."""
    payloads = [
        {"_day": "2024-05-01", "created_at": "2024-05-01T10:00:00Z", "category": "food"},
        {"_day": "2024-05-01", "created_at": "2024-05-01T11:00:00Z"},
        {"created_at": "2024-04-30T23:30:00-02:00", "category": 5},  # written before `_day`: May 1st UTC
        {"created_at": "2024-05-02T00:00:00Z", "category": ""},
    ]
    read: list[tuple[str, str | None]] = []

    def facet(key: str) -> dict[Any, int]:
        return dict(Counter(p[key] for p in payloads if isinstance(p.get(key), str)))

    def absent(key: str) -> int:
        return sum(1 for p in payloads if p.get(key) is None)

    def values(field: str, lacking: str | None) -> list[Any]:
        read.append((field, lacking))
        return [p.get(field) for p in payloads if lacking is None or lacking not in p]

    tally = tally_by_facets(len(payloads), facet, absent, values)
    assert tally.days == {"2024-05-01": 3, "2024-05-02": 1}
    assert tally.categories == {"food": 1, "5": 1, "other": 2}
    assert read == [("created_at", "_day"), ("category", None)]  # only the fields, only when needed

    read.clear()
    payloads[2]["category"] = "drinks"
    for payload in payloads:
        payload["_day"] = payload["created_at"][:10]
    tally = tally_by_facets(len(payloads), facet, absent, values)
    assert tally.categories == {"food": 1, "drinks": 1, "other": 2} and read == []  # facets alone

    many = {f"c{i}": 1 for i in range(FACET_LIMIT)}
    tally = tally_by_facets(len(payloads), lambda key: many, absent, values)
    assert read == [("created_at", None), ("category", None)]  # a facet that may be cut is not trusted
    assert tally.categories == {"food": 1, "drinks": 1, "other": 2}
