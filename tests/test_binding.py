"""Tests for ticketd.binding.check_binding, with the clock passed in."""

from __future__ import annotations

import dataclasses

import pytest

from ticketd.binding import canonical_ip, check_binding
from ticketd.exceptions import Reason, TicketRejected
from ticketd.tickets import Claims

ORIGIN = "https://app.example.com"
ISSUED = 1_700_000_000.0
EXPIRES = ISSUED + 30.0
HASH = "abcd1234"

CLAIMS = Claims(
    subject="user-1",
    origin=ORIGIN,
    audience="chat",
    issued_at=ISSUED,
    expires_at=EXPIRES,
)
IP_BOUND = dataclasses.replace(CLAIMS, client_ip="203.0.113.7")


def check(
    claims: Claims = CLAIMS,
    *,
    origin: str | None = ORIGIN,
    audience: str | None = "chat",
    client_ip: str | None = None,
    now: float = ISSUED + 1,
) -> Claims:
    return check_binding(
        claims, origin=origin, audience=audience, client_ip=client_ip, now=now, ticket_hash=HASH
    )


def rejection(
    claims: Claims = CLAIMS,
    *,
    origin: str | None = ORIGIN,
    audience: str | None = "chat",
    client_ip: str | None = None,
    now: float = ISSUED + 1,
) -> TicketRejected:
    with pytest.raises(TicketRejected) as info:
        check(claims, origin=origin, audience=audience, client_ip=client_ip, now=now)
    return info.value


def test_matching_connection_returns_the_same_claims() -> None:
    assert check() is CLAIMS


# --- expiry ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "now",
    [ISSUED, ISSUED + 1, EXPIRES - 0.001, ISSUED - 5.0],
    ids=["at issue", "one second in", "just in time", "clock behind the issuer"],
)
def test_before_expiry_is_accepted(now: float) -> None:
    assert check(now=now) is CLAIMS


@pytest.mark.parametrize(
    "now",
    [EXPIRES, EXPIRES + 0.001, EXPIRES + 3600, float("inf")],
    ids=["at expiry", "just after", "an hour after", "infinity"],
)
def test_at_or_after_expiry_is_invalid(now: float) -> None:
    exc = rejection(now=now)
    assert exc.reason is Reason.INVALID
    assert exc.ticket_hash == HASH


def test_expiry_is_checked_before_anything_else() -> None:
    # An expired record says "invalid" whatever else is wrong: it must look
    # like an unknown ticket to the client.
    exc = rejection(now=EXPIRES, origin=None, audience="other")
    assert exc.reason is Reason.INVALID


# --- origin ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        ORIGIN,
        "HTTPS://APP.EXAMPLE.COM",
        "https://app.example.com:443",
    ],
    ids=["exact", "upper case", "explicit default port"],
)
def test_origin_equal_after_canonicalisation_is_accepted(origin: str) -> None:
    assert check(origin=origin) is CLAIMS


@pytest.mark.parametrize(
    "origin",
    [
        None,
        "",
        "null",
        "https://evil.example.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://app.example.com.evil.com",
        "https://a.app.example.com",
        "https://\u0430pp.example.com",
        "https://xn--pp-8cd.example.com",
        "https://app.example.com/",
        "https://u@app.example.com",
        "https://app.example.com\r\n",
        "not an origin",
    ],
    ids=[
        "missing",
        "empty",
        "null",
        "other host",
        "other scheme",
        "other port",
        "suffix look-alike",
        "subdomain",
        "IDN look-alike",
        "punycode",
        "trailing slash",
        "userinfo",
        "CRLF",
        "invalid",
    ],
)
def test_origin_mismatch(origin: str | None) -> None:
    exc = rejection(origin=origin)
    assert exc.reason is Reason.ORIGIN_MISMATCH
    assert exc.status == 403
    assert exc.ticket_hash == HASH


def test_origin_is_checked_before_audience_and_ip() -> None:
    exc = rejection(claims=IP_BOUND, origin="null", audience="other", client_ip="198.51.100.1")
    assert exc.reason is Reason.ORIGIN_MISMATCH


# --- audience --------------------------------------------------------------------------------


@pytest.mark.parametrize("audience", ["other", "", "Chat", "chat ", "chat2"], ids=repr)
def test_audience_mismatch(audience: str) -> None:
    exc = rejection(audience=audience)
    assert exc.reason is Reason.AUDIENCE_MISMATCH
    assert exc.ticket_hash == HASH


@pytest.mark.parametrize("bound", ["chat", "billing", "x" * 128])
def test_audience_none_accepts_any(bound: str) -> None:
    claims = dataclasses.replace(CLAIMS, audience=bound)
    assert check(claims, audience=None) is claims


def test_audience_checked_before_ip() -> None:
    exc = rejection(claims=IP_BOUND, audience="other", client_ip="198.51.100.1")
    assert exc.reason is Reason.AUDIENCE_MISMATCH


# --- client IP -------------------------------------------------------------------------------


@pytest.mark.parametrize("client_ip", [None, "203.0.113.7", "198.51.100.1", "::1", ""])
def test_unbound_ticket_ignores_client_ip(client_ip: str | None) -> None:
    assert check(client_ip=client_ip) is CLAIMS


@pytest.mark.parametrize(
    "client_ip",
    [
        "203.0.113.7",
        "203.0.113.7 ",
        "::ffff:203.0.113.7",
        "203.0.113.7:51000",
        "[::ffff:203.0.113.7]:443",
    ],
    ids=["same", "trailing space", "IPv4-mapped IPv6", "with port", "bracketed with port"],
)
def test_bound_ticket_accepts_the_same_address(client_ip: str) -> None:
    assert check(IP_BOUND, client_ip=client_ip) is IP_BOUND


@pytest.mark.parametrize(
    "client_ip",
    [None, "", "198.51.100.1", "203.0.113.70", "203.0.113.7x", "2001:db8::1"],
    ids=["unknown", "empty", "other", "prefix look-alike", "garbage suffix", "IPv6"],
)
def test_bound_ticket_refuses_other_addresses(client_ip: str | None) -> None:
    exc = rejection(claims=IP_BOUND, client_ip=client_ip)
    assert exc.reason is Reason.IP_MISMATCH
    assert exc.status == 403
    assert exc.ticket_hash == HASH


# --- ticket_hash -----------------------------------------------------------------------------


def test_ticket_hash_defaults_to_none() -> None:
    with pytest.raises(TicketRejected) as info:
        check_binding(CLAIMS, origin=None, audience=None, now=ISSUED)
    assert info.value.reason is Reason.ORIGIN_MISMATCH
    assert info.value.ticket_hash is None


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("203.0.113.7:8080", "203.0.113.7"),
        ("[2001:DB8::1]:443", "2001:db8::1"),
        ("2001:db8:0:0::1", "2001:db8::1"),
        ("", None),
        (None, None),
        ("localhost", None),
        ("1.2.3", None),
        ("[::1", "::1"),
    ],
)
def test_canonical_ip(raw: str | None, canonical: str | None) -> None:
    assert canonical_ip(raw) == canonical


def test_unparseable_bound_address_compares_as_given() -> None:
    """A bound value that is not an address never matches a missing one."""
    weird = dataclasses.replace(CLAIMS, client_ip="testclient")
    assert check(weird, client_ip="testclient") is weird
    for other in (None, "", "203.0.113.7"):
        with pytest.raises(TicketRejected) as info:
            check(weird, client_ip=other)
        assert info.value.reason is Reason.IP_MISMATCH
