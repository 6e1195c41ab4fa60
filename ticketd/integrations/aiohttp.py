"""Ticket checks for aiohttp WebSocket handlers.

Call :func:`check_ticket` before ``WebSocketResponse.prepare()``; it returns the
claims or raises an ``HTTPException`` (400/401/403/503, body ``ticket
rejected``) that aiohttp sends instead of 101. Pass :data:`PROTOCOLS` so that
clients using the subprotocol transport get ``ticketd.v1`` back::

    from aiohttp import web
    from ticketd.integrations.aiohttp import PROTOCOLS, check_ticket

    async def chat(request: web.Request) -> web.WebSocketResponse:
        claims = await check_ticket(request, request.app[VERIFIER])
        ws = web.WebSocketResponse(protocols=PROTOCOLS)
        await ws.prepare(request)
        await ws.send_str(f"hello {claims.subject}")
        return ws

The claims are also stored as ``request[CLAIMS_KEY]`` for middlewares.
``request.remote`` is used as the client address (the peer, unless aiohttp is
configured to trust forwarding headers).
"""

from __future__ import annotations

try:
    from aiohttp import web
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "ticketd.integrations.aiohttp needs aiohttp: pip install 'ticketd[aiohttp]'"
    ) from exc

from ..handshake import SUBPROTOCOL
from ..redaction import install_redaction
from ..tickets import Claims
from ..verifier import TicketVerifier
from ._common import Denied, admit

__all__ = ["CLAIMS_KEY", "PROTOCOLS", "check_ticket"]

PROTOCOLS: tuple[str, ...] = (SUBPROTOCOL,)
"""``WebSocketResponse(protocols=PROTOCOLS)``: select ``ticketd.v1``, never the ticket token."""

CLAIMS_KEY = web.RequestKey("ticketd.claims", Claims)
"""``request[CLAIMS_KEY]`` holds the claims once :func:`check_ticket` has succeeded."""

_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    503: web.HTTPServiceUnavailable,
}


async def check_ticket(
    request: web.Request,
    verifier: TicketVerifier,
    *,
    audience: str | None = None,
    redact_logs: bool = True,
) -> Claims:
    """Redeem the handshake's ticket, or raise the HTTP error to answer with.

    ::

        claims = await check_ticket(request, verifier, audience="chat")

    Turns on log redaction (idempotent; a check per call) unless ``redact_logs=False``.
    """
    if redact_logs:
        install_redaction()
    outcome = await admit(
        verifier,
        method=request.method,
        target=request.path_qs,
        headers=request.raw_headers,
        audience=audience,
        client_ip=request.remote,
    )
    if isinstance(outcome, Denied):
        raise _ERRORS[outcome.status](text=outcome.body, headers=dict(outcome.headers))
    request[CLAIMS_KEY] = outcome.claims
    return outcome.claims
