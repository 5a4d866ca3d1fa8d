"""``/docs`` (Swagger UI, served from the gateway itself) and ``/asyncapi.json``.

FastAPI's own docs page loads Swagger UI from a CDN, which a gateway without internet access
cannot reach. The assets come from fastapi-offline instead (a maintained package that bundles
the Swagger UI FastAPI's page uses; swagger-ui-bundle has not been released since 2023, and the
npm swagger-ui-dist files would need Node.js at install time); the page is FastAPI's
`get_swagger_ui_html`, pointed at them.
"""

from __future__ import annotations

from importlib import metadata, resources
from typing import TYPE_CHECKING

import orjson
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, Response

from . import asyncapi

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .assembly import Gateway

ASSETS = "/static-docs"
ASSETS_PACKAGE = "fastapi_offline"
router = APIRouter()


def install(app: FastAPI) -> None:
    """Serve the Swagger UI assets and the docs routes on ``app``."""
    assets = resources.files(ASSETS_PACKAGE).joinpath("static")
    app.mount(ASSETS, StaticFiles(directory=str(assets)), name="static-docs")
    app.include_router(router)


@router.get("/docs", include_in_schema=False)
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over ``/openapi.json``: every catalog method and route, typed and callable."""
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}/openapi.json",
        title="Kafka RPC Gateway",
        swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
    )


@router.get("/asyncapi.json", include_in_schema=False)
async def asyncapi_document(request: Request) -> Response:
    """The AsyncAPI 3.0 document of the topics behind the API."""
    gateway: Gateway = request.app.state.gateway
    settings = gateway.settings
    methods = [] if gateway.catalog is None else [s.method for s in gateway.catalog.served.values()]
    document = asyncapi.document(
        version=_version(),
        request_topic=settings.request_topic,
        reply_topic=settings.reply_topic,
        catalog_topic=settings.catalog_topic,
        methods=methods,
    )
    return Response(orjson.dumps(document), media_type="application/json")


def _version() -> str:
    try:
        return metadata.version("kafka-rpc-gateway")
    except metadata.PackageNotFoundError:
        return "0"
