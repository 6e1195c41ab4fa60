"""After the handshake: the hook every adapter calls, and each framework's closer.

:func:`hold` / :func:`hold_blocking` take the outcome of a redeem and, when the
ticket was good, register the connection with the
:class:`~ticketd.liveness.RevocationWatch` (if there is one) and check the revocation
state (in that order): a revoked ticket becomes ``Denied(403, revoked)``, a store
failure 503. With or without a watch, the connection's end of life is then armed
(:class:`~ticketd.lifetime.ConnectionLifetime`: 4401 at the session's expiry, or
after the maximum lifetime). The adapter attaches a closer, which closes with the
requested code (4403 for a revocation, 4401 for the end of the session) and gives the
closing handshake :data:`~ticketd.registry.CLOSE_TIMEOUT`
before aborting the transport (websockets, aiohttp) or ending the application
(ASGI, where the server owns the transport and its own close timeout).

No framework is imported here at module level: each closer takes the
framework's connection object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

from ..exceptions import REJECTION_STATUS, StoreUnavailable, TicketRejected
from ..lifetime import ConnectionLifetime
from ..liveness import BlockingRevocationWatch, RevocationWatch
from ..registry import CLOSE_TIMEOUT, LiveConnection
from ._common import UNAVAILABLE_STATUS, Admitted, Denied

__all__ = [
    "LIVE_ATTRIBUTE",
    "LIVE_KEY",
    "AsgiLive",
    "aiohttp_closer",
    "hold",
    "hold_blocking",
    "needs_closer",
    "starlette_closer",
    "websockets_closer",
    "websockets_sync_closer",
]

_logger = logging.getLogger("ticketd.integrations")

LIVE_ATTRIBUTE = "ticketd_connection"
"""websockets: ``connection.ticketd_connection``, the :class:`~ticketd.registry.LiveConnection`."""
LIVE_KEY = "ticketd.connection"
"""ASGI: ``scope["ticketd.connection"]``, the :class:`~ticketd.registry.LiveConnection`."""

_OPEN_WAIT = 2.0
"""Seconds a close requested during the handshake waits for the socket to open."""
_tasks: set[asyncio.Task[Any]] = set()


def _spawn(coroutine: Coroutine[Any, Any, Any]) -> None:
    task = asyncio.get_running_loop().create_task(coroutine)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def _threadsafe(
    loop: asyncio.AbstractEventLoop, close: Callable[[int, str], Coroutine[Any, Any, Any]]
) -> Callable[[int, str], None]:
    def closer(code: int, reason: str) -> None:
        loop.call_soon_threadsafe(lambda: _spawn(close(code, reason)))

    return closer


def _revoked(exc: TicketRejected) -> Denied:
    _logger.info("websocket handshake refused reason=%s", exc.reason.value)
    return Denied(status=REJECTION_STATUS[exc.reason], reason=exc.reason)


def _unavailable() -> Denied:
    _logger.warning("websocket handshake refused: revocation state unavailable")
    return Denied(
        status=UNAVAILABLE_STATUS,
        reason=None,
        headers=(("Cache-Control", "no-store"), ("Retry-After", "1")),
    )


_DEFAULT_LIFETIME = ConnectionLifetime()
"""What adapters use without ``lifetime=``: close at the session's expiry, no maximum."""


def needs_closer(
    watch: object, lifetime: ConnectionLifetime | None, outcome: Admitted | Denied
) -> bool:
    """Whether anything may close this connection later (a watch, or a lifetime deadline)."""
    if isinstance(outcome, Denied):
        return False
    return watch is not None or (lifetime or _DEFAULT_LIFETIME).applies(outcome.claims)


def _arm(
    lifetime: ConnectionLifetime | None,
    entry: LiveConnection,
    attach: Callable[[LiveConnection], None],
) -> None:
    attach(entry)
    (lifetime or _DEFAULT_LIFETIME).arm(entry)


async def hold(
    watch: RevocationWatch | None,
    outcome: Admitted | Denied,
    attach: Callable[[LiveConnection], None],
    lifetime: ConnectionLifetime | None = None,
) -> Admitted | Denied:
    """Register an admitted connection, check its revocation state, arm its lifetime."""
    if isinstance(outcome, Denied):
        return outcome
    if watch is None:
        entry = LiveConnection.of(outcome.claims, outcome.connection_id)
    else:
        try:
            entry = await watch.admit(outcome.claims, outcome.connection_id)
        except TicketRejected as exc:
            return _revoked(exc)
        except StoreUnavailable:
            return _unavailable()
        entry.on_end(lambda: watch.forget(entry))
    _arm(lifetime, entry, attach)
    return outcome


def hold_blocking(
    watch: BlockingRevocationWatch | None,
    outcome: Admitted | Denied,
    attach: Callable[[LiveConnection], None],
    lifetime: ConnectionLifetime | None = None,
) -> Admitted | Denied:
    """:func:`hold` for threaded servers."""
    if isinstance(outcome, Denied):
        return outcome
    if watch is None:
        entry = LiveConnection.of(outcome.claims, outcome.connection_id)
    else:
        try:
            entry = watch.admit(outcome.claims, outcome.connection_id)
        except TicketRejected as exc:
            return _revoked(exc)
        except StoreUnavailable:
            return _unavailable()
        entry.on_end(lambda: watch.forget(entry))
    _arm(lifetime, entry, attach)
    return outcome


# -- websockets (asyncio) ------------------------------------------------------------


def _websocket_state(connection: Any) -> str:
    return str(getattr(connection.protocol.state, "name", ""))


def websockets_closer(connection: Any) -> Callable[[LiveConnection], None]:
    """The attach step for a ``websockets.asyncio`` connection (called in ``process_request``)."""
    loop = asyncio.get_running_loop()

    async def close(code: int, reason: str) -> None:
        for _ in range(int(_OPEN_WAIT / 0.005)):  # a close racing the 101: wait for OPEN
            if _websocket_state(connection) != "CONNECTING":
                break
            await asyncio.sleep(0.005)
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await connection.close(code, reason)
        except TimeoutError:
            connection.transport.abort()

    async def end_when_closed(entry: LiveConnection) -> None:
        await connection.wait_closed()
        entry.end()

    def attach(entry: LiveConnection) -> None:
        setattr(connection, LIVE_ATTRIBUTE, entry)
        entry.attach(_threadsafe(loop, close), lambda: _websocket_state(connection) == "CLOSED")
        _spawn(end_when_closed(entry))

    return attach


# -- websockets (threads) ------------------------------------------------------------


def websockets_sync_closer(connection: Any) -> Callable[[LiveConnection], None]:
    """The attach step for a ``websockets.sync`` connection."""

    def abort() -> None:
        with contextlib.suppress(OSError):
            connection.socket.shutdown(socket.SHUT_RDWR)

    def close_now(code: int, reason: str) -> None:
        deadline = time.monotonic() + _OPEN_WAIT
        while _websocket_state(connection) == "CONNECTING" and time.monotonic() < deadline:
            time.sleep(0.005)
        timer = threading.Timer(CLOSE_TIMEOUT, abort)
        timer.daemon = True
        timer.start()
        try:
            connection.close(code, reason)
        finally:
            timer.cancel()

    def closer(code: int, reason: str) -> None:
        threading.Thread(target=close_now, args=(code, reason), daemon=True).start()

    def attach(entry: LiveConnection) -> None:
        setattr(connection, LIVE_ATTRIBUTE, entry)
        entry.attach(closer, lambda: _websocket_state(connection) == "CLOSED")

    return attach


# -- aiohttp -------------------------------------------------------------------------


def aiohttp_closer(ws: Any, transport: Any) -> Callable[[LiveConnection], None]:
    """The attach step for a prepared ``aiohttp.web.WebSocketResponse``."""
    loop = asyncio.get_running_loop()

    async def close(code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await ws.close(code=code, message=reason.encode())
        except TimeoutError:
            if transport is not None:
                transport.abort()

    def attach(entry: LiveConnection) -> None:
        entry.attach(_threadsafe(loop, close), lambda: bool(ws.closed))

    return attach


# -- Starlette / FastAPI per-route dependency ----------------------------------------


def starlette_closer(websocket: Any) -> Callable[[LiveConnection], None]:
    """The attach step for a Starlette ``WebSocket`` (the per-route dependency)."""
    loop = asyncio.get_running_loop()

    def state(which: str) -> str:
        return str(getattr(getattr(websocket, which), "name", ""))

    async def close(code: int, reason: str) -> None:
        for _ in range(int(_OPEN_WAIT / 0.005)):
            if state("application_state") != "CONNECTING":
                break
            await asyncio.sleep(0.005)
        if state("application_state") == "CONNECTED":
            with contextlib.suppress(RuntimeError, OSError):
                await websocket.close(code=code, reason=reason)

    def gone() -> bool:
        return "DISCONNECTED" in (state("application_state"), state("client_state"))

    def attach(entry: LiveConnection) -> None:
        websocket.scope[LIVE_KEY] = entry
        entry.attach(_threadsafe(loop, close), gone)

    return attach


# -- ASGI middleware -----------------------------------------------------------------

_Message = MutableMapping[str, Any]


class AsgiLive:
    """Wraps ``receive``/``send`` of one ASGI WebSocket so that a revocation (or the end
    of the session) can end it.

    On close: ``websocket.close`` with the code is sent (after the app's accept,
    if it has not accepted yet), the app's ``receive()`` returns
    ``websocket.disconnect``, its later sends are dropped, and if it has not
    returned within :data:`~ticketd.registry.CLOSE_TIMEOUT` it is cancelled.
    """

    def __init__(
        self,
        receive: Callable[[], Awaitable[_Message]],
        send: Callable[[_Message], Awaitable[None]],
    ) -> None:
        self._receive, self._send = receive, send
        self._loop = asyncio.get_running_loop()
        self._accepted = False
        self._ended = False
        self._close: tuple[int, str] | None = None
        self._closed = asyncio.Event()
        self._pending: asyncio.Task[_Message] | None = None
        self._app: asyncio.Task[None] | None = None
        self.entry: LiveConnection | None = None

    def attach(self, entry: LiveConnection) -> None:
        self.entry = entry
        entry.attach(self._request_close, lambda: self._ended)

    def _request_close(self, code: int, reason: str) -> None:
        self._loop.call_soon_threadsafe(self._begin_close, code, reason)

    def _begin_close(self, code: int, reason: str) -> None:
        if self._close is not None or self._ended:
            return
        self._close = (code, reason)
        self._closed.set()
        if self._accepted:
            _spawn(self._send_close())

    async def _send_close(self) -> None:
        assert self._close is not None
        code, reason = self._close
        self._ended = True
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        await asyncio.sleep(CLOSE_TIMEOUT)
        if self._app is not None and not self._app.done():
            self._app.cancel()

    async def receive(self) -> _Message:
        if self._close is None:
            if self._pending is None:
                self._pending = asyncio.ensure_future(self._receive())
            waiter = asyncio.ensure_future(self._closed.wait())
            try:
                await asyncio.wait({self._pending, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if self._pending.done():
                message, self._pending = self._pending.result(), None
                return message
        assert self._close is not None
        return {"type": "websocket.disconnect", "code": self._close[0]}

    async def send(self, message: _Message) -> None:
        if self._ended:
            return
        kind = message.get("type")
        if kind == "websocket.close":
            self._ended = True
        await self._send(message)
        if kind == "websocket.accept":
            self._accepted = True
            if self._close is not None:
                _spawn(self._send_close())

    async def run(
        self, app: Callable[[_Message, Any, Any], Awaitable[None]], scope: _Message
    ) -> None:
        """Run the app with the wrapped channels; end the connection when it returns."""
        self._app = asyncio.current_task()
        try:
            await app(scope, self.receive, self.send)
        except asyncio.CancelledError:
            if self._close is None:
                raise
        finally:
            self._ended = True
            if self._pending is not None:
                self._pending.cancel()
            if self.entry is not None:
                self.entry.end()
