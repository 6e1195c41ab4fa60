"""Fuzzing beyond test_origins.py / test_handshake.py: differential and byte-mutation targets.

- ``canonical_origin`` against ``urllib.parse``: whatever it accepts, urlsplit must read
  as the same scheme, host and port with no path, query, fragment or userinfo;
- ``OriginAllowlist.check`` is idempotent and agrees with ``allows`` on its own output;
- ``extract_ticket`` on real handshakes mutated byte-wise: it never raises anything but
  ``TicketRejected``, and when it returns a ticket, that ticket is byte-for-byte one that
  was in the request.
"""

from __future__ import annotations

import urllib.parse

from hypothesis import given, settings
from hypothesis import strategies as st

from ticketd import Reason, TicketRejected
from ticketd.exceptions import InvalidOrigin
from ticketd.handshake import extract_ticket
from ticketd.origins import OriginAllowlist, canonical_origin
from ticketd.tickets import new_ticket

TICKET = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
ALLOW = OriginAllowlist(["https://app.example.com", "https://*.tenants.example.com"])

_origin_alphabet = st.sampled_from(list("htps:/.[]@?#%09aAzZ-_:\\ \t"))
_origins = st.one_of(
    st.builds(
        lambda scheme, host, port: f"{scheme}://{host}{port}",
        st.sampled_from(["http", "https", "HTTPS", "hTTp"]),
        st.one_of(
            st.from_regex(r"[a-zA-Z0-9-]{1,10}(\.[a-zA-Z0-9-]{1,10}){0,3}", fullmatch=True),
            st.ip_addresses(v=4).map(str),
            st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
        ),
        st.one_of(st.just(""), st.integers(0, 70000).map(lambda p: f":{p}")),
    ),
    st.text(_origin_alphabet, max_size=30),
    st.lists(
        st.sampled_from(["https", "://", "xn--a", "[::1]", ":8", "@", "a.b", "/"]), max_size=6
    ).map("".join),
)


@settings(max_examples=400, deadline=None)
@given(_origins)
def test_canonical_origin_agrees_with_urlsplit(value: str) -> None:
    try:
        origin = canonical_origin(value)
    except InvalidOrigin:
        return
    parts = urllib.parse.urlsplit(value)
    assert (parts.path, parts.query, parts.fragment) == ("", "", "")
    assert parts.username is None
    assert parts.password is None
    canon = urllib.parse.urlsplit(origin)
    assert canon.scheme == parts.scheme.lower() in {"http", "https"}
    assert canon.hostname == parts.hostname  # urlsplit lowercases hosts too
    default = {"http": 80, "https": 443}[canon.scheme]
    assert (canon.port or default) == (parts.port or default)
    assert canonical_origin(origin) == origin


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        _origins,
        st.from_regex(r"https://[a-z0-9-]{1,8}\.tenants\.example\.com(:443)?", fullmatch=True),
    )
)
def test_allowlist_check_is_idempotent(value: str) -> None:
    try:
        origin = ALLOW.check(value)
    except InvalidOrigin:
        return
    assert ALLOW.allows(origin)
    assert ALLOW.check(origin) == origin
    assert origin == "https://app.example.com" or origin.endswith(".tenants.example.com")


def _request(ticket: str, transport: str) -> bytes:
    target = f"/ws?room=1&ticket={ticket}" if transport == "query" else "/ws?room=1"
    lines = [
        f"GET {target} HTTP/1.1",
        "Host: rt.example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Origin: https://app.example.com",
    ]
    if transport == "subprotocol":
        lines.append(f"Sec-WebSocket-Protocol: ticketd.v1, ticket.{ticket}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _parse(raw: bytes) -> tuple[str, list[tuple[bytes, bytes]]]:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    target = head[0].split(b" ")[1].decode("latin-1") if len(head[0].split(b" ")) > 1 else ""
    headers = [tuple(line.split(b":", 1)) for line in head[1:] if b":" in line]
    return target, [(k.strip(), v.strip()) for k, v in headers]


_mutation = st.tuples(
    st.sampled_from(["flip", "delete", "insert", "duplicate"]),
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=255),
)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["query", "subprotocol"]), st.lists(_mutation, min_size=1, max_size=4))
def test_mutated_real_handshakes(transport: str, mutations: list[tuple[str, int, int]]) -> None:
    raw = bytearray(_request(TICKET, transport))
    for kind, where, byte in mutations:
        i = where % len(raw)
        if kind == "flip":
            raw[i] ^= 1 << (byte % 8)
        elif kind == "delete":
            del raw[i]
        elif kind == "insert":
            raw.insert(i, byte)
        else:
            raw[i:i] = raw[i : i + byte % 60]
    target, headers = _parse(bytes(raw))
    try:
        presented = extract_ticket(target, headers)
    except TicketRejected as exc:
        reason: Reason | None = exc.reason
    else:
        reason = None
    if reason is not None:
        assert reason in {Reason.MISSING, Reason.DUPLICATE, Reason.MALFORMED}
        return
    # Anything accepted is a well-formed ticket that literally appears in the request.
    assert len(presented.ticket) == 43
    assert presented.ticket.encode() in bytes(raw) or urllib.parse.quote(
        presented.ticket
    ).encode() in bytes(raw)


def test_fresh_tickets_round_trip_through_both_transports() -> None:
    for _ in range(50):
        ticket = new_ticket()
        for transport in ("query", "subprotocol"):
            target, headers = _parse(_request(ticket, transport))
            assert extract_ticket(target, headers).ticket == ticket
