"""System endpoints: `/health`, `/metrics`, `/`."""

from __future__ import annotations

import time

import azure.functions as func

from functions.http import EndpointSpec, Reply, endpoint
from functions.metrics import metrics
from shared import SERVICE_NAME, VERSION

bp = func.Blueprint()
TAG = "system"


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(
    EndpointSpec(
        "Service health, with a cheap check of each configured dependency", TAG, None, "HealthResponse", enveloped=False
    )
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


@bp.function_name("metrics")
@bp.route(route="metrics", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@endpoint(
    EndpointSpec(
        "This worker's request counters and latency percentiles", TAG, None, "MetricsResponse", enveloped=False
    )
)
def metrics_endpoint(req: func.HttpRequest) -> Reply:
    from shared.contract import MetricsResponse

    return Reply(MetricsResponse(timestamp=time.time(), **metrics.snapshot()))


# The host reads an empty route as "use the function name", so the site root is served by an
# optional parameter that can only be empty (Azure/Azure-Functions#2473).
ROOT_ROUTE = "{root:maxlength(0)?}"


@bp.function_name("service_info")
@bp.route(route=ROOT_ROUTE, methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(EndpointSpec("Service information and links", TAG, None, "ServiceInfo", enveloped=False))
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
