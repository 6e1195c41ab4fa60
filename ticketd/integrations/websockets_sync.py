"""Ticket checks for threaded ``websockets.sync.server`` servers.

The same hook as :mod:`ticketd.integrations.websockets`, redeeming with a
:class:`~ticketd.BlockingTicketVerifier`::

    from websockets.sync.server import serve
    from ticketd.integrations.websockets import claims_of, select_subprotocol
    from ticketd.integrations.websockets_sync import ticket_auth

    def handler(connection):
        connection.send(f"hello {claims_of(connection).subject}")

    with serve(handler, "", 8001, process_response=ticket_auth(verifier),
               select_subprotocol=select_subprotocol) as server:
        server.serve_forever()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

try:
    from websockets.http11 import Request, Response
    from websockets.sync.server import ServerConnection
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "ticketd.integrations.websockets_sync needs websockets: pip install 'ticketd[websockets]'"
    ) from exc

from ..handshake import PresentedTicket
from ..hosts import HostAllowlist
from ..lifetime import ConnectionLifetime
from ..liveness import BlockingRevocationWatch
from ..redaction import install_redaction
from ..verifier import BlockingTicketVerifier
from ._common import redeem_blocking
from ._hosts import allowlist_of
from ._live import hold_blocking, websockets_sync_closer
from .websockets import check_before_redeem, claims_of, finish, peer_ip, select_subprotocol

__all__ = ["claims_of", "select_subprotocol", "ticket_auth"]


def ticket_auth(
    verifier: BlockingTicketVerifier,
    *,
    audience: str | None = None,
    allowed_hosts: Iterable[str] | HostAllowlist | None = None,
    redact_logs: bool = True,
    watch: BlockingRevocationWatch | None = None,
    lifetime: ConnectionLifetime | None = None,
) -> Callable[[ServerConnection, Request, Response | None], Response | None]:
    """Build a blocking ``process_response`` hook; the sync twin of the asyncio ``ticket_auth``.

    ``watch`` is a :class:`~ticketd.liveness.BlockingRevocationWatch`; ``lifetime`` as in
    the asyncio hook (its timers run on one shared background thread). ::

        serve(handler, process_response=ticket_auth(blocking_verifier, watch=watch),
              select_subprotocol=select_subprotocol)

    Turns on log redaction unless ``redact_logs=False``, like the asyncio hook.
    """
    if redact_logs:
        install_redaction()
    hosts = allowlist_of(allowed_hosts)

    def process_response(
        connection: ServerConnection, request: Request, response: Response | None = None
    ) -> Response | None:
        presented = check_before_redeem(connection, request, response, hosts)
        if not isinstance(presented, PresentedTicket):
            return presented
        outcome = redeem_blocking(
            verifier,
            presented,
            request.headers.raw_items(),
            audience=audience,
            client_ip=peer_ip(connection),
        )
        # after the handshake: revocation (ticketd.liveness), session expiry (ticketd.lifetime)
        outcome = hold_blocking(watch, outcome, websockets_sync_closer(connection), lifetime)
        return finish(connection, outcome)

    return process_response
