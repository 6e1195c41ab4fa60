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

:func:`check_ticket` only checks the handshake: the socket it admits is yours and
ticketd cannot close it. To have it closed with 4401 when the session expires (and
with 4403 when revoked, given a :class:`~ticketd.liveness.RevocationWatch`), open the
socket with :func:`accept_websocket` instead::

    claims, ws = await accept_websocket(request, verifier, watch=watch)

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

from collections.abc import Iterable
from typing import Any

from ..handshake import SUBPROTOCOL
from ..hosts import HostAllowlist
from ..lifetime import ConnectionLifetime
from ..liveness import RevocationWatch
from ..redaction import install_redaction
from ..registry import LiveConnection
from ..tickets import Claims
from ..verifier import TicketVerifier
from ._common import Admitted, Denied, admit
from ._hosts import allowlist_of, refuse_host
from ._live import aiohttp_closer, hold

__all__ = ["CLAIMS_KEY", "LIVE_KEY", "PROTOCOLS", "accept_websocket", "check_ticket"]

PROTOCOLS: tuple[str, ...] = (SUBPROTOCOL,)
"""``WebSocketResponse(protocols=PROTOCOLS)``: select ``ticketd.v1``, never the ticket token."""

CLAIMS_KEY = web.RequestKey("ticketd.claims", Claims)
"""``request[CLAIMS_KEY]`` holds the claims once :func:`check_ticket` has succeeded."""

LIVE_KEY = web.RequestKey("ticketd.connection", LiveConnection)
"""``request[LIVE_KEY]``: the registered connection (its ``id`` is what ``revoke`` takes)."""

_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    421: web.HTTPMisdirectedRequest,
    503: web.HTTPServiceUnavailable,
}


async def check_ticket(
    request: web.Request,
    verifier: TicketVerifier,
    *,
    audience: str | None = None,
    allowed_hosts: Iterable[str] | HostAllowlist | None = None,
    redact_logs: bool = True,
) -> Claims:
    """Redeem the handshake's ticket, or raise the HTTP error to answer with.

    ``allowed_hosts`` (:mod:`ticketd.hosts`; pass a ``HostAllowlist`` built once)
    refuses an unlisted ``Host`` with 421 before the ticket is looked at. ::

        claims = await check_ticket(request, verifier, audience="chat")

    Turns on log redaction (idempotent; a check per call) unless ``redact_logs=False``.
    """
    if redact_logs:
        install_redaction()
    outcome = refuse_host(request.raw_headers, allowlist_of(allowed_hosts)) or await admit(
        verifier,
        method=request.method,
        target=request.path_qs,
        headers=request.raw_headers,
        audience=audience,
        client_ip=request.remote,
    )
    return _claims(request, outcome)


def _claims(request: web.Request, outcome: Admitted | Denied) -> Claims:
    if isinstance(outcome, Denied):
        raise _ERRORS[outcome.status](text=outcome.body, headers=dict(outcome.headers))
    request[CLAIMS_KEY] = outcome.claims
    return outcome.claims


async def accept_websocket(
    request: web.Request,
    verifier: TicketVerifier,
    *,
    watch: RevocationWatch | None = None,
    lifetime: ConnectionLifetime | None = None,
    audience: str | None = None,
    redact_logs: bool = True,
    **options: Any,
) -> tuple[Claims, web.WebSocketResponse]:
    """:func:`check_ticket`, then the revocation check (with ``watch``), then a prepared
    WebSocket that a later revocation closes with 4403 and the session's expiry with
    4401 (``lifetime``: :class:`~ticketd.lifetime.ConnectionLifetime`; ``options`` go to
    ``WebSocketResponse``)::

        claims, ws = await accept_websocket(request, verifier, watch=watch)
        async for message in ws: ...
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
    registered: list[LiveConnection] = []
    claims = _claims(request, await hold(watch, outcome, registered.append, lifetime))
    entry = registered[0]
    ws = web.WebSocketResponse(protocols=options.pop("protocols", PROTOCOLS), **options)
    try:
        await ws.prepare(request)
    except BaseException:
        entry.end()
        raise
    request[LIVE_KEY] = entry
    aiohttp_closer(ws, request.transport)(entry)
    # The handler's task ends with the connection: forget it, cancel its timer.
    request.task.add_done_callback(lambda _: entry.end())
    return claims, ws
