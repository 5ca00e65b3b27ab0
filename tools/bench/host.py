"""The service under test: a dev host process the benchmark starts and stops, and an HTTP client for it."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tools.bench.common import BenchError, model_env
from tools.harness.models import REPO_ROOT
from tools.harness.ports import LOOPBACK, ServerProcess, free_port, port_open

# Settings a benchmarker may tune on purpose; every other service setting in the shell is dropped so
# that the started host really is the zero-setup default.
PASS_THROUGH_SETTINGS = ("LOCAL_EMBEDDING_MODEL", "LOCAL_EMBEDDING_THREADS", "LOG_LEVEL")
PROBE_USER = "bench-probe"


def service_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A zero-setup environment on `data_dir`, plus `extra` settings (e.g. the Chroma server)."""
    from shared.settings import Settings

    names = {name.upper() for name in Settings.model_fields} | {"AZUREWEBJOBSSTORAGE"}
    keep = set(PASS_THROUGH_SETTINGS)
    env = {k: v for k, v in os.environ.items() if k.upper() not in names or k.upper() in keep}
    env.update(
        {
            "DATA_DIR": str(data_dir),
            **model_env(),
            "PYTHONUNBUFFERED": "1",
            "MEM0_TELEMETRY": "false",
            "ANONYMIZED_TELEMETRY": "False",
        }
    )
    env.update(extra or {})
    return env


@dataclass
class Startup:
    """Seconds from Popen until the port accepted connections, and until the first search answered 200."""

    listening_s: float
    first_search_s: float


class ServiceHost:
    """`python -m tools.devhost` on a free port, serving the real FunctionApp."""

    def __init__(self, data_dir: Path, extra_env: Mapping[str, str] | None = None, name: str = "devhost") -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.data_dir = data_dir
        self._opened_at: float | None = None
        self._served_at: float | None = None
        self.process = ServerProcess(
            name,
            [sys.executable, "-m", "tools.devhost", "--host", LOOPBACK, "--port", str(self.port)],
            ready=self._first_search_served,
            log_path=data_dir.parent / f"{name}-{self.port}.log",
            env=service_env(data_dir, extra_env),
            cwd=REPO_ROOT,
            start_timeout=180,
        )

    def _first_search_served(self) -> bool:
        # The readiness probe is the measurement: a search, which builds mem0 and loads the model.
        if not port_open(LOOPBACK, self.port):
            return False
        if self._opened_at is None:
            self._opened_at = time.perf_counter()
        response = httpx.post(
            f"{self.url}/api/memory/search", json={"user_id": PROBE_USER, "query": "hello", "limit": 1}, timeout=120
        )
        if response.status_code == 200:
            self._served_at = time.perf_counter()
            return True
        return False

    def start(self) -> Startup:
        began = time.perf_counter()
        try:
            self.process.start()
        except RuntimeError as error:
            raise BenchError(f"the dev host did not serve a search: {error}") from error
        opened = self._opened_at or began
        served = self._served_at or time.perf_counter()
        return Startup(listening_s=round(opened - began, 3), first_search_s=round(served - began, 3))

    @property
    def pid(self) -> int | None:
        return self.process.proc.pid if self.process.proc is not None else None

    def peak_rss_mb(self) -> float | None:
        """VmHWM (peak resident set) of the worker process, from /proc; None off Linux."""
        return self.memory_mb("VmHWM")

    def memory_mb(self, field: str = "VmRSS", source: str = "status") -> float | None:
        """A memory figure of the worker from /proc/<pid>/`source`, in MB; None off Linux. From `status`:
        VmRSS now, VmHWM peak, RssAnon, RssFile. From `smaps_rollup`: Pss (see `pss_mb`)."""
        if self.pid is None:
            return None
        try:
            text = Path(f"/proc/{self.pid}/{source}").read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)
        return None

    def pss_mb(self) -> float | None:
        """Proportional set size of the worker, in MB.

        RSS counts a page once per mapping that holds it, and the embedded engine maps each chunk of its
        vectors twice (read-only and read-write): measured at 61,000 memories, 185 MB of RSS for 90 MB
        of vector files. PSS counts each page once, which is what the instance's memory holds.
        """
        return self.memory_mb("Pss", "smaps_rollup")

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the worker so far: a figure that other load on the machine inflates less."""
        if self.pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        # Fields 14 and 15 of stat (utime, stime); the split above starts at field 3.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self) -> str:
        return self.process.log_tail()

    def stop(self) -> None:
        self.process.stop()


class Api:
    """The few endpoints the benchmarks call; any non-200 answer stops the run with the body."""

    def __init__(self, base_url: str, timeout: float = 300.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(base_url=self.base_url, timeout=timeout)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.client.post(path, json=body)
        except httpx.HTTPError as error:
            raise BenchError(f"POST {self.base_url}{path} failed: {error!r}") from error
        if response.status_code != 200:
            raise BenchError(f"POST {self.base_url}{path} answered {response.status_code}: {response.text[:500]}")
        data: dict[str, Any] = response.json().get("data") or {}
        return data

    def add(self, user_id: str, content: str, metadata: dict[str, Any] | None = None) -> str:
        body: dict[str, Any] = {"user_id": user_id, "content": content}
        if metadata:
            body["metadata"] = metadata
        return str(self._post("/api/memory/add", body)["memory_id"])

    def batch_add(self, user_id: str, memories: list[dict[str, Any]]) -> int:
        data = self._post("/api/memory/batch-add", {"user_id": user_id, "memories": memories})
        count = int(data.get("count", 0))
        if count != len(memories):
            raise BenchError(f"batch-add stored {count} of {len(memories)} memories")
        return count

    def search(self, user_id: str, query: str, limit: int = 10) -> list[dict[str, Any]]:
        data = self._post("/api/memory/search", {"user_id": user_id, "query": query, "limit": limit})
        results: list[dict[str, Any]] = data.get("results") or []
        return results

    def check_reachable(self) -> None:
        try:
            self.client.get("/health")
        except httpx.HTTPError as error:
            raise BenchError(f"nothing answers at {self.base_url}: {error!r}") from error

    def close(self) -> None:
        self.client.close()
