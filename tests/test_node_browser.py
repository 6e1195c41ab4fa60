"""A socket through the Node ``ws`` server (``ticketUpgrade``) in headless Chromium.

``ticketd serve`` mints (on a real redis-server) for the Node server's origin A =
``http://127.0.0.1:<node port>``, which serves the app page and the ticket-protected
echo socket; an evil page is served at origin B = ``http://127.0.0.1:<b>``. The
browser shows only what it can (opened, protocol, close code 1006 on a refusal);
the Node server's log lines say why a handshake was refused, before any 101.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tests.support.browser import launched_chromium, require_browser
from tests.support.nodeproc import NodeProcess, node_binary, node_echo_server, ticketd_serve
from tests.support.redisproc import RedisServer, free_port
from tests.support.servers import serve_app
from tests.support.service_support import SECRET, cookie_for, ticket_keys
from ticketd.tickets import log_id

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.node]

EVIL_PAGE = '<!doctype html><meta charset="utf-8"><title>evil</title><p>win a prize</p>'

# Resolves with what happened first to a raw WebSocket: {opened, protocol} or {opened: false, code}.
TRY_SOCKET = """([url, protocols]) => new Promise((resolve) => {
  const ws = protocols ? new WebSocket(url, protocols) : new WebSocket(url);
  const timer = setTimeout(() => resolve({ timeout: true }), 10000);
  ws.onopen = () => { clearTimeout(timer); resolve({ opened: true, protocol: ws.protocol }); };
  ws.onclose = (e) => { clearTimeout(timer); resolve({ opened: false, code: e.code }); };
})"""

# Opens a socket, sends "hi", resolves with the echo (or how it ended).
ECHO = """([url, protocols]) => new Promise((resolve) => {
  const ws = protocols ? new WebSocket(url, protocols) : new WebSocket(url);
  const timer = setTimeout(() => resolve({ timeout: true }), 10000);
  ws.onopen = () => ws.send("hi");
  ws.onmessage = (e) => {
    clearTimeout(timer);
    resolve({ echo: e.data, protocol: ws.protocol });
    ws.close();
  };
  ws.onclose = (e) => { clearTimeout(timer); resolve({ opened: false, code: e.code }); };
})"""


@dataclass
class Setup:
    app: str  # origin A: the Node server
    evil: str  # origin B
    mint_url: str
    node: NodeProcess

    @property
    def ws(self) -> str:
        return self.app.replace("http://", "ws://") + "/ws"

    def mint(self) -> str:
        headers = {"Origin": self.app, "Cookie": f"session={cookie_for('user-42')}"}
        response = httpx.post(self.mint_url, headers=headers, timeout=10)
        assert response.status_code == 201, response.text
        return str(response.json()["ticket"])

    def refusals(self, after: int = 0) -> list[str]:
        """Refusal log lines of the Node server past the first ``after`` (waits for one)."""
        for _ in range(100):  # the lines reach us through a reader thread
            lines = [e["line"] for e in self.node.events("log") if "handshake refused" in e["line"]]
            if len(lines) > after:
                return lines[after:]
            time.sleep(0.05)
        return []


@pytest.fixture(scope="module")
def setup(redis_server: RedisServer) -> Iterator[Setup]:
    require_browser()
    node_binary()
    port = free_port()
    app = f"http://127.0.0.1:{port}"
    env = {
        "TICKETD_REDIS_URL": redis_server.url,
        "TICKETD_ALLOWED_ORIGINS": app,
        "TICKETD_SESSION_SECRET": SECRET,
        "TICKETD_AUDIENCES": "chat",
    }

    async def evil_page(request: Request) -> Response:
        return HTMLResponse(EVIL_PAGE)

    node_env = {"TICKETD_REDIS_URL": redis_server.url, "AUDIENCE": "chat"}
    with (
        ticketd_serve(env) as mint_base,
        node_echo_server(node_env, port=port) as node,
        serve_app(Starlette(routes=[Route("/", evil_page)])) as evil,
    ):
        yield Setup(app=app, evil=evil, mint_url=f"{mint_base}/v1/tickets", node=node)


@pytest.fixture(scope="module")
def browser(setup: Setup) -> Iterator[Any]:
    with launched_chromium() as browser:
        yield browser


@pytest.fixture
def page_at(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    context.set_default_timeout(10_000)

    def open_page(url: str) -> Any:
        page = context.new_page()
        page.goto(url)
        return page

    yield open_page
    context.close()


@pytest.mark.parametrize("transport", ["query", "subprotocol"])
def test_allowed_origin_opens_a_socket_and_a_replay_is_refused(
    setup: Setup, page_at: Any, redis_sync: redis.Redis, transport: str
) -> None:
    page = page_at(setup.app + "/")
    ticket = setup.mint()
    if transport == "query":
        args: list[Any] = [f"{setup.ws}?ticket={ticket}", None]
    else:
        args = [setup.ws, ["ticketd.v1", f"ticket.{ticket}"]]
    first = page.evaluate(ECHO, args)
    assert first == {
        "echo": "user-42:hi",
        "protocol": "ticketd.v1" if transport == "subprotocol" else "",
    }
    assert ticket_keys(redis_sync) == []
    refused_before = len(setup.refusals())
    replay = page.evaluate(TRY_SOCKET, args)
    assert replay == {"opened": False, "code": 1006}
    assert setup.refusals(refused_before) == [
        f"websocket handshake refused reason=invalid ticket={log_id(ticket)}"
    ]


@pytest.mark.parametrize("transport", ["query", "subprotocol"])
def test_evil_origin_is_refused_before_the_101(
    setup: Setup, page_at: Any, redis_sync: redis.Redis, transport: str
) -> None:
    evil = page_at(setup.evil + "/")
    stolen = setup.mint()
    accepted_before = len(setup.node.events("accepted"))
    refused_before = len(setup.refusals())
    if transport == "query":
        args: list[Any] = [f"{setup.ws}?ticket={stolen}", None]
    else:
        args = [setup.ws, ["ticketd.v1", f"ticket.{stolen}"]]
    assert evil.evaluate(TRY_SOCKET, args) == {"opened": False, "code": 1006}
    assert setup.refusals(refused_before) == [
        f"websocket handshake refused reason=origin_mismatch ticket={log_id(stolen)}"
    ]
    assert len(setup.node.events("accepted")) == accepted_before  # no 101 was sent
    assert ticket_keys(redis_sync) == []  # the attempt burned the stolen ticket
    # Negative control: the same request from the app's own page would have opened.
    page = page_at(setup.app + "/")
    assert page.evaluate(ECHO, [f"{setup.ws}?ticket={setup.mint()}", None])["echo"] == "user-42:hi"
