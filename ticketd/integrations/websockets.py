"""Ticket checks for ``websockets`` servers (``websockets >= 14``, ``websockets.asyncio``).

:func:`ticket_auth` returns a ``process_response`` hook; :func:`select_subprotocol`
answers ``ticketd.v1`` (never the ticket-bearing token) for clients using the
subprotocol transport::

    from websockets.asyncio.server import serve
    from ticketd.integrations.websockets import claims_of, select_subprotocol, ticket_auth

    async def handler(connection):
        claims = claims_of(connection)
        await connection.send(f"hello {claims.subject}")

    async with serve(
        handler, "", 8001,
        process_response=ticket_auth(verifier),
        select_subprotocol=select_subprotocol,
    ) as server:
        await server.serve_forever()

Why ``process_response`` and not ``process_request``: websockets' handshake runs
``process_request`` → ``accept`` (validates the request, calls
``select_subprotocol`` once) → ``process_response``, all documented. Only in
``process_response`` is it known, without calling websockets internals, whether
websockets accepts the handshake (a 101) and which subprotocol it selected; so
the ticket is redeemed there, and a handshake websockets refuses never burns one.
The hook replaces the 101 with the refusal (``connection.respond``) when the
ticket is refused. Passed as ``process_request`` by mistake, it refuses every
handshake with 500 and says why in the log. The blocking variant for
``websockets.sync.server`` is :mod:`ticketd.integrations.websockets_sync`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

try:
    from websockets.asyncio.server import ServerConnection
    from websockets.http11 import Request, Response
    from websockets.typing import Subprotocol
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "ticketd.integrations.websockets needs websockets: pip install 'ticketd[websockets]'"
    ) from exc

from ..handshake import SUBPROTOCOL, PresentedTicket
from ..hosts import HostAllowlist
from ..lifetime import ConnectionLifetime
from ..liveness import RevocationWatch
from ..redaction import install_redaction
from ..tickets import Claims
from ..verifier import TicketVerifier
from ._common import Admitted, Denied, is_ticket_subprotocol, present, redeem
from ._hosts import allowlist_of, refuse_host
from ._live import hold, websockets_closer

__all__ = [
    "CLAIMS_ATTRIBUTE",
    "MISPLACED_HOOK",
    "check_before_redeem",
    "claims_of",
    "finish",
    "peer_ip",
    "respond",
    "select_subprotocol",
    "ticket_auth",
]

_logger = logging.getLogger("ticketd.integrations")

_SWITCHING_PROTOCOLS = 101

CLAIMS_ATTRIBUTE = "ticket_claims"
"""Attribute of the connection holding the :class:`~ticketd.Claims` after a successful check."""


class _Connection(Protocol):
    """What the asyncio and sync ``ServerConnection`` classes have in common here."""

    @property
    def remote_address(self) -> Any: ...

    def respond(self, status: int, text: str) -> Response: ...


def ticket_auth(
    verifier: TicketVerifier,
    *,
    audience: str | None = None,
    allowed_hosts: Iterable[str] | HostAllowlist | None = None,
    redact_logs: bool = True,
    watch: RevocationWatch | None = None,
    lifetime: ConnectionLifetime | None = None,
) -> Callable[[ServerConnection, Request, Response | None], Awaitable[Response | None]]:
    """Build a ``process_response`` hook that redeems the handshake's ticket.

    On success the claims are on the connection (:func:`claims_of`) and ``None``
    is returned so websockets sends its 101; otherwise an HTTP response
    (400/401/403/503, body ``ticket rejected``) is returned instead.
    ``audience`` overrides the verifier's expected audience; ``allowed_hosts``
    (:mod:`ticketd.hosts`) refuses unlisted ``Host`` headers with 421 first. Building
    the hook turns on :func:`~ticketd.redaction.install_redaction` (idempotent);
    ``redact_logs=False`` leaves logging alone. With ``watch`` (a
    :class:`~ticketd.liveness.RevocationWatch`), the connection is registered and the
    revocation state checked before 101 (403 ``revoked``), and a later revocation closes
    it with 4403. With or without it, the socket is closed with 4401 at the session's
    expiry; ``lifetime`` (a :class:`~ticketd.lifetime.ConnectionLifetime`) adds a maximum
    connection lifetime and metrics. ::

        serve(handler, process_response=ticket_auth(verifier, audience="chat", watch=watch),
              select_subprotocol=select_subprotocol)
    """
    if redact_logs:
        install_redaction()
    hosts = allowlist_of(allowed_hosts)

    async def process_response(
        connection: ServerConnection, request: Request, response: Response | None = None
    ) -> Response | None:
        presented = check_before_redeem(connection, request, response, hosts)
        if not isinstance(presented, PresentedTicket):
            return presented
        outcome = await redeem(
            verifier,
            presented,
            request.headers.raw_items(),
            audience=audience,
            client_ip=peer_ip(connection),
        )
        # after the handshake: revocation (ticketd.liveness), session expiry (ticketd.lifetime)
        outcome = await hold(watch, outcome, websockets_closer(connection), lifetime)
        return finish(connection, outcome)

    return process_response


def select_subprotocol(connection: Any, subprotocols: Sequence[Subprotocol]) -> Subprotocol | None:
    """Select ``ticketd.v1`` when the client offers it, else no subprotocol.

    Pass it to ``serve(select_subprotocol=...)``; it never selects a
    ``ticket.<T>`` token. To combine it with your own subprotocols, call it first::

        def choose(connection, subprotocols):
            return select_subprotocol(connection, subprotocols) or (
                "chat" if "chat" in subprotocols else None
            )
    """
    return Subprotocol(SUBPROTOCOL) if SUBPROTOCOL in subprotocols else None


def claims_of(connection: object) -> Claims:
    """The claims of the ticket redeemed for ``connection``; ``LookupError`` if there are none.

    ::

        async def handler(connection):
            user_id = claims_of(connection).subject
    """
    claims = getattr(connection, CLAIMS_ATTRIBUTE, None)
    if not isinstance(claims, Claims):
        raise LookupError("no ticket was redeemed for this connection")
    return claims


MISPLACED_HOOK = (
    "ticket_auth() builds a process_response hook: "
    "serve(..., process_response=ticket_auth(verifier), select_subprotocol=select_subprotocol)"
)


def check_before_redeem(
    connection: _Connection,
    request: Request,
    response: Response | None,
    allowed_hosts: HostAllowlist | None = None,
) -> PresentedTicket | Response | None:
    """Find the ticket and check websockets' own answer before redeeming (no store call).

    ``response`` is what websockets' ``accept()`` built. ``None`` (the result) means
    keep websockets' response: it refused the handshake itself.
    """
    if response is None:  # called as process_request: no accept() result to look at
        raise TypeError(MISPLACED_HOOK)
    headers = list(request.headers.raw_items())
    refused = refuse_host(headers, allowed_hosts)
    if refused is not None:
        return respond(connection, refused)
    presented = present("GET", request.path, headers)
    if isinstance(presented, Denied):
        return respond(connection, presented)
    if response.status_code != _SWITCHING_PROTOCOLS:
        _logger.info("websocket handshake invalid for websockets; ticket not redeemed")
        return None
    selected = response.headers.get("Sec-WebSocket-Protocol")
    if selected is not None and is_ticket_subprotocol(selected):
        _logger.error("select_subprotocol chose a ticket-bearing token; refusing the handshake")
        return connection.respond(500, "server misconfigured\n")
    if presented.transport == "subprotocol" and selected != SUBPROTOCOL:
        _logger.error(
            "ticket sent as a subprotocol but the server would not select %s; pass "
            "select_subprotocol=ticketd.integrations.websockets.select_subprotocol to serve()",
            SUBPROTOCOL,
        )
        return connection.respond(500, "server misconfigured\n")
    return presented


def finish(connection: _Connection, outcome: Admitted | Denied) -> Response | None:
    """Store the claims on the connection, or build the refusal."""
    if isinstance(outcome, Denied):
        return respond(connection, outcome)
    setattr(connection, CLAIMS_ATTRIBUTE, outcome.claims)
    return None


def respond(connection: _Connection, denied: Denied) -> Response:
    """The HTTP response for a refusal."""
    response = connection.respond(denied.status, denied.body)
    for name, value in denied.headers:
        response.headers[name] = value
    return response


def peer_ip(connection: _Connection) -> str | None:
    """The address of the TCP peer (a proxy, when there is one)."""
    address = connection.remote_address
    if isinstance(address, tuple) and address and isinstance(address[0], str):
        return address[0]
    return None
