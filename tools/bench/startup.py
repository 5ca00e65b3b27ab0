"""`import function_app` and the worker's cold start, timed in fresh interpreters (part of `load`)."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tools.bench.common import BenchError
from tools.bench.host import service_env
from tools.harness.models import REPO_ROOT

_IMPORT_SNIPPET = "import time; t=time.perf_counter(); import function_app; print(time.perf_counter()-t)"


def measure_import(runs: int) -> dict[str, Any]:
    """Median seconds of `import function_app` in fresh interpreters, and what the time is spent on."""
    samples = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", _IMPORT_SNIPPET], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise BenchError(f"`import function_app` failed:\n{done.stderr[-2000:]}")
        samples.append(float(done.stdout.strip().splitlines()[-1]))
    traced = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import function_app"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        "median_s": round(statistics.median(samples), 3),
        "runs_s": [round(s, 3) for s in samples],
        "import_time_by_package": import_time_by_package(traced.stderr),
    }


_IMPORTTIME_LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s*(\S+)")


def import_time_by_package(importtime_output: str, top: int = 12) -> list[dict[str, Any]]:
    """Self time of every imported module (`python -X importtime`), summed per top-level package.

    Self times add up to the whole import, so this attributes all of it: which dependencies make
    `import function_app` slow.
    """
    by_package: dict[str, float] = {}
    for line in importtime_output.splitlines():
        match = _IMPORTTIME_LINE.match(line)
        if match:
            package = match.group(3).split(".")[0]
            by_package[package] = by_package.get(package, 0.0) + int(match.group(1)) / 1000
    ranked = sorted(by_package.items(), key=lambda kv: kv[1], reverse=True)[:top]
    return [{"package": name, "self_ms": round(ms, 1)} for name, ms in ranked]


def measure_cold_start(data_dir: Path, extra: dict[str, str]) -> dict[str, Any]:
    """The worker's cold start split into steps, in a fresh interpreter on a fresh data folder."""
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench.coldstart", repr(time.time())],
        cwd=REPO_ROOT,
        env=service_env(data_dir, extra),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"the cold start probe failed:\n{done.stderr[-2000:]}")
    steps: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return steps
