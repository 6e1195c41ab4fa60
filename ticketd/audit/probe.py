"""The audit's only network code: one HTTP request, one raw WebSocket upgrade. Stdlib only.

Upgrades are written by hand on a plain socket so that the audit sees exactly what
a browser's attacker would: the status line before any 101, and what the server
does right after a 101 it should not have sent. :func:`upgrade` classifies each
attempt as

- ``refused``: an HTTP status other than 101 (the only safe answer to a bad handshake);
- ``closed``: 101, then a close frame or EOF before any data (the server noticed late);
- ``accepted``: 101, then data, or a pong to the audit's ping (a working socket);
- ``error``: no usable answer (connection refused, timeout, garbage).

Nothing here prints or logs: callers decide what to show, and only through the
redacting report.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import socket
import ssl
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import SplitResult, urlsplit

__all__ = [
    "Headers",
    "HttpResponse",
    "OpenSocket",
    "Upgrade",
    "UpgradeOutcome",
    "header",
    "http_request",
    "open_socket",
    "upgrade",
]

Headers = Sequence[tuple[str, str]]
UpgradeOutcome = Literal["refused", "closed", "accepted", "error"]

_HEAD_LIMIT = 64 * 1024
_BODY_LIMIT = 16 * 1024
_FRAME_LIMIT = 1024 * 1024
_OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass(frozen=True)
class HttpResponse:
    """A response to :func:`http_request`; ``status`` 0 with ``error`` when there was none."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    error: str = ""

    def header(self, name: str) -> str | None:
        return header(self.headers, name)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass(frozen=True)
class Upgrade:
    """What happened to one upgrade attempt."""

    outcome: UpgradeOutcome
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    close_code: int | None = None
    detail: str = ""

    def describe(self) -> str:
        if self.outcome == "refused":
            return f"refused before 101 (HTTP {self.status})"
        if self.outcome == "closed":
            code = self.close_code if self.close_code is not None else "none"
            return f"101 then close (code {code})"
        if self.outcome == "accepted":
            return f"101 then {self.detail or 'data'}"
        return f"no answer ({self.detail})"


def header(headers: Headers, name: str) -> str | None:
    """The first value of header ``name`` (case-insensitive), or ``None``."""
    for key, value in headers:
        if key.lower() == name.lower():
            return value
    return None


def http_request(
    url: str,
    method: str = "GET",
    *,
    headers: Headers = (),
    body: bytes | None = None,
    timeout: float = 5.0,
    context: ssl.SSLContext | None = None,
) -> HttpResponse:
    """One HTTP/1.1 request on a fresh connection (``Connection: close``).

    ``context`` verifies https servers (default: the system's trust store).
    """
    parts = urlsplit(url)
    conn: http.client.HTTPConnection
    host, port = parts.hostname or "", parts.port
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.putrequest(method, _target(parts), skip_accept_encoding=True)
        for name, value in (*headers, ("Connection", "close")):
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read(_BODY_LIMIT)
        return HttpResponse(response.status, tuple(response.getheaders()), data)
    except (OSError, http.client.HTTPException) as exc:
        return HttpResponse(0, error=f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


class OpenSocket:
    """An accepted WebSocket kept open (for checks that act after the handshake)."""

    def __init__(self, sock: socket.socket, result: Upgrade) -> None:
        self.sock = sock
        self.result = result

    def wait_close(self, timeout: float) -> int | Literal["open"] | None:
        """The close code the server sends within ``timeout`` (``None``: EOF), or ``"open"``."""
        self.sock.settimeout(timeout)
        try:
            while True:
                opcode, payload = _read_frame(self.sock)
                if opcode == _OP_CLOSE:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                if opcode == _OP_PING:
                    _send_frame(self.sock, _OP_PONG, payload)
        except TimeoutError:
            return "open"
        except (OSError, EOFError, ValueError):
            return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            _send_frame(self.sock, _OP_CLOSE, struct.pack("!H", 1000))
        self.sock.close()


@dataclass
class _UpgradeRequest:
    url: str
    origin: str | None = None
    cookie: str | None = None
    ticket: str | None = None
    transport: Literal["subprotocol", "query"] = "subprotocol"
    context: ssl.SSLContext | None = None


def upgrade(
    url: str,
    *,
    origin: str | None,
    cookie: str | None = None,
    ticket: str | None = None,
    transport: Literal["subprotocol", "query"] = "subprotocol",
    timeout: float = 5.0,
    settle: float = 1.0,
    barrier: threading.Barrier | None = None,
    context: ssl.SSLContext | None = None,
) -> Upgrade:
    """One upgrade attempt, classified; the socket is closed before returning."""
    request = _UpgradeRequest(url, origin, cookie, ticket, transport, context)
    opened = _attempt(request, timeout=timeout, settle=settle, barrier=barrier)
    if isinstance(opened, OpenSocket):
        opened.close()
        return opened.result
    return opened


def open_socket(
    url: str,
    *,
    origin: str | None,
    ticket: str,
    cookie: str | None = None,
    transport: Literal["subprotocol", "query"] = "subprotocol",
    timeout: float = 5.0,
    context: ssl.SSLContext | None = None,
) -> OpenSocket | Upgrade:
    """An accepted socket left open, or the :class:`Upgrade` saying why there is none."""
    request = _UpgradeRequest(url, origin, cookie, ticket, transport, context)
    return _attempt(request, timeout=timeout, settle=timeout, barrier=None)


def _attempt(
    request: _UpgradeRequest, *, timeout: float, settle: float, barrier: threading.Barrier | None
) -> OpenSocket | Upgrade:
    parts = urlsplit(request.url)
    secure = parts.scheme in ("wss", "https")
    port = parts.port or (443 if secure else 80)
    try:
        sock = socket.create_connection((parts.hostname or "", port), timeout=timeout)
    except OSError as exc:
        return Upgrade("error", detail=f"connect: {type(exc).__name__}")
    try:
        if secure:
            context = request.context or ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=parts.hostname)
        if barrier is not None:
            barrier.wait(timeout)
        sock.sendall(_upgrade_head(request, parts))
        head, rest = _read_head(sock)
    except (OSError, ValueError, threading.BrokenBarrierError) as exc:
        sock.close()
        return Upgrade("error", detail=f"{type(exc).__name__}")
    status, headers = _parse_head(head)
    if status != 101:
        body = _read_body(sock, headers, rest)
        sock.close()
        return Upgrade("refused", status=status, headers=headers, body=body)
    return _after_101(sock, headers, rest, settle)


def _after_101(
    sock: socket.socket, headers: tuple[tuple[str, str], ...], rest: bytes, settle: float
) -> OpenSocket | Upgrade:
    """Ping, then look at the first frame: data or pong = accepted, close or EOF = closed."""
    reader = _Buffered(sock, rest)
    try:
        _send_frame(sock, _OP_PING, b"ticketd-audit")
    except OSError:
        sock.close()
        return Upgrade("closed", status=101, headers=headers)
    sock.settimeout(settle)
    try:
        opcode, payload = _read_frame(reader)
    except TimeoutError:
        return OpenSocket(sock, Upgrade("accepted", 101, headers, detail="silence (socket open)"))
    except (OSError, EOFError, ValueError):
        sock.close()
        return Upgrade("closed", status=101, headers=headers)
    if opcode == _OP_CLOSE:
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        sock.close()
        return Upgrade("closed", status=101, headers=headers, close_code=code)
    detail = "pong (socket open)" if opcode == _OP_PONG else "data"
    return OpenSocket(sock, Upgrade("accepted", 101, headers, payload[:256], detail=detail))


def _target(parts: SplitResult) -> str:
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _upgrade_head(request: _UpgradeRequest, parts: SplitResult) -> bytes:
    target = _target(parts)
    protocols = ["ticketd.v1"]
    if request.ticket is not None:
        if request.transport == "query":
            target += ("&" if "?" in target else "?") + f"ticket={request.ticket}"
        else:
            protocols.append(f"ticket.{request.ticket}")
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
        f"Sec-WebSocket-Protocol: {', '.join(protocols)}",
    ]
    if request.origin is not None:
        lines.append(f"Origin: {request.origin}")
    if request.cookie is not None:
        lines.append(f"Cookie: {request.cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ValueError("connection closed before a complete response head")
        data += chunk
        if len(data) > _HEAD_LIMIT:
            raise ValueError("response head too large")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _parse_head(head: bytes) -> tuple[int, tuple[tuple[str, str], ...]]:
    lines = head.decode("latin-1").split("\r\n")
    fields = lines[0].split(" ", 2)
    if len(fields) < 2 or not fields[1].isdigit():
        raise ValueError("not an HTTP status line")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    return int(fields[1]), tuple(headers)


def _read_body(sock: socket.socket, headers: Headers, rest: bytes) -> bytes:
    length = header(headers, "content-length")
    want = int(length) if length and length.isdigit() else _BODY_LIMIT
    body = rest
    sock.settimeout(0.5)
    try:
        while len(body) < min(want, _BODY_LIMIT):
            chunk = sock.recv(4096)
            if not chunk:
                break
            body += chunk
    except OSError:
        pass
    return body[: min(want, _BODY_LIMIT)]


class _Buffered:
    """A socket with some bytes already read (what followed the response head)."""

    def __init__(self, sock: socket.socket, pending: bytes) -> None:
        self.sock, self.pending = sock, pending

    def recv(self, n: int) -> bytes:
        if self.pending:
            data, self.pending = self.pending[:n], self.pending[n:]
            return data
        return self.sock.recv(n)


def _read_exact(reader: _Buffered | socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = reader.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _read_frame(reader: _Buffered | socket.socket) -> tuple[int, bytes]:
    first, second = _read_exact(reader, 2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", _read_exact(reader, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", _read_exact(reader, 8))
    if length > _FRAME_LIMIT:
        raise ValueError("frame too large")
    mask = _read_exact(reader, 4) if second & 0x80 else b""
    payload = _read_exact(reader, length)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return first & 0x0F, payload


def _send_frame(sock: socket.socket, opcode: int, payload: bytes) -> None:
    mask = os.urandom(4)
    head = bytes([0x80 | opcode, 0x80 | len(payload)])  # control frames: < 126 bytes
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(head + mask + masked)
