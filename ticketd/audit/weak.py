"""A deliberately weak ticket server for ``ticketd audit --self-test``. Loopback only, stdlib.

With no weakness switched on it behaves like a correct deployment (mint, two
ticket-protected sockets with their own audiences, login, logout closing sockets
with 4403, a replay metric). Each entry of :data:`WEAKNESSES` switches on one
classic mistake, so the self-test can show that the audit catches each of them.
It is a test fixture shipped with the tool: never expose it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import ssl
import struct
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

__all__ = ["ALLOWED_ORIGIN", "AUDIENCES", "WEAKNESSES", "WeakServer"]

ALLOWED_ORIGIN = "https://app.example.test"
AUDIENCES = {"/ws": "chat", "/ws2": "news"}
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_DENIED = b"ticket rejected\n"

WEAKNESSES: dict[str, str] = {
    "mint_any_origin": "the mint does not check Origin (relies on CORS alone)",
    "prefix_origin": "Origin compared with startswith() at the mint and the socket",
    "reflect_cors": "CORS reflects any Origin into Access-Control-Allow-Origin",
    "wildcard_cors": "Access-Control-Allow-Origin: * with credentials",
    "no_fetch_metadata": "Sec-Fetch-Site: cross-site not refused",
    "mint_get": "GET mints tickets",
    "text_plain_mint": "text/plain bodies accepted by the mint",
    "mint_no_cookie": "the mint hands out tickets without a session",
    "missing_no_store": "the ticket response lacks no-store and nosniff",
    "no_ticket_accepted": "upgrades without a ticket are accepted",
    "cookie_upgrade": "a session cookie alone opens the socket, from any Origin",
    "accept_then_close": "refusals are sent as 101 then close instead of an HTTP status",
    "no_origin_check_upgrade": "the socket ignores the handshake's Origin",
    "origin_before_consume": "a ticket presented from the wrong Origin is not burned",
    "reusable_tickets": "tickets are read, never deleted (GET instead of GETDEL)",
    "distinguishable": "unknown, replayed and malformed tickets get different refusals",
    "get_consumes": "a plain GET with ?ticket= consumes the ticket",
    "subprotocol_echo": "the ticket-bearing subprotocol is echoed back",
    "audience_ignored": "the sockets ignore the ticket's audience",
    "weak_cookie": "the session cookie lacks HttpOnly and has SameSite=None",
    "logout_keeps_socket": "logging out leaves open sockets open",
    "no_replay_metric": "replays are counted as 'invalid', not 'replayed'",
    "plaintext": "served over plaintext http in production",
}


@dataclass
class _Record:
    origin: str
    audience: str


@dataclass
class _Request:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name]

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    def query(self, name: str) -> str | None:
        return dict(parse_qsl(urlsplit(self.target).query)).get(name)


@dataclass
class WeakServer:
    """Run with ``with WeakServer({"reusable_tickets"}) as server: server.base``."""

    weaknesses: Iterable[str] = ()
    weak: frozenset[str] = field(init=False)
    session: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    issued: list[str] = field(default_factory=list)
    port: int = 0
    tls: tuple[str, str] | None = None
    """(certificate, key) PEM files: serve https and wss instead of http and ws."""
    hsts: bool = True
    """With ``tls``: send Strict-Transport-Security on the mint."""

    def __post_init__(self) -> None:
        self.weak = frozenset(self.weaknesses)
        unknown = self.weak - WEAKNESSES.keys()
        if unknown:
            raise ValueError(f"unknown weaknesses: {sorted(unknown)}")
        self._tickets: dict[str, _Record] = {}
        self._used: set[str] = set()
        self._metrics: Counter[str] = Counter()
        self._open: set[asyncio.StreamWriter] = set()
        self._logged_out = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def socket_base(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}"

    @property
    def cookie(self) -> str:
        return f"session={self.session}"

    def __enter__(self) -> WeakServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.port = future.result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> int:
        context = None
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls)
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=context)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _stop(self) -> None:
        for writer in list(self._open):
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # -- HTTP ----------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(_read_request(reader), 5)
            if request.path in AUDIENCES:
                await self._socket(request, reader, writer)
            else:
                writer.write(self._http(request))
                await writer.drain()
        except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def _http(self, request: _Request) -> bytes:
        if request.path == "/v1/tickets":
            status, headers, body = self._mint(request)
            origin = request.get("origin") or ""
            headers = [h for h in headers if not h[0].startswith("Access-Control-Allow-")]
            if "wildcard_cors" in self.weak:
                headers += [("Access-Control-Allow-Origin", "*")]
                headers += [("Access-Control-Allow-Credentials", "true")]
            elif "reflect_cors" in self.weak and origin:
                headers += [("Access-Control-Allow-Origin", origin)]
                headers += [("Access-Control-Allow-Credentials", "true")]
            elif self._origin_ok(origin) and status < 400:
                headers += [("Access-Control-Allow-Origin", origin)]
                headers += [("Access-Control-Allow-Credentials", "true"), ("Vary", "Origin")]
            if self.tls is not None and self.hsts:
                headers += [("Strict-Transport-Security", "max-age=31536000")]
            return _response(status, headers, body)
        if request.path == "/login" and request.method == "POST":
            attributes = "SameSite=None" if "weak_cookie" in self.weak else "HttpOnly; SameSite=Lax"
            cookie = ("Set-Cookie", f"session={self.session}; Path=/; {attributes}")
            return _response(200, [cookie, ("Content-Type", "application/json")], b"{}")
        if request.path == "/logout" and request.method == "POST":
            self._logged_out = True
            if "logout_keeps_socket" not in self.weak:
                for writer in list(self._open):
                    writer.write(_frame(0x8, struct.pack("!H", 4403)))
            return _response(204, [], b"")
        if request.path == "/metrics":
            lines = [
                f'ticketd_redemptions_total{{outcome="{o}"}} {self._metrics[o]}'
                for o in ("ok", "invalid", "replayed")
            ]
            return _response(200, [("Content-Type", "text/plain")], "\n".join(lines).encode())
        return _response(404, [], b"not found\n")

    def _origin_ok(self, origin: str | None) -> bool:
        if "prefix_origin" in self.weak:
            return origin is not None and origin.startswith(ALLOWED_ORIGIN)
        return origin == ALLOWED_ORIGIN

    def _session_ok(self, request: _Request) -> bool:
        cookies = "; ".join(request.all("cookie"))
        return not self._logged_out and f"session={self.session}" in cookies.split("; ")

    def _mint(self, request: _Request) -> tuple[int, list[tuple[str, str]], bytes]:
        origins = request.all("origin")
        origin = origins[0] if len(origins) == 1 else None
        if request.method == "OPTIONS":
            if not self._origin_ok(origin):
                return 403, [], _DENIED
            allow = [("Access-Control-Allow-Methods", "POST")]
            return 204, [*allow, ("Access-Control-Allow-Headers", "content-type")], b""
        if request.method != "POST" and not (request.method == "GET" and "mint_get" in self.weak):
            return 405, [("Allow", "POST, OPTIONS")], b"method not allowed\n"
        if not self._origin_ok(origin) and "mint_any_origin" not in self.weak:
            return 403, [], b"origin not allowed\n"
        cross = (request.get("sec-fetch-site") or "").lower() == "cross-site"
        if cross and "no_fetch_metadata" not in self.weak:
            return 403, [], b"cross-site\n"
        media = (request.get("content-type") or "").split(";")[0].strip().lower()
        plain = bool(request.body.strip()) and media != "application/json"
        if plain and "text_plain_mint" not in self.weak:
            return 415, [], b"unsupported media type\n"
        if not self._session_ok(request) and "mint_no_cookie" not in self.weak:
            return 401, [], b"unauthenticated\n"
        try:
            audience = json.loads(request.body or b"{}").get("audience") or "chat"
        except (ValueError, AttributeError):
            return 400, [], b"invalid body\n"
        if audience not in AUDIENCES.values():
            return 400, [], b"unknown audience\n"
        ticket = secrets.token_urlsafe(32)
        self.issued.append(ticket)
        self._tickets[ticket] = _Record(origin or "", audience)
        headers = [("Content-Type", "application/json")]
        if "missing_no_store" not in self.weak:
            headers += [("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")]
        body = json.dumps({"ticket": ticket, "expires_in": 30, "audience": audience})
        return 201, headers, body.encode()

    # -- WebSocket -----------------------------------------------------------------------

    async def _socket(
        self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        upgrade = (request.get("upgrade") or "").lower() == "websocket"
        key = request.get("sec-websocket-key")
        protocols = [p.strip() for p in ",".join(request.all("sec-websocket-protocol")).split(",")]
        from_protocol = next((p[7:] for p in protocols if p.startswith("ticket.")), None)
        ticket = request.query("ticket") or from_protocol
        if not upgrade or key is None:
            if "get_consumes" in self.weak and ticket:
                self._tickets.pop(ticket, None)
            writer.write(_response(400, [], b"not a websocket handshake\n"))
            return
        refusal = self._refusal(request, ticket)
        if refusal is not None and "accept_then_close" not in self.weak:
            status, body = refusal
            writer.write(_response(status, [("Cache-Control", "no-store")], body))
            return
        accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()  # noqa: S324 - RFC 6455
        head = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade"]
        head.append(f"Sec-WebSocket-Accept: {accept}")
        if from_protocol is not None:
            chosen = f"ticket.{from_protocol}" if "subprotocol_echo" in self.weak else "ticketd.v1"
            head.append(f"Sec-WebSocket-Protocol: {chosen}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        if refusal is not None:  # accept_then_close
            writer.write(_frame(0x8, struct.pack("!H", 1008)))
            await writer.drain()
            return
        writer.write(_frame(0x1, b"hello"))
        self._open.add(writer)
        try:
            await _serve_frames(reader, writer)
        finally:
            self._open.discard(writer)

    def _refusal(self, request: _Request, ticket: str | None) -> tuple[int, bytes] | None:
        """``None`` to accept, else the status and body of the refusal."""
        origin = request.get("origin")
        if ticket is None:
            if "no_ticket_accepted" in self.weak:
                return None
            if "cookie_upgrade" in self.weak and self._session_ok(request):
                return None
            return 401, _DENIED
        distinct = "distinguishable" in self.weak
        if len(ticket) != 43:
            return 401, b"malformed ticket\n" if distinct else _DENIED
        record = self._tickets.get(ticket)
        if record is None:
            outcome = "replayed" if ticket in self._used else "invalid"
            if outcome == "replayed" and "no_replay_metric" in self.weak:
                outcome = "invalid"
            self._metrics[outcome] += 1
            return 401, (b"ticket already used\n" if outcome == "replayed" else b"unknown\n") if (
                distinct
            ) else _DENIED
        origin_ok = "no_origin_check_upgrade" in self.weak or (
            origin is not None and origin.startswith(ALLOWED_ORIGIN)
            if "prefix_origin" in self.weak
            else origin == record.origin
        )
        if not origin_ok and "origin_before_consume" in self.weak:
            return 403, _DENIED
        if "reusable_tickets" not in self.weak:
            del self._tickets[ticket]
        self._used.add(ticket)
        if not origin_ok:
            return 403, _DENIED
        if record.audience != AUDIENCES[request.path] and "audience_ignored" not in self.weak:
            return 403, _DENIED
        self._metrics["ok"] += 1
        return None


async def _read_request(reader: asyncio.StreamReader) -> _Request:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
    body = await reader.readexactly(min(length, 65536)) if length else b""
    return _Request(method, target, headers, body)


async def _serve_frames(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer pings, echo nothing, close on close; give up after 10 s."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(10):
            while True:
                first, second = await reader.readexactly(2)
                length = second & 0x7F
                if length == 126:
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                elif length == 127:
                    (length,) = struct.unpack("!Q", await reader.readexactly(8))
                mask = await reader.readexactly(4) if second & 0x80 else b"\0\0\0\0"
                data = await reader.readexactly(min(length, 65536))
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
                opcode = first & 0x0F
                if opcode == 0x9:
                    writer.write(_frame(0xA, payload))
                elif opcode == 0x8:
                    writer.write(_frame(0x8, payload[:2]))
                    await writer.drain()
                    return


def _frame(opcode: int, payload: bytes) -> bytes:
    return bytes([0x80 | opcode, len(payload)]) + payload


_REASONS = {101: "Switching Protocols", 200: "OK", 201: "Created", 204: "No Content"}


def _response(status: int, headers: list[tuple[str, str]], body: bytes) -> bytes:
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Refused')}"]
    head += [f"{k}: {v}" for k, v in headers]
    head += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
