"""The vector-store port: what the memory service and the search need of a store engine.

One adapter per engine lives next to this module (`edge/`: Qdrant Edge in process, the
zero-setup default; `qdrant/`: a Qdrant server; `chroma/`: a Chroma server). Each adapter is
two things at once:

- mem0's vector store (`insert`, `search`, `get`, `update`, `delete`, `list`, ...), so mem0 stays
  the memory core and writes through it. Every abstract method of mem0's `VectorStoreBase` is
  implemented, not inherited: importing mem0 in an adapter would run its import-time setup (its
  telemetry flag, its home folder) before `shared.memory.mem0_engine.prepare_mem0_environment` set them;
- this port's own calls, which keep work that grows with a user's data inside the engine:
  `candidates` (the hybrid query: dense + BM25, filtered to the user and the search filters),
  `neighbours` (memories next to others in the user's write order), `fetch`, `list_user`,
  `count_user`, `page_user` and `tally_user` (a list's page and the stats, bounded: reads.py), `ping`.

Adapters add derived payload fields on every write (`derive`), kept beside mem0's own and never
shown to callers (they are reserved metadata names):

- `_seq`: the memory's place in its user's write order (0, 1, 2, ... per user), so that the
  neighbours of a memory are one filtered lookup (`_seq` in {s - 1, s + 1});
- `_ts`: the creation instant as epoch seconds, for range filters and the context window;
- `_day`: the creation day (UTC, `YYYY-MM-DD`), keyword-indexed, so that the stats' memories per day
  are the engine's facet of it (reads.py);
- `_expires`: when the memory expires (`expiration_date`) as epoch seconds, for the engine's
  "not expired" condition (`shared.query.filters.not_expired`) and the purge's range query, with
  `_mortal` (true) beside it, so that "never expires" is a plain condition in every engine;
- `_valid_until`: when the memory stopped being true (`valid_until`: superseded or invalidated) as
  epoch seconds, with `_ended` (true) beside it, for the engine's "valid at" condition
  (`shared.query.filters.valid_at`), said like "not expired";
- `_month`: the memory's own month and year (`month_keys`: "2023-05", "2023", "m05"), and
  `_speaker`: the words of who said it, so that memories of a month or a speaker the query names
  can be candidates even when neither their embedding nor their words match;
- `_tenant`: the caller's tenant when tenancy is on (written by the service, see shared/scope.py),
  keyword-indexed in each engine;
- `_norm`: a short hash of the memory's normalized text and `_scope`: one of its agent and run
  scopes, both keyword-indexed, so that a duplicate check is one `in` lookup (shared/memory/dedupe.py).
"""

from __future__ import annotations

import builtins
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from shared.context import utc_day
from shared.query.text import STOP_WORDS
from shared.scope import TENANT_KEY as TENANT_KEY  # re-exported beside the derived keys
from shared.scope import key_tenant

if TYPE_CHECKING:
    from shared.contract import SearchFilters
    from shared.query.filters import Validity

SEQ_KEY = "_seq"
TS_KEY = "_ts"
DAY_KEY = "_day"
MONTH_KEY = "_month"
SPEAKER_KEY = "_speaker"
EXPIRES_KEY = "_expires"
MORTAL_KEY = "_mortal"
EXPIRATION_KEY = "expiration_date"
NORM_KEY = "_norm"
SCOPE_TAG_KEY = "_scope"
VALID_UNTIL_KEY = "_valid_until"
ENDED_KEY = "_ended"
# The public validity fields (issue 22), stored in the payload and shown on every memory object.
VALID_FROM = "valid_from"
VALID_UNTIL = "valid_until"
SUPERSEDED_BY = "superseded_by"
SUPERSEDES = "supersedes"
VALIDITY_FIELDS = (VALID_FROM, VALID_UNTIL, SUPERSEDED_BY, SUPERSEDES)
# `_tenant` is set by the service from the caller's scope (shared/scope.py), not derived here, but
# like the others it is carried through rewrites and never shown to callers.
DERIVED_KEYS = frozenset(
    {
        SEQ_KEY,
        TS_KEY,
        DAY_KEY,
        MONTH_KEY,
        SPEAKER_KEY,
        EXPIRES_KEY,
        MORTAL_KEY,
        VALID_UNTIL_KEY,
        ENDED_KEY,
        TENANT_KEY,
        NORM_KEY,
        SCOPE_TAG_KEY,
    }
)
# mem0's scopes beside the user, stored and indexed as keywords by every adapter.
SCOPE_KEYS = ("agent_id", "run_id")
TEXT_KEY = "data"  # mem0's name for the memory text
USER_KEY = "user_id"


@dataclass
class Hit:
    """One stored memory as an engine returns it; mem0 reads `.id`, `.score` and `.payload`."""

    id: str
    payload: dict[str, Any]
    score: float | None = None
    vector: Sequence[float] | None = None


Position = tuple[int, str]  # (`_seq`, id): a memory's place in its user's write order (reads.py)


@dataclass
class Tally:
    """What the stats count of a user's live memories (reads.py)."""

    total: int = 0
    days: Counter[str] = field(default_factory=Counter)  # creation day (UTC, YYYY-MM-DD) -> memories
    categories: Counter[str] = field(default_factory=Counter)  # metadata.category ("other": none) -> memories


@dataclass
class Candidate:
    """A memory the hybrid query found, with what the engine knows of it."""

    id: str
    payload: dict[str, Any]
    semantic: float  # cosine similarity of the query and the memory, in [-1, 1]
    keyword: float = 0.0  # the engine's keyword score (BM25 where it has one), 0 when none


@dataclass
class Twins:
    """What a duplicate check finds among a user's live memories of one scope (`VectorStore.twins`)."""

    exact: list[Hit] = field(default_factory=list)  # those whose `_norm` is one of the keys asked
    nearest: list[Candidate | None] = field(default_factory=list)  # per vector asked, the nearest one


@dataclass(frozen=True)
class Hints:
    """What a query names beyond its words: months (as `month_keys`) and possible speaker words."""

    months: tuple[str, ...] = ()
    speakers: tuple[str, ...] = ()


@dataclass
class Candidates:
    """The result of one hybrid query."""

    items: list[Candidate] = field(default_factory=list)
    # True when the keyword side returned every memory that matched a query word (fewer than asked).
    keyword_exhaustive: bool = True
    # The scale of the keyword scores: for BM25 with the user's own statistics, the sum over the
    # query's words of the best score each word alone reaches among the user's memories (about the
    # word's idf for the user); 0 when unknown. A keyword score over it is the idf-weighted share
    # of the query a memory covers, the same scale for every query and every user.
    keyword_ceiling: float = 0.0


@runtime_checkable
class VectorStore(Protocol):
    """The typed port (mem0's calls are also present, untyped as mem0 calls them)."""

    kind: str  # "edge", "qdrant", "chroma"

    # --- mem0's interface --------------------------------------------------------------------
    def insert(
        self, vectors: list[Any], payloads: list[dict[str, Any]] | None = None, ids: list[str] | None = None
    ) -> None: ...

    def search(
        self, query: str, vectors: Sequence[float], top_k: int = 5, filters: dict[str, Any] | None = None
    ) -> list[Hit]: ...

    def get(self, vector_id: str) -> Hit | None: ...

    def update(
        self, vector_id: str, vector: Sequence[float] | None = None, payload: dict[str, Any] | None = None
    ) -> None: ...

    def delete(self, vector_id: str, user_id: str | None = None) -> None:
        """Deletes the memory if it exists. `user_id`, when the caller knows the owner (the service
        always does), lets an engine that files memories per user find it without its own lookup."""
        ...

    def list(
        self, filters: dict[str, Any] | None = None, top_k: int | None = None
    ) -> builtins.list[builtins.list[Hit]]: ...

    # --- the port's own calls ----------------------------------------------------------------
    def candidates(
        self,
        user_id: str,
        vector: Sequence[float],
        text: str,
        limit: int,
        filters: SearchFilters | None,
        hints: Hints | None = None,
    ) -> Candidates:
        """Up to `limit` dense and up to `limit` keyword matches of the user's memories passing `filters`,
        and (when `hints` name months or speakers the adapter can look up) the nearest of those."""
        ...

    def neighbours(
        self,
        user_id: str,
        seqs: Sequence[int],
        vector: Sequence[float],
        text: str = "",
        validity: Validity | None = None,
    ) -> builtins.list[Candidate]:
        """The user's live memories (of `validity`, by default valid now) whose `_seq` is one of `seqs`
        (filters ignored), scored like candidates: the cosine to `vector` and the keyword score for
        `text`, on the scale `candidates` used."""
        ...

    def fetch(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Current payloads of `ids` (missing ids are absent)."""
        ...

    def list_user(
        self, user_id: str, limit: int | None = None, filters: SearchFilters | None = None, *, expired: bool = False
    ) -> builtins.list[Hit]:
        """The user's memories passing `filters` (payloads only), at most `limit`; expired ones only
        with `expired=True` (erasure)."""
        ...

    def expired_points(self, now: float, limit: int) -> builtins.list[Hit]:
        """Up to `limit` memories of any user whose `_expires` is at or before `now` (the purge)."""
        ...

    def count_user(self, user_id: str) -> int:
        """How many live (unexpired) memories the user has."""
        ...

    def page_user(
        self, user_id: str, limit: int, before: Position | None = None, filters: SearchFilters | None = None
    ) -> builtins.list[Hit]:
        """Up to `limit` of the user's live memories passing `filters`, newest first by (`_seq`, id),
        all strictly older than `before` when given (the last of the previous page): reads.py."""
        ...

    def tally_user(self, user_id: str) -> Tally:
        """The user's live memories counted: in all, per creation day, per category (reads.py)."""
        ...

    def twins(self, user_id: str, scope: str, keys: Sequence[str], vectors: Sequence[Sequence[float]]) -> Twins:
        """The user's live memories whose `_scope` is `scope`: those whose `_norm` is one of `keys`, and per
        vector the nearest with its cosine (None: none). One engine round trip where the engine allows."""
        ...

    def ping(self) -> dict[str, Any]:
        """A cheap round trip; raises when the engine cannot answer."""
        ...

    def close(self) -> None: ...


_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_QUERY_WORDS = 16


def query_words(text: str) -> list[str]:
    """The distinct content words of a query, as the engine's text index will tokenise them one by one.

    Runs of CJK characters stay whole (the engine segments them into words itself).
    """
    words: list[str] = []
    for word in _WORD.findall(text.casefold()):
        if word not in STOP_WORDS and word not in words:
            words.append(word)
    return words[:MAX_QUERY_WORDS]


def timestamp(value: Any) -> float | None:
    """Epoch seconds of an ISO 8601 instant (naive means UTC), or None."""
    if not value:
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def expires_at(value: Any) -> float | None:
    """Epoch seconds at which a memory with this `expiration_date` expires, or None.

    A date (mem0's form) keeps the memory through that day (UTC); an instant expires at it.
    """
    if not value:
        return None
    text = str(value)
    if len(text) == 10:
        try:
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError:
            return None
        return day.timestamp() + 86_400.0
    return timestamp(text)


def derive(payload: Mapping[str, Any], seq: int | None) -> dict[str, Any]:
    """`payload` with the derived fields set (`seq` None keeps the one it has)."""
    out = dict(payload)
    # mem0 keeps a lemmatised copy of the text for its own BM25, which needs spaCy; the engine's
    # text index does that work here, so the copy is not stored twice.
    out.pop("text_lemmatized", None)
    if seq is not None:
        out[SEQ_KEY] = seq
    ts = timestamp(out.get("created_at"))
    if ts is not None:
        out[TS_KEY] = ts
    out[DAY_KEY] = utc_day(str(out.get("created_at") or ""))
    expires = expires_at(out.get(EXPIRATION_KEY))
    if expires is not None:
        out[EXPIRES_KEY] = expires
        out[MORTAL_KEY] = True
    else:
        out.pop(EXPIRES_KEY, None)
        out.pop(MORTAL_KEY, None)
    until = timestamp(out.get(VALID_UNTIL))
    if until is not None:
        out[VALID_UNTIL_KEY] = until
        out[ENDED_KEY] = True
    else:
        out.pop(VALID_UNTIL_KEY, None)
        out.pop(ENDED_KEY, None)
    from shared.query.text import memory_month, memory_speaker, tokenize

    out[MONTH_KEY] = month_keys(*memory_month(out))
    speaker = memory_speaker(out)
    out[SPEAKER_KEY] = sorted(set(tokenize(speaker))) if speaker else []
    from shared.query.sameness import norm_key, scope_tag

    out[NORM_KEY] = norm_key(str(out.get(TEXT_KEY) or ""))
    out[SCOPE_TAG_KEY] = scope_tag(out.get("agent_id"), out.get("run_id"))
    return out


def month_keys(year: int | None, month: int | None) -> list[str]:
    """The keys a (year, month) is found under: "2023-05", "2023" and "m05" where known."""
    keys = []
    if year is not None and month is not None:
        keys.append(f"{year}-{month:02d}")
    if year is not None:
        keys.append(str(year))
    if month is not None:
        keys.append(f"m{month:02d}")
    return keys


def carry_derived(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> dict[str, Any]:
    """A rewritten payload (mem0's update builds it afresh) keeps the memory's derived fields."""
    out = dict(new)
    if old:
        for key in DERIVED_KEYS:
            if key not in out and key in old:
                out[key] = old[key]
    return derive(out, None)


def user_filter_value(filters: Mapping[str, Any] | None) -> str | None:
    """The user id of a mem0 filter dict, when it names exactly one."""
    value = (filters or {}).get(USER_KEY)
    return value if isinstance(value, str) else None


def matches(payload: Mapping[str, Any], filters: SearchFilters | None) -> bool:
    """The API's search filters evaluated on a payload: what every adapter's engine filter means."""
    from shared.query.filters import holds

    return filters is None or holds(filters.condition(), payload)


def expired(payload: Mapping[str, Any] | None, now: float | None = None) -> bool:
    """True when the memory's `_expires` is past (the engines' `not_expired` condition, on one payload)."""
    moment = (payload or {}).get(EXPIRES_KEY)
    if not isinstance(moment, int | float) or isinstance(moment, bool):
        return False
    return moment <= (now if now is not None else time.time())


def live_condition(
    filters: SearchFilters | None = None, now: float | None = None, validity: Validity | None = None
) -> Any:
    """The filters' condition, "not expired at `now`" and the validity asked (by default the one the
    filters carry, else "valid now": `SearchFilters.validity`) as one tree, for an adapter to translate."""
    from shared.query.filters import Validity, all_of, not_expired

    moment = now if now is not None else time.time()
    if validity is None:
        validity = filters.validity if filters is not None else Validity.current()
    condition = filters.condition() if filters is not None else None
    return all_of(condition, not_expired(moment), validity.condition(moment))


def live(payload: Mapping[str, Any] | None, filters: SearchFilters | None = None, now: float | None = None) -> bool:
    """`live_condition` evaluated on one payload: what the engines' filter lets through."""
    from shared.query.filters import holds

    return holds(live_condition(filters, now), payload or {})


def twin_conditions(scope: str, keys: Sequence[str]) -> tuple[Any, Any]:
    """The conditions of `twins` inside the user (each adapter translates them): (near, exact)."""
    from shared.query.filters import Compare, all_of

    near = all_of(live_condition(None), Compare(SCOPE_TAG_KEY, "eq", scope))
    return near, all_of(near, Compare(NORM_KEY, "in", tuple(keys)))


def is_twin(payload: Mapping[str, Any], user_id: str, condition: Any) -> bool:
    """One of `twin_conditions` on one payload of the user (an engine filter is never trusted alone)."""
    from shared.query.filters import holds

    return belongs(payload, user_id) and holds(condition, payload)


def belongs(payload: Mapping[str, Any] | None, user_id: str) -> bool:
    """Never trust an engine filter alone with another user's data: the payload is this storage key's,
    and of the key's tenant (`_tenant` equal to it, or absent for a key without one: shared/scope.py)."""
    if not payload or payload.get(USER_KEY) != user_id or not payload.get(TEXT_KEY):
        return False
    return payload.get(TENANT_KEY) == key_tenant(user_id)
