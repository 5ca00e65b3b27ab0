"""A real Neo4j 5.26 for tests and benchmarks, without Docker: an embedded DBMS with only Bolt.

Tests get it as the `neo4j_server` fixture (tests/fixtures/harness.py, registered for the whole
suite by tests/conftest.py):

    def test_something(neo4j_server):
        driver = neo4j.GraphDatabase.driver(neo4j_server.uri, auth=neo4j_server.auth)

That fixture is session-scoped and shared by every test of the run (one per
xdist worker), so:
  * keep test data apart (unique ids/labels) or delete what you create;
  * take it down only with `with neo4j_server.outage(): ...`, which brings it back
    (same port, same data) even when the block fails; `stop()`/`restart()` exist
    for finer control but then the test must leave it running.
A driver made before an outage reconnects by itself afterwards: the URI does not
change. For a private server: `with Neo4jServer(tmp_path) as server: ...`.

Requirements: Java 17+ (JAVA_HOME or `java` on PATH) and Maven (`mvn`) for the
first build of tools/harness/neo4j_launcher (Maven Central once, ~30 s with an empty
~/.m2); it is rebuilt, offline, only when pom.xml or src/ is newer than the jar.
Missing Java or Maven makes the fixture FAIL, not skip: CI must have them, and a
skip would hide that the graph tests never ran. CI pre-warm, from the repo root:

    python -m tools.harness.neo4j_server build
    # same as: mvn -q -B -f tools/harness/neo4j_launcher/pom.xml package -DskipTests

A start takes ~10-15 s on a 2-core runner (most of it Neo4j's own boot and the
first Cypher compile); a clean stop ~2 s.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from neo4j import GraphDatabase

from tools.harness.ports import LOOPBACK, ServerProcess, free_port

LAUNCHER_DIR = Path(__file__).resolve().parent / "neo4j_launcher"
JAR = LAUNCHER_DIR / "target" / "neo4j-launcher.jar"
BUILD_COMMAND = "mvn -q -B -f tools/harness/neo4j_launcher/pom.xml package -DskipTests"
READY_LINE = "NEO4J_READY "

# Serial GC and C1-only JIT: fewer threads fighting Neo4j's boot on small CI
# runners; test workloads are too short for C2 to pay off.
DEFAULT_JAVA_OPTS = ("-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
DEFAULT_PASSWORD = "memsvc-test-password"  # noqa: S105 - a loopback test server; Neo4j 5 wants 8+ characters


class Neo4jHarnessError(RuntimeError):
    """The test Neo4j could not be built or started; the message says why and how to fix it."""


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise Neo4jHarnessError(
            "Java 17+ is required for the Neo4j test server, but `java` is not on PATH and JAVA_HOME "
            "is unset. Install a JDK 17 (Debian: apt-get install openjdk-17-jdk-headless)."
        )
    return found


def is_built() -> bool:
    # jar:jar runs after copy-dependencies (see pom.xml), so a jar newer than
    # every input means a finished build with a complete target/lib.
    if not JAR.is_file() or not any((JAR.parent / "lib").glob("neo4j-*.jar")):
        return False
    inputs = [LAUNCHER_DIR / "pom.xml", *(p for p in (LAUNCHER_DIR / "src").rglob("*") if p.is_file())]
    return JAR.stat().st_mtime >= max(p.stat().st_mtime for p in inputs)


def ensure_built(timeout: float = 900.0) -> Path:
    """Build the launcher with Maven unless the jar is newer than pom.xml and src/.

    Offline first, so a warm ~/.m2 never touches the network; online only when
    that fails (first build, or a changed Neo4j version).
    """
    if is_built():
        return JAR
    mvn = shutil.which("mvn")
    if not mvn:
        raise Neo4jHarnessError(
            f"Maven is required to build the Neo4j test server ({LAUNCHER_DIR}), but `mvn` is not on "
            "PATH. Install Maven 3.8+ (Debian: apt-get install maven)."
        )
    JAR.parent.mkdir(exist_ok=True)
    # xdist workers may all get here at once: one builds, the others wait and re-check.
    with open(JAR.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_built():
            return JAR
        base = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(LAUNCHER_DIR / "pom.xml")]
        goals = ["package", "-DskipTests"]
        for offline in (True, False):
            try:
                result = subprocess.run(
                    base + (["-o"] if offline else []) + goals, capture_output=True, text=True, timeout=timeout
                )
            except subprocess.TimeoutExpired as exc:
                raise Neo4jHarnessError(f"`{BUILD_COMMAND}` timed out after {timeout:.0f} s") from exc
            if result.returncode == 0:
                return JAR
        # Debian's Maven 3.8 emits colour resets even in batch mode.
        output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr).strip().splitlines()
        raise Neo4jHarnessError(
            f"Maven could not build the Neo4j test server (exit code {result.returncode}). The first build "
            f"needs Maven Central; try `{BUILD_COMMAND}` from the repo root.\n"
            "--- last Maven output ---\n" + "\n".join(output[-60:])
        )


class Neo4jServer:
    """One embedded Neo4j process on 127.0.0.1 with auth enabled, restartable in place."""

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
        self.password = password
        self.start_timeout = start_timeout
        self.java_opts = tuple(java_opts)
        self._port = port
        self._port_fixed = port is not None
        self._process: ServerProcess | None = None
        self._log_offset = 0

    ensure_built = staticmethod(ensure_built)

    @property
    def port(self) -> int:
        if self._port is None:
            raise Neo4jHarnessError("Neo4jServer has no port before start()")
        return self._port

    @property
    def uri(self) -> str:
        return f"bolt://{LOOPBACK}:{self.port}"

    @property
    def auth(self) -> tuple[str, str]:
        return (self.user, self.password)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}-launcher.log"

    @property
    def debug_log(self) -> Path:
        return self.data_dir / "logs" / "debug.log"

    def start(self) -> float:
        """Start (no-op when running) and wait for a real Bolt login; return the seconds taken."""
        if self.running:
            return 0.0
        java = find_java()
        jar = ensure_built()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A port picked by us can be taken by another process before Neo4j binds it;
        # only then may we move. A caller's port, or one a driver has already seen
        # (restart), must stay put.
        attempts = 1 if self._port_fixed else 3
        for attempt in range(attempts):
            if self._port is None:
                self._port = free_port()
            argv = [java, *self.java_opts, "-jar", str(jar), str(self._port), str(self.data_dir), self.password]
            self._process = ServerProcess(
                f"neo4j:{self._port}",
                argv,
                ready=self._ready,
                log_path=self.log_path,
                cwd=LAUNCHER_DIR,
                start_timeout=self.start_timeout,
            )
            # The log is appended to across restarts; only this start's READY counts.
            self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                seconds = self._process.start()
            except RuntimeError as exc:
                self._process = None
                if attempt + 1 < attempts and "Address already in use" in str(exc):
                    self._port = None
                    continue
                raise Neo4jHarnessError(
                    f"Neo4j test server on port {self._port} failed to start: {exc}\n"
                    f"(Neo4j's own log: {self.debug_log})"
                ) from None
            self._port_fixed = True
            return seconds
        raise AssertionError("unreachable")

    def stop(self, *, graceful: bool = True) -> None:
        """SIGTERM for a clean shutdown; graceful=False is SIGKILL, so the next start runs recovery."""
        process, self._process = self._process, None
        if process is None:
            return
        if not graceful and process.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.proc.pid, signal.SIGKILL)
            process.proc.wait(30)
        process.stop(timeout=60)  # a clean Neo4j shutdown flushes the page cache; give it time

    def restart(self, *, graceful: bool = True) -> float:
        """Stop (if running) and start again on the same port and data directory."""
        self.stop(graceful=graceful)
        return self.start()

    @contextlib.contextmanager
    def outage(self, *, graceful: bool = True) -> Iterator[None]:
        """Down inside the block, back up (same port and data) after it, even if the block fails."""
        self.stop(graceful=graceful)
        try:
            yield
        finally:
            self.start()

    def __enter__(self) -> Neo4jServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ready(self) -> bool:
        # The READY line says the socket accepts; the login proves Bolt and our
        # credentials work, which is what tests depend on.
        try:
            with open(self.log_path, errors="replace") as log:
                log.seek(self._log_offset)
                if READY_LINE not in log.read():
                    return False
        except OSError:
            return False
        with GraphDatabase.driver(self.uri, auth=self.auth, connection_timeout=5) as driver:
            driver.verify_connectivity()
        return True


if __name__ == "__main__":
    if sys.argv[1:] != ["build"]:
        sys.exit("usage: python -m tools.harness.neo4j_server build")
    print(ensure_built())
