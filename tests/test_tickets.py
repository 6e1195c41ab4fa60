"""Tests for ticketd.tickets: generation, format check, hashing, record encoding."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketd.tickets import (
    TICKET_BYTES,
    TICKET_LENGTH,
    Claims,
    decode_record,
    encode_record,
    is_well_formed,
    log_id,
    new_ticket,
    ticket_digest,
    ticket_key,
)

URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")
# A fixed, well-formed ticket (32 bytes 0x00..0x1f) so failures are reproducible.
FIXED = base64.urlsafe_b64encode(bytes(range(32))).rstrip(b"=").decode()
# The last character carries 4 bits; these are the 16 canonical ones (low 2 bits zero).
CANONICAL_LAST = "AEIMQUYcgkosw048"


# --- new_ticket ------------------------------------------------------------------------------


def test_fixed_ticket_is_canonical() -> None:
    assert FIXED == "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
    assert is_well_formed(FIXED) is True


def test_new_ticket_shape_and_entropy() -> None:
    ticket = new_ticket()
    assert len(ticket) == TICKET_LENGTH == 43
    assert URL_SAFE.fullmatch(ticket)
    assert len(base64.urlsafe_b64decode(ticket + "=")) == TICKET_BYTES == 32
    assert ticket[-1] in CANONICAL_LAST
    assert is_well_formed(ticket) is True


def test_new_ticket_is_distinct_over_many_draws() -> None:
    tickets = {new_ticket() for _ in range(2000)}
    assert len(tickets) == 2000
    assert all(is_well_formed(t) for t in tickets)
    # Every URL-safe character shows up somewhere: the encoding is the full alphabet.
    assert set("".join(tickets)) == set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )


# --- is_well_formed --------------------------------------------------------------------------


def _swap_case_except_last(ticket: str) -> str:
    return ticket[:-1].swapcase() + ticket[-1]


REFUSED_TICKETS: dict[str, object] = {
    "empty": "",
    "truncated by one": FIXED[:-1],
    "truncated to half": FIXED[:21],
    "extended by one": FIXED + "A",
    "extended by padding": FIXED + "=",
    "10 KB": "A" * 10_240,
    "non-canonical last char B": FIXED[:-1] + "B",
    "non-canonical last char (case-flipped h)": FIXED[:-1] + "h",
    "non-canonical last char _": FIXED[:-1] + "_",
    "non-canonical last char -": FIXED[:-1] + "-",
    "standard base64 +": "+" + FIXED[1:],
    "standard base64 /": "/" + FIXED[1:],
    "glob *": "*" + FIXED[1:],
    "glob ?": "?" + FIXED[1:],
    "glob [": "[" + FIXED[1:],
    "glob ]": FIXED[:-2] + "]" + FIXED[-1],
    "redis hash tag {": "{" + FIXED[1:],
    "redis hash tag }": FIXED[:-2] + "}" + FIXED[-1],
    "redis key separator :": ":" + FIXED[1:],
    "percent": "%" + FIXED[1:],
    "dot": "." + FIXED[1:],
    "space": " " + FIXED[1:],
    "leading space (44)": " " + FIXED,
    "trailing newline (44)": FIXED + "\n",
    "trailing newline (43)": FIXED[:-1] + "\n",
    "tab": FIXED[:-2] + "\t" + FIXED[-1],
    "NUL": "\x00" + FIXED[1:],
    "non-ASCII letter": "\u00e9" + FIXED[1:],
    "non-ASCII digit": "\u0661" + FIXED[1:],
    "fullwidth letter": "\uff21" + FIXED[1:],
    "bytes": FIXED.encode(),
    "None": None,
    "int": 42,
    "list": [FIXED],
}


@pytest.mark.parametrize("value", list(REFUSED_TICKETS.values()), ids=list(REFUSED_TICKETS))
def test_is_well_formed_refuses(value: object) -> None:
    assert is_well_formed(value) is False


@pytest.mark.parametrize("last", list(CANONICAL_LAST))
def test_every_canonical_last_char_is_accepted(last: str) -> None:
    assert is_well_formed(FIXED[:-1] + last) is True


@pytest.mark.parametrize(
    "last",
    sorted(
        set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        - set(CANONICAL_LAST)
    ),
)
def test_every_non_canonical_last_char_is_refused(last: str) -> None:
    # Each of these decodes to the same 32 bytes as some canonical spelling.
    assert is_well_formed(FIXED[:-1] + last) is False


def test_case_flipped_body_is_well_formed_but_a_different_ticket() -> None:
    # The first 42 characters carry 6 full bits each, so any letter case is valid
    # base64 and the result is simply another ticket, with another key: a
    # case-insensitive transport (or store) would not collide two tickets, it
    # would just fail to find them.
    flipped = _swap_case_except_last(FIXED)
    assert flipped != FIXED
    assert is_well_formed(flipped) is True
    assert ticket_digest(flipped) != ticket_digest(FIXED)


def test_case_flipped_last_letter_is_never_canonical() -> None:
    # Upper-case letter at index i (i % 4 == 0) flips to index i + 26, whose low
    # two bits are 0b10: a non-canonical spelling, refused.
    for upper in "AEIMQUY":
        assert is_well_formed(FIXED[:-1] + upper) is True
        assert is_well_formed(FIXED[:-1] + upper.lower()) is False
    for lower in "cgkosw":
        assert is_well_formed(FIXED[:-1] + lower) is True
        assert is_well_formed(FIXED[:-1] + lower.upper()) is False


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_is_well_formed_accepts_every_32_byte_value(raw: bytes) -> None:
    ticket = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    assert is_well_formed(ticket) is True


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.text(st.sampled_from("Aa0_-=+/*{}: \n"), min_size=40, max_size=46)))
def test_is_well_formed_only_accepts_the_canonical_encoding(value: str) -> None:
    expected = (
        len(value) == 43
        and URL_SAFE.fullmatch(value) is not None
        and base64.urlsafe_b64encode(base64.urlsafe_b64decode(value + "=")).rstrip(b"=").decode()
        == value
    )
    assert is_well_formed(value) is expected


# --- ticket_digest, ticket_key, log_id -------------------------------------------------------


def test_ticket_digest_is_deterministic_and_pinned() -> None:
    # SHA-256 of the ASCII ticket, first 16 bytes, URL-safe base64 without padding.

    expected = (
        base64.urlsafe_b64encode(hashlib.sha256(FIXED.encode()).digest()[:16]).rstrip(b"=").decode()
    )
    assert ticket_digest(FIXED) == expected
    assert ticket_digest(FIXED) == ticket_digest(str(FIXED))
    assert len(expected) == 22
    assert URL_SAFE.fullmatch(expected)


def test_ticket_key_applies_prefix_and_never_contains_the_ticket() -> None:
    ticket = new_ticket()
    key = ticket_key("ticketd:", ticket)
    assert key == "ticketd:" + ticket_digest(ticket)
    assert ticket not in key
    assert ticket[:8] not in key
    assert ticket_key("", ticket) == ticket_digest(ticket)
    assert ticket_key("app:{t}:", ticket) == "app:{t}:" + ticket_digest(ticket)


def test_ticket_keys_differ_for_different_tickets() -> None:
    tickets = [new_ticket() for _ in range(500)]
    assert len({ticket_key("p:", t) for t in tickets}) == 500


def test_log_id_is_a_short_prefix_of_the_digest() -> None:
    assert log_id(FIXED) == ticket_digest(FIXED)[:8]
    assert len(log_id(FIXED)) == 8
    assert log_id(FIXED) not in FIXED


# --- encode_record / decode_record -----------------------------------------------------------

BASE = Claims(
    subject="user-1",
    origin="https://app.example.com",
    audience="chat",
    issued_at=1_700_000_000.123,
    expires_at=1_700_000_030.123,
)


@pytest.mark.parametrize(
    "claims",
    [
        BASE,
        Claims(**{**BASE.as_dict(), "subject": 42}),
        Claims(**{**BASE.as_dict(), "subject": 0}),
        Claims(**{**BASE.as_dict(), "subject": -(2**63)}),
        Claims(**{**BASE.as_dict(), "subject": 2**70}),
        Claims(**{**BASE.as_dict(), "subject": "42"}),
        Claims(**{**BASE.as_dict(), "subject": "Zo\u00eb \u2603"}),
        Claims(**{**BASE.as_dict(), "client_ip": "203.0.113.7"}),
        Claims(**{**BASE.as_dict(), "client_ip": "2001:db8::1"}),
        Claims(**{**BASE.as_dict(), "extra": {"room": "r1", "n": 3, "ok": True, "x": None}}),
        Claims(**{**BASE.as_dict(), "extra": {"nested": {"a": [1, 2.5, "\u00e9"]}}}),
        Claims(**{**BASE.as_dict(), "issued_at": 0.0, "expires_at": 0.001}),
    ],
    ids=[
        "str subject",
        "int subject",
        "zero subject",
        "negative subject",
        "big int subject",
        "digit string subject",
        "unicode subject",
        "ipv4",
        "ipv6",
        "extra",
        "nested extra",
        "epoch",
    ],
)
def test_record_round_trip(claims: Claims) -> None:
    raw = encode_record(claims)
    assert isinstance(raw, bytes)
    decoded = decode_record(raw)
    assert decoded == claims
    assert type(decoded.subject) is type(claims.subject)
    assert decode_record(raw.decode("utf-8")) == claims


def test_record_layout_is_pinned() -> None:
    assert encode_record(BASE) == (
        b'[1,"user-1","https://app.example.com","chat",1700000000123,1700000030123,null]'
    )
    with_extra = Claims(**{**BASE.as_dict(), "subject": 7, "client_ip": "::1", "extra": {"a": 1}})
    assert encode_record(with_extra) == (
        b'[1,7,"https://app.example.com","chat",1700000000123,1700000030123,"::1",{"a":1}]'
    )


def test_empty_extra_is_omitted_and_read_back_as_empty() -> None:
    assert json.loads(encode_record(BASE))[-1] is None
    assert len(json.loads(encode_record(BASE))) == 7
    assert decode_record(encode_record(BASE)).extra == {}
    explicit_empty = encode_record(BASE)[:-1] + b",{}]"
    assert decode_record(explicit_empty) == BASE


def test_timestamps_are_stored_in_milliseconds() -> None:
    claims = Claims(**{**BASE.as_dict(), "issued_at": 1.0004, "expires_at": 1.0006})
    decoded = decode_record(encode_record(claims))
    assert decoded.issued_at == 1.0
    assert decoded.expires_at == 1.001


def test_ticket_is_not_part_of_the_record() -> None:
    # The record is stored under a hash of the ticket and carries no copy of it.
    ticket = new_ticket()
    assert ticket.encode() not in encode_record(BASE)


def _record(**changes: Any) -> list[Any]:
    fields = ["version", "subject", "origin", "audience", "issued", "expires", "client_ip"]
    values: list[Any] = [1, "u", "https://a.example.com", "chat", 1000, 2000, None]
    for name, value in changes.items():
        values[fields.index(name)] = value
    return values


GARBAGE: dict[str, bytes | str] = {
    "empty": b"",
    "not JSON": b"hello",
    "truncated": b'[1,"u","https://a.example.com"',
    "invalid UTF-8": b"\xff\xfe\xff",
    "JSON object": b'{"v":1}',
    "JSON string": b'"x"',
    "JSON null": b"null",
    "JSON number": b"1",
    "empty list": b"[]",
    "six items": json.dumps(_record()[:6]).encode(),
    "nine items": json.dumps([*_record(), {}, 1]).encode(),
    "version 0": json.dumps(_record(version=0)).encode(),
    "version 2": json.dumps(_record(version=2)).encode(),
    "version true": json.dumps(_record(version=True)).encode(),
    "version 1.0": json.dumps(_record(version=1.0)).encode(),
    "version '1'": json.dumps(_record(version="1")).encode(),
    "bool subject true": json.dumps(_record(subject=True)).encode(),
    "bool subject false": json.dumps(_record(subject=False)).encode(),
    "float subject": json.dumps(_record(subject=1.5)).encode(),
    "null subject": json.dumps(_record(subject=None)).encode(),
    "list subject": json.dumps(_record(subject=["u"])).encode(),
    "int origin": json.dumps(_record(origin=1)).encode(),
    "null audience": json.dumps(_record(audience=None)).encode(),
    "float issued": json.dumps(_record(issued=1000.5)).encode(),
    "string expires": json.dumps(_record(expires="2000")).encode(),
    "bool issued": json.dumps(_record(issued=True)).encode(),
    "bool expires": json.dumps(_record(expires=False)).encode(),
    "huge issued": json.dumps(_record(issued=10**400)).encode(),
    "huge negative expires": json.dumps(_record(expires=-(10**400))).encode(),
    "NaN expires": b'[1,"u","https://a.example.com","chat",1000,NaN,null]',
    "Infinity issued": b'[1,"u","https://a.example.com","chat",Infinity,2000,null]',
    "int client_ip": json.dumps(_record(client_ip=1)).encode(),
    "list extra": json.dumps([*_record(), [1]]).encode(),
    "null extra": json.dumps([*_record(), None]).encode(),
    "deeply nested": b"[" * 100_000,
    "deeply nested extra": b'[1,"u","o","a",1,2,null,' + b'{"a":' * 100_000,
}


@pytest.mark.parametrize("raw", list(GARBAGE.values()), ids=list(GARBAGE))
def test_decode_record_refuses_garbage_with_value_error(raw: bytes | str) -> None:
    # The verifier catches ValueError only: anything else would escape as a 500.
    with pytest.raises(ValueError):  # noqa: PT011 - the message does not matter here
        decode_record(raw)


def test_decode_record_accepts_the_reference_record() -> None:
    # The garbage cases above differ from this one in one field only.
    assert decode_record(json.dumps(_record()).encode()) == Claims(
        subject="u",
        origin="https://a.example.com",
        audience="chat",
        issued_at=1.0,
        expires_at=2.0,
    )


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=9) | st.dictionaries(st.text(max_size=3), children)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=64), _json.map(lambda v: json.dumps(v).encode())))
def test_decode_record_raises_only_value_error(raw: bytes) -> None:
    try:
        claims = decode_record(raw)
    except ValueError:
        return
    assert isinstance(claims, Claims)
    assert decode_record(encode_record(claims)) == claims


URL_SAFE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.mark.parametrize("last", list(URL_SAFE_ALPHABET))
def test_the_last_character_rule_is_the_round_trip(last: str) -> None:
    """``is_well_formed`` checks the last character against a set; that set is exactly
    the characters for which decoding and re-encoding gives the ticket back."""
    ticket = FIXED[:-1] + last
    round_trip = base64.urlsafe_b64encode(base64.urlsafe_b64decode(ticket + "=")).rstrip(b"=")
    assert is_well_formed(ticket) is (round_trip.decode() == ticket)
    assert is_well_formed(ticket) is (last in CANONICAL_LAST)
