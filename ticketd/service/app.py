"""The FastAPI application: mint behind the session cookie, redeem for services, probes.

``create_app(settings)`` wires everything from a :class:`Settings`; it never reads
the environment. The routes, the OpenAPI document and the error handlers are here;
the handlers themselves are in :mod:`.mint`, :mod:`.redeem` and :mod:`.probes`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from . import probes
from .edge import RequestGuard
from .mint import PROBLEM_CODES as MINT_PROBLEMS
from .mint import mint as mint_ticket
from .mint import preflight as mint_preflight
from .probes import READYZ_PROBLEM_CODES
from .problems import PROBLEMS, problem_response
from .rawroutes import RawEndpoint, RawRoutes
from .redeem import PROBLEM_CODES as REDEEM_PROBLEMS
from .redeem import redeem as redeem_ticket
from .revocations import PROBLEM_CODES as REVOCATION_PROBLEMS
from .revocations import revoke as revoke_sessions
from .runtime import Service, redis_options
from .schemas import (
    ClaimsBody,
    MintRequest,
    MintResponse,
    ProblemBody,
    RedeemRequest,
    RevocationRequest,
    RevocationResponse,
)
from .settings import Settings

__all__ = ["create_app", "redis_options"]

_logger = logging.getLogger("ticketd.service")


_EVERY_REQUEST = ("duplicate_host", "host_not_allowed")
"""Problems any route can answer (edge.RequestGuard, before routing)."""


def _problem_docs(*codes: str) -> dict[int | str, dict[str, Any]]:
    docs: dict[int | str, dict[str, Any]] = {}
    for code in (*codes, *_EVERY_REQUEST):
        problem = PROBLEMS[code]
        entry = docs.setdefault(
            problem.status,
            {
                "description": "",
                "content": {
                    "application/problem+json": {
                        "schema": {"$ref": "#/components/schemas/ProblemBody"}
                    }
                },
            },
        )
        entry["description"] = (entry["description"] + f" `{code}`").strip()
    return docs


def _without_opentelemetry() -> dict[str, Any]:
    """FastAPI's built-in OpenTelemetry off, where FastAPI has it (0.16x).

    ticketd reports through Prometheus (``/metrics``); FastAPI's telemetry asks the
    OpenTelemetry globals on every request whether a provider is configured, which
    cost ~5 % of a mint in-process (``bench/NOTES.md``)."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def create_app(settings: Settings, *, redis_client: Any = None) -> FastAPI:
    """Build the service. ``redis_client`` overrides the client made from settings (tests)."""
    service = Service(settings, redis_client)

    async def mint(request: Request) -> Response:
        return await mint_ticket(service, request)

    async def preflight(request: Request) -> Response:
        return await mint_preflight(service, request)

    async def redeem(request: Request) -> Response:
        return await redeem_ticket(service, request)

    async def revoke(request: Request) -> Response:
        return await revoke_sessions(service, request)

    async def livez(request: Request) -> Response:
        return await probes.livez(service, request)

    async def readyz(request: Request) -> Response:
        return await probes.readyz(service, request)

    async def metrics_endpoint(request: Request) -> Response:
        return await probes.metrics(service, request)

    async def client_js(request: Request) -> Response:
        return await probes.client_js(service, request)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.embedded:
            for line in (
                "TICKETD_REDIS_URL is not set: running on the EMBEDDED in-process store.",
                "Tickets live in this process only: one process, nothing persisted, "
                "no replicas. Do not use this in production.",
            ):
                _logger.warning(line)
        yield
        service.draining = True
        await service.aclose()

    app = FastAPI(
        title="ticketd",
        version=__version__,
        summary="Short-lived, single-use, Origin-bound WebSocket connection tickets.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # A redirect would build its Location from the Host header; and the raw path
        # must be canonical anyway (RequestGuard), so there is nothing to redirect.
        redirect_slashes=False,
        **_without_opentelemetry(),
    )
    app.state.service = service
    # Inside RequestGuard (added last, so outermost of the two): the hot routes as
    # plain ASGI apps, the same handlers as their documented FastAPI routes below.
    raw_routes = {
        ("POST", "/v1/tickets"): RawEndpoint(mint_ticket, service),
        ("POST", "/v1/tickets/redeem"): RawEndpoint(redeem_ticket, service),
    }
    app.add_middleware(RawRoutes, routes=raw_routes)
    app.add_middleware(RequestGuard, service=service)

    mint_body = {
        "content": {"application/json": {"schema": MintRequest.model_json_schema()}},
        "required": False,
    }
    app.add_api_route(
        "/v1/tickets",
        mint,
        methods=["POST"],
        status_code=201,
        response_model=MintResponse,
        summary="Mint a ticket for the logged-in user",
        openapi_extra={"requestBody": mint_body},
        responses=_problem_docs(*MINT_PROBLEMS),
    )
    app.add_api_route("/v1/tickets", preflight, methods=["OPTIONS"], include_in_schema=False)
    redeem_body = {
        "content": {"application/json": {"schema": RedeemRequest.model_json_schema()}},
        "required": True,
    }
    app.add_api_route(
        "/v1/tickets/redeem",
        redeem,
        methods=["POST"],
        response_model=ClaimsBody,
        summary="Redeem a ticket (trusted services, bearer service key)",
        openapi_extra={"requestBody": redeem_body, "security": [{"serviceKey": []}]},
        responses=_problem_docs(*REDEEM_PROBLEMS),
    )
    revocation_body = {
        "content": {"application/json": {"schema": RevocationRequest.model_json_schema()}},
        "required": True,
    }
    app.add_api_route(
        "/v1/revocations",
        revoke,
        methods=["POST"],
        status_code=202,
        response_model=RevocationResponse,
        summary="Revoke a subject, session or connection (bearer service key)",
        openapi_extra={"requestBody": revocation_body, "security": [{"serviceKey": []}]},
        responses=_problem_docs(*REVOCATION_PROBLEMS),
    )
    app.add_api_route(
        "/livez",
        livez,
        methods=["GET"],
        summary="Process is alive",
        responses=_problem_docs(),
    )
    app.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        summary="Store is reachable",
        responses=_problem_docs(*READYZ_PROBLEM_CODES),
    )
    app.add_api_route(
        "/metrics",
        metrics_endpoint,
        methods=["GET"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {
                "content": {"text/plain": {"schema": {"type": "string"}}},
                "description": "Prometheus text exposition format",
            },
            **_problem_docs(),
        },
    )
    app.add_api_route(
        "/v1/client.js",
        client_js,
        methods=["GET"],
        summary="Browser client (ES module)",
        response_class=Response,
        responses={
            200: {
                "content": {"text/javascript": {"schema": {"type": "string"}}},
                "description": "The ES module",
            },
            **_problem_docs(),
        },
    )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            components = document.setdefault("components", {})
            components.setdefault("schemas", {})["ProblemBody"] = ProblemBody.model_json_schema()
            components.setdefault("securitySchemes", {})["serviceKey"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "One of TICKETD_SERVICE_KEYS.",
            }
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_body")
        headers = dict(exc.headers or {})
        return problem_response(code, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        _logger.error("unhandled error path=%s error=%s", request.url.path, type(exc).__name__)
        return problem_response("internal_error")

    return app
