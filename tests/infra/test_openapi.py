"""The OpenAPI document API Management imports (infra/openapi.json): the OpenAPI 3.0 rendition of the
app's own 3.1 document, generated from it, valid 3.0, and far below what Bicep can load."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from infra_support import INFRA, REPO_ROOT
from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator, validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from tools.build.openapi_apim import UnsupportedConstruct, apim_document

COMMITTED = INFRA / "openapi.json"
# Bicep's loadTextContent() refuses files of more characters than this.
LOAD_TEXT_CONTENT_LIMIT = 131_072
# The document grows with every endpoint: fail while there is still room to act, not at the limit.
SIZE_BUDGET = int(LOAD_TEXT_CONTENT_LIMIT * 0.6)


def _differences(committed: Any, generated: Any, path: str = "$") -> list[str]:
    if type(committed) is not type(generated):
        return [f"{path}: {type(committed).__name__} in the file, {type(generated).__name__} generated"]
    if isinstance(committed, dict):
        out = []
        for key in sorted(set(committed) | set(generated)):
            if key not in generated:
                out.append(f"{path}.{key}: only in the committed file")
            elif key not in committed:
                out.append(f"{path}.{key}: missing from the committed file")
            else:
                out += _differences(committed[key], generated[key], f"{path}.{key}")
        return out
    if isinstance(committed, list) and len(committed) == len(generated):
        return [
            d
            for i, (a, b) in enumerate(zip(committed, generated, strict=True))
            for d in _differences(a, b, f"{path}[{i}]")
        ]
    return [] if committed == generated else [f"{path}: differs"]


@pytest.fixture(scope="module")
def app_document() -> dict[str, Any]:
    from function_app import app
    from functions.openapi import build_openapi_document

    return json.loads(json.dumps(build_openapi_document(app)))


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    return json.loads(COMMITTED.read_text(encoding="utf-8"))


def test_committed_document_is_far_below_what_bicep_can_load() -> None:
    text = COMMITTED.read_text(encoding="utf-8")
    assert len(text) < SIZE_BUDGET, (
        f"infra/openapi.json has {len(text):,} characters, over the budget of {SIZE_BUDGET:,} (60% of the"
        f" {LOAD_TEXT_CONTENT_LIMIT:,} Bicep's loadTextContent() accepts): slim tools/build/openapi_apim.py further,"
        " or import the document from a URL (apim-api.bicep, format 'openapi+json-link')"
    )
    document = json.loads(text)
    assert document.get("paths"), "the document has no paths"
    operation_ids = [
        op.get("operationId") for item in document["paths"].values() for op in item.values() if isinstance(op, dict)
    ]
    assert all(operation_ids) and len(operation_ids) == len(set(operation_ids)), (
        "every operation needs a unique operationId (APIM operation names)"
    )


def test_committed_document_equals_the_generated_one(app_document: dict[str, Any], committed: dict[str, Any]) -> None:
    generated = json.loads(json.dumps(apim_document(app_document)))
    differences = _differences(committed, generated)
    assert not differences, (
        "infra/openapi.json is stale: regenerate it with `python -m tools.build.export_openapi` and commit it.\n"
        + "\n".join(differences[:20])
    )


def test_routes_match_the_function_host_prefix() -> None:
    # routePrefix "" means the app routes carry api/ themselves, exactly as the API contract writes them.
    host = json.loads(Path(REPO_ROOT / "host.json").read_text())
    assert host["extensions"]["http"]["routePrefix"] == ""
    paths = json.loads(COMMITTED.read_text(encoding="utf-8"))["paths"]
    assert "/health" in paths
    assert all(path == "/" or not path.startswith("/api/api/") for path in paths)


# --- OpenAPI 3.0 ------------------------------------------------------------------------------

# Keywords of JSON Schema 2020-12 / OpenAPI 3.1 that an OpenAPI 3.0 Schema Object does not have.
ONLY_IN_31 = {
    "const",
    "examples",
    "propertyNames",
    "prefixItems",
    "$schema",
    "$id",
    "$defs",
    "$anchor",
    "$dynamicRef",
    "contentMediaType",
    "contentEncoding",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contains",
    "patternProperties",
}


def _schemas(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object of the document, with where it is, nested ones included."""

    def walk(schema: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
        if not isinstance(schema, dict):
            return
        yield where, schema
        for name, sub in (schema.get("properties") or {}).items():
            yield from walk(sub, f"{where}.properties.{name}")
        for key in ("items", "additionalProperties", "not"):
            yield from walk(schema.get(key), f"{where}.{key}")
        for key in ("allOf", "anyOf", "oneOf"):
            for i, sub in enumerate(schema.get(key) or []):
                yield from walk(sub, f"{where}.{key}[{i}]")

    components = document.get("components") or {}
    for name, schema in (components.get("schemas") or {}).items():
        yield from walk(schema, f"components.schemas.{name}")
    holders: list[tuple[str, Any]] = list((components.get("responses") or {}).items())
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"paths.{path}.{method}"
            for i, parameter in enumerate(operation.get("parameters") or []):
                yield from walk(parameter.get("schema"), f"{where}.parameters[{i}].schema")
            holders.append((f"{where}.requestBody", operation.get("requestBody") or {}))
            holders += [(f"{where}.responses.{code}", r) for code, r in operation["responses"].items()]
    for where, holder in holders:
        for media_type, media in (holder.get("content") or {}).items():
            yield from walk(media.get("schema"), f"{where}.content.{media_type}.schema")


def only_in_31(document: dict[str, Any]) -> list[str]:
    """The OpenAPI 3.1 constructs in `document` (a strict structural check, besides the validator)."""
    found = [] if str(document.get("openapi")).startswith("3.0.") else [f"openapi: {document.get('openapi')}"]
    found += [f"$.{key}" for key in ("webhooks", "jsonSchemaDialect") if key in document]
    for where, schema in _schemas(document):
        found += [f"{where}.{key}" for key in sorted(ONLY_IN_31 & set(schema))]
        kind = schema.get("type")
        if isinstance(kind, list) or kind == "null":
            found.append(f"{where}.type: {kind!r}")
        for key in ("anyOf", "oneOf"):
            if {"type": "null"} in (schema.get(key) or []):
                found.append(f"{where}.{key}: a null branch")
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            if key in schema and not isinstance(schema[key], bool):
                found.append(f"{where}.{key}: a number (3.0 takes a boolean)")
    return found


def test_committed_document_is_valid_openapi_30(committed: dict[str, Any]) -> None:
    assert only_in_31(committed) == []
    validate(committed, cls=OpenAPIV30SpecValidator)


def test_the_app_keeps_serving_openapi_31(app_document: dict[str, Any]) -> None:
    assert app_document["openapi"].startswith("3.1")
    validate(app_document, cls=OpenAPIV31SpecValidator)
    # The 3.1 document does use what 3.0 lacks, so the checks below have something to catch.
    assert only_in_31(app_document)


@pytest.mark.parametrize(
    ("construct", "mutate"),
    [
        ("const", lambda s: s.update({"const": "x"})),
        ("type null", lambda s: s.update({"anyOf": [{"type": "string"}, {"type": "null"}]})),
        ("type list", lambda s: s.update({"type": ["string", "null"]})),
        ("examples", lambda s: s.update({"examples": ["x"]})),
        ("propertyNames", lambda s: s.update({"propertyNames": {"maxLength": 10}})),
        ("numeric exclusiveMinimum", lambda s: s.update({"exclusiveMinimum": 0})),
    ],
)
def test_both_checks_reject_a_31_construct(committed: dict[str, Any], construct: str, mutate: Any) -> None:
    document = copy.deepcopy(committed)
    mutate(document["components"]["schemas"]["ErrorInfo"]["properties"]["code"])
    assert only_in_31(document), f"the structural check misses {construct}"
    with pytest.raises(OpenAPIValidationError):
        validate(document, cls=OpenAPIV30SpecValidator)


OPERATOR_ONLY = {"metrics", "health_detail", "openapi_document", "docs_page", "docs_asset"}


def test_rendition_keeps_every_published_operation(app_document: dict[str, Any], committed: dict[str, Any]) -> None:
    def operations(document: dict[str, Any], published_only: bool = False) -> dict[tuple[str, str], str]:
        return {
            (path, method): op["operationId"]
            for path, item in document["paths"].items()
            for method, op in item.items()
            if not (published_only and op.get("x-internal"))
        }

    internal = set(operations(app_document).values()) - set(operations(app_document, published_only=True).values())
    assert internal == OPERATOR_ONLY  # /metrics, the detailed health and the docs are for operators only
    assert not set(operations(committed).values()) & OPERATOR_ONLY  # API Management publishes none of them
    assert operations(committed) == operations(app_document, published_only=True)
    for (path, method), _ in operations(app_document, published_only=True).items():
        source, rendered = app_document["paths"][path][method], committed["paths"][path][method]
        assert rendered.get("summary") == source.get("summary"), "APIM names operations after their summary"
        assert set(rendered["responses"]) == set(source["responses"])
        assert [(p["name"], p["in"], p.get("required")) for p in rendered.get("parameters", [])] == [
            (p["name"], p["in"], p.get("required")) for p in source.get("parameters", [])
        ]
        assert ("requestBody" in rendered) == ("requestBody" in source)
    # Every reference resolves inside the document (APIM cannot follow external ones).
    text = json.dumps(committed)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        section, kind, name = ref.removeprefix("#/").split("/")
        assert name in committed[section][kind], f"dangling {ref}"


def test_nullable_and_const_are_spelled_for_30() -> None:
    source = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1", "description": "long prose"},
        "paths": {},
        "components": {
            "schemas": {
                "Model": {
                    "type": "object",
                    "title": "Model",
                    "properties": {
                        "plain": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}], "default": None},
                        "ref": {"anyOf": [{"$ref": "#/components/schemas/Other"}, {"type": "null"}]},
                        "listed": {"type": ["integer", "null"], "exclusiveMinimum": 0},
                        "fixed": {"const": True, "type": "boolean", "examples": [True]},
                        "either": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
                        "const": {"type": "string", "title": "a field named like a keyword"},
                    },
                },
                "Other": {"type": "object", "propertyNames": {"maxLength": 3}, "additionalProperties": True},
            }
        },
    }
    properties = apim_document(source)["components"]["schemas"]["Model"]["properties"]
    assert properties["plain"] == {"type": "string", "maxLength": 5, "nullable": True}, "a null default is left out"
    assert properties["ref"] == {"allOf": [{"$ref": "#/components/schemas/Other"}], "nullable": True}
    assert properties["listed"] == {"type": "integer", "minimum": 0, "exclusiveMinimum": True, "nullable": True}
    assert properties["fixed"] == {"type": "boolean", "enum": [True]}
    assert properties["either"] == {"anyOf": [{"type": "string"}, {"type": "integer"}], "nullable": True}
    assert properties["const"] == {"type": "string"}, "property names are not keywords"


@pytest.mark.parametrize(
    "schema",
    [
        {"prefixItems": [{"type": "string"}]},
        {"type": "null"},
        {"if": {"type": "string"}, "then": {"minLength": 1}},
        {"type": ["string", "integer"]},
    ],
)
def test_what_30_cannot_say_is_refused_not_passed_through(schema: dict[str, Any]) -> None:
    source = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {},
        "components": {"schemas": {"M": schema}},
    }
    with pytest.raises(UnsupportedConstruct):
        apim_document(source)


def test_shared_responses_and_bodies_become_components() -> None:
    error = {
        "description": "Throttled",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/E"}}},
    }
    envelope = {"type": "object", "properties": {"data": {"$ref": "#/components/schemas/D"}}}
    ok = {"description": "OK", "content": {"application/json": {"schema": envelope}}}
    source = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/a/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "get": {"operationId": "a_get", "responses": {"200": ok, "429": error}},
                "delete": {"operationId": "a_delete", "responses": {"200": ok, "429": error}},
            }
        },
        "components": {"schemas": {"E": {"type": "object"}, "D": {"type": "object"}}},
    }
    rendered = apim_document(source)
    item = rendered["paths"]["/a/{id}"]
    assert item["parameters"][0]["name"] == "id"
    for method in ("get", "delete"):
        assert item[method]["responses"]["429"] == {"$ref": "#/components/responses/Error429"}
        assert item[method]["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/DResponse"
        }
    assert rendered["components"]["responses"] == {"Error429": error}
    assert rendered["components"]["schemas"]["DResponse"] == envelope
    validate(rendered, cls=OpenAPIV30SpecValidator)
