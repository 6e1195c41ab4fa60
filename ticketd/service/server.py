"""uvicorn as ``ticketd serve`` runs it: bounded request headers and a drain phase.

Two things uvicorn does not do on its own:

- **Bounded request headers.** httptools buffers a request's headers without
  limit, and neither parser times out a client that trickles them (uvicorn's
  keep-alive timer is armed only after a response and is reset by every byte).
  :class:`BoundedH11Protocol` and :class:`BoundedHttpToolsProtocol` count the
  bytes of each request's head (request line and headers) and answer ``431``
  (problem code ``headers_too_large``) past ``max_header_bytes``, and ``408``
  (``header_timeout``) when the head is not complete ``header_timeout`` seconds
  after the connection opened or the previous response ended. A connection that
  never sent a byte is closed without a response. Either way the connection stops
  being parsed (its input is discarded) and is closed shortly after, so its memory
is the limit plus one read.
- **Draining.** :class:`DrainingServer` turns readiness false before the process stops.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from types import FrameType
from typing import Any, ClassVar, Literal

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .problems import MEDIA_TYPE, PROBLEM_TYPE_BASE, PROBLEMS

__all__ = [
    "HTTP_PARSERS",
    "BoundedH11Protocol",
    "BoundedHttpToolsProtocol",
    "DrainingServer",
    "bounded_http_protocol",
    "configure_header_limits",
]

_logger = logging.getLogger("ticketd.service")

HTTP_PARSERS = ("auto", "h11", "httptools")
_DEFAULT_MAX_HEADER_BYTES = 32 * 1024
_DEFAULT_HEADER_TIMEOUT = 10.0
_LINGER_SECONDS = 2.0
"""How long a refused connection stays open, its input discarded, so the client reads the answer.

Closing at once with unread input would send a TCP reset, which can destroy the
answer in the client's receive buffer before the client has read it."""
_READ_SIZE = 256 * 1024  # the most asyncio hands to data_received at once

_REASON_PHRASES = {431: b"Request Header Fields Too Large", 408: b"Request Timeout"}
_HeadRefusal = Literal["headers_too_large", "header_timeout"]


def _head_refusal(code: _HeadRefusal) -> bytes:
    """A complete HTTP/1.1 problem response that closes the connection."""
    problem = PROBLEMS[code]
    body = json.dumps(
        {
            "type": PROBLEM_TYPE_BASE + code,
            "title": problem.title,
            "status": problem.status,
            "code": code,
        },
        separators=(",", ":"),
    ).encode()
    head = [
        b"HTTP/1.1 %d %s" % (problem.status, _REASON_PHRASES[problem.status]),
        b"content-type: " + MEDIA_TYPE.encode(),
        b"content-length: %d" % len(body),
        b"cache-control: no-store",
        b"connection: close",
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class _HeadGuard:
    """Byte and time limits on each request head; mixed in before a uvicorn HTTP protocol.

    Subclasses say whether the protocol is waiting for a request head
    (:meth:`_awaiting_head`). Limits are class attributes so that uvicorn
    workers, which build protocols from a class path, get them too
    (:func:`configure_header_limits`).
    """

    max_header_bytes: ClassVar[int] = _DEFAULT_MAX_HEADER_BYTES
    header_timeout: ClassVar[float] = _DEFAULT_HEADER_TIMEOUT

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    client: tuple[str, int] | None
    _head_bytes: int = 0
    _head_timer: asyncio.TimerHandle | None = None
    _discarding = False

    def _awaiting_head(self) -> bool:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._head_bytes = 0
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._discarding:  # refused: the answer is out, the input goes nowhere
            return
        if self._awaiting_head():
            self._head_bytes += len(data)
            self._arm()
        super().data_received(data)  # type: ignore[misc]
        if self.transport.is_closing():
            self._disarm()
        elif not self._awaiting_head():
            self._head_complete()
        elif self._head_bytes > self.max_header_bytes:
            self._refuse("headers_too_large")

    def eof_received(self) -> None:
        if self._discarding:
            self.transport.close()
            return
        super().eof_received()  # type: ignore[misc]

    def _head_complete(self) -> None:
        self._disarm()
        self._head_bytes = 0

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._awaiting_head():
            return
        if self._head_bytes == 0:  # an idle connection: nothing to answer
            self.transport.close()
            return
        self._refuse("header_timeout")

    def _refuse(self, code: _HeadRefusal) -> None:
        self._disarm()
        status = PROBLEMS[code].status
        _logger.info(
            "request head refused code=%s status=%d bytes=%d client=%s",
            code,
            status,
            self._head_bytes,
            self.client[0] if self.client else "-",
            extra={"code": code, "status": status},
        )
        self._discarding = True  # nothing more is parsed or buffered for this connection
        self.transport.write(_head_refusal(code))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_LINGER_SECONDS, self.transport.close)


class BoundedH11Protocol(_HeadGuard, H11Protocol):
    """uvicorn's h11 protocol with :class:`_HeadGuard`'s limits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # h11 has its own buffer limit; keep it above ours (plus one read) so that the
        # answer is always the same 431, whichever parser runs.
        self.conn = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.max_header_bytes + _READ_SIZE
        )

    def _awaiting_head(self) -> bool:
        return self.conn.their_state is h11.IDLE


class BoundedHttpToolsProtocol(_HeadGuard, HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`_HeadGuard`'s limits."""

    _head_pending = True

    def _awaiting_head(self) -> bool:
        return self._head_pending

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_pending = True

    def on_headers_complete(self) -> None:
        self._head_pending = False
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.cycle is None or self.cycle.response_complete:
            self._head_pending = True  # between requests: the next head is on the clock


def bounded_http_protocol(parser: str = "auto") -> str:
    """The import path of the bounded protocol for ``parser`` (``auto``, ``h11``, ``httptools``).

    ``auto`` is httptools, as with uvicorn. A path, not a
    class, so that it also reaches uvicorn's worker processes.
    """
    if parser not in HTTP_PARSERS:
        raise ValueError(f"unknown HTTP parser {parser!r}; choose one of {HTTP_PARSERS}")
    if parser == "h11":
        return f"{__name__}:BoundedH11Protocol"
    return f"{__name__}:BoundedHttpToolsProtocol"  # uvicorn[standard] brings httptools


def configure_header_limits(*, max_header_bytes: int, header_timeout: float) -> None:
    """Set the limits of both bounded protocols (once per process, before serving)."""
    _HeadGuard.max_header_bytes = max_header_bytes
    _HeadGuard.header_timeout = header_timeout


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT: report not-ready, keep serving ``drain_seconds``, then exit.

    Load balancers polling ``/readyz`` stop sending new requests during the drain;
    uvicorn then lets in-flight requests finish (``timeout_graceful_shutdown``).
    A second signal exits at once. ``service`` is the app's
    :class:`~ticketd.service.app.Service` (``app.state.service``).
    """

    def __init__(self, config: uvicorn.Config, service: Any, *, drain_seconds: float) -> None:
        super().__init__(config)
        self.service = service
        self.drain_seconds = drain_seconds

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.service.draining or self.drain_seconds <= 0:
            self.service.draining = True
            super().handle_exit(sig, frame)
            return
        self.service.draining = True
        _logger.info("draining: /readyz answers 503, exiting in %.1f s", self.drain_seconds)
        timer = threading.Timer(self.drain_seconds, super().handle_exit, (sig, frame))
        timer.daemon = True
        timer.start()
