"""Ticket checks for ``websockets`` servers (``websockets >= 14``, ``websockets.asyncio``).

:func:`ticket_auth` returns a ``process_request`` hook, like websockets' own
``basic_auth()``; :func:`select_subprotocol` answers ``ticketd.v1`` (never the
ticket-bearing token) for clients using the subprotocol transport::

    from websockets.asyncio.server import serve
    from ticketd.integrations.websockets import claims_of, select_subprotocol, ticket_auth

    async def handler(connection):
        claims = claims_of(connection)
        await connection.send(f"hello {claims.subject}")

    async with serve(
        handler, "", 8001,
        process_request=ticket_auth(verifier),
        select_subprotocol=select_subprotocol,
    ) as server:
        await server.serve_forever()

websockets validates the handshake only after ``process_request`` has run, so the
hook first checks the request exactly as websockets will (``ServerProtocol.
process_request``, which also calls your ``select_subprotocol``): a handshake that
websockets is going to refuse never burns a ticket. The blocking variant for
``websockets.sync.server`` is :mod:`ticketd.integrations.websockets_sync`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

try:
    from websockets.asyncio.server import ServerConnection
    from websockets.http11 import Request, Response
    from websockets.server import ServerProtocol
    from websockets.typing import Subprotocol
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "ticketd.integrations.websockets needs websockets: pip install 'ticketd[websockets]'"
    ) from exc

from ..handshake import SUBPROTOCOL, PresentedTicket
from ..redaction import install_redaction
from ..tickets import Claims
from ..verifier import TicketVerifier
from ._common import Admitted, Denied, is_ticket_subprotocol, present, redeem

__all__ = [
    "CLAIMS_ATTRIBUTE",
    "check_before_redeem",
    "claims_of",
    "finish",
    "peer_ip",
    "respond",
    "select_subprotocol",
    "ticket_auth",
]

_logger = logging.getLogger("ticketd.integrations")

CLAIMS_ATTRIBUTE = "ticket_claims"
"""Attribute of the connection holding the :class:`~ticketd.Claims` after a successful check."""


class _Connection(Protocol):
    """What the asyncio and sync ``ServerConnection`` classes have in common here."""

    protocol: ServerProtocol

    @property
    def remote_address(self) -> Any: ...

    def respond(self, status: int, text: str) -> Response: ...


def ticket_auth(
    verifier: TicketVerifier, *, audience: str | None = None, redact_logs: bool = True
) -> Callable[[ServerConnection, Request], Awaitable[Response | None]]:
    """Build a ``process_request`` hook that redeems the handshake's ticket.

    On success the claims are on the connection (:func:`claims_of`) and ``None``
    is returned so websockets completes the handshake; otherwise an HTTP response
    (400/401/403/503, body ``ticket rejected``) is returned instead of 101.
    ``audience`` overrides the verifier's expected audience. Building the hook turns on
    :func:`~ticketd.redaction.install_redaction` (idempotent); ``redact_logs=False``
    leaves logging alone. ::

        serve(handler, process_request=ticket_auth(verifier, audience="chat"),
              select_subprotocol=select_subprotocol)
    """
    if redact_logs:
        install_redaction()

    async def process_request(connection: ServerConnection, request: Request) -> Response | None:
        presented = check_before_redeem(connection, request)
        if not isinstance(presented, PresentedTicket):
            return presented
        outcome = await redeem(
            verifier,
            presented,
            request.headers.raw_items(),
            audience=audience,
            client_ip=peer_ip(connection),
        )
        return finish(connection, outcome)

    return process_request


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


def check_before_redeem(
    connection: _Connection, request: Request
) -> PresentedTicket | Response | None:
    """Find the ticket and make sure websockets will accept this handshake (no store call).

    ``None`` means websockets is about to refuse the handshake itself.
    """
    headers = request.headers.raw_items()
    presented = present("GET", request.path, headers)
    if isinstance(presented, Denied):
        return respond(connection, presented)
    try:
        # A dry run of the checks ServerProtocol.accept() makes after this hook.
        _, _, selected = connection.protocol.process_request(request)
    except Exception:  # websockets refuses it right after this hook, with its own status
        _logger.info("websocket handshake invalid for websockets; ticket not redeemed")
        return None
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
