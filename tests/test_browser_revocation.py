"""Headless Chromium: the demo's "Sign out" closes the open socket (4403) and the client stops."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import (
    WAIT_MS,
    launched_chromium,
)
from tests.support.redisproc import free_port
from tests.support.servers import serve_app
from ticketd.demo import build_demo

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with launched_chromium() as browser:
        yield browser


START_CLIENT = """async () => {
  const { connect } = await import("/v1/client.js");
  window.log = { revoked: 0, errors: [] };
  window.ctl = connect({
    mintUrl: "/v1/tickets", socketUrl: "/ws", audience: "chat",
    onRevoked: () => { window.log.revoked += 1; },
    onError: (e) => window.log.errors.push({ closeCode: e.closeCode, terminal: e.terminal }),
  });
}"""


def test_demo_sign_out_closes_the_socket_and_the_client_stops(chromium: Any) -> None:
    port = free_port()
    with serve_app(build_demo("127.0.0.1", port), port=port) as base:
        context = chromium.new_context()
        try:
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            mints: list[str] = []
            page.on(
                "request",
                lambda r: mints.append(r.url) if r.url.endswith("/v1/tickets") else None,
            )
            page.goto(base + "/")
            page.wait_for_function("() => window.demoReady === true")
            page.fill("#name", "alice")
            page.click("#login")
            page.wait_for_function(
                "() => /signed in as alice/.test(document.getElementById('who').textContent)"
            )
            page.click("#connect")  # the page's own socket
            page.wait_for_function("() => document.getElementById('status').textContent === 'open'")
            page.evaluate(START_CLIENT)  # and the reconnecting browser client
            page.wait_for_function("() => window.ctl.state === 'open'")
            before = len(mints)

            page.click("#logout")
            page.wait_for_function(
                "() => document.getElementById('status').textContent === 'closed (4403)'"
            )
            page.wait_for_function("() => window.ctl.state === 'closed'")
            assert "signed out, the login was revoked" in page.inner_text("#timeline")
            log = page.evaluate("() => window.log")
            assert log["revoked"] == 1
            assert log["errors"][-1] == {"closeCode": 4403, "terminal": True}
            page.wait_for_timeout(1500)  # a loop would mint again within this time
            assert len(mints) - before <= 1  # at most one re-mint attempt after the 4403
            assert page.evaluate("() => window.ctl.state") == "closed"
        finally:
            context.close()
