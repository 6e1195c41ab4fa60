"""Ticket checks for Django Channels WebSocket consumers.

Wrap the WebSocket side of your ``ProtocolTypeRouter`` in
:func:`TicketAuthMiddlewareStack` instead of ``AuthMiddlewareStack``: the
session cookie is exactly what a cross-site page can ride on, the ticket is not::

    from channels.routing import ProtocolTypeRouter, URLRouter
    from ticketd.integrations.channels import TicketAuthMiddlewareStack

    application = ProtocolTypeRouter({
        "websocket": TicketAuthMiddlewareStack(URLRouter(websocket_urlpatterns), verifier),
    })

    class ChatConsumer(AsyncWebsocketConsumer):
        async def connect(self):
            claims = claims_from_scope(self.scope)
            await self.accept(subprotocol=ticket_subprotocol(self.scope))

It is :class:`ticketd.integrations.asgi.TicketMiddleware`: the claims are in
``scope["ticketd.claims"]``; refusals use the denial response extension when the
server offers it, else close before accepting (daphne answers 403).
"""

from __future__ import annotations

try:
    import channels  # noqa: F401 - fail early with the fix when the extra is missing
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "ticketd.integrations.channels needs channels: pip install 'ticketd[channels]'"
    ) from exc

from collections.abc import Iterable

from ..hosts import HostAllowlist
from ..lifetime import ConnectionLifetime
from ..liveness import RevocationWatch
from ..verifier import TicketVerifier
from .asgi import ASGIApp, TicketMiddleware, claims_from_scope, ticket_subprotocol

__all__ = [
    "TicketAuthMiddleware",
    "TicketAuthMiddlewareStack",
    "claims_from_scope",
    "ticket_subprotocol",
]

TicketAuthMiddleware = TicketMiddleware


def TicketAuthMiddlewareStack(
    inner: ASGIApp,
    verifier: TicketVerifier,
    *,
    audience: str | None = None,
    allowed_hosts: Iterable[str] | HostAllowlist | None = None,
    redact_logs: bool = True,
    watch: RevocationWatch | None = None,
    lifetime: ConnectionLifetime | None = None,
) -> TicketMiddleware:
    """The middleware stack for Channels WebSocket routes (a ticket check, no cookie auth).

    ``watch`` closes revoked sockets with 4403 (:class:`~ticketd.liveness.RevocationWatch`);
    the session's expiry closes them with 4401 (``lifetime``:
    :class:`~ticketd.lifetime.ConnectionLifetime`)::

        TicketAuthMiddlewareStack(URLRouter(websocket_urlpatterns), verifier, watch=watch)
    """
    return TicketMiddleware(
        inner,
        verifier,
        audience=audience,
        allowed_hosts=allowed_hosts,
        redact_logs=redact_logs,
        watch=watch,
        lifetime=lifetime,
    )
