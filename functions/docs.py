"""API documentation: `/openapi.json` and Swagger UI at `/docs`, with its assets served by the app
(from the swagger-ui-py package) so the page renders offline."""

from __future__ import annotations

import mimetypes
from functools import lru_cache
from pathlib import Path
from typing import Any

import azure.functions as func

from functions.http import EndpointSpec, api, blueprint
from shared.errors import NotFound

bp = blueprint()
TAG = "docs"
_ASSETS = {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "favicon-16x16.png"}

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8"><title>Memory Layer API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
  </script>
</body>
</html>
"""


# The FunctionApp whose functions the document describes; `function_app.py` binds it once built, so
# that this module never imports the app (which imports this module).
_app: Any = None


def bind(app: Any) -> None:
    """Tells the docs endpoints which FunctionApp to describe (called by `function_app.py`)."""
    global _app
    _app = app
    _document_json.cache_clear()


@lru_cache(maxsize=1)
def _document_json() -> str:
    from functions.openapi import build_openapi_document, render

    if _app is None:
        raise RuntimeError("functions.docs.bind(app) was not called")
    return render(build_openapi_document(_app))


def _assets_dir() -> Path:
    import swagger_ui

    return Path(swagger_ui.__file__).resolve().parent / "static"


@api(
    bp,
    "openapi_document",
    "openapi.json",
    "GET",
    EndpointSpec("The OpenAPI 3.1 document of this API", TAG, None, None, enveloped=False, published=False),
    auth_level=func.AuthLevel.ANONYMOUS,
)
def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(_document_json(), mimetype="application/json", charset="utf-8")


@api(
    bp,
    "docs_page",
    "docs",
    "GET",
    EndpointSpec(
        "Interactive API documentation (Swagger UI)",
        TAG,
        None,
        None,
        enveloped=False,
        content_type="text/html",
        published=False,
    ),
    auth_level=func.AuthLevel.ANONYMOUS,
)
def docs_page(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(_PAGE, mimetype="text/html", charset="utf-8")


@api(
    bp,
    "docs_asset",
    "docs/assets/{name}",
    "GET",
    EndpointSpec(
        "Swagger UI assets",
        TAG,
        None,
        None,
        enveloped=False,
        content_type="application/octet-stream",
        published=False,
    ),
    auth_level=func.AuthLevel.ANONYMOUS,
)
def docs_asset(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params.get("name", "")
    if name not in _ASSETS:
        raise NotFound(f"no documentation asset {name!r}")
    body = (_assets_dir() / name).read_bytes()
    mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return func.HttpResponse(body, mimetype=mimetype, headers={"Cache-Control": "public, max-age=86400"})
