"""Chat endpoints (`/api/chat/...`): the agent, and the original chat-side memory shortcuts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import azure.functions as func

from functions import memory
from functions.caller import Caller
from functions.http import EndpointSpec, Reply, api, blueprint
from shared.runtime import get_chat_agent, get_memory_service

if TYPE_CHECKING:
    from shared.contract import ChatMessageRequest, ChatSearchRequest

bp = blueprint()
TAG = "chat"


@api(
    bp,
    "chat_message",
    "api/chat/message",
    "POST",
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
    ),
)
def chat_message(req: func.HttpRequest, who: Caller, body: ChatMessageRequest) -> Reply:
    return Reply(get_chat_agent().chat(who.scope(body.user_id), body.message, body.session_id, body.metadata))


@api(
    bp,
    "chat_search_memories",
    "api/chat/search-memories",
    "POST",
    EndpointSpec(
        "Search a user's memories (chat shortcut)",
        TAG,
        "ChatSearchRequest",
        "MemoryResults",
        success_message="搜索完成",
    ),
)
def chat_search_memories(req: func.HttpRequest, who: Caller, body: ChatSearchRequest) -> Reply:
    from shared.contract import MemoryResults

    results = get_memory_service().search_memories(who.scope(body.user_id), body.query, body.limit)
    return Reply(MemoryResults(results=results))


# The original API's chat-side memory shortcuts: the memory endpoints' own handlers on the chat
# routes, with the original's messages.
api(
    bp,
    "chat_list_memories",
    "api/chat/memories/{user_id}",
    "GET",
    EndpointSpec(
        "List a user's memories, a page at a time (chat shortcut)",
        TAG,
        None,
        "MemoryList",
        success_message="获取用户记忆成功",
        query_params={**memory.PAGE_PARAMS, **memory.VALIDITY_PARAMS},
        description=memory.PAGE_NOTE,
    ),
)(memory.memory_list_user)

api(
    bp,
    "chat_delete_memory",
    "api/chat/memory/{memory_id}",
    "DELETE",
    EndpointSpec(
        "Delete one memory (chat shortcut)",
        TAG,
        None,
        "DeletedMemory",
        success_message="记忆删除成功",
        query_params=memory.OWNER_PARAM,
    ),
)(memory.memory_delete)

api(
    bp,
    "chat_delete_user_memories",
    "api/chat/memories/{user_id}",
    "DELETE",
    EndpointSpec(
        "Delete all of a user's memories (chat shortcut)", TAG, None, "DeletedCount", success_message="用户记忆已清除"
    ),
)(memory.memory_delete_user)
