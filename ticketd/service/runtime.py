"""The state of a running service instance, and the helpers its handlers share.

:class:`Service` is built once by :func:`~ticketd.service.app.create_app` from a
:class:`~ticketd.service.settings.Settings`: the Redis client (or the embedded
in-process store), issuer, verifier, session verifier, limits and metrics. Probe
and static endpoints are its methods; the mint and redeem handlers live in their
own modules.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import uuid
from importlib import resources
from typing import Any

import fakeredis
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from ..batching import CommandBatcher
from ..connection import RedisOptions, async_client
from ..exceptions import InvalidOrigin, StoreUnavailable
from ..issuer import TicketIssuer
from ..sessions import SessionVerifier
from ..store import TicketStore
from ..verifier import TicketVerifier
from .clientip import TrustedProxies
from .metrics import Metrics
from .problems import PROBLEMS, problem_response
from .ratelimit import MintLimits
from .settings import Settings

__all__ = ["MAX_BODY_BYTES", "Service", "is_json", "redis_options"]

_logger = logging.getLogger("ticketd.service")

MAX_BODY_BYTES = 8 * 1024
_DIGITS = re.compile(r"[0-9]{1,12}")  # str.isdigit() also accepts "²", which int() refuses
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_JSON_MEDIA = re.compile(r"application/json\s*(;\s*charset=\"?utf-8\"?\s*)?", re.IGNORECASE)


def _required(secret: SecretStr | None) -> SecretStr:
    # Settings validation guarantees it; never verify cookies with an empty key.
    if secret is None:
        raise ValueError("TICKETD_SESSION_SECRET is required")
    return secret


def is_json(request: Request) -> bool:
    """Whether the request body is declared as JSON (UTF-8)."""
    return _JSON_MEDIA.fullmatch(request.headers.get("content-type", "").strip()) is not None


class Service:
    """Everything a running instance holds: store, issuer, verifier, limits, metrics.

    The HTTP handlers live in :mod:`.mint` and :mod:`.redeem`; probes are methods here.
    """

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
            secret=_required(settings.session_secret).get_secret_value(),
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

    def request_id(self, request: Request) -> str:
        given = request.headers.get("x-request-id", "")
        return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]

    def refuse(
        self,
        code: str,
        request_id: str,
        *,
        where: str,
        headers: dict[str, str] | None = None,
        detail: str = "",
    ) -> JSONResponse:
        status = PROBLEMS[code].status
        _logger.info(
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

    async def read_body(self, request: Request) -> bytes | None:
        declared = request.headers.get("content-length")
        if declared is not None and (
            not _DIGITS.fullmatch(declared) or int(declared) > MAX_BODY_BYTES
        ):
            return None
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return None
        return bytes(body)

    def allowed_origin(self, request: Request) -> str:
        """The request's canonical Origin if it is the only one and on the allowlist.

        Raises :class:`~ticketd.exceptions.InvalidOrigin` otherwise (missing, repeated,
        malformed or not listed).
        """
        origins = request.headers.getlist("origin")
        if len(origins) != 1:
            raise InvalidOrigin("exactly one Origin header is required")
        return self.allowlist.check(origins[0])

    def client_ip(self, request: Request) -> str | None:
        peer = request.client.host if request.client else None
        return self.proxies.client_ip(peer, request.headers.getlist("x-forwarded-for"))

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
            headers["Access-Control-Allow-Origin"] = self.allowed_origin(request)
        return Response(source, media_type="text/javascript; charset=utf-8", headers=headers)

    async def aclose(self) -> None:
        await self.store.aclose()


@functools.cache
def _client_source() -> bytes | None:
    """The browser client module, read from the package once."""
    try:
        return resources.files("ticketd").joinpath("static/ticketd-client.js").read_bytes()
    except FileNotFoundError:
        return None


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
