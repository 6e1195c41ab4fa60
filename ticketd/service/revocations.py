"""``POST /v1/revocations``: revoke a subject, a session or a connection (trusted callers).

Authenticated with a bearer service key like ``POST /v1/tickets/redeem``. The app
calls it at logout, ban or password change; the state is written before the event
(:mod:`ticketd.revoker`), and ``202`` means both were accepted by Redis: every
WebSocket process closes matching sockets (4403) when the event reaches it, and
its sweep when it does not.

Also the mint's check: :func:`session_state_read` is the state read of the login a
session cookie stands for (``docs/PROTOCOL.md`` section 6), which the mint sends in
its one round trip (:class:`~.mintplan.MintPlan`).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from ..exceptions import StoreUnavailable
from ..revocation import SessionRef, Target, session_hash, subject_id
from ..revoker import StateRead
from ..tickets import Subject
from .redeem import service_request_body
from .requests import refuse, request_id
from .runtime import Service
from .schemas import RevocationRequest

__all__ = ["PROBLEM_CODES", "revoke", "session_state_read"]

PROBLEM_CODES = (
    "invalid_service_key",
    "invalid_authorization",
    "invalid_body",
    "revocations_disabled",
    "method_not_allowed",
    "body_too_large",
    "unsupported_media_type",
    "store_unavailable",
)
"""Every problem ``POST /v1/revocations`` answers with (spec, README and test read this)."""


async def revoke(service: Service, request: Request) -> Response:
    """Revoke and answer 202 with the kind and the time it took effect, or a problem."""
    rid = request_id(request)
    body = await service_request_body(
        service, request, rid, where="revoke", disabled="revocations_disabled"
    )
    if isinstance(body, Response):
        return body
    try:
        parsed = RevocationRequest.model_validate_json(body)
        revocation = await service.revoker.revoke(
            parsed.subject,
            session=parsed.session,
            except_session=parsed.except_session,
            connection=parsed.connection,
            reason=parsed.reason,
        )
    except (ValidationError, ValueError, TypeError) as exc:
        why = "schema" if isinstance(exc, ValidationError) else str(exc).split(":")[0][:80]
        return refuse(service.metrics, "invalid_body", rid, where="revoke", detail=f"why={why}")
    except StoreUnavailable as exc:
        service.metrics.store_errors.labels("revoke").inc()
        return refuse(
            service.metrics,
            "store_unavailable",
            rid,
            where="revoke",
            detail=f"why={exc}",
            headers={"Retry-After": "1"},
        )
    service.metrics.revocations.labels(revocation.kind).inc()
    return JSONResponse(
        {"kind": revocation.kind, "revoked_at": revocation.at_ms / 1000},
        status_code=202,
        headers={"Cache-Control": "no-store"},
    )


_READS: dict[tuple[str, type, Subject, SessionRef], StateRead] = {}
_READS_SIZE = 4096


def session_state_read(key_prefix: str, subject: Subject, session: SessionRef) -> StateRead:
    """The revocation state read of the login behind a verified cookie (subject and
    session rules; no I/O). Remembered per login: a browser mints with the same
    cookie on every reconnect, and the two key hashes cost a few percent of a mint."""
    memo = (key_prefix, type(subject), subject, session)
    known = _READS.get(memo)
    if known is None:
        target = Target(
            subject=subject_id(subject),
            session=session_hash(session.session),
            auth_at_ms=round(session.auth_at * 1000),
        )
        known = StateRead(key_prefix, target)
        if len(_READS) >= _READS_SIZE:
            _READS.clear()
        _READS[memo] = known
    return known
