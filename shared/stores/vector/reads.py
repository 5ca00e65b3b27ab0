"""The port's bounded reads, what every adapter shares of them: pages of a user's memories in write
order, and the counts behind the stats.

A page. Every memory has a place in its user's write order, its `Position`: (`_seq`, id). A list is
newest first, (`_seq`, id) descending, and a page after another one holds the memories strictly
older than the last one it gave (`before`). A memory added meanwhile gets a higher `_seq` than every
memory already there, so it never lands among the pages still to come, and since a memory's `_seq`
never changes, following the pages yields every memory once. The id breaks the rare tie of two
memories one `_seq` (two processes writing one user at once, see port.py).

The Qdrant engines order by `_seq` themselves (`ordered_page`); Chroma has no order, and reads
windows of `_seq` numbers instead (chroma/reads.py).

The stats. The total is the engine's count; the memories per day and per category are the engine's
facets (counts of an indexed value, no payload read: `tally_by_facets`) where it has them, over the
derived `_day` and `metadata.category`; Chroma has none, and counts a page of payloads at a time
(`tally_payloads`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from shared.context import utc_day
from shared.stores.vector.port import DAY_KEY, SEQ_KEY, Hit, Position, Tally

CATEGORY_KEY = "category"
OTHER = "other"  # the category of a memory without one
# The most distinct values one facet call counts; a user with more days or categories than this is
# counted from the one payload field instead (`tally_by_facets`).
FACET_LIMIT = 1000


def position(hit: Hit) -> Position | None:
    """Where `hit` is in its user's write order (None: it has no `_seq`, which no adapter writes)."""
    seq = (hit.payload or {}).get(SEQ_KEY)
    if not isinstance(seq, int | float) or isinstance(seq, bool):
        return None
    return int(seq), str(hit.id)


def newest_first(hits: Iterable[Hit], before: Position | None, limit: int) -> list[Hit]:
    """The first `limit` of `hits` strictly older than `before`, newest first (each id once)."""
    placed: dict[str, tuple[Position, Hit]] = {}
    for hit in hits:
        where = position(hit)
        if where is not None and (before is None or where < before):
            placed[where[1]] = (where, hit)
    ranked = sorted(placed.values(), key=lambda item: item[0], reverse=True)
    return [hit for _, hit in ranked[:limit]]


def ordered_page(
    limit: int,
    before: Position | None,
    older: Callable[[int | None, int], list[Hit]],
    at: Callable[[int], list[Hit]],
    keep: Callable[[Hit], bool],
) -> list[Hit]:
    """A page from an engine that orders by `_seq`: `older(below, n)` is up to `n` memories with a
    `_seq` under `below` (None: any), `_seq` descending; `at(seq)` every memory at that `_seq`.

    The page is the top of the order exactly: the memories at the cursor's own `_seq` (the younger
    half of a tie is left behind), then the ordered ones, and, when that list was cut, every memory
    at its last `_seq`, so that a tie is never split by the engine's order among equals.
    """
    if limit <= 0:
        return []
    hits = at(before[0]) if before is not None else []
    found = older(before[0] if before is not None else None, limit)
    hits += found
    last = position(found[-1]) if len(found) >= limit else None
    if last is not None:
        hits += at(last[0])
    return newest_first((hit for hit in hits if keep(hit)), before, limit)


def category_of(value: Any) -> str:
    return str(value) if value not in (None, "") else OTHER


def day_of(created_at: Any) -> str:
    return utc_day(str(created_at or ""))


def tally_payloads(payloads: Iterable[Mapping[str, Any]]) -> Tally:
    """Counts the given payloads (an engine without facets streams them a page at a time)."""
    tally = Tally()
    for payload in payloads:
        tally.total += 1
        tally.days[day_of(payload.get("created_at"))] += 1
        tally.categories[category_of(payload.get(CATEGORY_KEY))] += 1
    return tally


def tally_by_facets(
    total: int,
    facet: Callable[[str], dict[Any, int]],
    absent: Callable[[str], int],
    values: Callable[[str, str | None], Iterable[Any]],
) -> Tally:
    """The stats from an engine's counts, for `total` live memories of a user.

    `facet(key)`: {value: memories} of an indexed keyword (at most FACET_LIMIT values);
    `absent(key)`: how many memories lack `key`; `values(field, lacking)`: `field` of every memory
    (of those lacking `lacking` when given), reading that one payload field only.

    Days are the facet of `_day`; memories written before the adapters derived it are counted from
    their `created_at`. Categories are the facet of `category`, and the memories without one are
    "other"; a category that is not a string (a number, a boolean: no keyword index holds it), or more
    categories than one facet counts, and the categories are counted from that one field.
    """
    tally = Tally(total=total)
    days = facet(DAY_KEY)
    if len(days) < FACET_LIMIT:
        tally.days.update({str(day): count for day, count in days.items()})
        if sum(days.values()) < total:
            tally.days.update(day_of(value) for value in values("created_at", DAY_KEY))
    else:
        tally.days.update(day_of(value) for value in values("created_at", None))
    categories = facet(CATEGORY_KEY)
    missing = absent(CATEGORY_KEY)
    if len(categories) < FACET_LIMIT and sum(categories.values()) + missing == total:
        for value, count in categories.items():
            tally.categories[category_of(value)] += count
        if missing:
            tally.categories[OTHER] += missing
    else:
        tally.categories.update(category_of(value) for value in values(CATEGORY_KEY, None))
    return tally
