"""Helpers shared by the tests that are not fixtures: the repository root, the embedding model's
folder, and dev host processes serving the real FunctionApp over HTTP on a data folder of their own.

The fixtures over them (`model_path`, `devhost`, `api`) are in tests/conftest.py.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

from tools.harness.ports import ServerProcess, free_port, http_status

REPO = Path(__file__).resolve().parent.parent
SHARED_MODEL = REPO.parent / "shared" / "models" / "all-MiniLM-L6-v2-onnx"


def local_model_path() -> Path:
    configured = os.environ.get("LOCAL_EMBEDDING_MODEL_PATH")
    path = Path(configured) if configured else SHARED_MODEL
    if not (path / "model.onnx").is_file():
        pytest.fail(
            f"the local embedding model is missing at {path}: set LOCAL_EMBEDDING_MODEL_PATH to a folder holding "
            "all-MiniLM-L6-v2 as ONNX (the team folder ../shared/models has one)"
        )
    return path


def base_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean zero-setup environment: no setting leaks in from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not _is_service_setting(k)}
    env.update(
        {
            "DATA_DIR": str(data_dir),
            "LOCAL_EMBEDDING_MODEL_PATH": str(local_model_path()),
            "LOCAL_EMBEDDING_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "INFO",
        }
    )
    env.update(extra or {})
    return env


def _is_service_setting(name: str) -> bool:
    from shared.settings import Settings

    upper = name.upper()
    return any(upper == field.upper() for field in Settings.model_fields) or upper == "AZUREWEBJOBSSTORAGE"


class DevHost:
    """One `python -m tools.devhost` process serving the real function_app."""

    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None, name: str = "devhost") -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process = ServerProcess(
            name,
            [sys.executable, "-m", "tools.devhost", "--host", "127.0.0.1", "--port", str(self.port)],
            ready=lambda: http_status(f"{self.base_url}/health") == 200,
            log_path=data_dir.parent / f"{name}-{self.port}.log",
            env=base_env(data_dir, env),
            cwd=REPO,
            start_timeout=90,
        )
        self.client = httpx.Client(base_url=self.base_url, timeout=60)

    def start(self) -> DevHost:
        self.process.start()
        return self

    def stop(self) -> None:
        self.process.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.process.log_tail()
