"""``POST /v1/tickets/redeem``: redeem for trusted services not written in Python.

Authenticated with a bearer service key (``TICKETD_SERVICE_KEYS``, several for
rotation, each compared in constant time). The reason of a refusal is returned as
the problem ``code``: the caller is trusted and must not pass it to the browser.
"""

from __future__ import annotations

import hmac
import time

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from ..exceptions import StoreUnavailable, TicketRejected
from .runtime import Service, is_json
from .schemas import RedeemRequest

__all__ = ["redeem"]


def _service_key_ok(service: Service, request: Request) -> bool:
    """A bearer key equal to one of the configured keys, each compared in constant time."""
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    candidate = presented.strip().encode()
    # Compare against every key, in constant time each, without an early exit.
    matches = [hmac.compare_digest(candidate, key) for key in service.service_keys]
    return any(matches)


async def redeem(service: Service, request: Request) -> Response:
    """Redeem a ticket for a trusted service; 200 with the claims or a problem."""
    started = time.perf_counter()
    try:
        return await _redeem(service, request)
    finally:
        service.metrics.redeem_latency.observe(time.perf_counter() - started)


async def _redeem(service: Service, request: Request) -> Response:
    rid = service.request_id(request)
    if not service.service_keys:
        return service.refuse("redeem_disabled", rid, where="redeem")
    if not _service_key_ok(service, request):
        return service.refuse(
            "invalid_service_key",
            rid,
            where="redeem",
            headers={"WWW-Authenticate": 'Bearer realm="ticketd"'},
        )
    body = await service.read_body(request)
    if body is None:
        return service.refuse("body_too_large", rid, where="redeem")
    if not is_json(request):
        return service.refuse("unsupported_media_type", rid, where="redeem")
    try:
        parsed = RedeemRequest.model_validate_json(body)
    except ValidationError:
        return service.refuse("invalid_body", rid, where="redeem")
    audience = parsed.audience
    if audience is None:
        # Never "any audience": a backend that forgets to say which service it is
        # must not be able to redeem tickets minted for another one.
        if len(service.settings.audiences) != 1:
            return service.refuse("invalid_body", rid, where="redeem", detail="why=no_audience")
        audience = service.settings.audiences[0]
    try:
        claims = await service.verifier.redeem(
            parsed.ticket,
            origin=parsed.origin,
            audience=audience,
            client_ip=parsed.client_ip,
        )
    except TicketRejected as exc:
        # The one log line of this refusal (the verifier does not log): see ticketd.redemption.
        service.metrics.redemptions.labels(exc.reason.value, "http").inc()
        why = f" why={exc.detail.value}" if exc.detail is not None else ""
        return service.refuse(
            exc.reason.value, rid, where="redeem", detail=f"ticket={exc.ticket_hash or '-'}{why}"
        )
    except StoreUnavailable as exc:
        service.metrics.store_errors.labels("redeem").inc()
        service.metrics.redemptions.labels("store_unavailable", "http").inc()
        return service.refuse(
            "store_unavailable",
            rid,
            where="redeem",
            detail=f"why={exc}",
            headers={"Retry-After": "1"},
        )
    service.metrics.redemptions.labels("ok", "http").inc()
    return JSONResponse(claims.as_dict(), headers={"Cache-Control": "no-store"})
