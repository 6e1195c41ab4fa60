"""The hot routes as plain ASGI apps, answered before FastAPI's router: :class:`RawRoutes`.

``POST /v1/tickets`` is called on every (re)connect and ``POST /v1/tickets/redeem``
on every handshake of a non-Python WebSocket server; the router, FastAPI's
per-route wrapper, its exception middleware and its exit stack cost about a tenth
of a mint (``python -m bench.instructions``). This middleware sits right inside
:class:`~.edge.RequestGuard` — so the Host and canonical-path checks and the
server-error handler still apply — and hands a request whose method and path
(exactly, no trailing slash, no other spelling) are in its table to that route's
ASGI app. Everything else goes down the normal stack. The FastAPI routes of the
same paths stay declared: they are what the spec documents, and they answer the
requests this table does not take (other methods: ``405``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["RawEndpoint", "RawRoutes"]

_Handler = Callable[[Any, Request], Awaitable[Response]]


class RawEndpoint:
    """A handler ``(service, request) → response`` as a plain ASGI app: no dependency
    injection, no model; the same function the documented FastAPI route calls."""

    def __init__(self, handler: _Handler, service: Any) -> None:
        self.handler = handler
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(self.service, Request(scope, receive))
        await response(scope, receive, send)


class RawRoutes:
    """ASGI middleware: ``(method, path) → app`` for ``http`` requests, else ``app``."""

    def __init__(self, app: ASGIApp, routes: Mapping[tuple[str, str], ASGIApp]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self.routes.get((scope["method"], get_route_path(scope)))
            if route is not None:
                await route(scope, receive, send)
                return
        await self.app(scope, receive, send)
