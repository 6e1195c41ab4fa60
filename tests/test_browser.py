"""The browser client and the CSWSH defences in a real headless Chromium.

Everything runs on loopback and is started here: the ticketd service (``create_app``
on a real Redis) serving the app page, ``/v1/client.js``, the mint endpoint and a
ticket-protected echo WebSocket at origin A = ``http://127.0.0.1:<a>``; an evil page
at origin B = ``http://127.0.0.1:<b>``. Cookies are per host, not per port, and the
two origins are same-site: the victim's session cookie is sent with the evil page's
requests to A. That is the cross-site WebSocket hijacking setting, and what the
allowlist at mint and the Origin binding at redeem must defeat.

What the browser cannot see (handshake statuses, rejection reasons) is asserted on
the server side through :class:`Recorder` (an ASGI wrapper) and the ticketd logs.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from fastapi import Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.applications import Starlette
from starlette.routing import Route

from tests.support.browser import (
    WAIT_MS,
    LogLines,
    launched_chromium,
    require_browser,
)
from tests.support.redisproc import RedisServer, free_port
from tests.support.servers import serve_app
from tests.support.service_support import cookie_for, make_settings, ticket_keys
from ticketd import Claims, TicketRejected, TicketVerifier, extract_ticket
from ticketd.integrations.asgi import ticket_subprotocol
from ticketd.integrations.starlette import install, require_ticket
from ticketd.service import Settings, create_app
from ticketd.tickets import log_id

pytestmark = [pytest.mark.browser, pytest.mark.redis]

SUBJECT = "user-42"

APP_PAGE = """<!doctype html><meta charset="utf-8"><title>app</title>
<script type="module">
import * as ticketd from "/v1/client.js";
window.ticketd = ticketd;
window.appReady = true;
</script>"""
EVIL_PAGE = '<!doctype html><meta charset="utf-8"><title>evil</title><p>win a prize</p>'

# Resolves with what happened first to a raw WebSocket: {opened, protocol} or {opened: false, code}.
TRY_SOCKET = """([url, protocols]) => new Promise((resolve) => {
  const ws = protocols ? new WebSocket(url, protocols) : new WebSocket(url);
  const timer = setTimeout(() => resolve({ timeout: true }), 10000);
  ws.onopen = () => { clearTimeout(timer); resolve({ opened: true, protocol: ws.protocol }); };
  ws.onclose = (e) => { clearTimeout(timer); resolve({ opened: false, code: e.code }); };
})"""

# Starts connect() and keeps what it reports in window.log.
START_CLIENT = """(opts) => {
  window.log = { opens: 0, messages: [], closes: [], errors: [], states: [] };
  window.chat = window.ticketd.connect({
    mintUrl: "/v1/tickets", socketUrl: "/ws", audience: "chat", ...opts,
    onOpen: () => { window.log.opens += 1; },
    onMessage: (data) => window.log.messages.push(data),
    onClose: (e) => window.log.closes.push(e.code),
    onError: (e) => window.log.errors.push({ status: e.status, terminal: e.terminal }),
    onStatus: (s) => window.log.states.push(s.state),
  });
}"""


@dataclass
class Seen:
    """One request as the server saw it. ``status`` 101 means the WebSocket was accepted."""

    kind: str
    method: str
    path: str
    origin: str | None
    cookie: bool
    ticket: str | None = None  # log_id (short hash) of the presented ticket, never the ticket
    transport: str | None = None
    status: int | None = None


class Recorder:
    """ASGI wrapper noting every request, its Origin, cookie, ticket hash and final status."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        names = [k for k, _ in headers]
        seen = Seen(
            kind=scope["type"],
            method=scope.get("method", "GET"),
            path=scope["path"],
            origin=dict(headers).get("origin"),
            cookie="cookie" in names,
        )
        if scope["type"] == "websocket":
            try:
                presented = extract_ticket("?" + scope["query_string"].decode(), headers)
                seen.ticket, seen.transport = log_id(presented.ticket), presented.transport
            except TicketRejected:
                pass
        with self.lock:
            self.seen.append(seen)

        async def recording_send(message: Any) -> None:
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                seen.status = message["status"]
            elif kind == "websocket.accept":
                seen.status = 101
            elif kind == "websocket.close" and seen.status is None:
                seen.status = 403  # closed before accepting: the server answers 403
            await send(message)

        await self.app(scope, receive, recording_send)

    def mark(self) -> int:
        with self.lock:
            return len(self.seen)

    def since(self, mark: int, *, kind: str | None = None, path: str | None = None) -> list[Seen]:
        with self.lock:
            found = self.seen[mark:]
        return [s for s in found if (kind is None or s.kind == kind) and path in (None, s.path)]


@dataclass
class Servers:
    app: str  # origin A: page, client.js, mint, /ws
    evil: str  # origin B
    recorder: Recorder
    logs: LogLines

    @property
    def ws(self) -> str:
        return self.app.replace("http://", "ws://") + "/ws"

    def kill_sockets(self) -> int:
        request = urllib.request.Request(self.app + "/test/kill", method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(json.load(response)["closed"])


def app_with_echo(settings: Settings) -> FastAPI:
    """The ticketd service plus the app's own routes: page, echo WebSocket, a kill switch."""
    app = create_app(settings)
    # The WS backend's verifier: the service's store (same Redis), its own expected audience.
    verifier = TicketVerifier(
        app.state.service.store, key_prefix=settings.key_prefix, audience="chat"
    )
    install(app)
    ticket = require_ticket(verifier)
    sockets: set[WebSocket] = set()

    async def page(request: Request) -> Response:
        return HTMLResponse(APP_PAGE)

    async def echo(websocket: WebSocket, claims: Claims = Depends(ticket)) -> None:  # noqa: B008
        await websocket.accept(subprotocol=ticket_subprotocol(websocket.scope))
        sockets.add(websocket)
        try:
            while True:
                text = await websocket.receive_text()
                await websocket.send_text(f"{claims.subject}:{text}")
        except (WebSocketDisconnect, RuntimeError):  # RuntimeError: closed by /test/kill
            pass
        finally:
            sockets.discard(websocket)

    async def kill(request: Request) -> Response:
        victims = list(sockets)
        for websocket in victims:
            await websocket.close(code=1012)  # "service restart"
        return JSONResponse({"closed": len(victims)})

    app.add_api_route("/app", page, methods=["GET"])
    app.add_api_websocket_route("/ws", echo)
    app.add_api_route("/test/kill", kill, methods=["POST"])
    return app


@pytest.fixture(scope="module")
def servers(redis_server: RedisServer) -> Iterator[Servers]:
    require_browser()
    port, evil_port = free_port(), free_port()
    settings = make_settings(redis_server.url, allowed_origins=f"http://127.0.0.1:{port}")
    recorder = Recorder(app_with_echo(settings))
    logs = LogLines()
    ticketd_logger = logging.getLogger("ticketd")
    level = ticketd_logger.level
    ticketd_logger.setLevel(logging.INFO)
    ticketd_logger.addHandler(logs)

    async def evil_page(request: Request) -> Response:
        return HTMLResponse(EVIL_PAGE)

    evil_app = Starlette(routes=[Route("/", evil_page)])
    try:
        with serve_app(recorder, port=port) as app, serve_app(evil_app, port=evil_port) as evil:
            yield Servers(app=app, evil=evil, recorder=recorder, logs=logs)
    finally:
        ticketd_logger.removeHandler(logs)
        ticketd_logger.setLevel(level)


@pytest.fixture(scope="module")
def browser(servers: Servers) -> Iterator[Any]:
    with launched_chromium() as browser:
        yield browser


@pytest.fixture
def context_factory(browser: Any, servers: Servers) -> Iterator[Callable[..., Any]]:
    contexts: list[Any] = []

    def new_context(*, logged_in: bool = True) -> Any:
        context = browser.new_context()
        context.set_default_timeout(WAIT_MS)
        if logged_in:  # the victim is logged in to the app at 127.0.0.1 (any port)
            context.add_cookies(
                [
                    {
                        "name": "session",
                        "value": cookie_for(SUBJECT),
                        "url": servers.app,
                        "httpOnly": True,
                        "sameSite": "Lax",
                    }
                ]
            )
        contexts.append(context)
        return context

    yield new_context
    for context in contexts:
        context.close()


def open_app(context: Any, servers: Servers) -> Any:
    page = context.new_page()
    page.goto(servers.app + "/app")
    page.wait_for_function("() => window.appReady === true")
    return page


def open_evil(context: Any, servers: Servers) -> Any:
    page = context.new_page()
    page.goto(servers.evil + "/")
    return page


def mint_in_page(page: Any) -> str:
    """What the legitimate page gets from the mint endpoint (the attacker's loot, later)."""
    body = page.evaluate("() => window.ticketd.mintTicket('/v1/tickets', 'chat')")
    assert set(body) == {"ticket", "expires_in", "expires_at", "audience"}
    assert body["audience"] == "chat"
    return str(body["ticket"])


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll a server-side condition (requests finish in the server thread)."""
    event = threading.Event()
    for _ in range(200):
        if condition():
            return
        event.wait(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("transport", ["subprotocol", "query"])
def test_app_page_mints_connects_and_echoes(
    servers: Servers, context_factory: Callable[..., Any], redis_sync: redis.Redis, transport: str
) -> None:
    page = open_app(context_factory(), servers)
    mark = servers.recorder.mark()
    page.evaluate(START_CLIENT, {"transport": transport})
    page.wait_for_function("() => window.log.opens === 1")
    assert page.evaluate("() => window.chat.socket.protocol") == (
        "ticketd.v1" if transport == "subprotocol" else ""
    )
    assert page.evaluate("() => window.chat.send('hello')") is True
    page.wait_for_function("() => window.log.messages.length === 1")
    assert page.evaluate("() => window.log.messages") == [f"{SUBJECT}:hello"]
    page.evaluate("() => window.chat.close()")
    assert page.evaluate("() => window.chat.state") == "closed"

    mints = servers.recorder.since(mark, path="/v1/tickets")
    assert [(m.method, m.origin, m.cookie, m.status) for m in mints] == [
        ("POST", servers.app, True, 201)
    ]
    (handshake,) = servers.recorder.since(mark, kind="websocket")
    assert (handshake.origin, handshake.transport, handshake.status) == (
        servers.app,
        transport,
        101,
    )
    assert ticket_keys(redis_sync) == []  # redeemed: nothing left behind


def test_evil_origin_cannot_mint_even_with_the_victims_cookie(
    servers: Servers, context_factory: Callable[..., Any], redis_sync: redis.Redis
) -> None:
    evil = open_evil(context_factory(), servers)
    mark, logged = servers.recorder.mark(), len(servers.logs.lines)
    mint_url = servers.app + "/v1/tickets"
    # The client's own request (JSON: preflighted) and a "simple" one that skips the preflight.
    attempts = evil.evaluate(
        """async (url) => {
          const tries = {
            json: { method: "POST", credentials: "include",
                    headers: { "Content-Type": "application/json" }, body: '{"audience":"chat"}' },
            simple: { method: "POST", credentials: "include" },
          };
          const out = {};
          for (const [name, init] of Object.entries(tries)) {
            try {
              const r = await fetch(url, init);
              out[name] = { status: r.status, body: await r.text() };
            } catch (e) { out[name] = { error: e.name }; }
          }
          return out;
        }""",
        mint_url,
    )
    # No response at all reaches the page (no CORS headers on a refusal): no ticket.
    assert attempts == {"json": {"error": "TypeError"}, "simple": {"error": "TypeError"}}

    seen = servers.recorder.since(mark, path="/v1/tickets")
    assert [(s.method, s.origin, s.status) for s in seen] == [
        ("OPTIONS", servers.evil, 403),  # preflight refused: the JSON POST was never sent
        ("POST", servers.evil, 403),  # the simple POST carried the victim's cookie, refused
    ]
    assert seen[1].cookie, "the CSWSH setting: the victim's cookie goes along"
    assert ticket_keys(redis_sync) == []
    assert sum("code=origin_not_allowed" in line for line in servers.logs.lines[logged:]) == 2


@pytest.mark.parametrize("transport", ["query", "subprotocol"])
def test_evil_origin_cannot_connect_without_or_with_a_stolen_ticket(
    servers: Servers, context_factory: Callable[..., Any], redis_sync: redis.Redis, transport: str
) -> None:
    context = context_factory()
    app, evil = open_app(context, servers), open_evil(context, servers)
    mark = servers.recorder.mark()

    no_ticket = evil.evaluate(TRY_SOCKET, [servers.ws, None])
    stolen = mint_in_page(app)
    assert len(ticket_keys(redis_sync)) == 1
    if transport == "query":
        replay = evil.evaluate(TRY_SOCKET, [f"{servers.ws}?ticket={stolen}", None])
    else:
        replay = evil.evaluate(TRY_SOCKET, [servers.ws, ["ticketd.v1", f"ticket.{stolen}"]])
    assert no_ticket == {"opened": False, "code": 1006}
    assert replay == {"opened": False, "code": 1006}

    refused = servers.recorder.since(mark, kind="websocket")
    assert [(s.origin, s.cookie, s.ticket, s.status) for s in refused] == [
        (servers.evil, True, None, 401),  # no ticket; the cookie does not help
        (servers.evil, True, log_id(stolen), 403),  # refused before 101
    ]
    assert refused[1].transport == transport
    assert f"reason=origin_mismatch ticket={log_id(stolen)}" in "\n".join(servers.logs.lines)
    assert ticket_keys(redis_sync) == []  # burned by the attempt: useless to the thief now


def test_a_ticket_works_once(
    servers: Servers, context_factory: Callable[..., Any], redis_sync: redis.Redis
) -> None:
    page = open_app(context_factory(), servers)
    mark = servers.recorder.mark()
    ticket = mint_in_page(page)
    url = f"{servers.ws}?ticket={ticket}"
    assert page.evaluate(TRY_SOCKET, [url, None]) == {"opened": True, "protocol": ""}
    assert page.evaluate(TRY_SOCKET, [url, None]) == {"opened": False, "code": 1006}

    tries = servers.recorder.since(mark, kind="websocket")
    assert [(s.origin, s.ticket, s.status) for s in tries] == [
        (servers.app, log_id(ticket), 101),
        (servers.app, log_id(ticket), 401),  # unknown, expired and used look the same
    ]
    assert f"reason=invalid ticket={log_id(ticket)}" in "\n".join(servers.logs.lines)


def test_reconnect_mints_a_fresh_ticket(
    servers: Servers, context_factory: Callable[..., Any]
) -> None:
    page = open_app(context_factory(), servers)
    mark = servers.recorder.mark()
    page.evaluate(START_CLIENT, {"backoff": {"initialMs": 50, "maxMs": 200}})
    page.wait_for_function("() => window.log.opens === 1")

    wait_until(lambda: len(servers.recorder.since(mark, kind="websocket")) == 1, "handshake")
    assert servers.kill_sockets() == 1
    page.wait_for_function("() => window.log.opens === 2")
    assert page.evaluate("() => window.log.closes") == [1012]
    assert page.evaluate("() => window.chat.send('again')") is True
    page.wait_for_function("() => window.log.messages.length === 1")
    assert page.evaluate("() => window.log.messages") == [f"{SUBJECT}:again"]
    page.evaluate("() => window.chat.close()")

    mints = [s for s in servers.recorder.since(mark, path="/v1/tickets") if s.method == "POST"]
    handshakes = servers.recorder.since(mark, kind="websocket")
    assert [m.status for m in mints] == [201, 201]
    assert [h.status for h in handshakes] == [101, 101]
    assert len({h.ticket for h in handshakes}) == 2, "each connection used its own ticket"
    assert page.evaluate("() => window.log.states") == [
        *["minting", "connecting", "open", "waiting"],
        *["minting", "connecting", "open", "closed"],
    ]


def test_client_stops_on_401(servers: Servers, context_factory: Callable[..., Any]) -> None:
    page = open_app(context_factory(logged_in=False), servers)
    mark = servers.recorder.mark()
    page.evaluate(START_CLIENT, {"backoff": {"initialMs": 20, "maxMs": 40}})
    page.wait_for_function("() => window.chat.state === 'closed'")
    # Retries would come within 20-40 ms; leave room for several before counting.
    page.wait_for_timeout(400)

    assert page.evaluate("() => window.log.errors") == [{"status": 401, "terminal": True}]
    assert page.evaluate("() => window.log.states") == ["minting", "closed"]
    mints = servers.recorder.since(mark, path="/v1/tickets")
    assert [(m.method, m.cookie, m.status) for m in mints] == [("POST", False, 401)]
    assert servers.recorder.since(mark, kind="websocket") == []
