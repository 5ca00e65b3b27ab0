"""The dev host on a real uvicorn server: in a thread, and as `python -m tools.devhost` in a child process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.devhost import sample_app
from tests.helpers import REPO
from tools.devhost.host import create_asgi_app
from tools.devhost.serve import serve_in_thread
from tools.harness.ports import free_port, http_status, wait_until


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_in_thread(create_asgi_app(sample_app.build_app(), "api")) as url:
        yield url


def test_sync_functions_run_concurrently_in_worker_threads(base_url: str) -> None:
    # Each request waits on a two-party barrier, so both succeed only if they run at the same time.
    sample_app.BARRIER.reset()

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base_url, timeout=20) as client:
            return list(await asyncio.gather(client.get("/api/rendezvous"), client.get("/api/rendezvous")))

    responses = asyncio.run(both())
    assert [r.status_code for r in responses] == [200, 200]
    threads = {r.json()["thread"] for r in responses}
    assert len(threads) == 2
    assert all(name.startswith("devhost-worker") for name in threads)


def test_an_exception_does_not_take_the_server_down(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        assert client.get("/api/boom").status_code == 500
        assert client.get("/api/exit").status_code == 500  # even SystemExit stays inside the invocation
        assert client.get("/api/items/special").json() == {"route": "special"}


def test_python_m_tools_devhost_serves_over_http(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "devhost.log"
    argv = [
        sys.executable,
        "-m",
        "tools.devhost",
        "--app",
        "tests.devhost.sample_app:app",
        "--host-json",
        "tests/devhost/host.json",  # routePrefix "": proves host.json was read (the default is "api")
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:

        def exited() -> str | None:
            return f"exited with {proc.returncode}" if proc.poll() is not None else None

        try:
            wait_until(lambda: http_status(f"{base}/ping") == 200, 30, what="dev host", abort=exited)
        except Exception as exc:
            raise AssertionError(log_path.read_text()) from exc

        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/items/special").json() == {"route": "special"}
            assert client.get("/items/42").json() == {"route": "int", "id": "42"}
            assert client.post("/readonly").status_code == 404
            echoed = client.put("/echo/x%20y?a=1", content=b"payload", headers={"X-One": "1"}).json()
            assert echoed["route_params"] == {"tag": "x y"}
            assert echoed["params"] == {"a": "1"}
            assert echoed["headers"]["x-one"] == "1"
            assert echoed["body"] == "payload"
            assert client.get("/boom").status_code == 500
            assert client.get("/api/items/special").status_code == 404

        output = log_path.read_text()
        assert "Functions:" in output
        assert f"items_special: [GET] http://127.0.0.1:{port}/items/special  (authLevel: function)" in output
        assert "greet: [GET]" in output and "(authLevel: anonymous)" in output
        assert "Function keys are not checked" in output
        assert "Traceback" in output and "RuntimeError: boom" in output

        # Graceful shutdown on SIGTERM: a clean exit, not death by signal.
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def test_sigint_while_a_request_runs_finishes_it_then_exits(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "devhost.log"
    started = tmp_path / "handler-started"
    argv = [sys.executable, "-m", "tools.devhost", "--app", "tests.devhost.sample_app:app", "--port", str(port)]
    argv += ["--host-json", "tests/devhost/host.json"]
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: http_status(f"{base}/ping") == 200, 30, what="dev host")

        async def slow_request_then_sigint() -> httpx.Response:
            async with httpx.AsyncClient(base_url=base, timeout=20) as client:
                params = {"seconds": "2", "started": str(started)}
                in_flight = asyncio.ensure_future(client.get("/slow", params=params))
                while not started.exists():  # the request is in the handler before the signal
                    assert not in_flight.done(), in_flight.result().text
                    await asyncio.sleep(0.05)
                proc.send_signal(signal.SIGINT)
                return await in_flight

        response = asyncio.run(slow_request_then_sigint())
        assert (response.status_code, response.text) == (200, "done")
        assert proc.wait(timeout=15) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
