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
    redact_logs: bool = True,
) -> TicketMiddleware:
    """The middleware stack for Channels WebSocket routes (a ticket check, no cookie auth).

    ::

        TicketAuthMiddlewareStack(URLRouter(websocket_urlpatterns), verifier, audience="chat")
    """
    return TicketMiddleware(inner, verifier, audience=audience, redact_logs=redact_logs)
