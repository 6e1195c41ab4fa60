"""The FastAPI application: mint behind the session cookie, redeem for services, probes.

``create_app(settings)`` wires everything from a :class:`Settings`; it never reads
the environment. Handlers check in a fixed order, cheapest and least trusting
first, and nothing is stored unless every check passed:

1. Origin: exactly one, canonical, on the allowlist; ``Sec-Fetch-Site: cross-site`` refused;
2. body: size, media type, schema;
3. per-IP rate limit;
4. session cookie → subject;
5. per-subject rate limit and outstanding-ticket cap;
6. ``SET`` of the ticket record; the ticket is returned only if it was stored.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import fakeredis
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..batching import CommandBatcher
from ..connection import RedisOptions, async_client
from ..exceptions import InvalidOrigin, StoreUnavailable, TicketRejected
from ..issuer import TicketIssuer, validate_extra
from ..sessions import SessionInvalid, SessionVerifier
from ..store import TicketStore
from ..tickets import Subject, log_id
from ..verifier import TicketVerifier
from .clientip import TrustedProxies
from .metrics import Metrics
from .problems import PROBLEMS, problem_response
from .ratelimit import MintLimits
from .schemas import ClaimsBody, MintRequest, MintResponse, ProblemBody, RedeemRequest
from .settings import Settings

__all__ = ["create_app"]

logger = logging.getLogger("ticketd.service")

MAX_BODY_BYTES = 8 * 1024
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_JSON_MEDIA = re.compile(r"application/json\s*(;\s*charset=\"?utf-8\"?\s*)?", re.IGNORECASE)


def _problem_docs(*codes: str) -> dict[int | str, dict[str, Any]]:
    docs: dict[int | str, dict[str, Any]] = {}
    for code in codes:
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


class Service:
    """Everything a running instance holds; handlers are its methods."""

    def __init__(self, settings: Settings, redis_client: Any = None) -> None:
        self.settings = settings
        if redis_client is None:
            redis_client = (
                fakeredis.FakeAsyncRedis()
                if settings.embedded
                else async_client(redis_options(settings))
            )
        self.store = TicketStore(
            redis_client,
            deadline=settings.store_deadline,
            wait_replicas=settings.redeem_wait_replicas,
        )
        self.issuer = TicketIssuer(
            self.store, key_prefix=settings.key_prefix, ttl=settings.ticket_ttl
        )
        self.verifier = TicketVerifier(self.store, key_prefix=settings.key_prefix)
        self.allowlist = settings.allowlist()
        self.sessions = SessionVerifier(
            settings.session_format,
            secret=settings.session_secret.get_secret_value() if settings.session_secret else "",
            fallbacks=[s.get_secret_value() for s in settings.session_secret_fallbacks],
            max_age=settings.session_max_age,
            subject_key=settings.session_subject_key,
        )
        self.service_keys = [k.get_secret_value().encode() for k in settings.service_keys]
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self.limits = MintLimits(
            settings,
            self.store.batcher or CommandBatcher(redis_client, deadline=settings.store_deadline),
        )
        self.metrics = Metrics()
        self.draining = False

    # -- helpers -----------------------------------------------------------------

    def _request_id(self, request: Request) -> str:
        given = request.headers.get("x-request-id", "")
        return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]

    def _refuse(
        self,
        code: str,
        request_id: str,
        *,
        where: str,
        headers: dict[str, str] | None = None,
        detail: str = "",
    ) -> JSONResponse:
        status = PROBLEMS[code].status
        logger.info(
            "%s refused code=%s status=%d request_id=%s%s",
            where,
            code,
            status,
            request_id,
            f" {detail}" if detail else "",
            extra={"code": code, "status": status, "request_id": request_id},
        )
        if where == "mint":
            self.metrics.mints.labels(code).inc()
        return problem_response(code, request_id=request_id, headers=headers)

    async def _read_body(self, request: Request) -> bytes | None:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            return None
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return None
        return bytes(body)

    def client_ip(self, request: Request) -> str | None:
        peer = request.client.host if request.client else None
        return self.proxies.client_ip(peer, request.headers.getlist("x-forwarded-for"))

    # -- POST /v1/tickets --------------------------------------------------------

    async def mint(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            return await self._mint(request)
        finally:
            self.metrics.mint_latency.observe(time.perf_counter() - started)

    async def _mint(self, request: Request) -> Response:
        rid = self._request_id(request)
        origins = request.headers.getlist("origin")
        try:
            if len(origins) != 1:
                raise InvalidOrigin("exactly one Origin header is required")
            origin = self.allowlist.check(origins[0])
        except InvalidOrigin as exc:
            return self._refuse("origin_not_allowed", rid, where="mint", detail=f"why={exc}")
        if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
            return self._refuse("cross_site", rid, where="mint")
        cors = {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin, Cookie",
        }

        body = await self._read_body(request)
        if body is None:
            return self._refuse("body_too_large", rid, where="mint", headers=cors)
        audience = self.settings.audiences[0]
        extra: dict[str, Any] = {}
        if body.strip():
            if not _JSON_MEDIA.fullmatch(request.headers.get("content-type", "").strip()):
                return self._refuse("unsupported_media_type", rid, where="mint", headers=cors)
            try:
                parsed = MintRequest.model_validate_json(body)
                extra = validate_extra(parsed.claims)
            except (ValidationError, ValueError):
                return self._refuse("invalid_body", rid, where="mint", headers=cors)
            if parsed.audience is not None:
                audience = parsed.audience
        if audience not in self.settings.audiences:
            return self._refuse("unknown_audience", rid, where="mint", headers=cors)

        ip = self.client_ip(request)
        # The cookie check is local (no I/O). With a subject, the limit counters and the
        # ticket's SET travel in one round trip; if a limit refuses, the record is
        # deleted again and the refused attempt taken back from the subject's counters.
        # A bad cookie still counts against the IP.
        subject: Subject | None
        try:
            subject = self.sessions.subject(
                request.headers.getlist("cookie"), cookie_name=self.settings.session_cookie
            )
            why = ""
        except SessionInvalid as exc:
            subject, why = None, exc.reason
        try:
            if subject is None:
                limited = await self.limits.check(ip, None)
                if limited is None:
                    return self._refuse(
                        "unauthenticated", rid, where="mint", headers=cors, detail=f"why={why}"
                    )
            else:
                plan = self.limits.plan(ip, subject)
                prepared = self.issuer.prepare(
                    subject,
                    origin=origin,
                    audience=audience,
                    extra=extra,
                    client_ip=ip if self.settings.bind_client_ip else None,
                )
                replies = await self.store.put(
                    prepared.key, prepared.record, prepared.ttl_ms, along=plan.commands
                )
                limited = plan.verdict(replies)
                if limited is not None:
                    await self.store.discard(prepared.key, along=plan.take_back)
        except StoreUnavailable as exc:
            self.metrics.store_errors.labels("mint").inc()
            return self._refuse(
                "store_unavailable",
                rid,
                where="mint",
                detail=f"why={exc}",
                headers={**cors, "Retry-After": "1"},
            )
        if limited is not None:
            self.metrics.rate_limited.labels(limited.limit).inc()
            code = "too_many_outstanding" if limited.limit == "outstanding" else "rate_limited"
            return self._refuse(
                code,
                rid,
                where="mint",
                detail=f"limit={limited.limit}",
                headers={**cors, "Retry-After": str(limited.retry_after)},
            )
        issued = prepared.issued
        self.metrics.mints.labels("ok").inc()
        ticket_hash = log_id(issued.ticket)
        logger.info(
            "ticket minted audience=%s ticket=%s request_id=%s",
            audience,
            ticket_hash,
            rid,
            extra={"code": "ok", "request_id": rid, "ticket_hash": ticket_hash},
        )
        return JSONResponse(
            {
                "ticket": issued.ticket,
                "expires_in": round(issued.expires_in),
                "expires_at": issued.expires_at,
                "audience": audience,
            },
            status_code=201,
            headers={
                **cors,
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
                "Pragma": "no-cache",
            },
        )

    async def preflight(self, request: Request) -> Response:
        rid = self._request_id(request)
        origins = request.headers.getlist("origin")
        try:
            if len(origins) != 1:
                raise InvalidOrigin("exactly one Origin header is required")
            origin = self.allowlist.check(origins[0])
        except InvalidOrigin:
            return self._refuse("origin_not_allowed", rid, where="preflight")
        method = request.headers.get("access-control-request-method", "")
        if method.upper() != "POST":
            return self._refuse(
                "method_not_allowed", rid, where="preflight", headers={"Allow": "POST, OPTIONS"}
            )
        requested = {
            h.strip().lower()
            for h in request.headers.get("access-control-request-headers", "").split(",")
            if h.strip()
        }
        headers = {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            "Cache-Control": "no-store",
        }
        allowed = requested & {"content-type", "x-request-id"}
        if allowed:
            headers["Access-Control-Allow-Headers"] = ", ".join(sorted(allowed))
        return Response(status_code=204, headers=headers)

    # -- POST /v1/tickets/redeem -------------------------------------------------

    def _service_key_ok(self, request: Request) -> bool:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        candidate = presented.strip().encode()
        # Compare against every key, in constant time each, without an early exit.
        matches = [hmac.compare_digest(candidate, key) for key in self.service_keys]
        return any(matches)

    async def redeem(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            return await self._redeem(request)
        finally:
            self.metrics.redeem_latency.observe(time.perf_counter() - started)

    async def _redeem(self, request: Request) -> Response:
        rid = self._request_id(request)
        if not self.service_keys:
            return self._refuse("redeem_disabled", rid, where="redeem")
        if not self._service_key_ok(request):
            return self._refuse(
                "invalid_service_key",
                rid,
                where="redeem",
                headers={"WWW-Authenticate": 'Bearer realm="ticketd"'},
            )
        body = await self._read_body(request)
        if body is None:
            return self._refuse("body_too_large", rid, where="redeem")
        if not _JSON_MEDIA.fullmatch(request.headers.get("content-type", "").strip()):
            return self._refuse("unsupported_media_type", rid, where="redeem")
        try:
            parsed = RedeemRequest.model_validate_json(body)
        except ValidationError:
            return self._refuse("invalid_body", rid, where="redeem")
        try:
            claims = await self.verifier.redeem(
                parsed.ticket,
                origin=parsed.origin,
                audience=parsed.audience,
                client_ip=parsed.client_ip,
            )
        except TicketRejected as exc:
            self.metrics.redemptions.labels(exc.reason.value, "http").inc()
            return self._refuse(
                exc.reason.value, rid, where="redeem", detail=f"ticket={exc.ticket_hash or '-'}"
            )
        except StoreUnavailable as exc:
            self.metrics.store_errors.labels("redeem").inc()
            self.metrics.redemptions.labels("store_unavailable", "http").inc()
            return self._refuse(
                "store_unavailable",
                rid,
                where="redeem",
                detail=f"why={exc}",
                headers={"Retry-After": "1"},
            )
        self.metrics.redemptions.labels("ok", "http").inc()
        return JSONResponse(claims.as_dict(), headers={"Cache-Control": "no-store"})

    # -- probes and metrics ------------------------------------------------------

    async def livez(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})

    async def readyz(self, request: Request) -> Response:
        if self.draining:
            self.metrics.ready.set(0)
            return problem_response("not_ready")
        try:
            await self.store.ping()
        except StoreUnavailable:
            self.metrics.ready.set(0)
            return problem_response("not_ready", headers={"Retry-After": "1"})
        self.metrics.ready.set(1)
        return JSONResponse(
            {"status": "ready", "store": "embedded" if self.settings.embedded else "redis"},
            headers={"Cache-Control": "no-store"},
        )

    async def metrics_endpoint(self, request: Request) -> Response:
        data = generate_latest(self.metrics.exposition_registry())
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    async def client_js(self, request: Request) -> Response:
        try:
            source = resources.files("ticketd").joinpath("static/ticketd-client.js").read_bytes()
        except FileNotFoundError:
            return problem_response("not_found")
        headers = {
            "Cache-Control": "public, max-age=300",
            "X-Content-Type-Options": "nosniff",
            "Vary": "Origin",
        }
        # Module scripts are fetched with CORS: pages on allowed origins may import it.
        origins = request.headers.getlist("origin")
        if len(origins) == 1:
            with contextlib.suppress(InvalidOrigin):
                headers["Access-Control-Allow-Origin"] = self.allowlist.check(origins[0])
        return Response(source, media_type="text/javascript; charset=utf-8", headers=headers)

    async def aclose(self) -> None:
        await self.store.aclose()


def redis_options(settings: Settings) -> RedisOptions:
    """The store's Redis options from the service settings."""
    sentinels = tuple(
        (host, int(port)) for host, _, port in (s.rpartition(":") for s in settings.redis_sentinels)
    )
    return RedisOptions(
        url=settings.redis_url or "redis://127.0.0.1:6379/0",
        cluster=settings.redis_cluster,
        sentinels=sentinels,
        sentinel_service=settings.redis_sentinel_service,
        connect_timeout=settings.redis_timeout,
        socket_timeout=settings.redis_timeout,
        ssl_ca_file=settings.redis_ca_file,
        ssl_cert_file=settings.redis_cert_file,
        ssl_key_file=settings.redis_key_file,
    )


def create_app(settings: Settings, *, redis_client: Any = None) -> FastAPI:
    """Build the service. ``redis_client`` overrides the client made from settings (tests)."""
    service = Service(settings, redis_client)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.embedded:
            for line in (
                "TICKETD_REDIS_URL is not set: running on the EMBEDDED in-process store.",
                "Tickets live in this process only: one process, nothing persisted, "
                "no replicas. Do not use this in production.",
            ):
                logger.warning(line)
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
    )
    app.state.service = service

    mint_body = {
        "content": {"application/json": {"schema": MintRequest.model_json_schema()}},
        "required": False,
    }
    app.add_api_route(
        "/v1/tickets",
        service.mint,
        methods=["POST"],
        status_code=201,
        response_model=MintResponse,
        summary="Mint a ticket for the logged-in user",
        openapi_extra={"requestBody": mint_body},
        responses=_problem_docs(
            "invalid_body",
            "unknown_audience",
            "unauthenticated",
            "origin_not_allowed",
            "cross_site",
            "method_not_allowed",
            "body_too_large",
            "unsupported_media_type",
            "rate_limited",
            "too_many_outstanding",
            "store_unavailable",
        ),
    )
    app.add_api_route(
        "/v1/tickets", service.preflight, methods=["OPTIONS"], include_in_schema=False
    )
    redeem_body = {
        "content": {"application/json": {"schema": RedeemRequest.model_json_schema()}},
        "required": True,
    }
    app.add_api_route(
        "/v1/tickets/redeem",
        service.redeem,
        methods=["POST"],
        response_model=ClaimsBody,
        summary="Redeem a ticket (trusted services, bearer service key)",
        openapi_extra={"requestBody": redeem_body, "security": [{"serviceKey": []}]},
        responses=_problem_docs(
            "invalid_service_key",
            "missing",
            "malformed",
            "invalid",
            "invalid_body",
            "duplicate",
            "origin_mismatch",
            "audience_mismatch",
            "ip_mismatch",
            "redeem_disabled",
            "method_not_allowed",
            "body_too_large",
            "unsupported_media_type",
            "store_unavailable",
        ),
    )
    app.add_api_route("/livez", service.livez, methods=["GET"], summary="Process is alive")
    app.add_api_route(
        "/readyz",
        service.readyz,
        methods=["GET"],
        summary="Store is reachable",
        responses=_problem_docs("not_ready"),
    )
    app.add_api_route(
        "/metrics",
        service.metrics_endpoint,
        methods=["GET"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {
                "content": {"text/plain": {"schema": {"type": "string"}}},
                "description": "Prometheus text exposition format",
            }
        },
    )
    app.add_api_route(
        "/v1/client.js",
        service.client_js,
        methods=["GET"],
        summary="Browser client (ES module)",
        response_class=Response,
        responses={
            200: {
                "content": {"text/javascript": {"schema": {"type": "string"}}},
                "description": "The ES module",
            }
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
        logger.error("unhandled error path=%s error=%s", request.url.path, type(exc).__name__)
        return problem_response("internal_error")

    return app
