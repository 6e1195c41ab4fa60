"""``POST /v1/tickets`` (mint, behind the session cookie) and its CORS preflight.

Checks run in a fixed order, cheapest and least trusting first, and nothing is
handed out unless every check passed:

1. Origin: exactly one, canonical, on the allowlist; ``Sec-Fetch-Site: cross-site`` refused;
2. body: size, media type, schema, audience;
3. session cookie → subject (local, no I/O);
4. one round trip: the per-IP, per-subject and outstanding-ticket counters, and the
   ticket's ``SET``; a refusal deletes the record again;
5. the ticket is returned only if it was stored.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from ..exceptions import InvalidOrigin, StoreUnavailable
from ..issuer import validate_extra
from ..sessions import SessionInvalid
from ..tickets import Subject, log_id
from .runtime import Service, is_json
from .schemas import MintRequest

__all__ = ["mint", "preflight"]

_logger = logging.getLogger("ticketd.service")


async def mint(service: Service, request: Request) -> Response:
    """Mint a ticket for the session's subject, bound to the request's Origin."""
    started = time.perf_counter()
    try:
        return await _mint(service, request)
    finally:
        service.metrics.mint_latency.observe(time.perf_counter() - started)


async def _mint(service: Service, request: Request) -> Response:
    rid = service.request_id(request)
    try:
        origin = service.allowed_origin(request)
    except InvalidOrigin as exc:
        return service.refuse("origin_not_allowed", rid, where="mint", detail=f"why={exc}")
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        return service.refuse("cross_site", rid, where="mint")
    cors = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        # Retry-After is not CORS-safelisted: without this the client cannot back off.
        "Access-Control-Expose-Headers": "Retry-After",
        "Vary": "Origin, Cookie",
    }

    body = await service.read_body(request)
    if body is None:
        return service.refuse("body_too_large", rid, where="mint", headers=cors)
    audience = service.settings.audiences[0]
    extra: dict[str, Any] = {}
    if body.strip():
        if not is_json(request):
            return service.refuse("unsupported_media_type", rid, where="mint", headers=cors)
        try:
            parsed = MintRequest.model_validate_json(body)
            extra = validate_extra(parsed.claims)
        except (ValidationError, ValueError):
            return service.refuse("invalid_body", rid, where="mint", headers=cors)
        if parsed.audience is not None:
            audience = parsed.audience
    if audience not in service.settings.audiences:
        return service.refuse("unknown_audience", rid, where="mint", headers=cors)

    ip = service.client_ip(request)
    # The cookie check is local (no I/O). With a subject, the limit counters and the
    # ticket's SET travel in one round trip; if a limit refuses, the record is
    # deleted again and the refused attempt taken back from the subject's counters.
    # A bad cookie still counts against the IP.
    subject: Subject | None
    try:
        subject = service.sessions.subject(
            request.headers.getlist("cookie"), cookie_name=service.settings.session_cookie
        )
        why = ""
    except SessionInvalid as exc:
        subject, why = None, exc.reason
    try:
        if subject is None:
            limited = await service.limits.check(ip, None)
            if limited is None:
                return service.refuse(
                    "unauthenticated", rid, where="mint", headers=cors, detail=f"why={why}"
                )
        else:
            plan = service.limits.plan(ip, subject)
            prepared = service.issuer.prepare(
                subject,
                origin=origin,
                audience=audience,
                extra=extra,
                client_ip=ip if service.settings.bind_client_ip else None,
            )
            replies = await service.store.put(
                prepared.key, prepared.record, prepared.ttl_ms, along=plan.commands
            )
            limited = plan.verdict(replies)
            if limited is not None:
                await service.store.discard(prepared.key, along=plan.take_back)
    except StoreUnavailable as exc:
        service.metrics.store_errors.labels("mint").inc()
        return service.refuse(
            "store_unavailable",
            rid,
            where="mint",
            detail=f"why={exc}",
            headers={**cors, "Retry-After": "1"},
        )
    if limited is not None:
        service.metrics.rate_limited.labels(limited.limit).inc()
        code = "too_many_outstanding" if limited.limit == "outstanding" else "rate_limited"
        return service.refuse(
            code,
            rid,
            where="mint",
            detail=f"limit={limited.limit}",
            headers={**cors, "Retry-After": str(limited.retry_after)},
        )
    issued = prepared.issued
    service.metrics.mints.labels("ok").inc()
    ticket_hash = log_id(issued.ticket)
    _logger.info(
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


async def preflight(service: Service, request: Request) -> Response:
    """Answer a CORS preflight, for allowed origins only (exact origin, never ``*``)."""
    rid = service.request_id(request)
    try:
        origin = service.allowed_origin(request)
    except InvalidOrigin:
        return service.refuse("origin_not_allowed", rid, where="preflight")
    method = request.headers.get("access-control-request-method", "")
    if method.upper() != "POST":
        return service.refuse(
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
