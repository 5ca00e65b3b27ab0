"""A small FunctionApp used only by the dev host tests: Blueprints exercising the routing rules and the
request/response conversion. `build_app()` returns a fresh app; `app` is the one the subprocess serves."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import azure.functions as func

# Two sync requests can pass this together only if the host runs them at the same time.
BARRIER = threading.Barrier(2, timeout=10)


def _json(data: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(data), status_code=status, mimetype="application/json")


def _items() -> func.Blueprint:
    bp = func.Blueprint()

    @bp.route(route="items/special", methods=["GET"])
    def items_special(req: func.HttpRequest) -> func.HttpResponse:
        return _json({"route": "special"})

    @bp.route(route="items/{id:int}", methods=["GET"])
    def item_by_id(req: func.HttpRequest) -> func.HttpResponse:
        return _json({"route": "int", "id": req.route_params["id"]})

    @bp.route(route="items/{name}")
    def item_by_name(req: func.HttpRequest) -> func.HttpResponse:
        return _json({"route": "name", "name": req.route_params["name"], "method": req.method})

    # The host tries 'catalog_entry' first (name order); ASP.NET Core precedence prefers the literal.
    @bp.route(route="catalog/{slug}", methods=["GET"])
    def catalog_entry(req: func.HttpRequest) -> func.HttpResponse:
        return _json({"route": "slug", "slug": req.route_params["slug"]})

    @bp.route(route="catalog/featured", methods=["GET"])
    def featured_catalog(req: func.HttpRequest) -> func.HttpResponse:
        return _json({"route": "featured"})

    @bp.route(route="orders/{id:int}", methods=["GET"])
    def order_by_id(req: func.HttpRequest) -> func.HttpResponse:
        return _json({"id": req.route_params["id"]})

    return bp


def _templates() -> func.Blueprint:
    bp = func.Blueprint()

    @bp.route(route="ops/flush", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
    def ops_flush(req: func.HttpRequest) -> str:
        return "flushed"

    @bp.route(route="greet/{name?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def greet(req: func.HttpRequest) -> str:
        return f"hello {req.route_params.get('name', 'world')}"

    @bp.route(route="docs/{lang=en}", methods=["GET"])
    def doc_page(req: func.HttpRequest) -> func.HttpResponse:
        return _json(dict(req.route_params))

    @bp.route(route="files/{*path}", methods=["GET"])
    def files(req: func.HttpRequest) -> func.HttpResponse:
        return _json(dict(req.route_params))

    @bp.route(route="reports/{name}.{ext?}", methods=["GET"])
    def report_file(req: func.HttpRequest) -> func.HttpResponse:
        return _json(dict(req.route_params))

    @bp.route(route="readonly", methods=["GET"])
    def readonly(req: func.HttpRequest) -> str:
        return "read"

    @bp.route()  # no route: the host uses the function name
    def ping(req: func.HttpRequest) -> str:
        return "pong"

    @bp.function_name("HealthCheck")
    @bp.route(methods=["GET"])
    def health_check_impl(req: func.HttpRequest) -> str:
        return "healthy"

    @bp.route(route="administer", methods=["GET"])  # starts with "admin": the host refuses it
    def administer(req: func.HttpRequest) -> str:
        return "never served"

    @bp.route(route="dup", methods=["GET"])
    def dup_a(req: func.HttpRequest) -> str:
        return "a"

    @bp.route(route="DUP/", methods=["GET", "POST"])  # same route as dup_a once trimmed and case-folded
    def dup_b(req: func.HttpRequest) -> str:
        return "b"

    @bp.timer_trigger(schedule="0 0 3 * * *", arg_name="timer", run_on_startup=False)
    def nightly(timer: func.TimerRequest) -> None:
        return None

    return bp


def _conversion() -> func.Blueprint:
    bp = func.Blueprint()

    @bp.route(route="echo/{tag}", methods=["POST", "PUT"])
    def echo(req: func.HttpRequest) -> func.HttpResponse:
        return _json(
            {
                "method": req.method,
                "url": req.url,
                "headers": dict(req.headers),
                "params": dict(req.params),
                "route_params": dict(req.route_params),
                "body": req.get_body().decode("utf-8"),
                "json": req.get_json() if req.headers.get("content-type") == "application/json" else None,
            }
        )

    @bp.route(route="teapot", methods=["GET"])
    def teapot(req: func.HttpRequest) -> func.HttpResponse:
        response = func.HttpResponse(
            "short and stout", status_code=418, headers={"X-Custom": "yes"}, mimetype="text/plain", charset="utf-8"
        )
        response.headers.add("X-Repeated", "first")
        response.headers.add("X-Repeated", "second")
        response.headers.add("Set-Cookie", "a=1; Path=/")
        response.headers.add("Set-Cookie", "b=2; Path=/; HttpOnly")
        return response

    @bp.route(route="binary", methods=["GET"])
    def binary(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(b"\x00\x01\x02", mimetype="application/octet-stream")

    @bp.route(route="plain", methods=["GET"])
    def plain(req: func.HttpRequest) -> str:
        return "just text"

    @bp.route(route="returns-dict", methods=["GET"])
    def returns_dict(req: func.HttpRequest) -> dict[str, str]:
        return {"not": "allowed"}

    @bp.route(route="boom", methods=["GET"])
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("boom")

    @bp.route(route="exit", methods=["GET"])
    def calls_exit(req: func.HttpRequest) -> str:
        raise SystemExit(3)

    @bp.route(route="enqueue", methods=["POST"])
    @bp.queue_output(arg_name="msg", queue_name="work", connection="AzureWebJobsStorage")
    def enqueue(req: func.HttpRequest, msg: func.Out[str]) -> str:
        msg.set(req.get_body().decode())
        return "queued"

    @bp.route(route="from-blob", methods=["GET"])
    @bp.blob_input(arg_name="blob", path="container/name", connection="AzureWebJobsStorage")
    def from_blob(req: func.HttpRequest, blob: str) -> str:
        return blob

    @bp.route(route="async-hello", methods=["GET"])
    async def async_hello(req: func.HttpRequest) -> func.HttpResponse:
        await asyncio.sleep(0)
        return _json({"thread": threading.current_thread().name, "loop": asyncio.get_running_loop() is not None})

    @bp.route(route="rendezvous", methods=["GET"], trigger_arg_name="request")
    def rendezvous(request: func.HttpRequest) -> func.HttpResponse:
        BARRIER.wait()
        return _json({"thread": threading.current_thread().name})

    @bp.route(route="slow", methods=["GET"])
    def slow(req: func.HttpRequest) -> str:
        # `started` names a file to create once the handler runs, so a test can wait for that.
        if started := req.params.get("started"):
            open(started, "x").close()
        time.sleep(min(float(req.params.get("seconds", "0.5")), 5.0))
        return "done"

    @bp.route(route="whoami", methods=["GET"])
    def with_context(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        return _json({"function": context.function_name, "invocation": context.invocation_id})

    return bp


def _timers() -> func.Blueprint:
    bp = func.Blueprint()

    # Every second, and once at start: each run appends a line to $SAMPLE_TIMER_LOG.
    @bp.timer_trigger(arg_name="timer", schedule="* * * * * *", run_on_startup=True)
    def sample_tick(timer: func.TimerRequest) -> None:
        path = os.environ.get("SAMPLE_TIMER_LOG")
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps({"pid": os.getpid(), "past_due": timer.past_due}) + "\n")

    @bp.timer_trigger(arg_name="timer", schedule="%SAMPLE_TIMER_SCHEDULE%")
    def sample_hourly(timer: func.TimerRequest) -> None:
        return None

    return bp


def build_app(*, with_timers: bool = False) -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    for blueprint in (_items(), _templates(), _conversion(), *([_timers()] if with_timers else [])):
        app.register_functions(blueprint)
    return app


app = build_app()
timer_app = build_app(with_timers=True)
