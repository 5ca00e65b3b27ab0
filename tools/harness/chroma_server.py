"""A real Chroma server as a child process for tests and benchmarks.

The app talks to Chroma through the thin `chromadb-client` package. The server comes from the full
`chromadb` wheel, which installs the same `chromadb` import package, so it lives in its own venv
(`.cache/chroma-venv`) and is only ever run as a program from there.

Install (CI does this; `find_chroma` fails naming it when the server is missing):
    python -m tools.harness.chroma_server install
which is the same as
    python3 -m venv .cache/chroma-venv && .cache/chroma-venv/bin/pip install "chromadb==1.5.9"
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tools.harness.ports import LOOPBACK, ServerProcess, free_port, http_status, wait_for_port_closed

REPO_ROOT = Path(__file__).resolve().parents[2]
# Must equal the `chromadb-client` pin in requirements.txt: the HTTP API changes between releases.
CHROMA_VERSION = "1.5.9"
VENV = Path(os.environ.get("CHROMA_VENV", REPO_ROOT / ".cache" / "chroma-venv"))
INSTALL_COMMAND = "python -m tools.harness.chroma_server install"
INSTALL_COMMAND_EXPANDED = f'python3 -m venv {VENV} && {VENV}/bin/pip install "chromadb=={CHROMA_VERSION}"'


class HarnessMissing(RuntimeError):
    """The Chroma server is not installed, or not the pinned version; the message says how to fix it."""


def installed_server_version(venv: Path = VENV) -> str | None:
    # Reading the dist-info name avoids starting the venv's interpreter just to ask.
    found = sorted(venv.glob("lib/python*/site-packages/chromadb-*.dist-info"))
    return found[-1].name.removeprefix("chromadb-").removesuffix(".dist-info") if found else None


def installed_client_version() -> str | None:
    for dist in ("chromadb-client", "chromadb"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def find_chroma(venv: Path = VENV) -> Path:
    exe = venv / "bin" / "chroma"
    if not exe.exists():
        raise HarnessMissing(
            f"Chroma server not found at {exe}. Install it from the repo root with:\n"
            f"    {INSTALL_COMMAND}\nor\n    {INSTALL_COMMAND_EXPANDED}"
        )
    server = installed_server_version(venv)
    if server != CHROMA_VERSION:
        raise HarnessMissing(
            f"Chroma server in {venv} is {server}, the tests pin {CHROMA_VERSION}. Reinstall with:\n"
            f"    {INSTALL_COMMAND}"
        )
    client = installed_client_version()
    if client is not None and client != CHROMA_VERSION:
        raise HarnessMissing(
            f"chromadb-client {client} in {sys.prefix} does not match the Chroma server pin {CHROMA_VERSION}; "
            f"pin chromadb-client=={CHROMA_VERSION} in requirements.txt or change CHROMA_VERSION in {__file__}."
        )
    return exe


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    # No phone-home from a test run; the network is not there in CI anyway, and a blocked call
    # would only add latency.
    env["ANONYMIZED_TELEMETRY"] = "False"
    env.setdefault("NO_COLOR", "1")
    return env


class ChromaServer:
    def __init__(self, path: Path | None = None, *, port: int | None = None, start_timeout: float = 60.0) -> None:
        self._own_tmp = path is None
        self.root = Path(tempfile.mkdtemp(prefix="chroma-")) if path is None else Path(path)
        self.path = self.root / "data"
        self.path.mkdir(parents=True, exist_ok=True)
        self.host = LOOPBACK
        self.port = port or free_port()
        argv = [
            str(find_chroma()), "run",
            "--host", self.host, "--port", str(self.port),
            "--path", str(self.path),
        ]  # fmt: skip
        self.process = ServerProcess(
            "chroma",
            argv,
            ready=lambda: http_status(self.heartbeat_url) == 200,
            log_path=self.root / "chroma.log",
            env=server_env(),
            cwd=self.root,
            start_timeout=start_timeout,
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def heartbeat_url(self) -> str:
        # v1 is gone since Chroma 1.0 (it answers an error), so only v2 counts as alive.
        return f"{self.url}/api/v2/heartbeat"

    @property
    def running(self) -> bool:
        return self.process.running

    @property
    def last_start_seconds(self) -> float | None:
        return self.process.last_start_seconds

    def start(self) -> float:
        """Start (or restart after `stop()`) on the same port and data; returns seconds to ready."""
        return self.process.start()

    def stop(self) -> None:
        self.process.stop()
        wait_for_port_closed(self.host, self.port)

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

    def __enter__(self) -> ChromaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def install(venv: Path = VENV) -> None:
    """Create the server venv when missing or on another version; a no-op when already right."""
    if installed_server_version(venv) == CHROMA_VERSION and (venv / "bin" / "chroma").exists():
        print(f"chroma server {CHROMA_VERSION} already in {venv}")
        return
    if not (venv / "bin" / "python").exists():
        # Any 3.11 interpreter will do, even one inside another venv: `venv` builds on the base one.
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "-q", f"chromadb=={CHROMA_VERSION}"],
        check=True,
    )
    print(f"chroma server {installed_server_version(venv)} installed in {venv}")


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit(f"usage: python -m tools.harness.chroma_server install   (pins chromadb=={CHROMA_VERSION})")
    install()
