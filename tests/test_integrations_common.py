"""The shared rejection mapping (ticketd.integrations._common)."""

from __future__ import annotations

import logging

import pytest

from tests.support.adapters import ORIGIN, OTHER_ORIGIN, handshake, ticket_env
from tests.support.redisproc import RedisServer
from ticketd import Reason
from ticketd.integrations._common import Admitted, Denied, admit


async def test_admits_a_query_ticket(redis_url: str) -> None:
    async with ticket_env(redis_url) as env:
        ticket = await env.mint()
        outcome = await admit(
            env.verifier, method="GET", target=f"/ws?ticket={ticket}", headers=handshake()
        )
        assert isinstance(outcome, Admitted)
        assert outcome.claims.subject == "u1"
        assert outcome.subprotocol is None
        assert not await env.stored(ticket)


async def test_admits_a_subprotocol_ticket(redis_url: str) -> None:
    async with ticket_env(redis_url) as env:
        ticket = await env.mint()
        headers = handshake(("Sec-WebSocket-Protocol", f"ticketd.v1, ticket.{ticket}"))
        outcome = await admit(env.verifier, method="GET", target="/ws", headers=headers)
        assert isinstance(outcome, Admitted)
        assert outcome.subprotocol == "ticketd.v1"


@pytest.mark.parametrize(
    ("method", "target", "extra", "status", "reason"),
    [
        ("POST", "/ws?ticket={t}", (), 400, Reason.BAD_HANDSHAKE),
        ("GET", "/ws", (), 401, Reason.MISSING),
        ("GET", "/ws?ticket={t}&ticket={t}", (), 400, Reason.DUPLICATE),
        ("GET", "/ws?ticket={t}", (("Sec-WebSocket-Protocol", "ticketd.v1, ticket.{t}"),), 400,
         Reason.DUPLICATE),
        ("GET", "/ws?ticket=short", (), 401, Reason.MALFORMED),
    ],
)  # fmt: skip
async def test_refusals_before_the_store_leave_the_ticket(
    redis_url: str,
    method: str,
    target: str,
    extra: tuple[tuple[str, str], ...],
    status: int,
    reason: Reason,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with ticket_env(redis_url) as env:
        ticket = await env.mint()
        headers = handshake(*((k, v.format(t=ticket)) for k, v in extra))
        if method == "POST":
            headers = headers[:1]  # a prefetcher: no upgrade headers either
        with caplog.at_level(logging.INFO, logger="ticketd.integrations"):
            outcome = await admit(
                env.verifier, method=method, target=target.format(t=ticket), headers=headers
            )
        assert outcome == Denied(status=status, reason=reason)
        assert await env.stored(ticket)
        assert f"reason={reason.value}" in caplog.text
        assert ticket not in caplog.text


@pytest.mark.parametrize(
    ("origin", "status", "reason"),
    [(OTHER_ORIGIN, 403, Reason.ORIGIN_MISMATCH), (None, 403, Reason.ORIGIN_MISMATCH)],
)
async def test_binding_refusals_burn_the_ticket(
    redis_url: str, origin: str | None, status: int, reason: Reason
) -> None:
    async with ticket_env(redis_url) as env:
        ticket = await env.mint()
        target = f"/ws?ticket={ticket}"
        outcome = await admit(
            env.verifier, method="GET", target=target, headers=handshake(origin=origin)
        )
        assert outcome == Denied(status=status, reason=reason)
        again = await admit(env.verifier, method="GET", target=target, headers=handshake())
        assert again == Denied(status=401, reason=Reason.INVALID)


async def test_two_origin_headers_are_refused(redis_url: str) -> None:
    async with ticket_env(redis_url) as env:
        ticket = await env.mint()
        headers = handshake(("Origin", ORIGIN))
        outcome = await admit(
            env.verifier, method="GET", target=f"/ws?ticket={ticket}", headers=headers
        )
        assert isinstance(outcome, Denied)
        assert outcome.status == 403


async def test_store_down_is_503_with_retry_after(private_redis: RedisServer) -> None:
    async with ticket_env(private_redis.url) as env:
        ticket = await env.mint()
        private_redis.stop()
        outcome = await admit(
            env.verifier, method="GET", target=f"/ws?ticket={ticket}", headers=handshake()
        )
        assert isinstance(outcome, Denied)
        assert (outcome.status, outcome.reason) == (503, None)
        assert ("Retry-After", "1") in outcome.headers
        assert outcome.body == "ticket rejected\n"
