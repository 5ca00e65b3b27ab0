"""Chat endpoints (`/api/chat/...`): the agent, and the original chat-side memory shortcuts."""

from __future__ import annotations

import azure.functions as func

from functions.http import EndpointSpec, Reply, endpoint, parse_body
from functions.memory import OWNER_PARAM, owner_from_query, user_from_route
from shared.runtime import get_chat_agent, get_memory_service

bp = func.Blueprint()
API = func.AuthLevel.FUNCTION
TAG = "chat"


@bp.function_name("chat_message")
@bp.route(route="api/chat/message", methods=["POST"], auth_level=API)
@endpoint(
    EndpointSpec(
        "Chat with memory",
        TAG,
        "ChatMessageRequest",
        "ChatMessageResponse",
        enveloped=False,
        description="Answers with the LLM using the user's relevant memories and the session's "
        "earlier turns and records the turn; what it learns is an ingestion event (`learning`: queued "
        "on the ingestion queue, or already run when none is configured). 503 `llm_not_configured` "
        "without an LLM.",
    )
)
def chat_message(req: func.HttpRequest) -> Reply:
    from shared.contract import ChatMessageRequest

    body = parse_body(req, ChatMessageRequest)
    return Reply(get_chat_agent().chat(body.user_id, body.message, body.session_id, body.metadata))


@bp.function_name("chat_search_memories")
@bp.route(route="api/chat/search-memories", methods=["POST"], auth_level=API)
@endpoint(
    EndpointSpec(
        "Search a user's memories (chat shortcut)",
        TAG,
        "ChatSearchRequest",
        "MemoryResults",
        success_message="搜索完成",
    )
)
def chat_search_memories(req: func.HttpRequest) -> Reply:
    from shared.contract import ChatSearchRequest, MemoryResults

    body = parse_body(req, ChatSearchRequest)
    return Reply(MemoryResults(results=get_memory_service().search_memories(body.user_id, body.query, body.limit)))


@bp.function_name("chat_list_memories")
@bp.route(route="api/chat/memories/{user_id}", methods=["GET"], auth_level=API)
@endpoint(
    EndpointSpec(
        "List all of a user's memories (chat shortcut)", TAG, None, "MemoryList", success_message="获取用户记忆成功"
    )
)
def chat_list_memories(req: func.HttpRequest) -> Reply:
    from shared.contract import MemoryList

    records = get_memory_service().list_memories(user_from_route(req))
    return Reply(MemoryList(results=records, total=len(records)))


@bp.function_name("chat_delete_memory")
@bp.route(route="api/chat/memory/{memory_id}", methods=["DELETE"], auth_level=API)
@endpoint(
    EndpointSpec(
        "Delete one memory (chat shortcut)",
        TAG,
        None,
        "DeletedMemory",
        success_message="记忆删除成功",
        query_params=OWNER_PARAM,
    )
)
def chat_delete_memory(req: func.HttpRequest) -> Reply:
    from shared.contract import DeletedMemory

    memory_id = get_memory_service().delete_memory(req.route_params.get("memory_id", ""), owner_from_query(req))
    return Reply(DeletedMemory(memory_id=memory_id))


@bp.function_name("chat_delete_user_memories")
@bp.route(route="api/chat/memories/{user_id}", methods=["DELETE"], auth_level=API)
@endpoint(
    EndpointSpec(
        "Delete all of a user's memories (chat shortcut)", TAG, None, "DeletedCount", success_message="用户记忆已清除"
    )
)
def chat_delete_user_memories(req: func.HttpRequest) -> Reply:
    from shared.contract import DeletedCount

    return Reply(DeletedCount(deleted=get_memory_service().delete_user_memories(user_from_route(req))))
