"""Tests for ticketd.handshake: finding the ticket and the Origin in an opening handshake."""

from __future__ import annotations

import base64

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ticketd.exceptions import Reason, TicketRejected
from ticketd.handshake import (
    QUERY_PARAMETER,
    SUBPROTOCOL,
    SUBPROTOCOL_TICKET_PREFIX,
    HeaderPairs,
    PresentedTicket,
    extract_ticket,
    header_values,
    is_websocket_upgrade,
    request_origin,
)

T = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
U = "HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4"
BAD = T[:-1] + "B"  # non-canonical last character: not a ticket


def test_constants() -> None:
    assert QUERY_PARAMETER == "ticket"
    assert SUBPROTOCOL == "ticketd.v1"
    assert SUBPROTOCOL_TICKET_PREFIX == "ticket."


# --- extract_ticket: accepted --------------------------------------------------------------

QUERY_TARGETS = {
    "path and query": f"/ws?ticket={T}",
    "root path": f"/?ticket={T}",
    "other params first": f"/ws?room=1&ticket={T}",
    "other params after": f"/ws?ticket={T}&room=1",
    "blank other param": f"/ws?x=&ticket={T}",
    "question mark only": f"?ticket={T}",
    "bare query": f"ticket={T}",
    "bare query with others": f"a=1&ticket={T}&b=2",
    "bare query with a slash": f"next=/home&ticket={T}",
    "bare query with a question mark": f"next=/a?b&ticket={T}",
    "path query with ? in a value": f"/ws?next=/a?b&ticket={T}",
    "absolute form": f"ws://rt.example.com/ws?ticket={T}",
    "absolute form https": f"https://rt.example.com:8443/ws?ticket={T}",
    "fragment ignored": f"/ws?ticket={T}#frag",
    "double slash path": f"//ws?ticket={T}",
}


@pytest.mark.parametrize("target", list(QUERY_TARGETS.values()), ids=list(QUERY_TARGETS))
def test_query_form(target: str) -> None:
    presented = extract_ticket(target, [])
    assert presented == PresentedTicket(ticket=T, transport="query")
    assert presented.subprotocol is None


SUBPROTOCOL_HEADERS: dict[str, list[tuple[str | bytes, str | bytes]]] = {
    "one line": [("Sec-WebSocket-Protocol", f"ticketd.v1, ticket.{T}")],
    "no spaces": [("Sec-WebSocket-Protocol", f"ticketd.v1,ticket.{T}")],
    "ticket first": [("Sec-WebSocket-Protocol", f"ticket.{T}, ticketd.v1")],
    "with another protocol": [("Sec-WebSocket-Protocol", f"chat, ticketd.v1, ticket.{T}")],
    "lower-case name": [("sec-websocket-protocol", f"ticketd.v1, ticket.{T}")],
    "two lines": [
        ("Sec-WebSocket-Protocol", "ticketd.v1"),
        ("Sec-WebSocket-Protocol", f"ticket.{T}"),
    ],
    "two lines, other headers between": [
        ("Sec-WebSocket-Protocol", f"ticket.{T}"),
        ("Host", "rt.example.com"),
        ("sec-websocket-protocol", "ticketd.v1"),
    ],
    "ASGI bytes": [(b"sec-websocket-protocol", f"ticketd.v1, ticket.{T}".encode())],
    "ASGI bytes, two lines": [
        (b"sec-websocket-protocol", b"ticketd.v1"),
        (b"sec-websocket-protocol", f"ticket.{T}".encode()),
    ],
}


@pytest.mark.parametrize(
    "headers", list(SUBPROTOCOL_HEADERS.values()), ids=list(SUBPROTOCOL_HEADERS)
)
def test_subprotocol_form(headers: list[tuple[str | bytes, str | bytes]]) -> None:
    presented = extract_ticket("/ws", headers)
    assert presented == PresentedTicket(ticket=T, transport="subprotocol")
    assert presented.subprotocol == "ticketd.v1"


def test_headers_may_be_any_iterable_of_pairs() -> None:
    headers = iter([("Sec-WebSocket-Protocol", f"ticketd.v1, ticket.{T}")])
    assert extract_ticket("/ws", headers).ticket == T


def test_presented_ticket_repr_hides_the_ticket() -> None:
    for presented in (extract_ticket(f"/ws?ticket={T}", []), PresentedTicket(T, "subprotocol")):
        assert T not in repr(presented)
        assert T[:10] not in repr(presented)
        assert T not in str(presented)
    assert repr(PresentedTicket(T, "query")) == "PresentedTicket(transport='query')"


# --- extract_ticket: refused ---------------------------------------------------------------

PROTO = "Sec-WebSocket-Protocol"

REJECTIONS: dict[str, tuple[str, list[tuple[str | bytes, str | bytes]], Reason]] = {
    "nothing": ("/ws", [], Reason.MISSING),
    "empty target": ("", [], Reason.MISSING),
    "other params": ("/ws?room=1", [], Reason.MISSING),
    "wrong case name": (f"/ws?Ticket={T}", [], Reason.MALFORMED),
    "tickets name": (f"/ws?tickets={T}", [], Reason.MISSING),
    "ticket in path": (f"/ws/ticket={T}", [], Reason.MISSING),
    "ticket in fragment": (f"/ws#ticket={T}", [], Reason.MISSING),
    "only ticketd.v1": ("/ws", [(PROTO, "ticketd.v1")], Reason.MISSING),
    "wrong case prefix": ("/ws", [(PROTO, f"ticketd.v1, Ticket.{T}")], Reason.MALFORMED),
    "two query params": (f"/ws?ticket={T}&ticket={U}", [], Reason.DUPLICATE),
    "two equal query params": (f"/ws?ticket={T}&ticket={T}", [], Reason.DUPLICATE),
    "two malformed query params": ("/ws?ticket=x&ticket=y", [], Reason.DUPLICATE),
    "bare query twice": (f"ticket={T}&ticket={U}", [], Reason.DUPLICATE),
    "query and subprotocol": (
        f"/ws?ticket={T}",
        [(PROTO, f"ticketd.v1, ticket.{T}")],
        Reason.DUPLICATE,
    ),
    "two subprotocol tokens": (
        "/ws",
        [(PROTO, f"ticketd.v1, ticket.{T}, ticket.{U}")],
        Reason.DUPLICATE,
    ),
    "two subprotocol lines": (
        "/ws",
        [(PROTO, f"ticketd.v1, ticket.{T}"), (PROTO, f"ticket.{U}")],
        Reason.DUPLICATE,
    ),
    "empty query value": ("/ws?ticket=", [], Reason.MALFORMED),
    "name without value": ("/ws?ticket", [], Reason.MALFORMED),
    "truncated": (f"/ws?ticket={T[:-1]}", [], Reason.MALFORMED),
    "extended": (f"/ws?ticket={T}A", [], Reason.MALFORMED),
    "non-canonical": (f"/ws?ticket={BAD}", [], Reason.MALFORMED),
    "semicolon is not a separator": (f"/ws?ticket={T};x=1", [], Reason.MALFORMED),
    "plus decodes to space": (f"/ws?ticket=+{T[1:]}", [], Reason.MALFORMED),
    "glob": ("/ws?ticket=*", [], Reason.MALFORMED),
    "bare query with fragment": (f"ticket={T}#x", [], Reason.MALFORMED),
    "empty subprotocol ticket": ("/ws", [(PROTO, "ticketd.v1, ticket.")], Reason.MALFORMED),
    "bad subprotocol ticket": ("/ws", [(PROTO, f"ticketd.v1, ticket.{BAD}")], Reason.MALFORMED),
    "subprotocol without ticketd.v1": ("/ws", [(PROTO, f"ticket.{T}")], Reason.MALFORMED),
    # Encoded tickets are refused, not decoded: logs and scrubbers see raw bytes only.
    "percent-encoded name": (f"/ws?%74icket={T}", [], Reason.MALFORMED),
    "percent-encoded value": (f"/ws?ticket=%{ord(T[0]):02X}{T[1:]}", [], Reason.MALFORMED),
    "encoded name and a plain one": (f"/ws?%74icket={T}&ticket={T}", [], Reason.DUPLICATE),
    "subprotocol with another protocol only": (
        "/ws",
        [(PROTO, f"chat, ticket.{T}")],
        Reason.MALFORMED,
    ),
    "subprotocol with ticketd.v2": ("/ws", [(PROTO, f"ticketd.v2, ticket.{T}")], Reason.MALFORMED),
    "subprotocol with upper-case ticketd.v1": (
        "/ws",
        [(PROTO, f"TICKETD.V1, ticket.{T}")],
        Reason.MALFORMED,
    ),
    "ticketd.v1 in another header": (
        "/ws",
        [("X-Protocol", "ticketd.v1"), (PROTO, f"ticket.{T}")],
        Reason.MALFORMED,
    ),
    # Near misses count as a malformed ticket (refused, not burned) and as a second ticket.
    "all-caps name": (f"/ws?TICKET={T}", [], Reason.MALFORMED),
    "encoded upper-case letter": (f"/ws?%54icket={T}", [], Reason.MALFORMED),
    "encoded equals": (f"/ws?ticket%3D{T}", [], Reason.MALFORMED),
    "plus before the name": (f"/ws?+ticket={T}", [], Reason.MALFORMED),
    "encoded space after the name": (f"/ws?ticket%20={T}", [], Reason.MALFORMED),
    "repeated equals": (f"/ws?ticket=={T}", [], Reason.MALFORMED),
    "upper-case name next to the real one": (f"/ws?ticket={T}&Ticket={U}", [], Reason.DUPLICATE),
    "upper-case token next to a query ticket": (
        f"/ws?ticket={T}",
        [(PROTO, f"ticketd.v1, TICKET.{U}")],
        Reason.DUPLICATE,
    ),
    "a name that only starts like ticket": (f"/ws?tickets={T}&ticketing=1", [], Reason.MISSING),
    "unparseable URL, no ticket": ("//[", [], Reason.MISSING),
    "unparseable absolute URL": (f"http://[x/?ticket={T}&ticket={U}", [], Reason.DUPLICATE),
}


@pytest.mark.parametrize(
    ("target", "headers", "reason"), list(REJECTIONS.values()), ids=list(REJECTIONS)
)
def test_extract_ticket_rejects(
    target: str, headers: list[tuple[str | bytes, str | bytes]], reason: Reason
) -> None:
    with pytest.raises(TicketRejected) as info:
        extract_ticket(target, headers)
    assert info.value.reason is reason
    assert info.value.ticket_hash is None
    assert T not in str(info.value)
    assert T not in repr(info.value)


def test_unparseable_host_in_target_still_yields_the_query() -> None:
    # urlsplit() raised ValueError("Invalid IPv6 URL") on these targets.
    assert extract_ticket(f"//[/ws?ticket={T}", []).ticket == T
    assert extract_ticket(f"http://[x/ws?ticket={T}", []).ticket == T


# --- request_origin / header_values --------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], None),
        ([("Host", "a")], None),
        ([("Origin", "https://app.example.com")], "https://app.example.com"),
        ([("origin", "null")], "null"),
        ([("ORIGIN", "")], ""),
        ([(b"origin", b"https://app.example.com")], "https://app.example.com"),
        ([(b"origin", b"https://\xe4.example")], "https://\u00e4.example"),
        ([("Origin", "https://a.example.com"), ("Origin", "https://a.example.com")], None),
        ([("Origin", "https://a.example.com"), (b"origin", b"https://b.example.com")], None),
    ],
    ids=[
        "absent",
        "other headers",
        "once",
        "null is returned raw",
        "empty",
        "ASGI bytes",
        "latin-1 bytes",
        "twice, same value",
        "twice, different values",
    ],
)
def test_request_origin(
    headers: list[tuple[str | bytes, str | bytes]], expected: str | None
) -> None:
    assert request_origin(headers) == expected


def test_header_values_keeps_order_and_repeats() -> None:
    headers: list[tuple[str | bytes, str | bytes]] = [
        ("X-A", "1"),
        (b"x-a", b"2"),
        ("X-B", "3"),
        ("x-A", "4"),
    ]
    assert header_values(headers, "X-A") == ["1", "2", "4"]
    assert header_values(headers, "x-c") == []


# --- is_websocket_upgrade ------------------------------------------------------------------

KEY = base64.b64encode(bytes(range(16))).decode()  # "AAECAwQFBgcICQoLDA0ODw=="
VALID: list[tuple[str, str]] = [
    ("Host", "rt.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
    ("Origin", "https://app.example.com"),
]


def _replace(name: str, *values: str) -> list[tuple[str | bytes, str | bytes]]:
    """VALID with every ``name`` header replaced by ``values`` (none: removed)."""
    headers: list[tuple[str | bytes, str | bytes]] = [
        (k, v) for k, v in VALID if k.lower() != name.lower()
    ]
    headers += [(name, value) for value in values]
    return headers


UPGRADES: dict[str, tuple[str, HeaderPairs, bool]] = {
    "valid": ("GET", VALID, True),
    "lower-case method": ("get", VALID, True),
    "ASGI bytes": ("GET", [(k.lower().encode(), v.encode()) for k, v in VALID], True),
    "Upgrade: WebSocket": ("GET", _replace("Upgrade", "WebSocket"), True),
    "Upgrade with another token": ("GET", _replace("Upgrade", "h2c, websocket"), True),
    "Connection: keep-alive, Upgrade": ("GET", _replace("Connection", "keep-alive, Upgrade"), True),
    "Connection over two lines": ("GET", _replace("Connection", "keep-alive", "upgrade"), True),
    "key with whitespace": ("GET", _replace("Sec-WebSocket-Key", f" {KEY} "), True),
    "POST": ("POST", VALID, False),
    "HEAD": ("HEAD", VALID, False),
    "CONNECT (HTTP/2 style)": ("CONNECT", VALID, False),
    "plain GET": ("GET", [("Host", "rt.example.com"), ("Accept", "text/html")], False),
    "no headers": ("GET", [], False),
    "no Upgrade": ("GET", _replace("Upgrade"), False),
    "Upgrade: h2c": ("GET", _replace("Upgrade", "h2c"), False),
    "Upgrade twice": ("GET", _replace("Upgrade", "websocket", "websocket"), False),
    "no Connection": ("GET", _replace("Connection"), False),
    "Connection: keep-alive": ("GET", _replace("Connection", "keep-alive"), False),
    "Connection: Upgraded": ("GET", _replace("Connection", "Upgraded"), False),
    "version 8": ("GET", _replace("Sec-WebSocket-Version", "8"), False),
    "version 13 twice": ("GET", _replace("Sec-WebSocket-Version", "13", "13"), False),
    "version 13, 8": ("GET", _replace("Sec-WebSocket-Version", "13, 8"), False),
    "no version": ("GET", _replace("Sec-WebSocket-Version"), False),
    "no key": ("GET", _replace("Sec-WebSocket-Key"), False),
    "two keys": ("GET", _replace("Sec-WebSocket-Key", KEY, KEY), False),
    "empty key": ("GET", _replace("Sec-WebSocket-Key", ""), False),
    "key not base64": ("GET", _replace("Sec-WebSocket-Key", "not a key!!"), False),
    "key of 15 bytes": (
        "GET",
        _replace("Sec-WebSocket-Key", base64.b64encode(bytes(15)).decode()),
        False,
    ),
    "key of 17 bytes": (
        "GET",
        _replace("Sec-WebSocket-Key", base64.b64encode(bytes(17)).decode()),
        False,
    ),
    "key without padding": ("GET", _replace("Sec-WebSocket-Key", KEY.rstrip("=")), False),
    "key URL-safe alphabet": (
        "GET",
        _replace("Sec-WebSocket-Key", base64.b64encode(b"\xfb" * 16).decode().replace("+", "-")),
        False,
    ),
    "key non-ASCII": ("GET", _replace("Sec-WebSocket-Key", "\u00e9" * 24), False),
}


@pytest.mark.parametrize(
    ("method", "headers", "expected"), list(UPGRADES.values()), ids=list(UPGRADES)
)
def test_is_websocket_upgrade(method: str, headers: HeaderPairs, expected: bool) -> None:
    assert is_websocket_upgrade(method, headers) is expected


def test_is_websocket_upgrade_accepts_a_one_shot_iterator() -> None:
    assert is_websocket_upgrade("GET", iter(VALID)) is True


# --- fuzz ----------------------------------------------------------------------------------

_names = st.sampled_from(
    ["Sec-WebSocket-Protocol", "sec-websocket-protocol", "Origin", "Host", "X-Ticket"]
)
_ticketish = st.one_of(
    st.just(T),
    st.just(U),
    st.just(BAD),
    st.text(st.sampled_from("Aa0_-=+/*{}: %"), max_size=45),
)
_values = st.one_of(
    st.text(),
    st.lists(
        st.one_of(
            st.sampled_from(["ticketd.v1", "chat", " ", ""]), _ticketish.map("ticket.".__add__)
        ),
        max_size=4,
    ).map(", ".join),
)
_header = st.tuples(_names, _values) | st.tuples(
    _names.map(str.encode), _values.map(lambda v: v.encode("utf-8"))
)
_targets = st.one_of(
    st.text(),
    st.builds(
        lambda path, params, frag: path + "&".join(params) + frag,
        st.sampled_from(["", "/ws?", "?", "//[?", "http://[x/?", "ws://h/ws?", "/ws/", "a/b"]),
        st.lists(
            st.one_of(
                _ticketish.map("ticket=".__add__),
                st.text(st.sampled_from("ticket=&?/#%;+a"), max_size=12),
            ),
            max_size=3,
        ),
        st.sampled_from(["", "#", "#ticket=x"]),
    ),
)


@settings(max_examples=500, deadline=None)
@given(_targets, st.lists(_header, max_size=4))
@example("//[", [])
@example(f"//[?ticket={T}", [])
@example(f"next=/x&ticket={T}", [])
def test_extract_ticket_returns_a_ticket_or_raises_ticket_rejected(
    target: str, headers: list[tuple[str | bytes, str | bytes]]
) -> None:
    reason: Reason | None
    try:
        presented = extract_ticket(target, headers)
    except TicketRejected as exc:
        reason = exc.reason
    else:
        reason = None
    if reason is not None:
        assert reason in {Reason.MISSING, Reason.DUPLICATE, Reason.MALFORMED}
        return
    assert isinstance(presented, PresentedTicket)
    assert presented.ticket in {T, U}
    assert presented.transport in {"query", "subprotocol"}
    if presented.transport == "subprotocol":
        assert presented.subprotocol == SUBPROTOCOL


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=8), st.lists(_header, max_size=6))
def test_is_websocket_upgrade_and_request_origin_never_raise(
    method: str, headers: list[tuple[str | bytes, str | bytes]]
) -> None:
    assert is_websocket_upgrade(method, headers) in {True, False}
    origin = request_origin(headers)
    assert origin is None or isinstance(origin, str)
