"""``POST /v1/tickets/redeem``: redeem for trusted services not written in Python.

Authenticated with a bearer service key (``TICKETD_SERVICE_KEYS``, several for
rotation, each compared in constant time); exactly one ``Authorization`` header,
:func:`bearer_credential`. The reason of a refusal is returned as
the problem ``code``: the caller is trusted and must not pass it to the browser.
"""

from __future__ import annotations

import hmac
import re
import time

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from ..exceptions import StoreUnavailable, TicketRejected
from ..redemption_metrics import replay_kind
from ..replay import outcome_of, replay_fields
from ..revocation import target_of
from ..revoker import check_revoked
from ..tickets import Claims
from .requests import is_json, read_body, refuse, request_id
from .runtime import Service
from .schemas import RedeemRequest

__all__ = ["PROBLEM_CODES", "bearer_credential", "redeem", "service_request_body"]

PROBLEM_CODES = (
    "invalid_service_key",
    "invalid_authorization",
    "missing",
    "malformed",
    "invalid",
    "invalid_body",
    "duplicate",
    "origin_mismatch",
    "audience_mismatch",
    "ip_mismatch",
    "revoked",
    "redeem_disabled",
    "method_not_allowed",
    "body_too_large",
    "unsupported_media_type",
    "store_unavailable",
)
"""Every problem ``POST /v1/tickets/redeem`` answers with (spec, README and test read this)."""


_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +(?P<credential>[^\s,]+)")


def bearer_credential(values: list[str]) -> str | None:
    """The credential of the request's ``Authorization`` headers.

    Exactly one header ``Bearer <credential>`` (the scheme in any case, RFC 9110)
    gives the credential; no header, or another scheme, gives ``None`` (401 with
    ``WWW-Authenticate``). :class:`ValueError` (400 ``invalid_authorization``) for
    more than one header (``"two_headers"``: servers and proxies would read them
    differently: first wins, last wins, comma-joined) and for a value carrying
    more than one credential (``"malformed"``: ``Bearer a, Bearer b``, ``Bearer a b``).
    """
    if len(values) > 1:
        raise ValueError("two_headers")
    if not values:
        return None
    value = values[0].strip()
    if value.lower() == "bearer":  # no credential at all
        return None
    if value.split(" ", 1)[0].lower() != "bearer":
        if "," in value:
            raise ValueError("malformed")
        return None
    match = _BEARER.fullmatch(value)
    if match is None:
        raise ValueError("malformed")
    return match["credential"]


async def service_request_body(
    service: Service, request: Request, rid: str, *, where: str, disabled: str
) -> bytes | Response:
    """What every service-key endpoint checks first, in order: the endpoint is on
    (service keys configured, else ``disabled``), exactly one bearer credential, a
    known key, the body's size and JSON media type. The body, or the refusal."""
    if not service.service_keys:
        return refuse(service.metrics, disabled, rid, where=where)
    try:
        credential = bearer_credential(request.headers.getlist("authorization"))
    except ValueError as exc:
        return refuse(
            service.metrics, "invalid_authorization", rid, where=where, detail=f"why={exc}"
        )
    if credential is None or not _service_key_ok(service, credential):
        return refuse(
            service.metrics,
            "invalid_service_key",
            rid,
            where=where,
            headers={"WWW-Authenticate": 'Bearer realm="ticketd"'},
        )
    body = await read_body(request)
    if body is None:
        return refuse(service.metrics, "body_too_large", rid, where=where)
    if not is_json(request):
        return refuse(service.metrics, "unsupported_media_type", rid, where=where)
    return body


def _service_key_ok(service: Service, candidate: str) -> bool:
    """A bearer key equal to one of the configured keys, each compared in constant time."""
    presented = candidate.encode()
    # Compare against every key, in constant time each, without an early exit.
    matches = [hmac.compare_digest(presented, key) for key in service.service_keys]
    return any(matches)


async def _revoked(service: Service, claims: Claims) -> bool:
    """Step 5 of the redeem (PROTOCOL.md section 4): the revocation state.

    Raises :class:`StoreUnavailable` (the caller answers 503: fail closed)."""
    return await check_revoked(
        service.store.client,
        service.settings.key_prefix,
        target_of(claims),
        deadline=service.settings.store_deadline,
    )


async def redeem(service: Service, request: Request) -> Response:
    """Redeem a ticket for a trusted service; 200 with the claims or a problem."""
    started = time.perf_counter()
    try:
        return await _redeem(service, request)
    finally:
        service.metrics.redeem_latency.observe(time.perf_counter() - started)


async def _redeem(service: Service, request: Request) -> Response:
    rid = request_id(request)
    body = await service_request_body(
        service, request, rid, where="redeem", disabled="redeem_disabled"
    )
    if isinstance(body, Response):
        return body
    try:
        parsed = RedeemRequest.model_validate_json(body)
    except ValidationError:
        return refuse(service.metrics, "invalid_body", rid, where="redeem")
    audience = parsed.audience
    if audience is None:
        # Never "any audience": a backend that forgets to say which service it is
        # must not be able to redeem tickets minted for another one.
        if len(service.settings.audiences) != 1:
            return refuse(
                service.metrics, "invalid_body", rid, where="redeem", detail="why=no_audience"
            )
        audience = service.settings.audiences[0]
    try:
        claims = await service.verifier.redeem(
            parsed.ticket,
            origin=parsed.origin,
            audience=audience,
            client_ip=parsed.client_ip,
        )
        revoked = await _revoked(service, claims)
    except TicketRejected as exc:
        # The one log line of this refusal (the verifier does not log): see ticketd.redemption.
        service.metrics.redemptions.labels(outcome_of(exc), "http").inc()
        if exc.replay is not None:
            service.metrics.replays.labels(replay_kind(exc)).inc()
        why = f" why={exc.detail.value}" if exc.detail is not None else ""
        return refuse(
            service.metrics,
            exc.reason.value,
            rid,
            where="redeem",
            detail=f"ticket={exc.ticket_hash or '-'}{why}{replay_fields(exc.replay)}",
        )
    except StoreUnavailable as exc:
        service.metrics.store_errors.labels("redeem").inc()
        service.metrics.redemptions.labels("store_unavailable", "http").inc()
        return refuse(
            service.metrics,
            "store_unavailable",
            rid,
            where="redeem",
            detail=f"why={exc}",
            headers={"Retry-After": "1"},
        )
    if revoked:
        service.metrics.redemptions.labels("revoked", "http").inc()
        return refuse(service.metrics, "revoked", rid, where="redeem")
    service.metrics.redemptions.labels("ok", "http").inc()
    return JSONResponse(claims.as_dict(), headers={"Cache-Control": "no-store"})
