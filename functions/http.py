"""What every HTTP function shares: the `api`/`endpoint` decorators, body parsing and validation, and the
envelope as the rendering of an invocation's outcome (request id, trace parent, span, metrics, the log
line and the error mapping are the invocation pipeline's, functions/invocation.py). A function body
only reads its inputs and calls one service method.

`endpoint(...)` also records the request/response models on the function, which is where
`/openapi.json` reads them from (see functions/openapi.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import azure.functions as func

from functions import invocation
from functions.caller import caller
from functions.envelope import envelope, error_envelope
from functions.invocation import Failure
from shared.context import new_request_id
from shared.errors import BadRequest, PayloadTooLarge, ValidationFailed

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound="BaseModel")

# Default ceiling before settings are loaded; the configured one applies once they are.
_DEFAULT_MAX_BODY = 1_048_576
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


@dataclass
class EndpointSpec:
    """What the OpenAPI document says about one function.

    Models are named, not imported: they live in shared/contract.py and are resolved on first use,
    so indexing the app (importing function_app) builds no pydantic model.
    """

    summary: str
    tag: str
    request: str | None = None
    response: str | None = None
    enveloped: bool = True
    success_message: str = ""
    query_params: dict[str, str] = field(default_factory=dict)
    description: str = ""
    content_type: str = "application/json"
    accepted: str | None = None  # the model of a 202 answer (`Prefer: respond-async`), if the function has one
    # False: for operators only (metrics, detailed health, the docs); API Management does not publish it.
    published: bool = True

    @property
    def request_model(self) -> type[BaseModel] | None:
        return _model(self.request)

    @property
    def response_model(self) -> type[BaseModel] | None:
        return _model(self.response)

    @property
    def accepted_model(self) -> type[BaseModel] | None:
        return _model(self.accepted)


def _model(name: str | None) -> type[BaseModel] | None:
    if name is None:
        return None
    from shared import contract

    model: type[BaseModel] = getattr(contract, name)
    return model


Handler = Callable[..., Any]  # (req) or, with a request model, (req, who, body): see `endpoint`


class Reply:
    """A handler's result: the data and, for enveloped endpoints, the message."""

    def __init__(
        self, data: Any, message: str | None = None, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        self.data = data
        self.message = message
        self.status = status
        self.headers = headers


def blueprint() -> func.Blueprint:
    """A Blueprint (the library's constructor carries no type annotations)."""
    return func.Blueprint()  # type: ignore[no-untyped-call]


def api(
    bp: func.Blueprint,
    name: str,
    route: str,
    method: str,
    spec: EndpointSpec,
    *,
    auth_level: func.AuthLevel = func.AuthLevel.FUNCTION,
) -> Callable[[Handler], Handler]:
    """Registers `handler` on `bp` as the function `name` serving `method route`, wrapped by `endpoint`.

    The one decorator of every endpoint: the name, the route and the OpenAPI facts sit together. It
    returns the handler itself, so one handler can serve two routes (the chat-side shortcuts).
    """

    def register(handler: Handler) -> Handler:
        run = endpoint(spec, name)(handler)
        bp.function_name(name)(bp.route(route=route, methods=[method], auth_level=auth_level)(run))
        return handler

    return register


Invocation = Callable[[func.HttpRequest, func.Context], func.HttpResponse]


def endpoint(spec: EndpointSpec, name: str | None = None) -> Callable[[Handler], Invocation]:
    """An HTTP function around a handler: it runs through the invocation pipeline (request id from
    `x-request-id`, the host's trace context, span, metric, log line, error mapping:
    functions/invocation.py) and renders the outcome as the envelope.

    A handler is `(req)`; when the spec names a request model, `(req, who, body)`: the caller is read
    first (a missing identity header is 401 before the body is read, functions/caller.py), then the
    body is parsed into that model (`parse_body`: 413, 400, 422) and both are passed in.
    """

    def decorate(handler: Handler) -> Invocation:
        function = name or handler.__name__
        takes = 3 if spec.request is not None else 1
        if handler.__code__.co_argcount != takes:  # found when the app is indexed, not on the first call
            raise TypeError(f"{function}: a handler of this spec takes {takes} arguments (see `endpoint`)")
        respond = _responder(handler, spec)

        def run(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
            request_id = new_request_id(req.headers.get("x-request-id"))
            return invocation.run(
                invocation.HTTP,
                function,
                request_id,
                getattr(context, "trace_context", None),
                lambda: respond(req, request_id),
                _failure_response,
                status_of=_status_code,
                label=f"{req.method} {_path(req.url)}",
            )

        # Not functools.wraps: the worker binds by this wrapper's own signature, which must stay
        # `(req: HttpRequest, context: Context) -> HttpResponse` whatever the handler takes or returns
        # (the worker passes `context` to a parameter of that name, annotated exactly `func.Context`).
        run.__name__ = run.__qualname__ = function
        run.__doc__ = handler.__doc__
        run.__module__ = handler.__module__
        run.endpoint_spec = spec  # type: ignore[attr-defined]
        return run

    return decorate


def _responder(handler: Handler, spec: EndpointSpec) -> Callable[[func.HttpRequest, str], func.HttpResponse]:
    """What one request does inside the pipeline: the handler's call, its result as the response."""

    def call(req: func.HttpRequest) -> Any:
        model = spec.request_model  # resolved per request: indexing the app builds no model
        if model is None:
            return handler(req)
        who = caller(req)
        return handler(req, who, parse_body(req, model))

    def respond(req: func.HttpRequest, request_id: str) -> func.HttpResponse:
        result = call(req)
        if isinstance(result, func.HttpResponse):
            result.headers["x-request-id"] = request_id
            return result
        reply = result if isinstance(result, Reply) else Reply(result)
        data = _dump(reply.data)
        body = envelope(request_id, reply.message or spec.success_message, data=data) if spec.enveloped else data
        return json_response(body, reply.status, request_id, reply.headers)

    return respond


def _failure_response(failure: Failure, request_id: str) -> func.HttpResponse:
    return json_response(error_envelope(failure, request_id), failure.status, request_id, failure.headers)


def _status_code(response: func.HttpResponse) -> int:
    status: int = response.status_code
    return status


def _dump(data: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(data, BaseModel):
        return data.model_dump(mode="json", exclude_none=True)
    return data


def _path(url: str) -> str:
    rest = url.split("://", 1)[-1]
    slash = rest.find("/")
    return rest[slash:] if slash >= 0 else "/"


def json_response(
    body: Any, status: int = 200, request_id: str | None = None, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    all_headers = dict(headers or {})
    if request_id:
        all_headers["x-request-id"] = request_id
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False, default=str),
        status_code=status,
        headers=all_headers,
        mimetype="application/json",
        charset="utf-8",
    )


def parse_body(req: func.HttpRequest, model: type[M]) -> M:
    """The JSON body validated against `model`: 413 when too large, 400 when not JSON, 422 when invalid."""
    from pydantic import ValidationError

    raw = req.get_body() or b""
    if len(raw) > _max_body_bytes():
        raise PayloadTooLarge(f"request body is larger than {_max_body_bytes()} bytes")
    if not raw.strip():
        raise BadRequest("request body is empty; send a JSON object")
    try:
        payload = json.loads(raw, parse_constant=_refuse_constant)
    except _NotANumber as error:
        raise ValidationFailed(
            "request body holds NaN or Infinity, which JSON numbers cannot be",
            details=[{"loc": [], "msg": f"{error} is not a JSON number", "type": "finite_number"}],
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequest(f"request body is not valid JSON: {error}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply to be read") from None
    except ValueError as error:  # e.g. an integer of more digits than Python converts
        raise BadRequest(f"request body could not be read: {str(error)[:200]}") from None
    # A lone surrogate comes from a `\\uD800`-`\\uDFFF` escape, or from raw bytes the JSON reader lets
    # through (0xED 0xA0-0xBF in UTF-8, or a UTF-16/32 body): only then is the body written out again.
    if b"\xed" in raw or _SURROGATE_ESCAPE.search(raw) or json.detect_encoding(raw) != "utf-8":
        try:
            json.dumps(payload, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            message = "request body holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text"
            raise BadRequest(message) from None
    if not isinstance(payload, dict):
        raise ValidationFailed("request body must be a JSON object", details=[{"loc": [], "msg": "expected object"}])
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        raise ValidationFailed("request body failed validation", details=validation_details(error)) from None


class _NotANumber(ValueError):
    """NaN, Infinity or -Infinity in a body: Python's JSON reader accepts them, JSON does not."""


def _refuse_constant(name: str) -> Any:
    raise _NotANumber(name)


def validate(model: type[M], values: dict[str, Any]) -> M:
    """Path and query parameters validated like a body."""
    from pydantic import ValidationError

    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise ValidationFailed("request parameters failed validation", details=validation_details(error)) from None


def validation_details(error: ValidationError) -> list[dict[str, Any]]:
    from shared.constraints import PATTERN_RULES

    details = []
    for item in error.errors(include_url=False, include_input=False):
        message = item["msg"]
        if item["type"] == "string_pattern_mismatch":
            message = PATTERN_RULES.get(str((item.get("ctx") or {}).get("pattern")), message)
        details.append({"loc": [str(part) for part in item["loc"]], "msg": message, "type": item["type"]})
    return details


def _max_body_bytes() -> int:
    try:
        from shared.settings import get_settings

        return get_settings().max_body_bytes
    except Exception:  # a settings error is reported by the service call itself
        return _DEFAULT_MAX_BODY
