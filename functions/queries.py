"""The query-string and route parameters the memory endpoints share, each validated like a body (422)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import azure.functions as func

from functions.http import validate

if TYPE_CHECKING:
    from shared.query.filters import Validity


def user_from_route(req: func.HttpRequest) -> str:
    from shared.contract import UserPath

    return validate(UserPath, {"user_id": req.route_params.get("user_id", "")}).user_id


def scope_from_query(req: func.HttpRequest) -> tuple[str | None, str | None]:
    """The optional `?agent_id=&run_id=` of list and delete-all, validated like `user_id`."""
    from shared.contract import ScopeQuery

    raw = {key: req.params.get(key) for key in ("agent_id", "run_id") if req.params.get(key) is not None}
    scope = validate(ScopeQuery, raw)
    return scope.agent_id, scope.run_id


def page_from_query(req: func.HttpRequest) -> tuple[int | None, str | None]:
    """The optional `?limit=&cursor=` of list and export (empty is absent), validated like a body."""
    from shared.contract import PageQuery

    raw: dict[str, object] = {key: req.params.get(key) for key in ("limit", "cursor") if req.params.get(key)}
    limit = raw.get("limit")
    if isinstance(limit, str) and limit.isascii() and limit.isdigit() and len(limit) <= 9:
        raw["limit"] = int(limit)  # a query string has no numbers; anything but digits stays text: 422
    page = validate(PageQuery, raw)
    return page.limit, page.cursor


def validity_from_query(req: func.HttpRequest) -> Validity:
    """The optional `?as_of=&include_superseded=` of list (empty is absent): valid now by default."""
    from shared.contract import ValidityQuery

    raw: dict[str, object] = {
        key: req.params.get(key) for key in ("as_of", "include_superseded") if req.params.get(key)
    }
    flag = raw.get("include_superseded")
    if flag in ("true", "false"):
        raw["include_superseded"] = flag == "true"  # a query string has no booleans; anything else stays text: 422
    return validate(ValidityQuery, raw).validity()


def owner_from_query(req: func.HttpRequest) -> str | None:
    """The optional `?user_id=` that makes a by-id call check ownership."""
    from shared.contract import OwnerQuery

    raw = req.params.get("user_id")
    return validate(OwnerQuery, {"user_id": raw}).user_id if raw is not None else None
