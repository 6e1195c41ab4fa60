"""Headless Chromium: a socket ends with its session (4401); the browser client re-mints and
reconnects while the session holds, and stops with a logged-out event once it does not.

The service runs with the smallest session max age (60 s); the cookies are signed "in
the past" (``aged_cookie``), so that a session ends seconds after the test starts. The
app refreshes the session once (a sliding session: a new cookie), as an app would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, Response

from tests.support.browser import (
    WAIT_MS,
    launched_chromium,
    require_browser,
)
from tests.support.redisproc import RedisServer, free_port
from tests.support.servers import serve_app
from tests.support.service_support import aged_cookie, make_settings
from ticketd import Claims, TicketVerifier
from ticketd.integrations.asgi import ticket_subprotocol
from ticketd.integrations.starlette import install, require_ticket
from ticketd.lifetime import SESSION_EXPIRED, ConnectionLifetime
from ticketd.service import create_app

pytestmark = [pytest.mark.browser, pytest.mark.redis]

MAX_AGE = 60
FIRST_SESSION = 5.0
"""Seconds the first session has left when the test starts."""
SECOND_SESSION = 11.0
"""And the refreshed one."""

PAGE = """<!doctype html><meta charset="utf-8"><title>app</title>
<script type="module">
import * as ticketd from "/v1/client.js";
window.log = { opens: 0, closes: [], ended: 0, loggedOut: [], errors: [] };
window.start = () => {
  window.chat = ticketd.connect({
    mintUrl: "/v1/tickets", socketUrl: "/ws", audience: "chat",
    onOpen: () => { window.log.opens += 1; },
    onClose: (e) => window.log.closes.push(e.code),
    onSessionEnded: () => { window.log.ended += 1; },
    onLoggedOut: (e) => window.log.loggedOut.push({ status: e.status, terminal: e.terminal }),
    onError: (e) => window.log.errors.push(e.status),
  });
};
window.appReady = true;
</script>"""


class Served:
    def __init__(self, base: str, lifetime: ConnectionLifetime) -> None:
        self.base, self.lifetime = base, lifetime


@pytest.fixture(scope="module")
def served(redis_server: RedisServer) -> Iterator[Served]:
    require_browser()
    port = free_port()
    settings = make_settings(
        redis_server.url, allowed_origins=f"http://127.0.0.1:{port}", session_max_age=MAX_AGE
    )
    app: FastAPI = create_app(settings)
    verifier = TicketVerifier(
        app.state.service.store, key_prefix=settings.key_prefix, audience="chat"
    )
    lifetime = ConnectionLifetime()
    install(app)
    ticket = require_ticket(verifier, lifetime=lifetime)

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE)

    async def echo(websocket: WebSocket, claims: Claims = Depends(ticket)) -> None:  # noqa: B008
        await websocket.accept(subprotocol=ticket_subprotocol(websocket.scope))
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except (WebSocketDisconnect, RuntimeError):
            pass

    app.add_api_route("/app", page, methods=["GET"])
    app.add_api_websocket_route("/ws", echo)
    with serve_app(app, port=port) as base:
        yield Served(base, lifetime)


@pytest.fixture(scope="module")
def chromium(served: Served) -> Iterator[Any]:
    with launched_chromium() as browser:
        yield browser


def session_cookie(base: str, *, ends_in: float) -> dict[str, Any]:
    signed_at = int(time.time() + ends_in) - MAX_AGE
    return {
        "name": "session",
        "value": aged_cookie("user-7", signed_at=signed_at),
        "url": base,
        "httpOnly": True,
        "sameSite": "Lax",
    }


def test_the_socket_ends_with_the_session_and_the_client_follows_the_login(
    served: Served, chromium: Any
) -> None:
    context = chromium.new_context()
    try:
        context.add_cookies([session_cookie(served.base, ends_in=FIRST_SESSION)])
        page = context.new_page()
        page.set_default_timeout(WAIT_MS + 10_000)
        mints: list[int] = []
        page.on(
            "response",
            lambda r: mints.append(r.status) if r.url.endswith("/v1/tickets") else None,
        )
        page.goto(served.base + "/app")
        page.wait_for_function("() => window.appReady === true")
        page.evaluate("() => window.start()")
        page.wait_for_function("() => window.log.opens === 1")
        assert mints == [201]

        # The app slides the session: a new cookie. The open socket still ends with the
        # session its ticket was minted from, and the client re-mints with the new one.
        context.add_cookies([session_cookie(served.base, ends_in=SECOND_SESSION)])
        page.wait_for_function("() => window.log.opens === 2")
        log = page.evaluate("() => window.log")
        assert log["closes"] == [4401]
        assert log["ended"] == 1
        assert mints == [201, 201]
        assert page.evaluate("() => window.chat.state") == "open"

        # No refresh this time: at the second session's end the re-mint is refused (401),
        # the client stops and says the user is logged out.
        page.wait_for_function("() => window.chat.state === 'closed'")
        log = page.evaluate("() => window.log")
        assert log["closes"] == [4401, 4401]
        assert log["loggedOut"] == [{"status": 401, "terminal": True}]
        assert mints == [201, 201, 401]
        page.wait_for_timeout(1500)  # a loop would mint again within this time
        assert mints == [201, 201, 401]
        assert page.evaluate("() => window.log.opens") == 2
        assert served.lifetime.closed == {SESSION_EXPIRED: 2}
    finally:
        context.close()
