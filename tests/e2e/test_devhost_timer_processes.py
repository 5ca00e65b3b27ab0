"""Timer triggers in `python -m tools.devhost` processes: run on startup, then every second by the schedule,
and fired by one process only when two dev hosts share the state folder (the singleton lease)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO
from tools.harness.ports import free_port, wait_until


def _start(tmp_path: Path, name: str, state: Path, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "tools.devhost", "--app", "tests.devhost.sample_app:timer_app"]
    argv += ["--host-json", "tests/devhost/host.json", "--port", str(free_port()), "--state-dir", str(state)]
    env = {**os.environ, "SAMPLE_TIMER_LOG": str(log), "SAMPLE_TIMER_SCHEDULE": "0 0 * * * *"}
    with open(tmp_path / f"{name}.log", "wb") as out:
        return subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _runs(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_two_dev_hosts_sharing_state_fire_a_timer_from_one_process(tmp_path: Path) -> None:
    state, log = tmp_path / "state", tmp_path / "runs.jsonl"
    hosts = [_start(tmp_path, name, state, log) for name in ("first", "second")]
    try:
        try:
            wait_until(lambda: len(_runs(log)) >= 4, 60, what="four timer runs")
        except Exception as exc:
            logs = "\n".join((tmp_path / f"{n}.log").read_text() for n in ("first", "second"))
            raise AssertionError(logs) from exc
        runs = _runs(log)
        assert len({run["pid"] for run in runs}) == 1, runs
        assert {run["pid"] for run in runs} <= {host.pid for host in hosts}
        assert not any(run["past_due"] for run in runs)
        assert (state / "locks" / "sample_tick.lock").is_file()
        for name in ("first", "second"):
            text = (tmp_path / f"{name}.log").read_text()
            assert "The 'sample_hourly' function is in error" not in text
    finally:
        for host in hosts:
            host.terminate()
        for host in hosts:
            host.wait(timeout=30)
