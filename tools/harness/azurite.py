"""Azurite (the Azure Storage emulator) as a real child process for tests and benchmarks.

Blob, Queue and Table all start, each on its own free port: the app only needs Table, but the
Functions host wants Blob/Queue behind AzureWebJobsStorage and they cost nothing extra.

Install (CI does this; `find_azurite` fails naming it when the binary is missing):
    npm install --prefix .cache/node --no-audit --no-fund azurite@3.35.0
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tools.harness.ports import LOOPBACK, ServerProcess, free_port, http_status, port_open, wait_for_port_closed

REPO_ROOT = Path(__file__).resolve().parents[2]
AZURITE_VERSION = "3.35.0"
INSTALL_COMMAND = f"npm install --prefix .cache/node --no-audit --no-fund azurite@{AZURITE_VERSION}"

# The emulator's fixed, publicly documented development account; not a secret.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class HarnessMissing(RuntimeError):
    """A server binary the tests need is not installed; the message names the install command."""


def find_azurite() -> Path:
    local = REPO_ROOT / ".cache" / "node" / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return local
    on_path = shutil.which("azurite")
    if on_path:
        return Path(on_path)
    raise HarnessMissing(
        f"Azurite not found at {local} nor on PATH. Install it from the repo root with:\n    {INSTALL_COMMAND}"
    )


class AzuriteServer:
    def __init__(self, location: Path | None = None, *, start_timeout: float = 60.0) -> None:
        self._own_tmp = location is None
        self.root = Path(tempfile.mkdtemp(prefix="azurite-")) if location is None else Path(location)
        self.location = self.root / "data"
        self.location.mkdir(parents=True, exist_ok=True)
        self.host = LOOPBACK
        self.blob_port = free_port()
        self.queue_port = free_port()
        self.table_port = free_port()
        argv = [
            str(find_azurite()),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--loose",
            "--location", str(self.location),
            "--blobHost", self.host, "--blobPort", str(self.blob_port),
            "--queueHost", self.host, "--queuePort", str(self.queue_port),
            "--tableHost", self.host, "--tablePort", str(self.table_port),
        ]  # fmt: skip
        self.process = ServerProcess(
            "azurite",
            argv,
            ready=self._ready,
            log_path=self.root / "azurite.log",
            cwd=self.root,
            start_timeout=start_timeout,
        )

    def _ready(self) -> bool:
        # The three services bind one after another; Table answering HTTP is the one the app needs,
        # the others only have to accept connections.
        return (
            port_open(self.host, self.blob_port)
            and port_open(self.host, self.queue_port)
            and http_status(self.table_endpoint) is not None
        )

    # --- addresses ---------------------------------------------------------------------------
    @property
    def blob_endpoint(self) -> str:
        return f"http://{self.host}:{self.blob_port}/{ACCOUNT_NAME}"

    @property
    def queue_endpoint(self) -> str:
        return f"http://{self.host}:{self.queue_port}/{ACCOUNT_NAME}"

    @property
    def table_endpoint(self) -> str:
        return f"http://{self.host}:{self.table_port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        # Explicit endpoints, because `UseDevelopmentStorage=true` hard-codes ports 10000-10002.
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
            f"QueueEndpoint={self.queue_endpoint};"
            f"TableEndpoint={self.table_endpoint};"
        )

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.process.running

    @property
    def last_start_seconds(self) -> float | None:
        return self.process.last_start_seconds

    def start(self) -> float:
        """Start (or restart after `stop()`) on the same ports and data; returns seconds to ready."""
        return self.process.start()

    def stop(self) -> None:
        self.process.stop()
        # A restart must find the ports free, and callers testing an outage need it to be real.
        wait_for_port_closed(self.host, self.table_port)

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """Down inside the block, back up (same data) after it, even if the block fails."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def close(self) -> None:
        self.stop()
        if self._own_tmp:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> AzuriteServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
