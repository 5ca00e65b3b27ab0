"""Function keys enforced by the dev host as the Functions host does in Azure, on the real app over HTTP.

Anonymous functions answer without a key; function-level ones take a host key, the master key or
their own function key (in `x-functions-key` or `?code=`), never another function's key; a missing
or wrong key is an empty 401 before the function runs. Admin level (master key only) is checked on
the sample app, since the service has no admin-level function.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.devhost import sample_app
from tests.helpers import REPO, DevHost
from tools.devhost.host import create_asgi_app
from tools.devhost.keys import FunctionKeys
from tools.devhost.serve import serve_in_thread
from tools.harness.ports import free_port, http_status, wait_until

KEYS = {
    "masterKey": "master-key-0123456789",
    "functionKeys": {"default": "host-key-0123456789"},
    "functions": {"memory_stats": {"default": "stats-only-key"}},
}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevHost]:
    root = tmp_path_factory.mktemp("keyed")
    host = DevHost(root / "data", name="keyed", keys=KEYS).start()
    yield host
    host.stop()


def test_anonymous_functions_need_no_key(keyed: DevHost) -> None:
    for path in ("/health", "/", "/openapi.json", "/docs"):
        assert keyed.client.get(path).status_code == 200, path


def test_function_level_needs_a_key_and_gets_an_empty_401_without(keyed: DevHost) -> None:
    for request in (
        keyed.client.build_request("GET", "/api/memory/stats/alice"),
        keyed.client.build_request("POST", "/api/memory/add", json={"user_id": "alice", "content": "x"}),
        keyed.client.build_request("GET", "/metrics"),
        keyed.client.build_request("GET", "/api/memory/stats/alice", headers={"x-functions-key": "wrong"}),
        keyed.client.build_request("GET", "/api/memory/stats/alice", params={"code": "wrong"}),
    ):
        response = keyed.client.send(request)
        assert response.status_code == 401, request.url
        assert response.content == b""
    assert "Unauthorized: 'memory_add' is function level" in keyed.log()
    # The function never ran: nothing was stored for alice.
    listed = keyed.client.get("/api/memory/user/alice", headers={"x-functions-key": KEYS["masterKey"]})
    assert listed.status_code == 200 and listed.json()["data"]["total"] == 0


@pytest.mark.parametrize("key", [KEYS["masterKey"], KEYS["functionKeys"]["default"]])
def test_host_and_master_keys_open_every_function(keyed: DevHost, key: str) -> None:
    assert keyed.client.get("/api/memory/stats/alice", headers={"x-functions-key": key}).status_code == 200
    assert keyed.client.get("/api/memory/stats/alice", params={"code": key}).status_code == 200
    assert keyed.client.get("/metrics", params={"CODE": key}).status_code == 200  # query names ignore case


def test_a_function_key_opens_only_its_function(keyed: DevHost) -> None:
    own = {"x-functions-key": KEYS["functions"]["memory_stats"]["default"]}
    assert keyed.client.get("/api/memory/stats/alice", headers=own).status_code == 200
    assert keyed.client.get("/api/memory/user/alice", headers=own).status_code == 401
    assert keyed.client.get("/metrics", headers=own).status_code == 401


def test_the_header_wins_over_the_code_parameter(keyed: DevHost) -> None:
    wrong_header = {"x-functions-key": "wrong"}
    response = keyed.client.get("/api/memory/stats/alice", headers=wrong_header, params={"code": KEYS["masterKey"]})
    assert response.status_code == 401


def test_keys_are_off_by_default(devhost: DevHost) -> None:
    assert devhost.client.get("/api/memory/stats/alice").status_code == 200


@pytest.fixture(scope="module")
def sample_url() -> Iterator[str]:
    keys = FunctionKeys.from_json(KEYS, "test")
    with serve_in_thread(create_asgi_app(sample_app.build_app(), "api", keys=keys)) as url:
        yield url


def test_admin_level_takes_only_the_master_key(sample_url: str) -> None:
    with httpx.Client(base_url=sample_url, timeout=10) as client:
        assert client.get("/api/ops/flush").status_code == 401
        assert client.get("/api/ops/flush", params={"code": KEYS["functionKeys"]["default"]}).status_code == 401
        assert client.get("/api/ops/flush", params={"code": KEYS["masterKey"]}).status_code == 200
        assert client.get("/api/greet/bob").text == "hello bob"  # anonymous there too


def test_without_a_keys_file_keys_are_generated_printed_and_enforced(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "tools.devhost", "--app", "tests.devhost.sample_app:app", "--host-json",
            "tests/devhost/host.json", "--port", str(port), "--enforce-keys"]  # fmt: skip
    log_path = tmp_path / "devhost.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVHOST_")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: "Generated function keys" in log_path.read_text() and http_status(f"{base}/ping") == 401,
                   30, what="dev host")  # fmt: skip
        line = next(x for x in log_path.read_text().splitlines() if "Generated function keys" in x)
        master, host_key = line.split(": ", 1)[1].split()
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/ping", headers={"x-functions-key": host_key}).status_code == 200
            assert client.get("/ops/flush", headers={"x-functions-key": host_key}).status_code == 401
            assert client.get("/ops/flush", headers={"x-functions-key": master}).text == "flushed"
        assert "Function keys are enforced as in Azure" in log_path.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def test_malformed_keys_stop_the_host_with_a_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "keys.json"
    bad.write_text(json.dumps({"functionKeys": {"default": "x"}}))
    argv = [sys.executable, "-m", "tools.devhost", "--app", "tests.devhost.sample_app:app", "--port", "0",
            "--enforce-keys", "--keys-file", str(bad)]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "'masterKey' must be a non-empty string" in done.stderr
