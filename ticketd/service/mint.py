"""``POST /v1/tickets`` (mint, behind the session cookie) and its CORS preflight.

Checks run in a fixed order, cheapest and least trusting first, and nothing is
handed out unless every check passed:

1. Origin: exactly one, canonical, on the allowlist; ``Sec-Fetch-Site: cross-site`` refused;
2. body: size, media type, schema, audience;
3. session cookie → subject and login (local, no I/O); a session about to expire
   mints nothing (``session_expiring``; the ticket's TTL is capped at the session's
   remaining lifetime, :meth:`~ticketd.TicketIssuer.prepare`);
4. one round trip (:class:`~.mintplan.MintPlan`): the login's revocation state, the
   per-IP counter, the per-subject/outstanding counter and the ticket's ``SET``;
   the replies are read in this order — a login revoked by ``POST /v1/revocations``
   mints nothing (``session_revoked``), then the limits — and a refusal deletes the
   record again;
5. the ticket is returned only if it was stored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from ..exceptions import InvalidOrigin, SessionExpiring, StoreUnavailable
from ..issuer import validate_extra
from ..revocation import SessionRef
from ..sessions import SessionInvalid
from ..tickets import Subject, log_id
from .mintplan import MintPlan, Revoked
from .ratelimit import Limited
from .requests import is_json, read_body, refuse, request_id
from .revocations import session_state_read
from .runtime import Service
from .schemas import MintRequest

__all__ = ["PROBLEM_CODES", "MintedResponse", "mint", "preflight"]

PROBLEM_CODES = (
    "invalid_body",
    "unknown_audience",
    "unauthenticated",
    "session_revoked",
    "session_expiring",
    "origin_not_allowed",
    "cross_site",
    "method_not_allowed",
    "body_too_large",
    "unsupported_media_type",
    "rate_limited",
    "too_many_outstanding",
    "store_unavailable",
)
"""Every problem ``POST /v1/tickets`` answers with (the spec, the README and its test read this)."""

_logger = logging.getLogger("ticketd.service")

_CORS = {
    "Access-Control-Allow-Credentials": "true",
    # Retry-After is not CORS-safelisted: without this the client cannot back off.
    "Access-Control-Expose-Headers": "Retry-After",
    "Vary": "Origin, Cookie",
}
"""The CORS headers of every mint answer, after ``Access-Control-Allow-Origin``."""
_MINTED = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Pragma": "no-cache"}
"""What a minted ticket's answer adds: never cached, never sniffed."""


async def mint(service: Service, request: Request) -> Response:
    """Mint a ticket for the session's subject, bound to the request's Origin."""
    started = time.perf_counter()
    try:
        return await _mint(service, request)
    finally:
        service.metrics.mint_latency.observe(time.perf_counter() - started)


async def _mint(service: Service, request: Request) -> Response:
    rid = request_id(request)
    try:
        origin = service.origins.check(request)
    except InvalidOrigin as exc:
        return refuse(service.metrics, "origin_not_allowed", rid, where="mint", detail=f"why={exc}")
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        return refuse(service.metrics, "cross_site", rid, where="mint")
    cors = {"Access-Control-Allow-Origin": origin, **_CORS}

    body = await read_body(request)
    if body is None:
        return refuse(service.metrics, "body_too_large", rid, where="mint", headers=cors)
    audience = service.settings.audiences[0]
    extra: dict[str, Any] = {}
    if body:
        if not is_json(request):
            return refuse(
                service.metrics, "unsupported_media_type", rid, where="mint", headers=cors
            )
        try:
            parsed = MintRequest.model_validate_json(body)
            extra = validate_extra(parsed.claims)
        except (ValidationError, ValueError):
            return refuse(service.metrics, "invalid_body", rid, where="mint", headers=cors)
        if parsed.audience is not None:
            audience = parsed.audience
    if audience not in service.settings.audiences:
        return refuse(service.metrics, "unknown_audience", rid, where="mint", headers=cors)

    ip = service.addresses.client_ip(request)
    # The cookie check is local (no I/O). With a subject, the limit counters and the
    # ticket's SET travel in one round trip (the plan); if a limit refuses, the plan's
    # undo deletes the record and takes the attempt back from the subject counters.
    # A bad cookie still counts against the IP.
    subject: Subject | None
    session: SessionRef | None = None
    try:
        subject, session = service.cookies.login(request.headers.getlist("cookie"))
        why = ""
    except SessionInvalid as exc:
        subject, why = None, exc.reason
    prepared = revocation = None
    if subject is not None and session is not None:
        try:  # the TTL is capped at the session's remaining lifetime
            prepared = service.issuer.prepare(
                subject,
                origin=origin,
                audience=audience,
                extra=extra,
                client_ip=ip if service.settings.bind_client_ip else None,
                session=session,
            )
        except SessionExpiring as exc:
            detail = f"remaining={max(0.0, exc.remaining):.1f}s"
            return refuse(
                service.metrics, "session_expiring", rid, where="mint", headers=cors, detail=detail
            )
        revocation = session_state_read(service.settings.key_prefix, subject, session)
    plan = MintPlan(service.limits.counters(ip, subject), prepared, revocation)
    try:
        limited = await _round_trip(service, plan)
    except StoreUnavailable as exc:
        return _store_unavailable(service, rid, cors, exc)
    if limited is None and prepared is None:
        return refuse(
            service.metrics, "unauthenticated", rid, where="mint", headers=cors, detail=f"why={why}"
        )
    if isinstance(limited, Revoked):  # revoked logins mint nothing
        return refuse(service.metrics, "session_revoked", rid, where="mint", headers=cors)
    if limited is not None:
        service.metrics.rate_limited.labels(limited.limit).inc()
        code = "too_many_outstanding" if limited.limit == "outstanding" else "rate_limited"
        return refuse(
            service.metrics,
            code,
            rid,
            where="mint",
            detail=f"limit={limited.limit}",
            headers={**cors, "Retry-After": str(limited.retry_after)},
        )
    assert prepared is not None  # no refusal, no error: the ticket is stored
    issued = prepared.issued
    service.metrics.minted.inc()
    ticket_hash = log_id(issued.ticket)
    _logger.info(
        "ticket minted audience=%s ticket=%s request_id=%s",
        audience,
        ticket_hash,
        rid,
        extra={"code": "ok", "request_id": rid, "ticket_hash": ticket_hash},
    )
    payload = {
        "ticket": issued.ticket,
        "expires_in": round(issued.expires_in),
        "expires_at": issued.expires_at,
        "audience": audience,
    }
    return MintedResponse(payload, origin)


class MintedResponse(Response):
    """The ``201`` of a mint: what ``JSONResponse(body, 201, headers=...)`` sends, the same
    bytes and headers in the same order, with the constant headers encoded once (the
    generic header handling was ~5 % of a mint in-process)."""

    _HEADERS = tuple(
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in {**_CORS, **_MINTED}.items()
    )

    def __init__(self, body: dict[str, Any], origin: str) -> None:
        self.status_code = 201
        self.background = None
        self.body = json.dumps(
            body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
        ).encode("utf-8")
        self.raw_headers = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            *self._HEADERS,
            (b"content-length", str(len(self.body)).encode("latin-1")),
            (b"content-type", b"application/json"),
        ]


def _store_unavailable(
    service: Service, rid: str, cors: dict[str, str], exc: StoreUnavailable
) -> Response:
    service.metrics.store_errors.labels("mint").inc()
    return refuse(
        service.metrics,
        "store_unavailable",
        rid,
        where="mint",
        detail=f"why={exc}",
        headers={**cors, "Retry-After": "1"},
    )


async def _round_trip(service: Service, plan: MintPlan) -> Limited | Revoked | None:
    """Send the plan's commands, read the verdict, undo on refusal or error reply."""
    commands = plan.commands
    if not commands:
        return None
    try:
        replies = await service.limits.run(commands)
    except StoreUnavailable:
        if plan.ticket is not None:  # the SET may still run: have the store delete it
            service.store._forget_later(plan.ticket.key, plan.ticket.ttl_ms)
        raise
    try:
        return plan.read(replies)
    finally:
        undo = plan.undo()
        if undo:
            with contextlib.suppress(StoreUnavailable):  # best effort: the record expires
                await service.limits.run(undo)


async def preflight(service: Service, request: Request) -> Response:
    """Answer a CORS preflight, for allowed origins only (exact origin, never ``*``)."""
    rid = request_id(request)
    try:
        origin = service.origins.check(request)
    except InvalidOrigin:
        return refuse(service.metrics, "origin_not_allowed", rid, where="preflight")
    method = request.headers.get("access-control-request-method", "")
    if method.upper() != "POST":
        return refuse(
            service.metrics,
            "method_not_allowed",
            rid,
            where="preflight",
            headers={"Allow": "POST, OPTIONS"},
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
