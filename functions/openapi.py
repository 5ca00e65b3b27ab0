"""The OpenAPI 3.1 document, generated from the registered functions and the pydantic models.

Paths, methods and auth come from the FunctionApp's triggers; bodies and responses from the
models each function declares with `functions.http.endpoint`. Nothing is written by hand, so the
document cannot drift from the code. `infra/openapi.json` (what API Management imports) is made from
this document, in OpenAPI 3.0 (tools/openapi_apim.py), by `python -m tools.export_openapi`.
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
_ERRORS = {
    "400": "Malformed request (e.g. body is not JSON)",
    "403": "The memory belongs to another user",
    "404": "Unknown memory or event id (an event of another user is unknown too)",
    "413": "Request body too large",
    "422": "Request failed validation; `error.details` lists the fields",
    "429": "Throttled",
    "503": "A backend is unavailable (see `Retry-After`), or the LLM is not configured",
}


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
            "schemas": dict(sorted(schemas.get("$defs", {}).items())),
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
            },
        },
    }


def _is_request(model: type[BaseModel], entries: list[Any]) -> bool:
    return any(spec.request_model is model for _, _, spec in entries)


def _operation(name: str, trigger: Any, spec: Any, path: str, refs: dict[Any, str]) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": name, "summary": spec.summary, "tags": [spec.tag]}
    if spec.description:
        op["description"] = spec.description
    params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in _PARAM.findall(path)]
    params += [
        {"name": q, "in": "query", "required": False, "description": text, "schema": {"type": "string"}}
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
    error_ref = {"application/json": {"schema": {"$ref": refs[ErrorEnvelope]}}}
    for code, text in _ERRORS.items():
        if code in ("400", "413", "422") and spec.request_model is None and "{" not in path:
            continue
        responses[code] = {"description": text, "content": error_ref}
    op["responses"] = responses
    auth = str(getattr(trigger.auth_level, "value", trigger.auth_level) or "function").lower()
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


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
