"""Ticket checks as plain ASGI middleware, for any ASGI server and framework.

:class:`TicketMiddleware` checks every ``websocket`` scope before the app sees
it (``http`` and ``lifespan`` scopes pass through untouched). Works with
Starlette, FastAPI and Django Channels, under uvicorn, hypercorn or daphne::

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from ticketd.integrations.asgi import TicketMiddleware, claims_from_scope, ticket_subprotocol

    async def chat(websocket):
        # Answer ``ticketd.v1`` when the ticket came as a subprotocol (else None).
        await websocket.accept(subprotocol=ticket_subprotocol(websocket.scope))
        await websocket.send_text(f"hello {claims_from_scope(websocket.scope).subject}")

    app = Starlette(
        routes=[WebSocketRoute("/ws", chat)],
        middleware=[Middleware(TicketMiddleware, verifier=verifier)],
    )

On success the app gets a copy of the scope with:

- ``scope["ticketd.claims"]`` — the :class:`~ticketd.Claims`
  (also ``scope["state"]["ticket_claims"]``, i.e. ``websocket.state.ticket_claims``);
- ``scope["ticketd.subprotocol"]`` — ``"ticketd.v1"`` or ``None``: the app must accept
  with exactly this subprotocol (:func:`ticket_subprotocol`);
- the ticket removed from ``query_string``, ``subprotocols`` and the
  ``Sec-WebSocket-Protocol`` header, so the app can neither log nor echo it.

On refusal the middleware answers the HTTP status itself with the WebSocket
Denial Response extension when the server advertises it
(``scope["extensions"]["websocket.http.response"]``, e.g. uvicorn); otherwise it
closes before accepting (servers turn that into HTTP 403; close code 1008, or
1013 when the store is unavailable). For a per-route check in FastAPI, see
:func:`ticketd.integrations.starlette.require_ticket`.

ASGI scopes carry no method; a ``websocket`` scope is a GET by definition, and
the upgrade headers the server received are still checked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, TypeAlias

from ..handshake import QUERY_PARAMETER
from ..hosts import HostAllowlist
from ..lifetime import ConnectionLifetime
from ..liveness import RevocationWatch
from ..redaction import install_redaction
from ..tickets import Claims
from ..verifier import TicketVerifier
from ._common import Admitted, Denied, admit, is_ticket_subprotocol
from ._hosts import allowlist_of, refuse_host
from ._live import LIVE_KEY, AsgiLive, hold, needs_closer

__all__ = [
    "CLAIMS_KEY",
    "STATE_KEY",
    "SUBPROTOCOL_KEY",
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "TicketMiddleware",
    "admitted_scope",
    "check_scope",
    "claims_from_scope",
    "deny",
    "handshake_headers",
    "ticket_subprotocol",
]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

CLAIMS_KEY = "ticketd.claims"
SUBPROTOCOL_KEY = "ticketd.subprotocol"
STATE_KEY = "ticket_claims"


class TicketMiddleware:
    """Refuse ``websocket`` scopes without a valid ticket; pass the claims on in the scope.

    ``allowed_hosts`` (see :mod:`ticketd.hosts`) also refuses handshakes whose
    ``Host`` is not listed (421) before any ticket is looked at; two ``Host``
    headers are refused (400) with or without it. With ``watch`` (a
    :class:`~ticketd.liveness.RevocationWatch`) a revoked ticket is refused (403) and a
    later revocation closes the socket with 4403. With or without it, the socket is
    closed with 4401 at the session's expiry (``lifetime``, a
    :class:`~ticketd.lifetime.ConnectionLifetime`, adds a maximum lifetime). ::

        app = TicketMiddleware(app, verifier=verifier, audience="chat",
                               allowed_hosts=["rt.example.com"], watch=watch)
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: TicketVerifier,
        *,
        audience: str | None = None,
        allowed_hosts: Iterable[str] | HostAllowlist | None = None,
        redact_logs: bool = True,
        watch: RevocationWatch | None = None,
        lifetime: ConnectionLifetime | None = None,
    ) -> None:
        if redact_logs:  # the server logs the handshake before the app runs
            install_redaction()
        self.app = app
        self.verifier = verifier
        self.audience = audience
        self.allowed_hosts = allowlist_of(allowed_hosts)
        self.watch = watch
        self.lifetime = lifetime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        outcome = await check_scope(
            self.verifier, scope, audience=self.audience, allowed_hosts=self.allowed_hosts
        )
        if not needs_closer(self.watch, self.lifetime, outcome):  # nothing will close it
            if isinstance(outcome, Denied):
                await deny(scope, receive, send, outcome)
                return
            await self.app(admitted_scope(scope, outcome), receive, send)
            return
        # after the handshake: revocation (ticketd.liveness), session expiry (ticketd.lifetime)
        live = AsgiLive(receive, send)
        outcome = await hold(self.watch, outcome, live.attach, self.lifetime)
        if isinstance(outcome, Denied):
            await deny(scope, receive, send, outcome)
            return
        await live.run(self.app, {**admitted_scope(scope, outcome), LIVE_KEY: live.entry})


async def check_scope(
    verifier: TicketVerifier,
    scope: Scope,
    *,
    audience: str | None = None,
    allowed_hosts: HostAllowlist | None = None,
) -> Admitted | Denied:
    """Run the shared check on an ASGI ``websocket`` scope (redeems the ticket)."""
    client = scope.get("client")
    headers = handshake_headers(scope)
    refused = refuse_host(headers, allowed_hosts)
    if refused is not None:
        return refused
    return await admit(
        verifier,
        method="GET",
        target="?" + bytes(scope.get("query_string", b"")).decode("latin-1"),
        headers=headers,
        audience=audience,
        client_ip=client[0] if client else None,
    )


def handshake_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The handshake's headers as the client sent them, wherever the server put them.

    Servers disagree on where the offered subprotocols go: uvicorn's ``websockets``
    and ``websockets-sansio`` backends (and hypercorn, daphne) keep the
    ``Sec-WebSocket-Protocol`` header in ``scope["headers"]`` *and* list the tokens
    in ``scope["subprotocols"]``; uvicorn's ``wsproto`` backend drops the header and
    fills only ``scope["subprotocols"]``. The header wins when there is one (it shows
    repeated headers as sent); otherwise the list becomes one header line, so a ticket
    offered as a subprotocol is found, and counted, under every server.
    """
    headers = [(bytes(k), bytes(v)) for k, v in scope.get("headers", [])]
    if any(name.lower() == b"sec-websocket-protocol" for name, _ in headers):
        return headers
    offered = [str(token) for token in scope.get("subprotocols") or ()]
    if offered:
        headers.append((b"sec-websocket-protocol", ", ".join(offered).encode("latin-1")))
    return headers


async def deny(scope: Scope, receive: Receive, send: Send, denied: Denied) -> None:
    """Refuse the handshake: an HTTP response if the server supports it, else close."""
    message = await receive()
    if message["type"] != "websocket.connect":  # the client has gone already
        return
    if "websocket.http.response" in (scope.get("extensions") or {}):
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in denied.headers]
        await send(
            {"type": "websocket.http.response.start", "status": denied.status, "headers": headers}
        )
        await send({"type": "websocket.http.response.body", "body": denied.body.encode()})
    else:
        await send({"type": "websocket.close", "code": denied.close_code})


def admitted_scope(scope: Scope, admitted: Admitted) -> Scope:
    """A copy of ``scope`` with the claims in it and the ticket taken out."""
    new = dict(scope)
    new[CLAIMS_KEY] = admitted.claims
    new[SUBPROTOCOL_KEY] = admitted.subprotocol
    new["state"] = {**(scope.get("state") or {}), STATE_KEY: admitted.claims}
    new["query_string"] = _without_ticket(bytes(scope.get("query_string", b"")))
    new["subprotocols"] = [p for p in scope.get("subprotocols", ()) if not is_ticket_subprotocol(p)]
    new["headers"] = [_scrub_header(k, v) for k, v in scope.get("headers", [])]
    return new


def _without_ticket(query: bytes) -> bytes:
    name = QUERY_PARAMETER.encode()
    return b"&".join(p for p in query.split(b"&") if p.partition(b"=")[0] != name)


def _scrub_header(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    if name.lower() != b"sec-websocket-protocol":
        return name, value
    tokens = [t.strip() for t in value.decode("latin-1").split(",")]
    return name, ", ".join(t for t in tokens if not is_ticket_subprotocol(t)).encode("latin-1")


def claims_from_scope(scope: Scope) -> Claims:
    """The claims :class:`TicketMiddleware` put in the scope; ``LookupError`` if none.

    ::

        claims = claims_from_scope(websocket.scope)   # Starlette
        claims = claims_from_scope(self.scope)        # Channels consumer
    """
    claims = scope.get(CLAIMS_KEY)
    if not isinstance(claims, Claims):
        raise LookupError("no ticket was redeemed for this connection")
    return claims


def ticket_subprotocol(scope: Scope) -> str | None:
    """The subprotocol to accept with: ``"ticketd.v1"`` for the subprotocol transport, else None.

    ::

        await websocket.accept(subprotocol=ticket_subprotocol(websocket.scope))
    """
    value = scope.get(SUBPROTOCOL_KEY)
    return value if isinstance(value, str) else None
