"""Free ports, readiness waits and a restartable child-process wrapper for test and benchmark servers.

Shared by the Azurite, Chroma and Neo4j harnesses (and the dev hosts that tests and benchmarks start)
so each one only says *how* to start its server and *how* to tell it is ready.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"

_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on now, never the same one twice in this process.

    Binding to port 0 and closing leaves a small race with other processes, but remembering the
    ports already given out removes the common collision: two servers of one test run picking the
    same port before either has bound it.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        with _handed_out_lock:
            if port not in _handed_out:
                _handed_out.add(port)
                return int(port)
    raise RuntimeError("could not find a free port that was not already handed out")


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    *,
    interval: float = 0.05,
    what: str = "condition",
    abort: Callable[[], str | None] | None = None,
) -> float:
    """Poll until `predicate()` is true; return the seconds it took.

    `abort` is asked on every round and may return a reason to give up early (a child process that
    already died will never become ready, so waiting the full timeout would only hide the cause).
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        try:
            if predicate():
                return time.monotonic() - start
        except Exception:  # noqa: S110 - a probe failing is the same as "not yet"
            pass
        if abort is not None:
            reason = abort()
            if reason:
                raise RuntimeError(f"gave up waiting for {what}: {reason}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.1f}s")
        time.sleep(interval)


def wait_for_port(host: str, port: int, timeout: float = 30.0, **kw: Any) -> float:
    return wait_until(lambda: port_open(host, port), timeout, what=f"{host}:{port} accepting connections", **kw)


def wait_for_port_closed(host: str, port: int, timeout: float = 15.0) -> float:
    return wait_until(lambda: not port_open(host, port), timeout, what=f"{host}:{port} closed")


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """Status of a GET, or None when nothing answers; 4xx/5xx still count as an answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - the harness's own http:// URLs
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def wait_for_http(url: str, timeout: float = 30.0, *, ok: Sequence[int] = (200,), **kw: Any) -> float:
    return wait_until(lambda: http_status(url) in ok, timeout, what=f"GET {url} -> {tuple(ok)}", **kw)


# --- child processes ----------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_live: set[ServerProcess] = set()


def _die_with_parent() -> None:
    # Linux only: the kernel sends SIGTERM to the child when the thread that started it exits, so a
    # pytest killed by a CI timeout does not leave servers holding ports on the machine.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@atexit.register
def _stop_leftovers() -> None:
    for proc in list(_live):
        proc.stop()


class ServerProcess:
    """One external server started from a fixed command line, stoppable and restartable.

    The command (and so the ports and data folder) is fixed at construction, so `start()` after
    `stop()` brings back the same server on the same address with the same data: what outage tests
    need. Output goes to a log file whose tail is put in every error, since a server that failed to
    start is otherwise silent.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        ready: Callable[[], bool],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.ready = ready
        self.log_path = Path(log_path)
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.last_start_seconds: float | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"

    def _exited(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            return f"{self.name} exited with code {self.proc.returncode}"
        return None

    def start(self) -> float:
        """Start and wait until ready; return the seconds that took."""
        if self.running:
            return 0.0
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(  # argv built by the harness, no shell
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,  # own process group: stop() can signal the whole tree
                preexec_fn=_die_with_parent,  # only sets a signal: safe after fork
            )
        _live.add(self)
        try:
            wait_until(self.ready, self.start_timeout, what=f"{self.name} ready", abort=self._exited, interval=0.1)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n--- {self.name} log ({self.log_path}) ---\n{self.log_tail()}") from exc
        self.last_start_seconds = time.monotonic() - began
        return self.last_start_seconds

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        _live.discard(self)
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)  # the group we created in start(), nothing else
            except ProcessLookupError:
                return
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __repr__(self) -> str:
        return f"<ServerProcess {self.name} pid={self.proc.pid if self.proc else None}>"
