"""`python -m tools.bench mixed`: throughput of one worker under concurrent clients, 80 % search / 20 % add.

The load a memory layer sees in a chat product: many users, each search followed now and then by a
write. Per run:
1. start a dev host on a fresh data folder (or use `--url`, e.g. an older commit's host started by
   hand, to compare versions on the same machine in the same session);
2. seed `--users` users with `--per-user` memories each by batch-add;
3. for each client count (default 1, 8, 32): `--seconds` of closed-loop load, each client picking a
   random user and doing a search (80 %) or a single add (20 %), with a fresh connection pool per
   client; ops/s, and p50/p95/p99 per operation, plus the worker's CPU per operation when the
   benchmark started the worker itself.

The client is plain `http.client` over keep-alive connections (the cheapest Python client): it runs
on the same machine and its own CPU is part of what is measured, equally for every version.
"""

from __future__ import annotations

import http.client
import json
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shared.observability.percentiles import percentile
from tools.bench.common import BenchError, format_table, loadavg_1m
from tools.bench.host import ServiceHost
from tools.bench.synthetic import memory_items, memory_stream, query_stream


@dataclass(frozen=True)
class MixedConfig:
    users: int = 100
    per_user: int = 200
    clients: tuple[int, ...] = (1, 8, 32)
    seconds: float = 20.0
    search_share: float = 0.8
    seed: int = 7
    url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    user_prefix: str = "mixed"
    pid: int | None = None  # of the worker at `url`, for its CPU per operation


class _Client:
    """One keep-alive connection; JSON in, status and JSON out."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        """One request; a connection the server closed is opened again once."""
        data = json.dumps(body).encode()
        try:
            return self._send(path, data)
        except (ConnectionError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            return self._send(path, data)

    def _send(self, path: str, data: bytes) -> tuple[int, bytes]:
        self.conn.request("POST", path, data, {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()


def _user(config: MixedConfig, index: int) -> str:
    return f"{config.user_prefix}-{config.seed}-{index:04d}"


def seed_users(base_url: str, config: MixedConfig) -> float:
    """Batch-adds every user's memories; returns memories per second."""
    client = _Client(base_url)
    began = time.perf_counter()
    try:
        for index in range(config.users):
            user = _user(config, index)
            stream = memory_stream(config.seed, user)
            for start in range(0, config.per_user, 100):
                items = memory_items(stream, min(100, config.per_user - start), start)
                status, body = client.post("/api/memory/batch-add", {"user_id": user, "memories": items})
                if status != 200:
                    raise BenchError(f"batch-add answered {status}: {body[:300]!r}")
    finally:
        client.close()
    return config.users * config.per_user / (time.perf_counter() - began)


class WorkerProcess:
    """A worker this benchmark did not start, read by pid (`--pid`): its CPU time from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float | None:
        import os

        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_clients(
    base_url: str, config: MixedConfig, clients: int, host: ServiceHost | WorkerProcess | None
) -> dict[str, Any]:
    """`clients` closed-loop clients for `config.seconds`; the figures of that phase."""
    stop = threading.Event()
    lock = threading.Lock()
    latencies: dict[str, list[float]] = {"search": [], "add": []}
    failures: list[str] = []

    def client_loop(number: int) -> None:
        rng = random.Random(f"{config.seed}:{clients}:{number}")
        queries = query_stream(config.seed, f"mixed-{number}")
        client = _Client(base_url)
        mine: dict[str, list[float]] = {"search": [], "add": []}
        try:
            while not stop.is_set():
                user = _user(config, rng.randrange(config.users))
                if rng.random() < config.search_share:
                    kind, path = "search", "/api/memory/search"
                    body: dict[str, Any] = {"user_id": user, "query": queries.next(), "limit": 10}
                else:
                    kind, path = "add", "/api/memory/add"
                    body = {"user_id": user, "content": memory_stream(config.seed, f"{user}:{rng.random()}").next()}
                began = time.perf_counter()
                status, answer = client.post(path, body)
                elapsed = (time.perf_counter() - began) * 1000
                if status != 200:
                    with lock:
                        failures.append(f"{kind} {status}: {answer[:200]!r}")
                    continue
                mine[kind].append(elapsed)
        finally:
            client.close()
            with lock:
                for kind, values in mine.items():
                    latencies[kind].extend(values)

    cpu_before = host.cpu_seconds() if host else None
    threads = [threading.Thread(target=client_loop, args=(n,), daemon=True) for n in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(config.seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    wall = time.perf_counter() - began
    cpu_after = host.cpu_seconds() if host else None
    ops = len(latencies["search"]) + len(latencies["add"])
    result: dict[str, Any] = {
        "clients": clients,
        "ops": ops,
        "ops_per_s": round(ops / wall, 1),
        "failures": len(failures),
        "first_failures": failures[:3],
        "worker_cpu_ms_per_op": (
            round((cpu_after - cpu_before) * 1000 / ops, 2) if ops and cpu_before is not None and cpu_after else None
        ),
    }
    for kind, values in latencies.items():
        values.sort()
        result[kind] = {
            "n": len(values),
            **{f"p{q}": round(percentile(values, q), 1) if values else None for q in (50, 95, 99)},
        }
    return result


def seed_and_load(
    base_url: str, config: MixedConfig, probe: ServiceHost | WorkerProcess | None, say: Callable[[str], None]
) -> dict[str, Any]:
    """Seeds the users, then runs one phase per client count; what the run measured."""
    say(f"mixed load: seeding {config.users} users x {config.per_user} memories")
    seeded = seed_users(base_url, config)
    phases = []
    for clients in config.clients:
        phases.append(run_clients(base_url, config, clients, probe))
        say(_phase_line(phases[-1]))
    return {
        "users": config.users,
        "per_user": config.per_user,
        "seconds": config.seconds,
        "seed_memories_per_s": round(seeded, 1),
        "phases": phases,
    }


def run_mixed(config: MixedConfig) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-mixed-"))
    host: ServiceHost | None = None
    probe: ServiceHost | WorkerProcess | None = WorkerProcess(config.pid) if config.pid else None
    try:
        if config.url:
            base_url = config.url
        else:
            host = ServiceHost(root / "data", config.extra_env, name="mixed-host")
            host.start()
            base_url, probe = host.url, host
        result = seed_and_load(base_url, config, probe, lambda line: print(line, flush=True))
        return {**result, "worker_peak_rss_mb": host.peak_rss_mb() if host else None, "loadavg_1m": loadavg_1m()}
    finally:
        if host is not None:
            host.stop()
        shutil.rmtree(root, ignore_errors=True)


def _phase_line(phase: dict[str, Any]) -> str:
    s = phase["search"]
    return (
        f"  {phase['clients']:>3} clients: {phase['ops_per_s']} ops/s, search p50 {s['p50']} ms, "
        f"p95 {s['p95']} ms, failures {phase['failures']}"
    )


def mixed_table(result: dict[str, Any]) -> str:
    rows = []
    for phase in result["phases"]:
        s, a = phase["search"], phase["add"]
        rows.append(
            [
                phase["clients"],
                phase["ops_per_s"],
                s["p50"],
                s["p95"],
                s["p99"],
                a["p50"],
                a["p95"],
                phase["worker_cpu_ms_per_op"],
                phase["failures"],
            ]
        )
    title = (
        f"mixed load: {result['users']} users x {result['per_user']} memories, "
        f"{round(100 * 0.8)} % search / 20 % add, {result['seconds']} s per phase"
    )
    headers = ["clients", "ops/s", "search p50", "p95", "p99", "add p50", "p95", "worker CPU ms/op", "failures"]
    return format_table(headers, rows, title=title)
