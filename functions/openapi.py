"""The OpenAPI 3.1 document, generated from the registered functions and the pydantic models.

Paths, methods and auth come from the FunctionApp's triggers; bodies and responses from the
models each function declares with `functions.http.endpoint`. Nothing is written by hand, so the
document cannot drift from the code. `infra/openapi.json` (what API Management imports) is made from
this document, in OpenAPI 3.0 (tools/build/openapi_apim.py), by `python -m tools.build.export_openapi`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from functions.hostjson import DEFAULT_ROUTE_PREFIX, HOST_JSON, read_route_prefix
from shared import SERVICE_NAME, VERSION
from shared.contract import ErrorEnvelope

_PARAM = re.compile(r"\{([^}:?=*]+)[^}]*\}")
# An optional parameter that can only be empty stands for "nothing" (how the root route is written).
_EMPTY_PARAM = re.compile(r"/?\{[^}]*maxlength\(0\)\?\}")
# Each error status: what it means and the envelope's `error.code` an example of it carries.
_ERRORS = {
    "400": ("Malformed request (e.g. body is not JSON)", "bad_request", "request body is not valid JSON"),
    "403": ("The memory belongs to another user", "forbidden", "memory '…' belongs to another user"),
    "404": ("Unknown memory or event id (another user's event too)", "not_found", "memory '…' not found"),
    "413": ("Request body too large", "payload_too_large", "request body is larger than 1048576 bytes"),
    "422": (
        "Request failed validation; `error.details` lists the fields",
        "validation_error",
        "request body failed validation",
    ),
    "503": (
        "A backend is unavailable (`unavailable`, with `Retry-After`), the store is held by another process "
        "(`store_locked`), the service is misconfigured (`misconfigured`) or chat has no LLM (`llm_not_configured`)",
        "unavailable",
        "the vector store is unavailable; retry later",
    ),
}
# The functions that touch no backend and take no input: they can answer none of the errors above.
_NO_ERRORS = frozenset({"health", "health_detail", "service_info", "metrics", "openapi_document", "docs_page"})
_KEY_401 = {"description": "No function key, or a wrong one (empty body, from the Functions host)"}


def route_prefix(host_json: Path | None = None) -> str:
    """The app's route prefix, read by the host's rules (functions/hostjson.py)."""
    path = host_json or HOST_JSON
    return read_route_prefix(path) if path.is_file() else DEFAULT_ROUTE_PREFIX


def indexed_functions(app: Any) -> list[Any]:
    """`app.get_functions()`, callable more than once.

    The library remembers every name it has validated, so a second call on one app reports each
    function as a duplicate. The host indexes once per process; the docs and tests index again, so
    the memory of the previous pass is cleared first (uniqueness is still checked on each pass).
    """
    app.functions_bindings = None
    functions: list[Any] = app.get_functions()
    return functions


def _trigger(fn: Any) -> Any:
    trigger = fn.get_trigger()
    return trigger if trigger is not None and trigger.get_binding_name() == "httpTrigger" else None


def build_openapi_document(app: Any) -> dict[str, Any]:
    """The OpenAPI document of every HTTP function of `app` (the service's FunctionApp)."""
    prefix = route_prefix()
    entries = []
    models: set[type[BaseModel]] = {ErrorEnvelope}
    for fn in indexed_functions(app):
        trigger = _trigger(fn)
        spec = getattr(fn.get_user_function(), "endpoint_spec", None)
        if trigger is None or spec is None:
            continue
        entries.append((fn, trigger, spec))
        for model in (spec.request_model, spec.response_model, spec.accepted_model):
            if model is not None:
                models.add(model)

    ordered = sorted(models, key=lambda model: model.__name__)
    keyed, schemas = models_json_schema(
        [(model, "validation" if _is_request(model, entries) else "serialization") for model in ordered],
        ref_template="#/components/schemas/{model}",
    )
    refs = {model: keyed[(model, mode)]["$ref"] for (model, mode) in keyed}

    paths: dict[str, dict[str, Any]] = {}
    for fn, trigger, spec in entries:
        route = trigger.route if trigger.route is not None else fn.get_function_name()
        route = _EMPTY_PARAM.sub("", route)
        path = "/" + "/".join(part for part in (prefix, route) if part)
        path = _PARAM.sub(lambda match: "{" + match.group(1) + "}", path)
        methods = [str(getattr(m, "value", m)).lower() for m in (trigger.methods or ["GET"])]
        for method in methods:
            paths.setdefault(path, {})[method] = _operation(fn.get_function_name(), trigger, spec, path, refs)

    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{SERVICE_NAME} API",
            "version": VERSION,
            "description": "Long-term memory for AI chat assistants. Every memory call is scoped to a `user_id`; "
            "errors use one envelope (`success: false`, `message`, `error.code`, `request_id`).",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(_with_filter_grammar(schemas.get("$defs", {})).items())),
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
            },
        },
    }


def _with_filter_grammar(schemas: dict[str, Any]) -> dict[str, Any]:
    """`schemas` with the search filter grammar's own (shared/query/filters.py) as components, and
    `SearchFilters.metadata` described by them (pydantic sees only a dict there)."""
    from shared.constraints import RESERVED_METADATA_KEYS
    from shared.query.filters import SCHEMA_PREFIX, json_schemas

    schemas = {**schemas, **json_schemas(RESERVED_METADATA_KEYS)}
    filters = schemas.get("SearchFilters")
    if filters is not None:
        field = filters["properties"]["metadata"]
        grammar = {"anyOf": [{"$ref": f"#/components/schemas/{SCHEMA_PREFIX}"}, {"type": "null"}]}
        filters["properties"]["metadata"] = {
            **grammar,
            **{k: v for k, v in field.items() if k in ("default", "description", "examples", "title")},
        }
    return schemas


def _is_request(model: type[BaseModel], entries: list[Any]) -> bool:
    return any(spec.request_model is model for _, _, spec in entries)


def _operation(name: str, trigger: Any, spec: Any, path: str, refs: dict[Any, str]) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": name, "summary": spec.summary, "tags": [spec.tag]}
    if not spec.published:
        op["x-internal"] = True  # tools/build/openapi_apim.py leaves it out of what API Management imports
    if spec.description:
        op["description"] = spec.description
    path_params = _PARAM.findall(path)
    params = [{"name": p, "in": "path", "required": True, "schema": _param_schema(p)} for p in path_params]
    params += [
        {"name": q, "in": "query", "required": False, "description": text, "schema": _query_schema(q)}
        for q, text in spec.query_params.items()
    ]
    if params:
        op["parameters"] = params
    if spec.request_model is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": refs[spec.request_model]}}},
        }
    success: dict[str, Any] = {"description": "OK"}
    if spec.response_model is not None:
        data_schema: dict[str, Any] = {"$ref": refs[spec.response_model]}
        if spec.enveloped:
            data_schema = _enveloped(data_schema)
        success["content"] = {spec.content_type: {"schema": data_schema}}
    elif spec.content_type != "application/json":
        success["content"] = {spec.content_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {"200": success}
    if spec.accepted_model is not None:
        params.append(
            {
                "name": "Prefer",
                "in": "header",
                "required": False,
                "description": "`respond-async` (RFC 7240): answer 202 and write through the ingestion queue.",
                "schema": {"type": "string", "examples": ["respond-async"]},
            }
        )
        op["parameters"] = params
        responses["202"] = {
            "description": "Accepted (`Prefer: respond-async`): poll the event at `Location`",
            "headers": {
                "Location": {"description": "/api/memory/events/{event_id}", "schema": {"type": "string"}},
                "Preference-Applied": {"schema": {"type": "string", "const": "respond-async"}},
            },
            "content": {"application/json": {"schema": _enveloped({"$ref": refs[spec.accepted_model]})}},
        }
    auth = str(getattr(trigger.auth_level, "value", trigger.auth_level) or "function").lower()
    if auth != "anonymous":
        responses["401"] = _KEY_401
    for code in _error_codes(name, spec, path_params):
        text, error_code, message = _ERRORS[code]
        example = {
            "success": False,
            "message": message,
            "error": {"code": error_code, "details": []},
            "request_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
            "timestamp": "2024-05-01T12:00:00.000Z",
        }
        responses[code] = {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": refs[ErrorEnvelope]}, "example": example}},
        }
    op["responses"] = responses
    op["security"] = [] if auth == "anonymous" else [{"functionKey": []}]
    return op


def _enveloped(data_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["success", "message", "data", "timestamp"],
        "properties": {
            "success": {"type": "boolean", "const": True},
            "message": {"type": "string"},
            "data": data_schema,
            "timestamp": {"type": "string", "format": "date-time"},
            "request_id": {"type": "string"},
        },
    }


def _error_codes(name: str, spec: Any, path_params: list[str]) -> list[str]:
    """The error statuses an operation can answer, from what it takes and what it reaches."""
    if name in _NO_ERRORS:
        return []
    if name == "docs_asset":
        return ["404"]
    codes = ["503"]
    by_id = "memory_id" in path_params or (
        spec.request_model is not None and "memory_id" in spec.request_model.model_fields
    )
    supersedes = spec.request_model is not None and spec.request_model.__name__ in (
        "MemoryAddRequest",
        "MemoryBatchAddRequest",
    )
    if by_id:
        codes += ["403", "404"]
    elif supersedes:
        codes.append("404")  # an unknown or foreign id in `supersedes`
    elif "event_id" in path_params:
        codes.append("404")  # an event of another user answers like an unknown one, never 403
    if spec.request_model is not None:
        codes += ["400", "413", "422"]
    elif path_params or spec.query_params:
        codes.append("422")
    return sorted(codes)


def _query_schema(name: str) -> dict[str, Any]:
    """A query parameter's schema: its rule, or empty, which the host drops (the same as absent)."""
    schema = _param_schema(name)
    if schema == {"type": "string"}:
        return schema
    return {"anyOf": [{"type": "string", "maxLength": 0}, schema]}


def _param_schema(name: str) -> dict[str, Any]:
    """A path or query parameter's schema: the contract's rule for a user id and for a page's `limit` and
    `cursor`, else a plain string."""
    from shared.contract import PageQuery, UserPath, ValidityQuery

    if name in ("user_id", "agent_id", "run_id"):  # mem0's scopes follow the user id's rule
        schema = dict(UserPath.model_json_schema()["properties"]["user_id"])
    elif name in PageQuery.model_fields or name in ValidityQuery.model_fields:
        model = PageQuery if name in PageQuery.model_fields else ValidityQuery
        field = model.model_json_schema()["properties"][name]
        schema = dict(next(part for part in field.get("anyOf", [field]) if part.get("type") != "null"))
        schema.pop("default", None)
    else:
        return {"type": "string"}
    for key in ("title", "description", "examples"):
        schema.pop(key, None)
    return schema


def render(document: dict[str, Any], indent: int = 2) -> str:
    return json.dumps(document, indent=indent, sort_keys=True, ensure_ascii=False) + "\n"
