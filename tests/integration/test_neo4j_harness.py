"""The Neo4j test harness itself: auth, parameterised Cypher, and stop/restart.

The restart test is the template for "Neo4j went away mid-run" tests: one driver
lives across the outage, fails while the server is down, and recovers without
being rebuilt once the server is back on the same URI.
"""

import uuid

import pytest
from neo4j import GraphDatabase
from neo4j.exceptions import AuthError, ServiceUnavailable, SessionExpired


def _driver(server):
    return GraphDatabase.driver(server.uri, auth=server.auth, connection_timeout=5)


def _count(driver, marker):
    records, _, _ = driver.execute_query("MATCH (p:HarnessProbe {marker: $marker}) RETURN count(p) AS n", marker=marker)
    return records[0]["n"]


def test_parameterised_write_and_read(neo4j_server):
    marker = uuid.uuid4().hex
    with _driver(neo4j_server) as driver:
        summary = driver.execute_query(
            "UNWIND $items AS item CREATE (:HarnessProbe {marker: $marker, name: item.name, n: item.n})",
            items=[{"name": "a", "n": 1}, {"name": "b", "n": 2}],
            marker=marker,
        ).summary
        assert summary.counters.nodes_created == 2

        records, _, _ = driver.execute_query(
            "MATCH (p:HarnessProbe {marker: $marker}) RETURN p.name AS name, p.n AS n ORDER BY name",
            marker=marker,
        )
        assert [(r["name"], r["n"]) for r in records] == [("a", 1), ("b", 2)]


def test_auth_is_enforced(neo4j_server):
    wrong = (neo4j_server.user, "not-the-password")
    with GraphDatabase.driver(neo4j_server.uri, auth=wrong) as driver, pytest.raises(AuthError):
        driver.verify_connectivity()


@pytest.mark.slow  # two more Neo4j starts, ~10-15 s each on a 2-core runner
def test_restart_keeps_data_and_driver_recovers(neo4j_server):
    marker = uuid.uuid4().hex
    uri_before = neo4j_server.uri
    with _driver(neo4j_server) as driver:
        driver.execute_query("CREATE (:HarnessProbe {marker: $marker})", marker=marker)

        neo4j_server.restart()
        assert neo4j_server.uri == uri_before
        assert _count(driver, marker) == 1

        # Committed after the last checkpoint, then SIGKILL rather than a clean stop:
        # only transaction-log recovery on the next start can bring this node back,
        # which is what a crashed Neo4j looks like to the service.
        driver.execute_query("CREATE (:HarnessProbe {marker: $marker})", marker=marker)
        with neo4j_server.outage(graceful=False):
            assert not neo4j_server.running
            with pytest.raises((ServiceUnavailable, SessionExpired)), driver.session() as session:
                session.run("RETURN 1").consume()

        assert neo4j_server.uri == uri_before
        # A plain auto-commit run (no driver-side retry) proves the pool recovered.
        with driver.session() as session:
            assert session.run("RETURN 1 AS one").single()["one"] == 1
        assert _count(driver, marker) == 2
