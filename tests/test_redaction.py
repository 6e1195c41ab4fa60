"""ticketd.redaction: no ticket in any log record during real handshakes.

Every record is captured (root handler at DEBUG, a handler on each non-propagating
logger, and caplog) while uvicorn, websockets and aiohttp serve real handshakes.
The first test shows the capture would see a ticket: without the filter, uvicorn's
own handshake line carries it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import uvicorn.config
from aiohttp.test_utils import TestServer
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.typing import Origin, Subprotocol

from tests.support.adapters import ORIGIN, ticket_env
from tests.support.apps import aiohttp_app, handler, starlette_app, uvicorn_server
from ticketd.integrations.websockets import select_subprotocol, ticket_auth
from ticketd.redaction import (
    DEFAULT_LOGGERS,
    REDACTED,
    TicketRedactionFilter,
    install_redaction,
    redact,
    remove_redaction,
)

FORMAT = logging.Formatter("%(name)s %(levelname)s %(message)s")
WATCHED = ("uvicorn", "uvicorn.error", "uvicorn.access", "websockets", "aiohttp", "ticketd")


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def attach(self) -> None:
        """Listen on the root and on every logger that does not propagate to it."""
        for logger in [logging.getLogger(), *_known_loggers()]:
            if (logger.name == "root" or not logger.propagate) and self not in logger.handlers:
                logger.addHandler(self)

    def leaks(self, ticket: str) -> list[str]:
        found = []
        for record in self.records:
            texts = [FORMAT.format(record), repr(record.args), repr(vars(record))]
            found += [FORMAT.format(record) for text in texts if ticket in text]
        return found


def _known_loggers() -> list[logging.Logger]:
    return [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]


@pytest.fixture
def capture() -> Iterator[Capture]:
    """Capture everything at DEBUG; put the logging configuration back afterwards."""
    saved: dict[str, Any] = {}
    for logger in [logging.getLogger(), *_known_loggers()]:
        saved[logger.name] = (
            logger.level,
            list(logger.handlers),
            logger.propagate,
            logger.disabled,
        )
    handler = Capture()
    logging.getLogger().setLevel(logging.DEBUG)
    for name in WATCHED:
        logging.getLogger(name).setLevel(logging.DEBUG)
    handler.attach()
    try:
        yield handler
    finally:
        remove_redaction()
        for logger in [logging.getLogger(), *_known_loggers()]:
            if logger.name in saved:
                level, handlers, propagate, disabled = saved[logger.name]
                logger.setLevel(level)
                logger.handlers[:] = handlers
                logger.propagate, logger.disabled = propagate, disabled
            else:
                logger.removeHandler(handler)


async def uvicorn_handshakes(
    redis_url: str, capture: Capture, *, redact_logs: bool = True
) -> list[str]:
    """Query and subprotocol handshakes through uvicorn with its default logging config."""
    tickets = []
    async with (
        ticket_env(redis_url) as env,
        uvicorn_server(
            starlette_app(env.verifier, redact_logs=redact_logs),  # False: leave logging alone
            log_config=uvicorn.config.LOGGING_CONFIG,  # dictConfig: replaces handlers
            log_level="debug",
        ) as url,
    ):
        capture.attach()  # uvicorn's dictConfig just replaced the handlers
        for transport in ("query", "subprotocol"):
            ticket = await env.mint()
            tickets.append(ticket)
            target = f"{url}?ticket={ticket}" if transport == "query" else url
            offer = [Subprotocol("ticketd.v1"), Subprotocol(f"ticket.{ticket}")]
            async with connect(
                target,
                origin=Origin(ORIGIN),
                subprotocols=offer if transport == "subprotocol" else None,
                open_timeout=5,
            ) as ws:
                await ws.recv()
        refused = await env.mint()
        tickets.append(refused)
        with pytest.raises(Exception, match="HTTP 403"):
            async with connect(f"{url}?ticket={refused}", origin=Origin("https://x.example")):
                pass
    return tickets


async def test_without_redaction_uvicorn_logs_the_ticket(redis_url: str, capture: Capture) -> None:
    remove_redaction()  # any adapter built earlier in this process turned it on
    tickets = await uvicorn_handshakes(redis_url, capture, redact_logs=False)
    leaks = capture.leaks(tickets[0])
    assert any(line.startswith("uvicorn.error ") and "WebSocket /ws?ticket=" in line
               for line in leaks), leaks  # fmt: skip


async def test_uvicorn_handshakes_leave_no_ticket_in_logs(
    redis_url: str, capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    install_redaction()  # before uvicorn configures logging, as at an app's import time
    tickets = await uvicorn_handshakes(redis_url, capture)
    assert any(
        r.name == "uvicorn.error" and f"WebSocket /ws?ticket={REDACTED}" in FORMAT.format(r)
        for r in capture.records
    )
    for ticket in tickets:
        assert capture.leaks(ticket) == []
        assert ticket not in caplog.text


async def test_websockets_handshakes_leave_no_ticket_in_logs(
    redis_url: str, capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    install_redaction()
    async with (
        ticket_env(redis_url) as env,
        serve(
            handler,
            "127.0.0.1",
            0,
            process_request=ticket_auth(env.verifier),
            select_subprotocol=select_subprotocol,
        ) as server,
    ):
        url = f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}/ws"
        query, sub = await env.mint(), await env.mint()
        cookie = "session=eyJ1c2VyX2lkIjo0Mn0.aBcDeF.c2lnbmF0dXJlLXNlY3JldC12YWx1ZQ"
        async with connect(
            f"{url}?ticket={query}", origin=Origin(ORIGIN), additional_headers={"Cookie": cookie}
        ) as ws:
            await ws.recv()
        offer = [Subprotocol("ticketd.v1"), Subprotocol(f"ticket.{sub}")]
        async with connect(url, origin=Origin(ORIGIN), subprotocols=offer) as ws:
            await ws.recv()
    formatted = [FORMAT.format(r) for r in capture.records]
    assert any("GET /ws?ticket=[redacted]" in line for line in formatted)  # debug was on
    assert any(f"ticket.{REDACTED}" in line for line in formatted)
    # The browser sends the app's session cookie on the handshake; websockets logs headers.
    assert any(f"< Cookie: {REDACTED}" in line for line in formatted)
    for secret in (query, sub, cookie.partition("=")[2]):
        assert capture.leaks(secret) == []
        assert secret not in caplog.text


async def test_aiohttp_handshakes_leave_no_ticket_in_logs(
    redis_url: str, capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    install_redaction()
    async with (
        ticket_env(redis_url) as env,
        TestServer(aiohttp_app(env.verifier), host="127.0.0.1") as server,
        aiohttp.ClientSession() as session,
    ):
        url = str(server.make_url("/ws"))
        query, sub = await env.mint(), await env.mint()
        async with session.ws_connect(f"{url}?ticket={query}", origin=ORIGIN) as ws:
            await ws.receive_json()
        async with session.ws_connect(
            url, origin=ORIGIN, protocols=("ticketd.v1", f"ticket.{sub}")
        ) as ws:
            await ws.receive_json()
    assert any(
        r.name == "aiohttp.access" and f"ticket={REDACTED}" in FORMAT.format(r)
        for r in capture.records
    )
    for ticket in (query, sub):
        assert capture.leaks(ticket) == []
        assert ticket not in caplog.text


TICKET = "q" * 43


@pytest.mark.parametrize(
    ("msg", "args"),
    [
        ('%s "%s %s HTTP/%s" %d', ("1.2.3.4:5", "GET", f"/ws?ticket={TICKET}", "1.1", 101)),
        ("%(r)s", ({"r": f"GET /ws?a=1&ticket={TICKET} HTTP/1.1"},)),
        ("GET /ws?ticket=%s HTTP/1.1", (TICKET,)),
        ("> Sec-WebSocket-Protocol: %s", (f"ticketd.v1, ticket.{TICKET}".encode(),)),
        (f"GET /ws?ticket={TICKET}", None),
    ],
)
def test_filter_rewrites_messages_and_args(msg: str, args: Any) -> None:
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, msg, args, None)
    record.first_request_line = f"GET /?ticket={TICKET}"
    assert TicketRedactionFilter().filter(record)
    assert TICKET not in record.getMessage()
    assert TICKET not in repr(vars(record))
    assert REDACTED in record.getMessage()


def test_filter_redacts_tracebacks_and_keeps_log_ids() -> None:
    try:
        raise ValueError(f"bad target /ws?ticket={TICKET}")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "ticket rejected ticket=%s", ("abcd1234",), None
        )
        record.exc_info = sys.exc_info()
    TicketRedactionFilter().filter(record)
    text = FORMAT.format(record)
    assert TICKET not in text
    assert "ticket=abcd1234" in text  # ticketd's 8-character hash is not a ticket
    assert redact("ticketd.v1") == "ticketd.v1"


def test_install_is_idempotent_and_covers_child_logger_records(capture: Capture) -> None:
    install_redaction()
    install_redaction()
    for name in DEFAULT_LOGGERS:
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, TicketRedactionFilter) for f in filters) == 1
    # A child nobody listed still reaches a filtered handler (the root's).
    child = logging.getLogger("uvicorn.protocols.unlisted")
    child.warning("GET /?ticket=%s", TICKET)
    assert capture.leaks(TICKET) == []
    assert capture.records
