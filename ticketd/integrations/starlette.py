"""A per-route ticket check for Starlette and FastAPI WebSocket endpoints.

:func:`require_ticket` builds a dependency; :func:`install` registers the
handler that turns a refusal into the right HTTP status::

    from fastapi import Depends, FastAPI, WebSocket
    from ticketd import Claims
    from ticketd.integrations.asgi import ticket_subprotocol
    from ticketd.integrations.starlette import install, require_ticket

    app = FastAPI()
    install(app)
    ticket = require_ticket(verifier)

    @app.websocket("/ws")
    async def chat(websocket: WebSocket, claims: Claims = Depends(ticket)):
        await websocket.accept(subprotocol=ticket_subprotocol(websocket.scope))

A refusal raises :class:`TicketDenied`, a ``WebSocketException``. Without
:func:`install`, Starlette closes before accepting (HTTP 403 for every reason);
with it, the client gets 400/401/403/503 through the WebSocket Denial Response
extension when the server supports it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

try:
    from starlette.exceptions import WebSocketException
    from starlette.responses import PlainTextResponse
    from starlette.websockets import WebSocket
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "ticketd.integrations.starlette needs starlette: pip install 'ticketd[server]'"
    ) from exc

from ..hosts import HostAllowlist
from ..lifetime import ConnectionLifetime
from ..liveness import RevocationWatch
from ..redaction import install_redaction
from ..tickets import Claims
from ..verifier import TicketVerifier
from ._common import Denied
from ._hosts import allowlist_of
from ._live import hold, starlette_closer
from .asgi import CLAIMS_KEY, STATE_KEY, SUBPROTOCOL_KEY, check_scope

__all__ = ["TicketDenied", "install", "require_ticket", "ticket_denied_handler"]


class TicketDenied(WebSocketException):
    """The handshake was refused; ``denied`` holds the status to answer."""

    def __init__(self, denied: Denied) -> None:
        super().__init__(code=denied.close_code)
        self.denied = denied


def require_ticket(
    verifier: TicketVerifier,
    *,
    audience: str | None = None,
    allowed_hosts: Iterable[str] | HostAllowlist | None = None,
    redact_logs: bool = True,
    watch: RevocationWatch | None = None,
    lifetime: ConnectionLifetime | None = None,
) -> Callable[[WebSocket], Awaitable[Claims]]:
    """A dependency returning the claims of the handshake's ticket (redeemed on call).

    It also fills ``scope["ticketd.claims"]`` and ``scope["ticketd.subprotocol"]``
    like :class:`~ticketd.integrations.asgi.TicketMiddleware`, and takes the same
    ``allowed_hosts``. With ``watch`` a revoked ticket is refused (403) and a later
    revocation closes the socket with 4403; with or without it, the session's expiry closes
    it with 4401 (``lifetime``: :class:`~ticketd.lifetime.ConnectionLifetime`)::

        async def chat(websocket: WebSocket, claims: Claims = Depends(require_ticket(v))): ...

    Turns on log redaction unless ``redact_logs=False``.
    """
    if redact_logs:
        install_redaction()
    hosts = allowlist_of(allowed_hosts)

    async def ticket_claims(websocket: WebSocket) -> Claims:
        outcome = await check_scope(
            verifier, websocket.scope, audience=audience, allowed_hosts=hosts
        )
        outcome = await hold(watch, outcome, starlette_closer(websocket), lifetime)
        if isinstance(outcome, Denied):
            raise TicketDenied(outcome)
        websocket.scope[CLAIMS_KEY] = outcome.claims
        websocket.scope[SUBPROTOCOL_KEY] = outcome.subprotocol
        websocket.scope.setdefault("state", {})[STATE_KEY] = outcome.claims
        return outcome.claims

    return ticket_claims


async def ticket_denied_handler(websocket: WebSocket, exc: Exception) -> None:
    """Answer a :class:`TicketDenied` with its HTTP status (or close when unsupported)."""
    if not isinstance(exc, TicketDenied):  # pragma: no cover - registered for TicketDenied
        raise exc
    denied = exc.denied
    if "websocket.http.response" in (websocket.scope.get("extensions") or {}):
        response = PlainTextResponse(denied.body, denied.status, headers=dict(denied.headers))
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=denied.close_code)


def install(app: Any) -> None:
    """Register :func:`ticket_denied_handler` on a Starlette or FastAPI app.

    ::

        app = FastAPI()
        install(app)
    """
    app.add_exception_handler(TicketDenied, ticket_denied_handler)
