"""``GET /livez``, ``GET /readyz``, ``GET /metrics`` and ``GET /v1/client.js``."""

from __future__ import annotations

import contextlib
import functools
from importlib import resources

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..exceptions import InvalidOrigin, StoreUnavailable
from .problems import problem_response
from .runtime import Service

__all__ = ["READYZ_PROBLEM_CODES", "client_js", "livez", "metrics", "readyz"]

READYZ_PROBLEM_CODES = ("not_ready",)
"""Every problem ``GET /readyz`` answers with (the spec, the README and its test read this)."""


async def livez(service: Service, request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def readyz(service: Service, request: Request) -> Response:
    if service.draining:
        service.metrics.ready.set(0)
        return problem_response("not_ready")
    try:
        await service.store.ping()
    except StoreUnavailable:
        service.metrics.ready.set(0)
        return problem_response("not_ready", headers={"Retry-After": "1"})
    service.metrics.ready.set(1)
    return JSONResponse(
        {"status": "ready", "store": "embedded" if service.settings.embedded else "redis"},
        headers={"Cache-Control": "no-store"},
    )


async def metrics(service: Service, request: Request) -> Response:
    data = generate_latest(service.metrics.exposition_registry())
    return Response(data, media_type=CONTENT_TYPE_LATEST)


async def client_js(service: Service, request: Request) -> Response:
    source = _client_source()
    if source is None:
        return problem_response("not_found")
    headers = {
        "Cache-Control": "public, max-age=300",
        "X-Content-Type-Options": "nosniff",
        "Vary": "Origin",
    }
    # Module scripts are fetched with CORS: pages on allowed origins may import it.
    with contextlib.suppress(InvalidOrigin):
        headers["Access-Control-Allow-Origin"] = service.origins.check(request)
    return Response(source, media_type="text/javascript; charset=utf-8", headers=headers)


@functools.cache
def _client_source() -> bytes | None:
    """The browser client module, read from the package once."""
    try:
        return resources.files("ticketd").joinpath("static/ticketd-client.js").read_bytes()
    except FileNotFoundError:
        return None
