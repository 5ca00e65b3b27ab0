"""The fake's HTTP server: routes, auth, injected faults and delays, chat and embedding answers."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tools.harness.fake_openai.recording import Headers, RecordedRequest
from tools.harness.fake_openai.replies import (
    DEFAULT_DIMS,
    Reply,
    Responder,
    Rule,
    count_tokens,
    default_chat_responder,
    embed,
)
from tools.harness.ports import LOOPBACK

# A fixed timestamp keeps responses byte-identical between runs.
CREATED = 1_700_000_000

_AZURE_DEPLOYMENT = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|embeddings)$")
_PLAIN = {
    "/v1/chat/completions": ("openai", "chat"),
    "/v1/embeddings": ("openai", "embeddings"),
    "/openai/v1/chat/completions": ("azure", "chat"),
    "/openai/v1/embeddings": ("azure", "embeddings"),
}


@dataclass
class _Fault:
    kind: str | None
    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0


# --- the server --------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeOpenAIServer

    def process_request(self, request: Any, client_address: Any) -> None:
        self.fake._track(request)
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up mid-answer is expected in timeout tests.
        pass


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive, like the real services, so the SDK's connection pool is exercised too.
    protocol_version = "HTTP/1.1"
    server_version = "fake-openai/1"
    timeout = 30  # idle keep-alive connections must not pin handler threads forever
    server: _HTTPServer

    # Headers and body leave in one send: written apart on a kept-alive connection, Nagle's
    # algorithm and the client's delayed ACK held every answer back ~40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_POST  # noqa: N815 - answered as 404/405 by _handle


class FakeOpenAIServer:
    def __init__(
        self, *, embedding_dims: int = DEFAULT_DIMS, host: str = LOOPBACK, port: int = 0, latency: float = 0.0
    ) -> None:
        self.embedding_dims = embedding_dims
        self.latency = latency  # seconds every answer takes, as a real service's would (benchmarks)
        self.chat_responder: Responder = default_chat_responder
        # When set, only this exact key / bearer token is accepted (401 otherwise), to test that the
        # app passes on the key it was configured with.
        self.expected_api_key: str | None = None
        self.requests: list[RecordedRequest] = []
        self._rules: list[Rule] = []
        self._faults: list[_Fault] = []
        self._down = False
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._counter = 0
        self._host, self._port = host, port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer((self._host, self._port), _Handler)
        self._httpd.fake = self
        self._port = self._httpd.server_address[1]  # a restart keeps the same port
        # A short poll interval makes stop() (and so every function-scoped fixture) near instant.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping in delay_next
        httpd.shutdown()
        httpd.server_close()
        # Keep-alive connections outlive the listening socket; close them so a stopped fake is
        # really gone for the client (its pooled connection must fail, not be answered).
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns = {c for c in self._conns if c.fileno() != -1}
            self._conns.add(conn)

    # --- addresses ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Root URL; use as `azure_endpoint`."""
        return f"http://{self._host}:{self._port}"

    @property
    def base_url(self) -> str:
        """OpenAI-style `base_url`."""
        return f"{self.url}/v1"

    @property
    def azure_v1_base_url(self) -> str:
        """`base_url` for Azure's newer v1 API (an `OpenAI` client pointed at `/openai/v1`)."""
        return f"{self.url}/openai/v1"

    # --- behaviour ---------------------------------------------------------------------------
    def when(
        self,
        contains: str | None = None,
        *,
        reply: str | dict[str, Any] | Reply | Responder,
        role: str | None = None,
        match: Callable[[dict[str, Any]], bool] | None = None,
        times: int | None = None,
    ) -> FakeOpenAIServer:
        """Answer chat requests whose messages contain `contains` (optionally only in `role`
        messages, and only if `match(request_json)`) with `reply`. Rules are tried in the order
        added, before `chat_responder`; `times` limits how often a rule fires.

        `reply` may be a string (sent verbatim, even in JSON mode, so a test can simulate a model
        that breaks JSON), a dict (sent as JSON), a `Reply`, or a callable returning any of those.
        """
        with self._lock:
            self._rules.append(Rule(contains, role, match, reply, times))
        return self

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def fail_next(
        self, n: int = 1, status: int = 429, retry_after: str | None = "1", *, kind: str | None = None
    ) -> None:
        """The next `n` requests (of `kind` 'chat'/'embeddings', or any) get `status` with an error
        body; `retry_after` becomes the Retry-After header (None leaves it out; the SDK accepts
        fractions like "0.05")."""
        with self._lock:
            self._faults.extend(_Fault(kind, status=status, retry_after=retry_after) for _ in range(n))

    def delay_next(self, n: int = 1, seconds: float = 5.0, *, kind: str | None = None) -> None:
        """The next `n` requests are answered normally but only after `seconds` (client timeouts)."""
        with self._lock:
            self._faults.extend(_Fault(kind, delay=seconds) for _ in range(n))

    def down(self) -> None:
        """Answer 503 to everything until `up()`."""
        self._down = True

    def up(self) -> None:
        self._down = False

    def reset(self) -> None:
        """Forget requests, rules and pending faults; back up; default responder."""
        with self._lock:
            self.requests.clear()
            self._rules.clear()
            self._faults.clear()
        self._down = False
        self.chat_responder = default_chat_responder
        self.expected_api_key = None

    # --- inspection --------------------------------------------------------------------------
    def chat_requests(self, *, ok_only: bool = False) -> list[RecordedRequest]:
        return [r for r in list(self.requests) if r.kind == "chat" and (not ok_only or r.status == 200)]

    def embedding_requests(self, *, ok_only: bool = False) -> list[RecordedRequest]:
        return [r for r in list(self.requests) if r.kind == "embeddings" and (not ok_only or r.status == 200)]

    def last_chat_messages(self) -> list[dict[str, Any]]:
        chats = self.chat_requests()
        if not chats:
            raise AssertionError("the fake OpenAI server received no chat request")
        return chats[-1].messages

    def embed(self, text: str, dims: int | None = None) -> list[float]:
        """The vector this server returns for `text`, for asserting on what the app stored."""
        return embed(text, dims or self.embedding_dims)

    # --- request handling --------------------------------------------------------------------
    def _handle(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        path = split.path.rstrip("/") or "/"
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        headers = Headers(list(h.headers.items()))
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None

        style = kind = deployment = None
        if path in _PLAIN:
            style, kind = _PLAIN[path]
        elif m := _AZURE_DEPLOYMENT.match(path):
            style, deployment = "azure", m.group(1)
            kind = "chat" if m.group(2) == "chat/completions" else "embeddings"

        rec = RecordedRequest(h.command, path, query, headers, body, kind, style, deployment)
        with self._lock:
            self.requests.append(rec)

        began = time.perf_counter()
        status, payload, extra = self._respond(rec, raw)
        rec.status = status
        rec.duration_ms = (time.perf_counter() - began) * 1000
        data = json.dumps(payload).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.send_header("x-request-id", f"req-fake-{len(self.requests)}")
            for name, value in extra.items():
                h.send_header(name, value)
            h.end_headers()
            h.wfile.write(data)
        except OSError:
            h.close_connection = True  # the client gave up (timeout test); nothing left to do

    def _respond(self, rec: RecordedRequest, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        if self._down:
            return 503, _error(rec.style, 503, "Service temporarily unavailable (fake is down)."), {}
        if rec.kind is None:
            return 404, _error(rec.style or "openai", 404, f"Unknown route {rec.path}"), {}
        if rec.method != "POST":
            return 405, _error(rec.style, 405, f"Method {rec.method} not allowed"), {}
        if rec.deployment is not None and not rec.query.get("api-version"):
            # What Azure answers on /openai/deployments/... without ?api-version=.
            return (
                400,
                {
                    "error": {
                        "code": "MissingApiVersionParameter",
                        "message": "The api-version query parameter (?api-version=) is required for all requests.",
                    }
                },
                {},
            )
        if (denied := self._check_auth(rec)) is not None:
            return denied

        if self.latency and self._stopping.wait(self.latency):
            return 503, _error(rec.style, 503, "fake stopping"), {}
        fault = self._take_fault(rec.kind)
        if fault is not None and fault.delay and self._stopping.wait(fault.delay):
            return 503, _error(rec.style, 503, "fake stopping"), {}
        if fault is not None and fault.status is not None:
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return fault.status, _error(rec.style, fault.status, _reason(fault.status)), extra

        if not isinstance(rec.json, dict):
            return 400, _error(rec.style, 400, "We could not parse the JSON body of your request."), {}
        try:
            if rec.kind == "chat":
                return 200, self._chat(rec), {}
            return 200, self._embeddings(rec), {}
        except _BadRequest as exc:
            return 400, _error(rec.style, 400, str(exc)), {}

    def _check_auth(self, rec: RecordedRequest) -> tuple[int, Any, dict[str, str]] | None:
        auth = rec.headers.get("authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        api_key = rec.headers.get("api-key", "").strip()
        presented = [bearer] if rec.style == "openai" else [v for v in (api_key, bearer) if v]
        presented = [v for v in presented if v]
        if presented and (self.expected_api_key is None or self.expected_api_key in presented):
            return None
        if rec.style == "openai":
            msg = (
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                if not presented
                else "Incorrect API key provided."
            )
            error = {"message": msg, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}
            return 401, {"error": error}, {}
        msg = (
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
            "key for an active subscription and use a correct regional API endpoint for your resource."
        )
        return 401, {"error": {"code": "401", "message": msg}}, {}

    def _take_fault(self, kind: str | None) -> _Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.kind is None or fault.kind == kind:
                    return self._faults.pop(i)
        return None

    def _next_id(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def _chat(self, rec: RecordedRequest) -> dict[str, Any]:
        req = rec.json
        if not req.get("messages"):
            raise _BadRequest("'messages' is a required property")
        if req.get("stream"):
            raise _BadRequest("fake_openai does not implement streaming")
        reply = self._reply_for(req)
        if callable(reply) and not isinstance(reply, Reply):
            reply = reply(req)
        if isinstance(reply, Reply):
            content, tool_calls, finish = reply.content, reply.tool_calls, reply.finish_reason
        elif isinstance(reply, (dict, list)):
            content, tool_calls, finish = json.dumps(reply), [], None
        else:
            content, tool_calls, finish = str(reply), [], None

        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
        n = self._next_id()
        if tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_fake_{n}_{i}",
                    "type": "function",
                    "function": {
                        "name": call["name"],
                        "arguments": call["arguments"]
                        if isinstance(call["arguments"], str)
                        else json.dumps(call["arguments"]),
                    },
                }
                for i, call in enumerate(tool_calls)
            ]
        prompt_tokens = count_tokens(req.get("messages"))
        completion_tokens = count_tokens(content or "") + (count_tokens(json.dumps(tool_calls)) if tool_calls else 0)
        return {
            "id": f"chatcmpl-fake-{n}",
            "object": "chat.completion",
            "created": CREATED,
            "model": req.get("model") or rec.deployment or "fake-model",
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish or ("tool_calls" if tool_calls else "stop"),
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _reply_for(self, req: dict[str, Any]) -> Any:
        with self._lock:
            for rule in self._rules:
                if rule.matches(req):
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times <= 0:
                            self._rules.remove(rule)
                    return rule.reply
        return self.chat_responder

    def _embeddings(self, rec: RecordedRequest) -> dict[str, Any]:
        req = rec.json
        inputs = req.get("input")
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
            inputs = [inputs]  # one string, or one pre-tokenised input
        if not isinstance(inputs, list) or not inputs:
            raise _BadRequest("'input' is a required property")
        dims = req.get("dimensions") or self.embedding_dims
        if not isinstance(dims, int) or dims < 1:
            raise _BadRequest("'dimensions' must be a positive integer")
        as_base64 = req.get("encoding_format") == "base64"
        data = []
        for i, item in enumerate(inputs):
            if isinstance(item, list):  # token ids: embed them as words so equal ids match
                item = " ".join(f"tok{t}" for t in item)
            if not isinstance(item, str) or item == "":
                raise _BadRequest(f"'$.input[{i}]' is invalid: expected a non-empty string")
            vec = embed(item, dims)
            if as_base64:  # what the SDK asks for by default and decodes itself
                value: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
            else:
                value = vec
            data.append({"object": "embedding", "index": i, "embedding": value})
        used = sum(count_tokens(x) if isinstance(x, str) else len(x) for x in inputs)
        return {
            "object": "list",
            "data": data,
            "model": req.get("model") or rec.deployment or "fake-embedding",
            "usage": {"prompt_tokens": used, "total_tokens": used},
        }


class _BadRequest(ValueError):
    pass


def _reason(status: int) -> str:
    if status == 429:
        return "Rate limit reached (injected by the fake). Please retry after a short while."
    try:
        return f"{HTTPStatus(status).phrase} (injected by the fake)"
    except ValueError:
        return f"HTTP {status} (injected by the fake)"


def _error(style: str | None, status: int, message: str) -> dict[str, Any]:
    # The two services word errors differently; the SDK reads `error.message`/`error.code` from both.
    if style == "azure":
        return {"error": {"code": str(status), "message": message}}
    kinds = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error", 429: "requests"}
    return {"error": {"message": message, "type": kinds.get(status, "server_error"), "param": None, "code": None}}
