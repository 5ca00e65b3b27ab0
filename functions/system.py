"""System endpoints: `/health`, `/metrics`, `/`."""

from __future__ import annotations

import time

import azure.functions as func

from functions.http import EndpointSpec, Reply, api, blueprint
from functions.metrics import metrics
from shared import SERVICE_NAME, VERSION

bp = blueprint()
TAG = "system"


@api(
    bp,
    "health",
    "health",
    "GET",
    EndpointSpec(
        "Service health, with a cheap check of each configured dependency", TAG, None, "HealthResponse", enveloped=False
    ),
    auth_level=func.AuthLevel.ANONYMOUS,
)
def health(req: func.HttpRequest) -> Reply:
    from shared.observability.health import run_checks
    from shared.settings import get_settings

    checks = run_checks(get_settings())
    degraded = any(check.get("status") == "down" for check in checks.values())
    from shared.contract import HealthResponse

    return Reply(
        HealthResponse(
            status="degraded" if degraded else "healthy", timestamp=time.time(), version=VERSION, checks=checks
        )
    )


@api(
    bp,
    "metrics",
    "metrics",
    "GET",
    EndpointSpec(
        "This worker's request counters and latency percentiles", TAG, None, "MetricsResponse", enveloped=False
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
