"""The generated parts of the manual, and the check that the committed pages hold them.

- docs/configuration.md: every field of `shared.settings.Settings` (environment name, type, default,
  description), in the order and groups of shared/settings.py, then the variables the service reads
  outside `Settings` (a short list kept here, checked by tests/unit/test_docs_generated.py).
- docs/api.md: the endpoint reference and the request bodies, from the committed OpenAPI document
  that API Management imports (infra/openapi.json, written by `python -m tools.build.export_openapi` and
  kept current by tests/infra), so the page follows the code through it.

A generated part sits between two markers in its page; the prose around them is written by hand.

    python -m tools.build.gen_docs           # rewrite the generated parts
    python -m tools.build.gen_docs --check   # exit 1, naming each page that differs
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo

from shared.settings import REPO_ROOT, Settings

DOCS = REPO_ROOT / "docs"
OPENAPI = REPO_ROOT / "infra" / "openapi.json"
COMMAND = "python -m tools.build.gen_docs"

# Variables the service reads (or sets for its libraries) outside `Settings`: name, where, what.
OUTSIDE_SETTINGS: tuple[tuple[str, str, str], ...] = (
    (
        "WEBSITE_INSTANCE_ID",
        "shared/settings.py",
        "Set by Azure on every Functions instance. When present, the embedded store is refused: "
        "QDRANT_URL or VECTOR_STORE=chroma is required, since an instance's disk is temporary and its own.",
    ),
    (
        "LOG_LEVEL",
        "shared/observability/logs.py",
        "Read directly when logging is set up (before `Settings` is built); the same variable as above.",
    ),
    (
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "shared/observability/logs.py",
        "Read directly when logging is set up: when set, logs, traces and metrics are exported.",
    ),
    (
        "AZURE_CLIENT_ID",
        "shared/observability/logs.py",
        "Read directly when logging is set up: the telemetry exporter signs in as that user-assigned identity.",
    ),
    (
        "MEM0_DIR",
        "shared/memory/mem0_engine.py",
        "mem0's scratch folder: set to DATA_DIR/mem0 before mem0 is imported, unless already set.",
    ),
    ("MEM0_TELEMETRY", "shared/memory/mem0_engine.py", "Always set to `false`: mem0 sends no telemetry."),
    (
        "ANONYMIZED_TELEMETRY",
        "shared/memory/mem0_engine.py",
        "Set to `False` unless already set: the libraries' anonymous telemetry stays off.",
    ),
)

# Variables of the development tools (not read by the service).
DEVELOPMENT: tuple[tuple[str, str, str], ...] = (
    ("HOST", "tools/dev.sh", "Address `bash tools/dev.sh run` listens on; default `127.0.0.1`."),
    ("PORT", "tools/dev.sh", "Port of `bash tools/dev.sh run`; default `7071`."),
    ("DEVHOST_ENFORCE_KEYS", "tools/devhost/keys.py", "`true`: check function keys as Azure does (`--enforce-keys`)."),
    ("DEVHOST_KEYS", "tools/devhost/keys.py", "The keys to check, inline JSON (as `az functionapp keys list` prints)."),
    ("DEVHOST_KEYS_FILE", "tools/devhost/keys.py", "A file holding those keys (`--keys-file`)."),
    (
        "DEVHOST_STATE_DIR",
        "tools/devhost/host.py",
        "Where the dev host keeps timer leases and schedule status (`--state-dir`); default `.devhost/`.",
    ),
    (
        "PYTHON_THREADPOOL_THREAD_COUNT",
        "tools/devhost/asgi.py",
        "Threads of the synchronous functions, as the Functions Python worker reads it.",
    ),
    ("WEBSITE_TIME_ZONE", "tools/devhost/timers.py", "IANA zone of the timer schedules; default UTC."),
    ("QDRANT_TEST_URL", "tests", "A Qdrant server the Qdrant tests and the API walk-through test also run against."),
)

_GROUP = re.compile(r"^\s*# --- (.+?) -+\s*$")
_FIELD = re.compile(r"^    (\w+):")
_TAG_ORDER = {"memory": 0, "chat": 1, "system": 2}
_TYPES: dict[Any, str] = {str: "text", int: "integer", float: "number", bool: "boolean", Path: "folder"}


# --- docs/configuration.md --------------------------------------------------------------------
def setting_groups() -> list[tuple[str, list[str]]]:
    """The fields of `Settings` under the section comments of shared/settings.py, in source order."""
    groups: list[tuple[str, list[str]]] = []
    for line in inspect.getsource(Settings).splitlines():
        if match := _GROUP.match(line):
            groups.append((match.group(1), []))
        elif (match := _FIELD.match(line)) and match.group(1) in Settings.model_fields:
            if not groups:
                raise ValueError(f"Settings.{match.group(1)} comes before any '# --- section ---' comment")
            groups[-1][1].append(match.group(1))
    listed = {name for _title, names in groups for name in names}
    if missing := set(Settings.model_fields) - listed:
        raise ValueError(f"Settings fields not found under a section comment: {sorted(missing)}")
    return [(title, names) for title, names in groups if names]


def environment_name(name: str, field: FieldInfo) -> str:
    return field.alias or name.upper()


def type_text(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        choices = [f"`{choice}`" for choice in get_args(annotation)]
        return ", ".join(choices[:-1]) + " or " + choices[-1] if len(choices) > 1 else choices[0]
    if origin in (Union, types.UnionType):
        kept = [arg for arg in get_args(annotation) if arg is not type(None)]
        return " or ".join(type_text(arg) for arg in kept)
    return _TYPES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def limits_text(field: FieldInfo) -> str:
    marks = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    found = []
    for item in field.metadata:
        for attribute, mark in marks.items():
            value = getattr(item, attribute, None)
            if value is not None:
                found.append(f"{mark} {value}")
    return f" ({', '.join(found)})" if found else ""


def default_text(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, Path):
        inside = value.is_relative_to(REPO_ROOT)
        return f"`{value.relative_to(REPO_ROOT)}` in the repository" if inside else f"`{value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_settings() -> str:
    lines: list[str] = []
    for title, names in setting_groups():
        lines += ["", f"### {title[0].upper()}{title[1:]}", "", "| variable | type | default | what it does |"]
        lines.append("|---|---|---|---|")
        for name in names:
            field = Settings.model_fields[name]
            kind = type_text(field.annotation) + limits_text(field)
            described = cell(field.description or "")
            default = default_text(field.default)
            lines.append(f"| `{environment_name(name, field)}` | {kind} | {default} | {described} |")
    return "\n".join(lines[1:])


def render_environment() -> str:
    def table(rows: tuple[tuple[str, str, str], ...]) -> list[str]:
        return ["| variable | read in | what it does |", "|---|---|---|"] + [
            f"| `{name}` | `{where}` | {cell(what)} |" for name, where, what in rows
        ]

    lines = ["Read or set by the service outside `Settings`:", "", *table(OUTSIDE_SETTINGS), ""]
    lines += ["Read by the development tools only:", "", *table(DEVELOPMENT)]
    return "\n".join(lines)


# --- docs/api.md ------------------------------------------------------------------------------
def _ref_name(schema: dict[str, Any]) -> str | None:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    parts = schema.get("allOf") or []
    return _ref_name(parts[0]) if len(parts) == 1 else None


def schema_text(schema: dict[str, Any]) -> str:
    """A JSON schema in a few words: type, sizes, bounds (patterns are left to the prose)."""
    if (name := _ref_name(schema)) is not None:
        if name.startswith("Filter"):
            return "filter condition (see [Filters](#filters))"
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        kinds = [schema_text(part) for part in schema["anyOf"] if part.get("maxLength") != 0]
        text = " or ".join(dict.fromkeys(kinds))
        return text + (" (empty: not given)" if len(kinds) < len(schema["anyOf"]) else "")
    kind = schema.get("format") or schema.get("type", "any")
    low, high = schema.get("minLength"), schema.get("maxLength")
    if high is not None:
        return f"{kind} ({low}–{high} chars)" if low else f"{kind} (≤ {high} chars)"
    if "minimum" in schema or "maximum" in schema:
        return f"{kind} ({schema.get('minimum', '…')}–{schema.get('maximum', '…')})"
    if kind == "array":
        sizes = [f"≥ {schema['minItems']}" if "minItems" in schema else "", f"≤ {schema.get('maxItems', '')}"]
        size = ", ".join(part for part in sizes if part.strip("≤ "))
        return f"list of {schema_text(schema.get('items', {}))}" + (f", {size} items" if size else "")
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        keys = f"≤ {schema['maxProperties']} keys, " if "maxProperties" in schema else ""
        return f"object ({keys}values: {schema_text(schema['additionalProperties'])})"
    return str(kind)


def _body_schema(operation: dict[str, Any]) -> str | None:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    return _ref_name(content.get("schema", {}))


def _request_text(operation: dict[str, Any]) -> str:
    parts = []
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "query":
            parts.append(f"`?{parameter['name']}`")
        elif parameter["in"] == "header":
            parts.append(f"`{parameter['name']}` header")
    if body := _body_schema(operation):
        parts.append(f"body [{body}](#{body.lower()})")
    return ", ".join(parts) or "—"


def _answers_text(document: dict[str, Any], operation: dict[str, Any]) -> str:
    schemas = document["components"]["schemas"]
    parts, errors = [], []
    for status, response in operation["responses"].items():
        if not status.startswith("2"):
            errors.append(status)
            continue
        schema = response.get("content", {}).get("application/json", {}).get("schema", {})
        name = _ref_name(schema)
        properties = schemas[name].get("properties", {}) if name else {}
        if "data" in properties and "success" in properties:  # the envelope: show what `data` holds
            inner = _ref_name(properties["data"])
            keys = list(schemas[inner].get("properties", {})) if inner else []
            parts.append(f"{status} `data`: {', '.join(keys)}")
        elif properties:
            parts.append(f"{status}: {', '.join(properties)}")
        else:
            parts.append(status)
    return "; ".join(parts) + (f"; errors {', '.join(errors)}" if errors else "")


def _request_schemas(document: dict[str, Any]) -> list[str]:
    """Every request body schema, then the objects they hold (filter conditions aside), in first use."""
    schemas = document["components"]["schemas"]
    found: list[str] = []
    pending = [name for ops in document["paths"].values() for op in ops.values() if (name := _body_schema(op))]
    while pending:
        name = pending.pop(0)
        if name in found or name.startswith("Filter"):
            continue
        found.append(name)
        for field in schemas[name].get("properties", {}).values():
            nested = _ref_name(field) or _ref_name(field.get("items", {}))
            if nested:
                pending.append(nested)
    return found


def render_endpoints(document: dict[str, Any]) -> str:
    by_tag: dict[str, list[str]] = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            row = (
                f"| `{method.upper()} {path}` | {cell(operation.get('summary', ''))} | {_request_text(operation)} "
                f"| {_answers_text(document, operation)} |"
            )
            by_tag.setdefault(operation.get("tags", ["other"])[0], []).append(row)
    lines: list[str] = []
    for tag, rows in sorted(by_tag.items(), key=lambda item: _TAG_ORDER.get(item[0], len(_TAG_ORDER))):
        lines += ["", f"#### {tag[0].upper()}{tag[1:]}", "", "| endpoint | what it does | request | answers |"]
        lines += ["|---|---|---|---|", *rows]
    return "\n".join(lines[1:])


def render_bodies(document: dict[str, Any]) -> str:
    schemas = document["components"]["schemas"]
    lines: list[str] = []
    for name in _request_schemas(document):
        schema = schemas[name]
        required = set(schema.get("required", []))
        lines += ["", f"#### {name}", "", "| field | type | required | default |", "|---|---|---|---|"]
        fields = sorted(schema.get("properties", {}).items(), key=lambda item: item[0] not in required)
        for field, spec in fields:
            default = "" if field in required or spec.get("default") is None else f"`{json.dumps(spec['default'])}`"
            needed = "yes" if field in required else ""
            lines.append(f"| `{field}` | {cell(schema_text(spec))} | {needed} | {default} |")
    return "\n".join(lines[1:])


# --- pages ------------------------------------------------------------------------------------
def _openapi() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(OPENAPI.read_text(encoding="utf-8"))
    return document


PAGES: dict[str, dict[str, Callable[[], str]]] = {
    "configuration.md": {"settings": render_settings, "environment": render_environment},
    "api.md": {"endpoints": lambda: render_endpoints(_openapi()), "bodies": lambda: render_bodies(_openapi())},
}


def begin_marker(part: str) -> str:
    return f"<!-- generated part '{part}': edit the source, then run {COMMAND} -->"


def end_marker(part: str) -> str:
    return f"<!-- end of generated part '{part}' -->"


def fill(text: str, part: str, body: str) -> str:
    """`text` with the part between its two markers replaced by `body`."""
    begin, end = begin_marker(part), end_marker(part)
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"expected one pair of markers for part {part!r}:\n{begin}\n{end}")
    head, rest = text.split(begin, 1)
    _old, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def expected(page: str, text: str) -> str:
    """The page `text` with every generated part as the generator makes it now."""
    for part, render in PAGES[page].items():
        text = fill(text, part, render())
    return text


def stale_pages(docs: Path = DOCS) -> list[str]:
    return [page for page in PAGES if (current := (docs / page).read_text(encoding="utf-8")) != expected(page, current)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare, do not write")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_pages()
        for page in stale:
            print(f"docs/{page} is stale: run {COMMAND}", file=sys.stderr)
        return 1 if stale else 0
    for page in PAGES:
        path = DOCS / page
        current = path.read_text(encoding="utf-8")
        if (new := expected(page, current)) != current:
            path.write_text(new, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
