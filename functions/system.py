"""System endpoints: `/health`, `/metrics`, `/`."""

from __future__ import annotations

import threading
import time

import azure.functions as func

from functions.http import EndpointSpec, Reply, api, blueprint
from functions.metrics import metrics
from shared import SERVICE_NAME, VERSION

bp = blueprint()
TAG = "system"


# The anonymous /health answers from the last checks of this worker, run again at most this often, so
# that no anonymous call can make the service connect to its backends more than once per period.
HEALTH_CACHE_SECONDS = 30.0
_last_checks: tuple[float, dict[str, dict[str, object]]] | None = None
_checks_lock = threading.Lock()


def _checks(fresh: bool) -> dict[str, dict[str, object]]:
    global _last_checks
    from shared.health import run_checks
    from shared.settings import get_settings

    with _checks_lock:
        now = time.monotonic()
        if fresh or _last_checks is None or now - _last_checks[0] >= HEALTH_CACHE_SECONDS:
            _last_checks = (now, run_checks(get_settings()))
        return _last_checks[1]


def _health(checks: dict[str, dict[str, object]], detail: bool) -> Reply:
    from shared.contract import HealthResponse
    from shared.health import recent_failures

    checks = {**checks, **recent_failures()}  # what real calls saw since counts as much as a check

    degraded = any(check.get("status") == "down" for check in checks.values())
    return Reply(
        HealthResponse(
            status="degraded" if degraded else "healthy",
            timestamp=time.time(),
            version=VERSION,
            checks=checks if detail else None,
        )
    )


@api(
    bp,
    "health",
    "health",
    "GET",
    EndpointSpec(
        f"Service health: `healthy` or `degraded`, from checks run at most every {HEALTH_CACHE_SECONDS:.0f} s "
        "and the dependencies that failed a real call in that time",
        TAG,
        None,
        "HealthResponse",
        enveloped=False,
    ),
    auth_level=func.AuthLevel.ANONYMOUS,
)
def health(req: func.HttpRequest) -> Reply:
    return _health(_checks(fresh=False), detail=False)


@api(
    bp,
    "health_detail",
    "health/detail",
    "GET",
    EndpointSpec(
        "Service health with a fresh check of each configured dependency (needs the function key)",
        TAG,
        None,
        "HealthResponse",
        enveloped=False,
        published=False,
    ),
)
def health_detail(req: func.HttpRequest) -> Reply:
    return _health(_checks(fresh=True), detail=True)


@api(
    bp,
    "metrics",
    "metrics",
    "GET",
    EndpointSpec(
        "This worker's request counters and latency percentiles",
        TAG,
        None,
        "MetricsResponse",
        enveloped=False,
        published=False,
    ),
)
def metrics_endpoint(req: func.HttpRequest) -> Reply:
    from shared.contract import MetricsResponse

    return Reply(MetricsResponse(timestamp=time.time(), **metrics.snapshot()))


# The host reads an empty route as "use the function name", so the site root is served by an
# optional parameter that can only be empty (Azure/Azure-Functions#2473).
ROOT_ROUTE = "{root:maxlength(0)?}"


@api(
    bp,
    "service_info",
    ROOT_ROUTE,
    "GET",
    EndpointSpec("Service information and links", TAG, None, "ServiceInfo", enveloped=False),
    auth_level=func.AuthLevel.ANONYMOUS,
)
def service_info(req: func.HttpRequest) -> Reply:
    from shared.contract import ServiceInfo

    return Reply(
        ServiceInfo(
            name=SERVICE_NAME,
            version=VERSION,
            description="Long-term memory for AI chat assistants: memory CRUD, semantic search, chat with memory.",
            docs="/docs",
            openapi="/openapi.json",
            health="/health",
        )
    )
