"""The worker's connection to Neo4j: a lazy driver with small time budgets, the schema, the breaker.

Driver errors become the service's errors here (`_classify`): an outage or refused credentials is
`GraphUnavailable` (503 with Retry-After), a bad URI or database name a `ConfigurationProblem`, and
anything else is a bug that surfaces as it is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from shared.breaker import Admission, CircuitBreaker
from shared.errors import BackendUnavailable, ConfigurationProblem, ServiceError
from shared.graph.cypher import SCHEMA_STATEMENTS
from shared.lazy import Lazy
from shared.observability import meters
from shared.observability.tracing import dependency_span

if TYPE_CHECKING:
    from neo4j import Driver, ManagedTransaction

    from shared.settings import Settings

# The package's name, as when graph memory was one module: log filters and queries keep working.
logger = logging.getLogger("shared.graph")

T = TypeVar("T")


class GraphUnavailable(BackendUnavailable):
    """Neo4j cannot serve the request right now (503 with Retry-After, like every backend outage)."""

    def __init__(self, message: str = "the graph store is unavailable; retry later", *, retry_after: int = 5) -> None:
        super().__init__("graph", message, retry_after=retry_after)


def _classify(error: BaseException) -> ServiceError | None:
    """A driver error as the service error it means, or None for a bug (which must surface)."""
    from neo4j import exceptions as neo

    if isinstance(error, ServiceError):
        return error
    if isinstance(error, neo.AuthError | neo.Forbidden):
        return GraphUnavailable(
            "Neo4j refused our credentials or their permissions (NEO4J_USERNAME, NEO4J_PASSWORD)", retry_after=60
        )
    if isinstance(error, neo.ConfigurationError):
        return ConfigurationProblem(f"NEO4J_URI or the Neo4j driver settings are invalid: {error}")
    if isinstance(error, neo.ClientError) and "DatabaseNotFound" in (error.code or ""):
        return ConfigurationProblem("NEO4J_DATABASE names a database that does not exist")
    outage = (
        neo.ServiceUnavailable,
        neo.SessionExpired,
        neo.ConnectionPoolError,
        neo.TransientError,
        neo.DatabaseError,
        OSError,
        TimeoutError,
    )
    if isinstance(error, outage):
        return GraphUnavailable()
    return None


class Neo4jConnection:
    """One Neo4j database for every request of a worker (thread-safe); `GraphStore` is built on it."""

    def __init__(
        self, settings: Settings, *, connection_timeout: float, max_retry_time: float, query_timeout: float
    ) -> None:
        self.settings = settings
        self.connection_timeout = connection_timeout
        self.max_retry_time = max_retry_time
        self.query_timeout = query_timeout
        self._driver: Lazy[Driver] = Lazy(self._build_driver)
        self._schema_ready = False
        self._lock = threading.Lock()
        # Fail fast during an outage, serve again on the first call after it (see shared/breaker.py).
        self.breaker = CircuitBreaker()
        meters.watch_breaker("graph", self.breaker)

    def driver(self) -> Driver:
        """The worker's driver, built on first use (building does no I/O)."""
        return self._driver.get()

    def _build_driver(self) -> Driver:
        from neo4j import GraphDatabase

        s = self.settings
        if not s.neo4j_uri:
            raise ConfigurationProblem("NEO4J_URI is required when GRAPH_STORE=neo4j")
        try:
            return GraphDatabase.driver(
                s.neo4j_uri,
                auth=(s.neo4j_username, s.neo4j_password or ""),
                # Small budgets so an outage is seen in seconds, not after the driver's 30 s defaults.
                connection_timeout=self.connection_timeout,
                connection_acquisition_timeout=self.connection_timeout + 2,
                max_transaction_retry_time=self.max_retry_time,
                # Azure load balancers drop idle TCP flows after ~4 minutes; recycle before that.
                max_connection_lifetime=200,
                liveness_check_timeout=30,
                user_agent="memory-layer-graph",
                # Schema hints ("property key does not exist" on an empty database) are noise here.
                notifications_min_severity="OFF",
            )
        except Exception as error:
            raise _classify(error) or error from error

    def close(self) -> None:
        """Close the driver (idempotent); the next call builds a new one."""
        driver = self._driver.reset()
        self._schema_ready = False
        if driver is not None:
            driver.close()

    def ensure_schema(self) -> None:
        """Create the constraint and indexes if missing (safe to run from many workers at once)."""
        from neo4j import exceptions as neo

        if self._schema_ready:
            return
        with self._neo4j("schema setup"):
            driver = self.driver()
            for statement in SCHEMA_STATEMENTS:
                try:
                    driver.execute_query(statement, database_=self.settings.neo4j_database)
                except neo.ClientError as error:
                    code = error.code or ""
                    if "EquivalentSchemaRuleAlreadyExists" in code or "IndexAlreadyExists" in code:
                        continue  # another worker created it between our IF NOT EXISTS and the commit
                    if "Security" in code:
                        # Managed Neo4j may deny schema changes to an app user; MERGE still works,
                        # only concurrent first writes of one name could then duplicate a node.
                        logger.warning("no permission to create graph schema (%s); continuing without it", code)
                        continue
                    raise
            self._schema_ready = True

    @contextmanager
    def _neo4j(self, what: str) -> Iterator[None]:
        """Map driver errors to service errors, and pass through the breaker.

        While the breaker is open the call is refused if another one is already trying; otherwise
        it is the trial, and a connectivity probe runs first: a refused connection costs
        milliseconds, where the real work would spend the driver's whole retry budget.
        """
        admission = self.breaker.admit()
        if admission is Admission.REFUSED:
            raise GraphUnavailable("the graph store is unavailable; retry later")
        reached: bool | None = None
        attributes = {"db.system": "neo4j", "db.operation": what, "db.name": self.settings.neo4j_database}
        try:
            with dependency_span(f"neo4j {what}", attributes) as span:
                span.set_attribute("memory_layer.breaker", admission.value)
                if admission is Admission.TRIAL:
                    self.driver().verify_connectivity()
                yield
            reached = True
        except Exception as error:
            mapped = _classify(error)
            if mapped is None:
                raise
            if isinstance(mapped, GraphUnavailable):
                reached = False
                logger.warning("graph %s failed: %s: %s", what, type(error).__name__, error)
            if mapped is error:
                raise
            raise mapped from error
        finally:
            self.breaker.record(admission, reached=reached)

    def _run(self, access: Literal["read", "write"], work: Callable[[ManagedTransaction], T], what: str) -> T:
        """Run `work` as one managed transaction (retried by the driver on transient errors)."""
        from neo4j import unit_of_work

        self.ensure_schema()
        timed = unit_of_work(timeout=self.query_timeout)(work)
        with (
            self._neo4j(what),
            self.driver().session(database=self.settings.neo4j_database) as session,
        ):
            if access == "read":
                return session.execute_read(timed)
            return session.execute_write(timed)

    def health(self) -> dict[str, Any]:
        """A real round trip to Neo4j (whatever the breaker says, and it tells the breaker); never raises."""
        started = time.perf_counter()
        try:
            self.driver().verify_connectivity()
            self.breaker.succeeded()
            status: dict[str, Any] = {"kind": "neo4j", "status": "ok", "schema_ready": self._schema_ready}
        except Exception as error:
            if isinstance(_classify(error), GraphUnavailable):
                self.breaker.failed()
            status = {"kind": "neo4j", "status": "down", "error": f"{type(error).__name__}: {error}"[:300]}
        status["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return status
