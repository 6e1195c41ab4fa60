"""ticketd.redemption: the pure redeem decision, and one log line per refusal."""

from __future__ import annotations

import dataclasses
import logging

import httpx
import pytest

from tests.support.adapters import ORIGIN, handshake, ticket_env
from tests.support.service_support import APP_ORIGIN, SERVICE_KEY, cookie_for
from ticketd import Claims, Reason, TicketRejected
from ticketd.exceptions import Detail
from ticketd.integrations._common import Denied, admit
from ticketd.redemption import DEFAULT_LEEWAY, Handshake, decide, ticket_to_take
from ticketd.tickets import encode_record, log_id, new_ticket, ticket_key

NOW = 1_800_000_000.0
CLAIMS = Claims(subject="u", origin=ORIGIN, audience="chat", issued_at=NOW, expires_at=NOW + 30)
RECORD = encode_record(CLAIMS)
HANDSHAKE = Handshake(origin=ORIGIN, audience="chat")


def test_ticket_to_take_is_the_key_and_log_id() -> None:
    ticket = new_ticket()
    take = ticket_to_take(ticket, key_prefix="p:")
    assert (take.key, take.ticket_hash) == (ticket_key("p:", ticket), log_id(ticket))


@pytest.mark.parametrize("bad", ["", "x" * 43 + "=", 42, None, "é" * 43])
def test_ticket_to_take_refuses_malformed(bad: object) -> None:
    with pytest.raises(TicketRejected) as info:
        ticket_to_take(bad, key_prefix="p:")
    assert info.value.reason is Reason.MALFORMED


def test_decide_returns_claims_without_io() -> None:
    assert decide(RECORD, HANDSHAKE, now=NOW + 1) == CLAIMS


@pytest.mark.parametrize(
    ("raw", "handshake", "now", "reason", "detail"),
    [
        (None, HANDSHAKE, NOW, Reason.INVALID, None),
        (b"garbage", HANDSHAKE, NOW, Reason.INVALID, Detail.UNREADABLE_RECORD),
        (RECORD, HANDSHAKE, NOW + 30 + DEFAULT_LEEWAY, Reason.INVALID, Detail.EXPIRED_BY_CLOCK),
        (RECORD, HANDSHAKE, NOW - DEFAULT_LEEWAY - 0.001, Reason.INVALID, Detail.ISSUED_IN_FUTURE),
        (RECORD, Handshake(origin=None, audience="chat"), NOW, Reason.ORIGIN_MISMATCH, None),
        (RECORD, Handshake(origin=ORIGIN, audience="x"), NOW, Reason.AUDIENCE_MISMATCH, None),
    ],
)
def test_decide_refusals(
    raw: bytes | None, handshake: Handshake, now: float, reason: Reason, detail: Detail | None
) -> None:
    outcome = decide(raw, handshake, now=now, ticket_hash="h")
    assert isinstance(outcome, TicketRejected)
    assert (outcome.reason, outcome.detail, outcome.ticket_hash) == (reason, detail, "h")


def test_a_ticket_never_opens_a_socket_after_its_session() -> None:
    """No leeway for the session's end: a skewed clock must not open a socket the
    lifetime timer would then close with 4401 *after* the session (hostile review)."""
    ends = dataclasses.replace(CLAIMS, session="s", auth_at=NOW - 60, session_expires_at=NOW + 2)
    record = encode_record(ends)
    assert decide(record, HANDSHAKE, now=NOW + 1.999) == ends  # the control
    outcome = decide(record, HANDSHAKE, now=NOW + 2, ticket_hash="h")
    assert isinstance(outcome, TicketRejected)
    assert (outcome.reason, outcome.detail) == (Reason.INVALID, Detail.SESSION_ENDED)


def test_decide_within_the_leeway_either_way() -> None:
    assert decide(RECORD, HANDSHAKE, now=NOW - DEFAULT_LEEWAY) == CLAIMS
    assert decide(RECORD, HANDSHAKE, now=NOW + 30 + DEFAULT_LEEWAY - 0.001) == CLAIMS
    assert isinstance(decide(RECORD, HANDSHAKE, now=NOW + 30, leeway=0), TicketRejected)


# -- one refusal, one log line -------------------------------------------------------------


def ticketd_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("ticketd")]


async def test_one_log_line_per_refusal_through_an_adapter(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ticketd")
    async with ticket_env(redis_url) as env:
        ticket = await env.mint()
        outcome = await admit(
            env.verifier,
            method="GET",
            target=f"/ws?ticket={ticket}",
            headers=handshake(origin="https://evil.example"),
        )
    assert isinstance(outcome, Denied)
    records = ticketd_records(caplog)
    assert [r.getMessage() for r in records] == [
        f"websocket handshake refused reason=origin_mismatch ticket={log_id(ticket)}"
    ]
    assert ticket not in records[0].getMessage()


async def test_clock_skew_is_logged_as_such_by_the_adapter(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, a record from an issuer whose clock runs ahead read as an unknown ticket."""
    caplog.set_level(logging.DEBUG, logger="ticketd")
    async with ticket_env(redis_url) as env:
        env.issuer.clock = lambda: NOW + 60
        env.verifier.clock = lambda: NOW
        ticket = await env.mint()
        outcome = await admit(
            env.verifier, method="GET", target=f"/ws?ticket={ticket}", headers=handshake()
        )
    assert isinstance(outcome, Denied)
    assert outcome.status == 401  # the client sees `invalid`, nothing more
    (record,) = ticketd_records(caplog)
    assert record.getMessage().endswith(" detail=issued_in_future")
    assert "reason=invalid " in record.getMessage()
    assert record.levelno == logging.WARNING


def test_one_log_line_per_refusal_through_the_http_endpoint(
    http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ticketd")
    minted = http.post(
        "/v1/tickets",
        json={"audience": "chat"},
        headers={"Origin": APP_ORIGIN, "Cookie": f"session={cookie_for(5)}"},
    )
    assert minted.status_code == 201
    ticket = minted.json()["ticket"]
    caplog.clear()
    response = http.post(
        "/v1/tickets/redeem",
        json={"ticket": ticket, "origin": "https://evil.example", "audience": "chat"},
        headers={"Authorization": f"Bearer {SERVICE_KEY}"},
    )
    assert response.status_code == 403
    refusals = [r for r in ticketd_records(caplog) if "origin_mismatch" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in ticketd_records(caplog)]
    assert f"ticket={log_id(ticket)}" in refusals[0].getMessage()
    assert ticket not in refusals[0].getMessage()
