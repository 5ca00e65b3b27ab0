"""Memory management endpoints (`/api/memory/...`).

Models are imported inside the handlers: indexing the app must not build them (see functions/http.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import azure.functions as func

from functions.caller import Caller, caller
from functions.http import EndpointSpec, Reply, api, blueprint
from functions.queries import owner_from_query, page_from_query, scope_from_query, user_from_route, validity_from_query
from shared.runtime import get_ingestion, get_memory_service

if TYPE_CHECKING:
    from shared.contract import (
        AddedMemory,
        MemoryAddRequest,
        MemoryBatchAddRequest,
        MemoryRecord,
        MemorySearchRequest,
        MemoryUpdateRequest,
    )
    from shared.scope import Scope
    from shared.stores.state.events import IngestEvent

bp = blueprint()
TAG = "memory"
OWNER_PARAM = {
    "user_id": "When given, the memory must belong to this user (else 403). With USER_HEADER on, the call acts "
    "as the authenticated user and another user_id is 403."
}
ASYNC_NOTE = (
    "With `Prefer: respond-async` (RFC 7240): 202, `data: {event_id, status}` and `Location: "
    "/api/memory/events/{event_id}`; the memories are written by the ingestion queue (or before the "
    "answer when no queue is configured, then the status is `succeeded`)."
)


def prefers_async(req: func.HttpRequest) -> bool:
    """Whether the `Prefer` header (RFC 7240: comma-separated preferences, `;` parameters) asks for respond-async."""
    preferences = (req.headers.get("prefer") or "").split(",")
    return any(item.split(";", 1)[0].strip().lower() == "respond-async" for item in preferences)


def accepted(event: IngestEvent) -> Reply:
    from shared.contract import EventAccepted

    headers = {"Location": f"/api/memory/events/{event.event_id}", "Preference-Applied": "respond-async"}
    data = EventAccepted(event_id=event.event_id, status=event.status)
    return Reply(data, "记忆已接受，正在处理", status=202, headers=headers)


DUPLICATE_NOTE = (
    " A duplicate of a current memory of the same scope (the same normalized text, or a near-equal embedding)"
    " is not stored: `data.duplicate` is true and the id is the existing memory's (`allow_duplicates` to store it)."
)

SCOPE_PARAMS = {
    "agent_id": "Only the user's memories of this agent (mem0's agent scope).",
    "run_id": "Only the user's memories of this run (mem0's run scope).",
}
PAGE_PARAMS = {
    "limit": "How many memories at most, 1-1000 (default LIST_PAGE_SIZE, 100).",
    "cursor": "The `next_cursor` of the previous page: the memories older than its last one.",
}
VALIDITY_PARAMS = {
    "as_of": "What was true at this RFC 3339 instant.",
    "include_superseded": "true: also superseded and invalidated memories.",
}
PAGE_NOTE = (
    "A page of the user's memories, newest first: at most `limit`, and `data.next_cursor` to pass as "
    "`cursor` for the next page (null on the last). Following the cursors yields every memory once, "
    "even while memories are added."
)


@api(
    bp,
    "memory_add",
    "api/memory/add",
    "POST",
    EndpointSpec(
        "Add one memory (stored as given)",
        TAG,
        "MemoryAddRequest",
        "AddedMemory",
        success_message="记忆添加成功",
        description=ASYNC_NOTE + DUPLICATE_NOTE,
        accepted="EventAccepted",
    ),
)
def memory_add(req: func.HttpRequest, who: Caller, body: MemoryAddRequest) -> Reply:
    from shared.contract import MemoryInput

    scope = who.scope(body.user_id)
    if prefers_async(req):
        get_memory_service().check_supersedes(scope, [(body.supersedes, None)])  # 404 before it is queued
        item = MemoryInput(
            content=body.content,
            metadata=body.metadata,
            expiration_date=body.expiration_date,
            supersedes=body.supersedes,
        )
        allow = body.allow_duplicates
        event = get_ingestion().submit_memories(
            scope,
            [item],
            kind="add",
            agent_id=body.agent_id,
            run_id=body.run_id,
            allow_duplicates=allow,
            infer=body.infer,
        )
        return accepted(event)
    if body.infer:
        return Reply(inferred_add(scope, body))
    record = get_memory_service().add_memory(
        scope,
        body.content,
        body.metadata,
        agent_id=body.agent_id,
        run_id=body.run_id,
        expiration_date=body.expiration_date,
        supersedes=body.supersedes,
        allow_duplicates=body.allow_duplicates,
    )
    return Reply(added_memory(record, body.user_id, body.content))


def added_memory(record: MemoryRecord, user_id: str, content: str) -> AddedMemory:
    """The add's answer: the new memory, or the existing one it duplicated (`duplicate: true`, its text)."""
    from shared.contract import AddedMemory
    from shared.memory.dedupe import DuplicateRecord

    if isinstance(record, DuplicateRecord):
        return AddedMemory(memory_id=record.id, user_id=user_id, content=record.memory, duplicate=True)
    return AddedMemory(memory_id=record.id, user_id=user_id, content=content)


def inferred_add(scope: Scope, body: MemoryAddRequest) -> AddedMemory:
    """An add with `infer`: the facts the content states, reconciled (shared/memory/learning.py); the
    MCP tool add_memory answers the same."""
    import uuid

    from shared.contract import AddedMemory, LearnedFact
    from shared.memory.learning import learn_from_text

    learned = learn_from_text(
        get_memory_service(), scope, body.content, body.metadata, write_id=str(uuid.uuid4()),
        agent_id=body.agent_id, run_id=body.run_id, expiration_date=body.expiration_date,
    )  # fmt: skip
    facts = [LearnedFact(fact=f.fact, event=f.event, memory_id=f.memory_id, ids=f.ids) for f in learned.facts]
    first = learned.added[0] if learned.added else ""
    return AddedMemory(memory_id=first, user_id=body.user_id, content=body.content, facts=facts)


@api(
    bp,
    "memory_batch_add",
    "api/memory/batch-add",
    "POST",
    EndpointSpec(
        "Add many memories in one call",
        TAG,
        "MemoryBatchAddRequest",
        "BatchAdded",
        success_message="批量添加记忆成功",
        description=ASYNC_NOTE + DUPLICATE_NOTE.replace("`data.duplicate` is", "its `data.duplicate` item is"),
        accepted="EventAccepted",
    ),
)
def memory_batch_add(req: func.HttpRequest, who: Caller, body: MemoryBatchAddRequest) -> Reply:
    from shared.contract import BatchAdded
    from shared.errors import ValidationFailed
    from shared.settings import get_settings

    scope = who.scope(body.user_id)
    limit = get_settings().max_batch_size
    if len(body.memories) > limit:
        raise ValidationFailed(
            f"a batch holds at most {limit} memories; split it",
            details=[{"loc": ["memories"], "msg": f"at most {limit} items", "type": "too_long"}],
        )
    if prefers_async(req):
        get_memory_service().check_supersedes(scope, [(item.supersedes, None) for item in body.memories])
        allow = body.allow_duplicates
        event = get_ingestion().submit_memories(
            scope, list(body.memories), agent_id=body.agent_id, run_id=body.run_id, allow_duplicates=allow
        )
        return accepted(event)
    ids = get_memory_service().add_memories(
        scope, body.memories, agent_id=body.agent_id, run_id=body.run_id, allow_duplicates=body.allow_duplicates
    )
    flags = getattr(ids, "duplicate", None)
    return Reply(BatchAdded(memory_ids=ids, count=len(ids), duplicate=flags if flags and any(flags) else None))


@api(
    bp,
    "memory_event",
    "api/memory/events/{event_id}",
    "GET",
    EndpointSpec(
        "State of an ingestion event (asynchronous add, chat learning)",
        TAG,
        None,
        "IngestEventInfo",
        success_message="获取事件成功",
        query_params={"user_id": "When given, the event must be this user's (else 404, like an unknown id)."},
    ),
)
def memory_event(req: func.HttpRequest) -> Reply:
    from shared.contract import IngestEventInfo

    event = get_ingestion().get_event(req.route_params.get("event_id", ""), caller(req).scope(owner_from_query(req)))
    return Reply(
        IngestEventInfo(
            event_id=event.event_id,
            status=event.status,
            memory_ids=event.memory_ids if event.status == "succeeded" else None,
            error=event.error,
            created_at=event.created_at,
            updated_at=event.updated_at,
        )
    )


@api(
    bp,
    "memory_search",
    "api/memory/search",
    "POST",
    EndpointSpec("Search a user's memories", TAG, "MemorySearchRequest", "MemoryResults", success_message="搜索完成"),
)
def memory_search(req: func.HttpRequest, who: Caller, body: MemorySearchRequest) -> Reply:
    found = get_memory_service().search_with_relations(
        who.scope(body.user_id),
        body.query,
        body.limit,
        body.filters,
        body.threshold,
        agent_id=body.agent_id,
        run_id=body.run_id,
        validity=body.validity(),
    )
    return Reply(found)


@api(
    bp,
    "memory_list_user",
    "api/memory/user/{user_id}",
    "GET",
    EndpointSpec(
        "List a user's memories, a page at a time",
        TAG,
        None,
        "MemoryList",
        success_message="获取用户记忆成功",
        query_params={**SCOPE_PARAMS, **PAGE_PARAMS, **VALIDITY_PARAMS},
        description=PAGE_NOTE,
    ),
)
def memory_list_user(req: func.HttpRequest) -> Reply:
    from shared.contract import MemoryList

    scope = caller(req).scope(user_from_route(req))
    agent_id, run_id = scope_from_query(req)
    limit, cursor = page_from_query(req)
    validity = validity_from_query(req)
    page = get_memory_service().list_page(scope, agent_id, run_id, limit=limit, cursor=cursor, validity=validity)
    return Reply(MemoryList(results=page.items, total=len(page.items), next_cursor=page.next_cursor))


@api(
    bp,
    "memory_update",
    "api/memory/update",
    "PUT",
    EndpointSpec(
        "Update a memory's text and metadata",
        TAG,
        "MemoryUpdateRequest",
        "UpdatedMemory",
        success_message="记忆更新成功",
    ),
)
def memory_update(req: func.HttpRequest, who: Caller, body: MemoryUpdateRequest) -> Reply:
    from shared.contract import UpdatedMemory

    scope = who.scope(body.user_id, owner_from_query(req))
    record = get_memory_service().update_memory(body.memory_id, body.content, body.metadata, scope)
    return Reply(UpdatedMemory(memory_id=record.id, content=record.memory))


@api(
    bp,
    "memory_delete",
    "api/memory/memory/{memory_id}",
    "DELETE",
    EndpointSpec(
        "Delete one memory", TAG, None, "DeletedMemory", success_message="记忆删除成功", query_params=OWNER_PARAM
    ),
)
def memory_delete(req: func.HttpRequest) -> Reply:
    from shared.contract import DeletedMemory

    scope = caller(req).scope(owner_from_query(req))
    memory_id = get_memory_service().delete_memory(req.route_params.get("memory_id", ""), scope)
    return Reply(DeletedMemory(memory_id=memory_id))


@api(
    bp,
    "memory_delete_user",
    "api/memory/user/{user_id}",
    "DELETE",
    EndpointSpec(
        "Delete all of a user's memories",
        TAG,
        None,
        "DeletedCount",
        success_message="用户记忆已删除",
        query_params=SCOPE_PARAMS,
        description="With `agent_id` and/or `run_id`, only the memories of that scope; the user's sessions stay.",
    ),
)
def memory_delete_user(req: func.HttpRequest) -> Reply:
    from shared.contract import DeletedCount

    scope = caller(req).scope(user_from_route(req))
    agent_id, run_id = scope_from_query(req)
    return Reply(DeletedCount(deleted=get_memory_service().delete_user_memories(scope, agent_id, run_id)))


@api(
    bp,
    "memory_stats",
    "api/memory/stats/{user_id}",
    "GET",
    EndpointSpec("Memory statistics of a user", TAG, None, "MemoryStats", success_message="统计信息获取成功"),
)
def memory_stats(req: func.HttpRequest) -> Reply:
    return Reply(get_memory_service().stats(caller(req).scope(user_from_route(req))))


@api(
    bp,
    "memory_get",
    "api/memory/memory/{memory_id}",
    "GET",
    EndpointSpec("Get one memory", TAG, None, "MemoryRecord", success_message="获取记忆成功", query_params=OWNER_PARAM),
)
def memory_get(req: func.HttpRequest) -> Reply:
    scope = caller(req).scope(owner_from_query(req))
    return Reply(get_memory_service().get_memory(req.route_params.get("memory_id", ""), scope))


@api(
    bp,
    "memory_history",
    "api/memory/memory/{memory_id}/history",
    "GET",
    EndpointSpec(
        "Change history of one memory",
        TAG,
        None,
        "MemoryHistory",
        success_message="获取记忆历史成功",
        query_params=OWNER_PARAM,
    ),
)
def memory_history(req: func.HttpRequest) -> Reply:
    from shared.contract import HistoryEntry, MemoryHistory

    scope = caller(req).scope(owner_from_query(req))
    memory_id = req.route_params.get("memory_id", "")
    rows = get_memory_service().memory_history(memory_id, scope)
    return Reply(MemoryHistory(memory_id=memory_id, history=[HistoryEntry.model_validate(r) for r in rows]))


@api(
    bp,
    "memory_export_user",
    "api/memory/export/{user_id}",
    "GET",
    EndpointSpec(
        "Export all of a user's data (memories with history, chat sessions), a page of memories at a time",
        TAG,
        None,
        "UserExport",
        success_message="用户数据导出成功",
        query_params=PAGE_PARAMS,
        description=f"{PAGE_NOTE} The chat sessions and the graph come with the first page (no `cursor`).",
    ),
)
def memory_export_user(req: func.HttpRequest) -> Reply:
    from dataclasses import asdict

    from shared.context import iso_utc
    from shared.contract import ExportedTurn, UserExport

    scope = caller(req).scope(user_from_route(req))
    limit, cursor = page_from_query(req)
    service = get_memory_service()
    page = service.export_memories(scope, limit=limit, cursor=cursor)
    sessions = {}
    graph = None
    if cursor is None:  # the rest of the user's data comes once, with the first page
        sessions = {
            session_id: [ExportedTurn(**asdict(turn)) for turn in turns]
            for session_id, turns in service.export_sessions(scope).items()
        }
        graph = service.user_graph(scope, include_history=True)
    exported = UserExport(
        user_id=str(scope.user_id),
        exported_at=iso_utc(),
        memories=page.items,
        sessions=sessions,
        graph=graph,
        next_cursor=page.next_cursor,
    )
    return Reply(exported)


@api(
    bp,
    "memory_graph_user",
    "api/memory/graph/{user_id}",
    "GET",
    EndpointSpec(
        "A user's graph memory (entities and relations)",
        TAG,
        None,
        "UserGraph",
        success_message="获取用户图谱成功",
        query_params={"include_history": "`true` also returns relations that were replaced (valid=false)."},
    ),
)
def memory_graph_user(req: func.HttpRequest) -> Reply:
    from shared.contract import UserGraph

    scope = caller(req).scope(user_from_route(req))
    user_id = str(scope.user_id)
    include_history = (req.params.get("include_history") or "").lower() in ("1", "true", "yes")
    graph = get_memory_service().user_graph(scope, include_history=include_history)
    if graph is None:
        return Reply(UserGraph(user_id=user_id, enabled=False, nodes=[], edges=[]))
    return Reply(
        UserGraph(
            user_id=user_id,
            enabled=True,
            nodes=graph["nodes"],
            edges=graph["edges"],
            truncated=bool(graph.get("truncated")),
        )
    )
