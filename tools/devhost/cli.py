"""`python -m tools.devhost`: the command line, local.settings.json, and the server's life."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from functions.hostjson import DEFAULT_ROUTE_PREFIX, read_route_prefix
from tools.devhost.host import create_asgi_app
from tools.devhost.indexing import load_app
from tools.devhost.keys import ENFORCE_KEYS_ENV, KEYS_ENV, KEYS_FILE_ENV, FunctionKeys, KeysError, load_function_keys
from tools.devhost.serve import bind_socket, format_route_table, listen_url

log = logging.getLogger("devhost")


def load_local_settings(path: str | os.PathLike[str]) -> list[str]:
    """Put the `Values` of a local.settings.json into os.environ as Core Tools does: a variable that is
    already set and non-empty wins (and is reported). Returns the names that were set."""
    data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    values = data.get("Values") if isinstance(data, dict) else None
    if not isinstance(values, dict):
        return []
    loaded: list[str] = []
    for key, value in values.items():
        if os.environ.get(key):
            log.warning(
                "Skipping '%s' from local settings as it's already defined in current environment variables.", key
            )
            continue
        os.environ[key] = "" if value is None else str(value)
        loaded.append(key)
    return loaded


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.devhost",
        description="Serve the FunctionApp's HTTP functions locally with the Functions host's routing rules.",
    )
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7071, help="port to listen on; 0 picks a free one")
    parser.add_argument("--host-json", default="host.json", help="host.json to read routePrefix from")
    parser.add_argument(
        "--route-order",
        choices=("precedence", "host"),
        default="precedence",
        help="order for overlapping routes: ASP.NET Core precedence (default) or the host's function-name order",
    )
    parser.add_argument(
        "--local-settings",
        default=None,
        metavar="PATH",
        help="load the Values of this local.settings.json into the environment first, like Core Tools "
        "(off unless given, so test hosts get only the environment they are started with)",
    )
    parser.add_argument(
        "--state-dir",
        default=None,
        metavar="PATH",
        help="what the host keeps in storage: timer leases and schedule status "
        "(default $DEVHOST_STATE_DIR, else .devhost/ here)",
    )
    parser.add_argument(
        "--queue-lease",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long a received queue message stays invisible while its function runs (renewed at half); "
        "the host's is 10 minutes, which a test of a killed host can shorten",
    )
    parser.add_argument(
        "--enforce-keys",
        action="store_true",
        help=f"check function keys by auth level as the host does in Azure (also {ENFORCE_KEYS_ENV}=true); "
        "off by default, like Core Tools",
    )
    parser.add_argument(
        "--keys-file",
        default=None,
        metavar="PATH",
        help=f"JSON keys to enforce ({{masterKey, functionKeys, functions}}); else the {KEYS_ENV} setting "
        f"(the same JSON inline) or {KEYS_FILE_ENV}; with neither, keys are generated and printed",
    )
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="[%(asctime)s] %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    started = time.perf_counter()
    if args.local_settings:
        loaded = load_local_settings(args.local_settings)
        log.info("loaded %d setting(s) from %s", len(loaded), args.local_settings)
    host_json = Path(args.host_json)
    host_config: dict[str, Any] = {}
    if host_json.is_file():
        route_prefix = read_route_prefix(host_json)
        host_config = json.loads(host_json.read_text(encoding="utf-8-sig"))
    else:
        log.warning("no host.json at %s: using the host's default routePrefix '%s'", host_json, DEFAULT_ROUTE_PREFIX)
        route_prefix = DEFAULT_ROUTE_PREFIX
    keys: FunctionKeys | None = None
    if args.enforce_keys or _env_flag(ENFORCE_KEYS_ENV):  # after --local-settings, which may set it
        try:
            keys = load_function_keys(args.keys_file)
        except KeysError as exc:
            log.error("%s", exc)
            return 1
        if keys is None:
            keys = FunctionKeys.generated()
            print(f"Generated function keys (master, then host 'default'): {keys.master} {keys.host['default']}")
    asgi_app = create_asgi_app(
        load_app(args.app),
        route_prefix,
        route_order=args.route_order,
        host_config=host_config,
        state_dir=args.state_dir,
        host_json=host_json if host_json.is_file() else None,
        queue_lease=args.queue_lease,
        keys=keys,
    )
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    base_url = listen_url(args.host, sock.getsockname()[1])

    import uvicorn

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:
                print(format_route_table(asgi_app, base_url), flush=True)
                log.info("Host started in %.2fs; listening on %s", time.perf_counter() - started, base_url)

    config = uvicorn.Config(
        asgi_app, log_config=None, log_level=args.log_level, access_log=args.log_level == "debug", lifespan="on"
    )

    # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal with the handler it
    # found; a no-op SIGTERM handler turns that into a clean exit code 0 instead of death by signal.
    def _after_graceful_shutdown(signum: int, frame: FrameType | None) -> None:
        return None

    signal.signal(signal.SIGTERM, _after_graceful_shutdown)
    try:
        _Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0
