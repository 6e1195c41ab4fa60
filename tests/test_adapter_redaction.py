"""Building any adapter turns on log redaction (idempotent); ``redact_logs=False`` opts out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest

from ticketd import BlockingTicketVerifier, TicketStore, TicketVerifier
from ticketd.redaction import DEFAULT_LOGGERS, install_redaction, remove_redaction


async def _inner(scope: Any, receive: Any, send: Any) -> None:  # an ASGI app
    return None


def _websockets(verifier: TicketVerifier, **kw: Any) -> object:
    from ticketd.integrations.websockets import ticket_auth

    return ticket_auth(verifier, **kw)


def _websockets_sync(verifier: TicketVerifier, **kw: Any) -> object:
    from ticketd.integrations.websockets_sync import ticket_auth

    return ticket_auth(BlockingTicketVerifier.from_url("redis://127.0.0.1:1/0"), **kw)


def _asgi(verifier: TicketVerifier, **kw: Any) -> object:
    from ticketd.integrations.asgi import TicketMiddleware

    return TicketMiddleware(_inner, verifier, **kw)


def _starlette(verifier: TicketVerifier, **kw: Any) -> object:
    from ticketd.integrations.starlette import require_ticket

    return require_ticket(verifier, **kw)


def _channels(verifier: TicketVerifier, **kw: Any) -> object:
    from ticketd.integrations.channels import TicketAuthMiddlewareStack

    return TicketAuthMiddlewareStack(_inner, verifier, **kw)


ADAPTERS: dict[str, Callable[..., object]] = {
    "websockets": _websockets,
    "websockets_sync": _websockets_sync,
    "asgi": _asgi,
    "starlette": _starlette,
    "channels": _channels,
}


@pytest.fixture
def no_redaction() -> Iterator[logging.Filter]:
    """Redaction off for the test; the previous state restored after it."""
    the_filter = install_redaction()
    was_on = the_filter in logging.getLogger("uvicorn.error").filters
    remove_redaction()
    try:
        yield the_filter
    finally:
        remove_redaction()
        if was_on:
            install_redaction()


def redacting(the_filter: logging.Filter) -> list[str]:
    return [name for name in DEFAULT_LOGGERS if the_filter in logging.getLogger(name).filters]


@pytest.mark.parametrize("name", ADAPTERS)
def test_building_an_adapter_turns_on_redaction(no_redaction: logging.Filter, name: str) -> None:
    verifier = TicketVerifier(TicketStore(fakeredis.FakeAsyncRedis()))
    assert redacting(no_redaction) == []  # the control: off before
    ADAPTERS[name](verifier)
    assert redacting(no_redaction) == list(DEFAULT_LOGGERS)
    ADAPTERS[name](verifier)  # idempotent: still one filter per logger
    assert logging.getLogger("websockets.server").filters.count(no_redaction) == 1


@pytest.mark.parametrize("name", ADAPTERS)
def test_redact_logs_false_leaves_logging_alone(no_redaction: logging.Filter, name: str) -> None:
    verifier = TicketVerifier(TicketStore(fakeredis.FakeAsyncRedis()))
    ADAPTERS[name](verifier, redact_logs=False)
    assert redacting(no_redaction) == []


async def test_aiohttp_check_ticket_turns_on_redaction(no_redaction: logging.Filter) -> None:
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from ticketd.integrations.aiohttp import check_ticket

    verifier = TicketVerifier(TicketStore(fakeredis.FakeAsyncRedis()))
    request = make_mocked_request("GET", "/ws")  # not an upgrade: refused, store untouched
    with pytest.raises(web.HTTPBadRequest):
        await check_ticket(request, verifier, redact_logs=False)
    assert redacting(no_redaction) == []
    with pytest.raises(web.HTTPBadRequest):
        await check_ticket(request, verifier)
    assert redacting(no_redaction) == list(DEFAULT_LOGGERS)
