"""The OpenAPI 3.0 rendition of the API that API Management imports (infra/openapi.json).

The app serves OpenAPI 3.1 at /openapi.json (functions/openapi.py). API Management gets a document made
from that same source, because:
  - its OpenAPI 3.1 import is partial, so the 3.1-only constructs pydantic emits are rewritten in
    their 3.0 spelling: `anyOf: [X, {type: null}]` and `type: [X, "null"]` become X with
    `nullable: true`, `const` a one-value `enum`, numeric `exclusiveMinimum` a boolean one;
  - Bicep's loadTextContent() stops at 131,072 characters, so what APIM does not use is left out:
    schema titles, examples, descriptions and null defaults (APIM builds operations, not documentation; the app's
    own /docs has them), `propertyNames` (no 3.0 equivalent; the app enforces it), and the
    function-key security scheme (it describes the backend's key, which APIM adds itself; APIM puts
    its own subscription-key schemes in its copy).

Operations marked `x-internal` (EndpointSpec(published=False): /metrics, /health/detail, /docs and
/openapi.json) are left out, so API Management publishes them to no subscriber; operators call the
Function App itself with a function key.

Anything without a known 3.0 spelling raises UnsupportedConstruct instead of passing through, so a new
model feature cannot silently produce a document APIM rejects.
"""

from __future__ import annotations

import json
from typing import Any

OPENAPI_VERSION = "3.0.3"

# Schema keywords that mean the same in 3.0 and 3.1 and are kept as they are.
_SCHEMA_KEPT = {
    "$ref",
    "discriminator",
    "type",
    "format",
    "enum",
    "default",
    "required",
    "nullable",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "readOnly",
    "writeOnly",
    "deprecated",
}
# Keywords APIM does not need (documentation) or 3.0 cannot say (and the app enforces anyway).
_SCHEMA_DROPPED = {
    "title",
    "description",
    "examples",
    "example",
    "propertyNames",
    "$schema",
    "$comment",
    "contentMediaType",
    "contentEncoding",
}
_NULL = {"type": "null"}
_OPERATION_KEPT = {"operationId", "summary", "tags", "deprecated"}
_OPERATION_DROPPED = {"description", "security", "externalDocs", "x-internal"}
_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
_PARAMETER_KEPT = {"name", "in", "required", "deprecated", "allowEmptyValue", "style", "explode"}
_PARAMETER_DROPPED = {"description", "example", "examples"}


class UnsupportedConstruct(ValueError):
    """A part of the 3.1 document that has no OpenAPI 3.0 rendition here yet."""


def apim_document(document: dict[str, Any]) -> dict[str, Any]:
    """The lean OpenAPI 3.0 rendition of the app's OpenAPI 3.1 `document`."""
    if not str(document.get("openapi", "")).startswith("3.1"):
        raise UnsupportedConstruct(f"expected an OpenAPI 3.1 document, got openapi={document.get('openapi')!r}")
    unknown = set(document) - {"openapi", "info", "paths", "components", "tags", "servers", "security"}
    if unknown:
        # webhooks, jsonSchemaDialect: 3.1 only.
        raise UnsupportedConstruct(f"$: {sorted(unknown)} have no OpenAPI 3.0 rendition")
    info = document["info"]
    out: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        # info.summary and license.identifier are 3.1 only; title and version are all APIM reads.
        "info": {"title": info["title"], "version": info["version"]},
        "paths": {
            path: converted
            for path, item in document["paths"].items()
            if (converted := _path_item(item, f"$.paths.{path}"))
        },
    }
    components = document.get("components") or {}
    unknown = set(components) - {"schemas", "securitySchemes"}
    if unknown:
        raise UnsupportedConstruct(f"$.components: {sorted(unknown)} not rendered here")
    schemas = components.get("schemas") or {}
    converted = {name: _schema(schema, f"$.components.schemas.{name}") for name, schema in schemas.items()}
    responses = _shared_error_responses(out["paths"])
    out["components"] = {
        "schemas": {**converted, **_named_response_bodies(out["paths"], set(converted))},
        **({"responses": responses} if responses else {}),
    }
    for key in ("servers", "tags"):
        if document.get(key):
            out[key] = document[key]
    return out


def _shared_error_responses(paths: dict[str, Any]) -> dict[str, Any]:
    """Move the error responses, the same on every operation, to components.responses.

    Each operation lists the same seven error responses; written once and referenced, they stop
    being most of the document.
    """
    shared: dict[str, Any] = {}
    names: dict[str, str] = {}
    for operation in _operations(paths):
        for code, response in (operation.get("responses") or {}).items():
            if code.startswith("2"):
                continue
            key = json.dumps(response, sort_keys=True)
            if key not in names:
                name = f"Error{code}"
                suffix = 2
                while name in shared:
                    name, suffix = f"Error{code}_{suffix}", suffix + 1
                names[key], shared[name] = name, response
            operation["responses"][code] = {"$ref": f"#/components/responses/{names[key]}"}
    return shared


def _named_response_bodies(paths: dict[str, Any], taken: set[str]) -> dict[str, Any]:
    """Give the inline success bodies (the `{success, message, data, ...}` envelopes) component names.

    APIM maps each named schema to a schema definition of the API, which its operations reference;
    inline ones are repeated in every operation. The name follows the model in `data`
    (`MemoryResults` -> `MemoryResultsResponse`), or the operation when `data` is not a model.
    """
    named: dict[str, Any] = {}
    names: dict[str, str] = {}
    for operation in _operations(paths):
        for code, response in (operation.get("responses") or {}).items():
            media = (response.get("content") or {}).get("application/json")
            if not code.startswith("2") or media is None or "$ref" in media["schema"]:
                continue
            body = media["schema"]
            key = json.dumps(body, sort_keys=True)
            if key not in names:
                data_ref = str(((body.get("properties") or {}).get("data") or {}).get("$ref", ""))
                base = data_ref.rsplit("/", 1)[-1] if data_ref else _pascal(operation["operationId"])
                name, suffix = f"{base}Response", 2
                while name in taken or name in named:
                    name, suffix = f"{base}Response{suffix}", suffix + 1
                names[key], named[name] = name, body
            media["schema"] = {"$ref": f"#/components/schemas/{names[key]}"}
    return named


def _operations(paths: dict[str, Any]) -> list[dict[str, Any]]:
    return [operation for item in paths.values() for method, operation in item.items() if method in _METHODS]


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("-", "_").split("_"))


def _path_item(item: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in item.items():
        if key in _METHODS:
            if value.get("x-internal"):
                continue  # operators only: not published to API Management's subscribers
            out[key] = _operation(value, f"{where}.{key}")
        elif key == "parameters":
            out[key] = [_parameter(p, f"{where}.parameters[{i}]") for i, p in enumerate(value)]
        elif key not in {"summary", "description"}:
            raise UnsupportedConstruct(f"{where}.{key} has no OpenAPI 3.0 rendition here")
    return out


def _operation(operation: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in operation.items():
        if key in _OPERATION_KEPT:
            out[key] = value
        elif key == "parameters":
            out[key] = [_parameter(p, f"{where}.parameters[{i}]") for i, p in enumerate(value)]
        elif key == "requestBody":
            body = {"content": _content(value["content"], f"{where}.requestBody")}
            if "required" in value:
                body["required"] = value["required"]
            out[key] = body
        elif key == "responses":
            out[key] = {code: _response(r, f"{where}.responses.{code}") for code, r in value.items()}
        elif key not in _OPERATION_DROPPED:
            raise UnsupportedConstruct(f"{where}.{key} has no OpenAPI 3.0 rendition here")
    return out


def _parameter(parameter: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in parameter.items():
        if key in _PARAMETER_KEPT:
            out[key] = value
        elif key == "schema":
            out[key] = _schema(value, f"{where}.schema")
        elif key not in _PARAMETER_DROPPED:
            raise UnsupportedConstruct(f"{where}.{key} has no OpenAPI 3.0 rendition here")
    return out


def _response(response: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = set(response) - {"description", "content", "headers"}
    if unknown:
        raise UnsupportedConstruct(f"{where}: {sorted(unknown)} have no OpenAPI 3.0 rendition here")
    # description is the one required field of a 3.0 response; the app's are one line each.
    out: dict[str, Any] = {"description": response.get("description", "")}
    if "content" in response:
        out["content"] = _content(response["content"], where)
    return out


def _content(content: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for media_type, entry in content.items():
        unknown = set(entry) - {"schema", "example", "examples"}
        if unknown:
            raise UnsupportedConstruct(f"{where}.content.{media_type}: {sorted(unknown)} not rendered")
        out[media_type] = {"schema": _schema(entry["schema"], f"{where}.content.{media_type}.schema")}
    return out


def _schema(schema: Any, where: str) -> Any:
    """One JSON Schema (2020-12 dialect, as pydantic writes it) as an OpenAPI 3.0 Schema Object."""
    if isinstance(schema, bool):
        # `true`/`false` schemas: 3.0 has only the object form ({} accepts anything).
        if schema:
            return {}
        raise UnsupportedConstruct(f"{where}: the `false` schema has no OpenAPI 3.0 rendition")
    if not isinstance(schema, dict):
        raise UnsupportedConstruct(f"{where}: a schema must be an object, not {type(schema).__name__}")
    schema, nullable = _without_null(schema, where)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_DROPPED:
            continue
        if key in _SCHEMA_KEPT:
            out[key] = value
        elif key == "const":
            if "enum" in schema:
                raise UnsupportedConstruct(f"{where}: both const and enum")
            out["enum"] = [value]
        elif key in {"exclusiveMinimum", "exclusiveMaximum"}:
            if isinstance(value, bool):
                out[key] = value
            else:
                bound = "minimum" if key == "exclusiveMinimum" else "maximum"
                if bound in schema:
                    raise UnsupportedConstruct(f"{where}: both {key} and {bound}")
                out[bound] = value
                out[key] = True
        elif key == "properties":
            out[key] = {name: _schema(sub, f"{where}.properties.{name}") for name, sub in value.items()}
        elif key == "items":
            if isinstance(value, list):
                raise UnsupportedConstruct(f"{where}.items: tuple items have no OpenAPI 3.0 rendition")
            out[key] = _schema(value, f"{where}.items")
        elif key == "additionalProperties":
            out[key] = value if isinstance(value, bool) else _schema(value, f"{where}.additionalProperties")
        elif key in {"allOf", "anyOf", "oneOf"}:
            out[key] = [_schema(sub, f"{where}.{key}[{i}]") for i, sub in enumerate(value)]
        elif key == "not":
            out[key] = _schema(value, f"{where}.not")
        else:
            # prefixItems, if/then/else, $defs, dependentRequired, unevaluatedProperties, contains...
            raise UnsupportedConstruct(f"{where}.{key} has no OpenAPI 3.0 rendition here")
    if nullable:
        out["nullable"] = True
        if "default" in out and out["default"] is None:
            del out["default"]  # a nullable field's null default says nothing APIM uses (and costs the budget)
    if "$ref" in out and len(out) > 1:
        # A 3.0 $ref ignores its siblings (nullable, default...): keep them by wrapping the reference.
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    return out


def _without_null(schema: dict[str, Any], where: str) -> tuple[dict[str, Any], bool]:
    """`schema` without the 3.1 ways of also admitting null, and whether it admitted null."""
    schema = dict(schema)
    nullable = False
    kind = schema.get("type")
    if kind == "null":
        raise UnsupportedConstruct(f"{where}: a schema that only admits null has no OpenAPI 3.0 rendition")
    if isinstance(kind, list):
        rest = [k for k in kind if k != "null"]
        nullable = len(rest) < len(kind)
        if len(rest) != 1:
            raise UnsupportedConstruct(f"{where}.type: {kind} has no single-type OpenAPI 3.0 rendition")
        schema["type"] = rest[0]
    for key in ("anyOf", "oneOf"):
        if key not in schema:
            continue
        branches = [branch for branch in schema[key] if branch != _NULL]
        if len(branches) == len(schema[key]):
            continue
        nullable = True
        if len(branches) != 1:
            schema[key] = branches
            continue
        # X | None: the remaining branch becomes the schema itself; the field's own annotations win.
        del schema[key]
        branch = branches[0]
        clash = {k for k in branch if k in schema and k not in _SCHEMA_DROPPED and branch[k] != schema[k]}
        if clash:
            raise UnsupportedConstruct(f"{where}.{key}: the non-null branch and the field disagree on {sorted(clash)}")
        schema = {**branch, **schema}
    return schema, nullable
