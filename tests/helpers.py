"""Helpers shared by the tests that are not fixtures: the repository root, the embedding model's
folder, dev host processes serving the real FunctionApp over HTTP on a data folder of their own, and
a tiny LoCoMo conversation for the benchmark tool's tests.

The fixtures over them (`model_path`, `devhost`, `api`) are in tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from tools.harness import models
from tools.harness.ports import ServerProcess, free_port, http_status

REPO = Path(__file__).resolve().parent.parent
# A test's kind is its folder under tests/; tests/conftest.py gives it the marker of that name.
FOLDER_MARKERS = {"unit": "unit", "integration": "integration", "e2e": "e2e", "infra": "infra"}


def local_model_path() -> Path | None:
    """The model folder LOCAL_EMBEDDING_MODEL_PATH names, None for the installed default
    (tools/harness/models.py); a test without the model fails, saying how to install it."""
    try:
        return models.local_model_path()
    except models.ModelMissing as missing:
        pytest.fail(str(missing))


def model_env() -> dict[str, str]:
    """LOCAL_EMBEDDING_MODEL_PATH for a service process when one is configured; empty for the installed default."""
    path = local_model_path()
    return {"LOCAL_EMBEDDING_MODEL_PATH": str(path)} if path is not None else {}


def base_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean zero-setup environment: no setting leaks in from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not _is_service_setting(k)}
    env.update(
        {
            "DATA_DIR": str(data_dir),
            # What the dev host keeps in "storage" (timer leases and schedule status) stays with the test's data.
            "DEVHOST_STATE_DIR": str(data_dir / "devhost-state"),
            **model_env(),
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
    return any(upper == field.upper() for field in Settings.model_fields) or upper.startswith("AZUREWEBJOBSSTORAGE")


class DevHost:
    """One `python -m tools.devhost` process serving the real function_app."""

    def __init__(
        self,
        data_dir: Path,
        env: Mapping[str, str] | None = None,
        name: str = "devhost",
        args: Sequence[str] = (),
        keys: Mapping[str, Any] | None = None,
    ) -> None:
        """`args` go to `python -m tools.devhost`; `keys` (the JSON of tools.devhost.keys.FunctionKeys) turns on
        function keys, as in Azure."""
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "tools.devhost", "--host", "127.0.0.1", "--port", str(self.port)]
        if keys is not None:
            data_dir.parent.mkdir(parents=True, exist_ok=True)
            keys_file = data_dir.parent / f"{name}-{self.port}-keys.json"
            keys_file.write_text(json.dumps(keys))
            argv += ["--enforce-keys", "--keys-file", str(keys_file)]
        self.process = ServerProcess(
            name,
            [*argv, *args],
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

    def kill(self) -> None:
        """SIGKILL the host's process group: no shutdown, no finally, messages left in hand."""
        import signal

        proc = self.process.proc
        assert proc is not None, "the dev host is not running"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def log(self, chars: int = 4000) -> str:
        return self.process.log_tail(chars)


# A LoCoMo-shaped conversation where each answer turn shares obvious words with its question.
TINY_LOCOMO: list[dict[str, Any]] = [
    {
        "sample_id": "tiny-1",
        "conversation": {
            "speaker_a": "Ann",
            "speaker_b": "Bob",
            "session_1_date_time": "1:00 pm on 1 May, 2023",
            "session_1": [
                {"speaker": "Ann", "dia_id": "D1:1", "text": "Hi Bob, how was your week?"},
                {"speaker": "Bob", "dia_id": "D1:2", "text": "I adopted a golden retriever puppy named Biscuit."},
                {"speaker": "Ann", "dia_id": "D1:3", "text": "Lovely! I started learning to play the cello."},
                {"speaker": "Bob", "dia_id": "D1:4", "text": "Look at this", "blip_caption": "a photo of a dog"},
                {"speaker": "Ann", "dia_id": "D1:5", "text": "The weather has been rainy all week here."},
                {"speaker": "Bob", "dia_id": "D1:6", "text": "My sister moved to a new flat downtown."},
            ],
            "session_2_date_time": "9:00 am on 8 May, 2023",
            "session_2": [
                {"speaker": "Ann", "dia_id": "D2:1", "text": "I am flying to Reykjavik for a volcano conference."},
                {"speaker": "Bob", "dia_id": "D2:2", "text": "My favourite food is spicy ramen with garlic."},
                {"speaker": "Ann", "dia_id": "D2:3", "text": "Work has been busy with quarterly reports."},
                {"speaker": "Bob", "dia_id": "D2:4", "text": "I bought new running shoes yesterday."},
                {"speaker": "Ann", "dia_id": "D2:5", "text": "Our team won the office quiz night."},
                {"speaker": "Bob", "dia_id": "D2:6", "text": "I repainted the kitchen a pale green."},
            ],
        },
        "qa": [
            {"question": "What is the name of Bob's puppy?", "answer": "Biscuit", "evidence": ["D1:2"], "category": 4},
            {"question": "Which instrument is Ann learning to play?", "answer": "cello", "evidence": ["D1:3"],
             "category": 1},
            {"question": "Where is Ann flying for the volcano conference?", "answer": "Reykjavik",
             "evidence": ["D2:1; D1:1"], "category": 2},
            {"question": "What is Bob's favourite food?", "answer": "ramen", "evidence": ["D2:2"], "category": 3},
            {"question": "Adversarial, never asked", "evidence": ["D1:2"], "category": 5},
            {"question": "Evidence that names no turn", "answer": "x", "evidence": ["D9:9"], "category": 4},
        ],
    }
]  # fmt: skip
