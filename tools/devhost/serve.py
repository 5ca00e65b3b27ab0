"""Serving the ASGI application on uvicorn: the listening socket, the `Functions:` listing, and a server in
a background thread for tests and benchmarks."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tools.devhost.asgi import DevHostApp
    from tools.devhost.messages import AsgiApp


def listen_url(host: str, port: int) -> str:
    shown = "localhost" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - display only
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def format_route_table(asgi_app: DevHostApp, base_url: str) -> str:
    """The `Functions:` listing `func start` prints, with each function's auth level."""
    router = asgi_app.router
    lines = ["", "Functions:", ""]
    for route in router.by_name:
        fn = route.function
        url = f"{base_url}/{route.template.text.lstrip('/')}"
        lines.append(f"        {fn.name}: [{route.methods_label}] {url}  (authLevel: {fn.auth_level})")
    for extension in asgi_app.extensions:
        lines.extend(extension.describe(base_url))
    running = {name for runner in asgi_app.runners for name in runner.function_names}
    for name, trigger in asgi_app.non_http_functions:
        if any(extension.serves(name) for extension in asgi_app.extensions) or name in router.errors:
            continue
        lines.append(f"        {name}: {trigger}  ({'run' if name in running else 'not run'} by the dev host)")
    for name, error in router.errors.items():
        lines.append(f"        {name}: in error: {error}")
    if asgi_app.keys is None:
        note = (
            "Function keys are not checked: like Core Tools running locally, every auth level is served without a key."
        )
    else:
        note = (
            "Function keys are enforced as in Azure: send `x-functions-key: <key>` or `?code=<key>`; "
            "function level takes a host or function key, admin level the master key."
        )
    lines += ["", note, ""]
    return "\n".join(lines)


def bind_socket(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.contextmanager
def serve_in_thread(asgi_app: AsgiApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run `asgi_app` on a real uvicorn server in a background thread; yield its base URL."""
    import uvicorn

    sock = bind_socket(host, port)
    config = uvicorn.Config(asgi_app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="devhost-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the dev host server thread exited during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError("the dev host server did not start within 15s")
            time.sleep(0.01)
        yield listen_url(host, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
