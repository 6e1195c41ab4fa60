"""Headless Chromium: the demo's "Log out" closes the open socket (4403) and the client stops."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.redisproc import free_port
from tests.servers import serve_app
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, require_browser
from ticketd.demo import build_demo

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def status_is(page: Any, text: str) -> None:
    page.wait_for_function(f"() => document.getElementById('status').textContent === {text!r}")


def test_demo_logout_closes_the_socket_and_the_client_stops(chromium: Any) -> None:
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
            closes: list[int] = []
            page.expose_function("recordClose", lambda code: closes.append(code))
            page.add_init_script(
                "const Native = WebSocket; window.WebSocket = class extends Native {"
                " constructor(...a) { super(...a);"
                " this.addEventListener('close', (e) => window.recordClose(e.code)); } };"
            )
            page.goto(base + "/")
            page.wait_for_function("() => window.demoReady === true")
            page.fill("#name", "alice")
            page.click("#login")
            page.wait_for_function(
                "() => /login: 200/.test(document.getElementById('messages').textContent)"
            )
            page.click("#connect")
            status_is(page, "open")
            assert len(mints) == 1

            page.click("#logout")
            status_is(page, "closed")
            text = page.inner_text("#messages")
            assert "/demo/revoke: 200" in text
            assert "logged out: the server closed the socket (4403)" in text
            assert 4403 in closes
            page.wait_for_timeout(1500)  # a loop would mint again within this time
            assert len(mints) <= 2  # the first mint, and at most one re-mint attempt
            assert page.inner_text("#status") == "closed"
        finally:
            context.close()
