"""A real Neo4j 5.26 for tests, without Docker: an embedded DBMS with only Bolt.

Use it from a conftest.py (re-exporting the fixture is what registers it):

    from tests.support.neo4j_server import neo4j_server  # noqa: F401

    def test_something(neo4j_server):
        driver = neo4j.GraphDatabase.driver(
            neo4j_server.uri, auth=(neo4j_server.user, neo4j_server.password))

`neo4j_server` is session-scoped and shared by every test in the run (one per
xdist worker), so:
  * keep test data apart (unique ids/labels) or delete what you create;
  * a test that calls `stop()` must bring it back (`start()`/`restart()`),
    ideally in a `finally`, or later tests will see a dead server;
  * `restart()` reuses the port and data directory, so a driver created before
    the outage reconnects on its own (the "degraded, then recovered" case).
For a private server, build one yourself: `Neo4jServer(tmp_path).start()`.

Requirements: Java 17+ (JAVA_HOME or `java` on PATH) and Maven (`mvn`). The first
use builds tests/neo4j_launcher into its target/ (needs Maven Central once,
~30 s with an empty ~/.m2); later runs reuse it offline. When Java, or Maven for a
needed build, is missing, the fixture FAILS: CI must provide them, and a skip
would hide that the graph tests never ran. Pre-warm in CI with:

    mvn -q -B -f tests/neo4j_launcher/pom.xml package -DskipTests

`python -m pytest` from the repo root puts the root on sys.path, which the
`tests.support` import needs. A start takes ~10 s on a 2-core runner.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from neo4j import GraphDatabase
from neo4j.exceptions import AuthError

LAUNCHER_DIR = Path(__file__).resolve().parent.parent / "neo4j_launcher"
TARGET_DIR = LAUNCHER_DIR / "target"
JAR = TARGET_DIR / "neo4j-launcher.jar"
_STAMP = TARGET_DIR / ".harness-build-stamp"
_READY_PREFIX = "NEO4J_READY "

# Serial GC and C1-only JIT: fewer threads competing with startup on small CI
# runners; test workloads are too short for C2 to pay off.
DEFAULT_JAVA_OPTS = ("-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
DEFAULT_PASSWORD = "memsvc-test-password"  # Neo4j 5 rejects passwords under 8 chars


class Neo4jHarnessError(RuntimeError):
    """The test Neo4j could not be built or started; the message says why."""


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise Neo4jHarnessError(
            "Java 17+ is required for the Neo4j test server but `java` is not on PATH "
            "(and JAVA_HOME is unset). Install a JDK 17 (e.g. apt-get install openjdk-17-jdk-headless)."
        )
    return found


def _sources_digest() -> str:
    # Content hash rather than mtimes: git checkouts and CI cache restores
    # scramble mtimes, which would cause needless rebuilds or miss real changes.
    h = hashlib.sha256()
    files = [LAUNCHER_DIR / "pom.xml", *sorted((LAUNCHER_DIR / "src").rglob("*"))]
    for f in files:
        if f.is_file():
            h.update(f.relative_to(LAUNCHER_DIR).as_posix().encode() + b"\0")
            h.update(f.read_bytes() + b"\0")
    return h.hexdigest()


def _is_built(digest: str) -> bool:
    lib = TARGET_DIR / "lib"
    return (
        JAR.is_file()
        and lib.is_dir()
        and any(lib.glob("neo4j-*.jar"))
        and _STAMP.is_file()
        and _STAMP.read_text().strip() == digest
    )


def ensure_built(timeout: float = 900.0) -> Path:
    """Build the launcher with Maven unless target/ already matches pom.xml + src/.

    Offline first, so a warm ~/.m2 never touches the network; online only if
    that fails (first build, or the Neo4j version changed).
    """
    digest = _sources_digest()
    if _is_built(digest):
        return JAR
    mvn = shutil.which("mvn")
    if not mvn:
        raise Neo4jHarnessError(
            "Maven is required to build the Neo4j test server (tests/neo4j_launcher) but `mvn` "
            "is not on PATH. Install Maven 3.8+ (e.g. apt-get install maven)."
        )
    TARGET_DIR.mkdir(exist_ok=True)
    # xdist workers may all arrive here; one builds, the rest wait and re-check.
    with open(TARGET_DIR / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_built(digest):
            return JAR
        base = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(LAUNCHER_DIR / "pom.xml")]
        goals = ["package", "-DskipTests"]
        result = None
        for extra in (["-o"], []):
            try:
                result = subprocess.run(
                    base + extra + goals, capture_output=True, text=True, timeout=timeout
                )
            except subprocess.TimeoutExpired as e:
                raise Neo4jHarnessError(f"Maven build of the Neo4j test server timed out after {timeout:.0f} s: {e.cmd}") from e
            if result.returncode == 0:
                break
        assert result is not None
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()
            raise Neo4jHarnessError(
                "Maven could not build the Neo4j test server (Maven Central must be reachable "
                f"for the first build).\ncommand: {' '.join(base + goals)}\n"
                f"exit code: {result.returncode}\n--- last Maven output ---\n" + "\n".join(output[-60:])
            )
        _STAMP.write_text(digest + "\n")
    return JAR


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Neo4jServer:
    """One embedded Neo4j process bound to 127.0.0.1 with auth enabled."""

    user = "neo4j"

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        password: str = DEFAULT_PASSWORD,
        port: int | None = None,
        start_timeout: float = float(os.environ.get("NEO4J_TEST_START_TIMEOUT", "120")),
        java_opts: tuple[str, ...] = DEFAULT_JAVA_OPTS,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._password = password
        self._port = port
        self._port_fixed = port is not None
        self.start_timeout = start_timeout
        self.java_opts = tuple(java_opts)
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._output: collections.deque[str] = collections.deque(maxlen=200)
        self._ready = threading.Event()

    @staticmethod
    def ensure_built() -> Path:
        return ensure_built()

    @property
    def port(self) -> int:
        if self._port is None:
            raise Neo4jHarnessError("Neo4jServer has no port until start() has been called")
        return self._port

    @property
    def uri(self) -> str:
        return f"bolt://127.0.0.1:{self.port}"

    @property
    def password(self) -> str:
        return self._password

    @property
    def auth(self) -> tuple[str, str]:
        return (self.user, self._password)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def debug_log(self) -> Path:
        return self.data_dir / "logs" / "debug.log"

    def start(self) -> None:
        if self.running:
            return
        java = _java()
        jar = ensure_built()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A port chosen by us can be grabbed by someone else before Neo4j binds it;
        # only then is a fresh port acceptable. A caller-fixed or already used port
        # (restart) must stay the same, since drivers hold the URI.
        attempts = 1 if self._port_fixed else 3
        for attempt in range(attempts):
            if self._port is None:
                self._port = _free_port()
            try:
                self._launch(java, jar)
            except Neo4jHarnessError:
                if attempt + 1 < attempts and any("Address already in use" in l for l in self._output):
                    self._port = None
                    continue
                raise
            # Once a server was up, its port belongs to it: restart() must reuse it.
            self._port_fixed = True
            return

    def stop(self, *, graceful: bool = True) -> None:
        """SIGTERM (clean shutdown) or, with graceful=False, SIGKILL to test crash recovery."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(proc, signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=30)
        if proc.stdin:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if self._reader:
            self._reader.join(timeout=5)

    def restart(self, *, graceful: bool = True) -> None:
        """Stop (if running) and start again on the same port and data directory."""
        self.stop(graceful=graceful)
        self.start()

    def __enter__(self) -> Neo4jServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------

    def _launch(self, java: str, jar: Path) -> None:
        self._output.clear()
        self._ready.clear()
        cmd = [
            java, *self.java_opts, "-jar", str(jar),
            str(self._port), str(self.data_dir), self._password, "--exit-on-stdin-eof",
        ]
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,  # held open: closing it (or our death) stops the JVM
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # own process group, so stop() can signal all of it
        )
        self._reader = threading.Thread(
            target=self._pump, args=(self._proc,), name=f"neo4j-{self._port}-output", daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + self.start_timeout
        try:
            self._wait_ready(deadline)
            self._wait_bolt(deadline)
        except BaseException:
            self.stop(graceful=False)
            raise

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._output.append(line.rstrip("\n"))
            if line.startswith(_READY_PREFIX):
                self._ready.set()

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        while not self._ready.wait(0.1):
            if self._proc.poll() is not None:
                if self._reader:
                    self._reader.join(timeout=5)
                raise self._failure(f"the launcher exited with code {self._proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise self._failure(f"no {_READY_PREFIX.strip()} line within {self.start_timeout:.0f} s")

    def _wait_bolt(self, deadline: float) -> None:
        # READY means the socket accepts; this proves a full Bolt handshake plus
        # login with our credentials, which is what tests actually depend on.
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with GraphDatabase.driver(self.uri, auth=self.auth, connection_timeout=5) as driver:
                    driver.verify_connectivity()
                return
            except AuthError as e:
                raise self._failure(f"Bolt rejected the configured credentials: {e}") from e
            except Exception as e:  # noqa: BLE001 - any driver error means "not yet"
                last_error = e
                if not self.running:
                    raise self._failure("the launcher died during the Bolt handshake") from e
                time.sleep(0.25)
        raise self._failure(f"no successful Bolt handshake within {self.start_timeout:.0f} s (last error: {last_error!r})")

    def _failure(self, reason: str) -> Neo4jHarnessError:
        tail = "\n".join(list(self._output)[-40:]) or "(no output)"
        return Neo4jHarnessError(
            f"Neo4j test server on {self.uri} failed to start: {reason}.\n"
            f"data dir: {self.data_dir} (Neo4j's own log: {self.debug_log})\n"
            f"--- last launcher output ---\n{tail}"
        )

    @staticmethod
    def _signal_group(proc: subprocess.Popen[str], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)


@pytest.fixture(scope="session")
def neo4j_server(tmp_path_factory: pytest.TempPathFactory):
    """Session-wide running Neo4jServer; see the module docstring for the rules."""
    server = Neo4jServer(tmp_path_factory.mktemp("neo4j"))
    try:
        server.start()
    except Neo4jHarnessError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        server.stop()
