"""Tests for ticketd.origins: canonical form, exact matching, anchored allowlist patterns."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ticketd.exceptions import InvalidOrigin, TicketError
from ticketd.origins import (
    MAX_ORIGIN_LENGTH,
    OriginAllowlist,
    OriginPattern,
    canonical_origin,
)

# A serialised origin as a browser writes it: lower-case http(s), a DNS name, a
# dotted IPv4 address or a bracketed IPv6 address, and a non-default port without
# leading zeros. Written independently of the module's own regexes.
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
SERIALISED_ORIGIN = re.compile(
    r"(?P<scheme>https?)://"
    rf"(?P<host>\[[0-9a-f:.]+\]|{_DNS_LABEL}(?:\.{_DNS_LABEL})*)"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?"
)


def assert_serialised(origin: str) -> None:
    match = SERIALISED_ORIGIN.fullmatch(origin)
    assert match is not None, origin
    if match["port"] is not None:
        port = int(match["port"])
        assert port <= 65535
        assert (match["scheme"], port) not in {("http", 80), ("https", 443)}


# --- canonical_origin: accepted values and their canonical form -----------------------------

ACCEPTED = [
    ("https://a.example.com", "https://a.example.com"),
    ("http://localhost", "http://localhost"),
    ("http://localhost:8000", "http://localhost:8000"),
    ("https://a.example.com:8443", "https://a.example.com:8443"),
    # explicit default ports fold away
    ("https://a.example.com:443", "https://a.example.com"),
    ("http://x:80", "http://x"),
    # ... but only the scheme's own default port
    ("http://x:443", "http://x:443"),
    ("https://x:80", "https://x:80"),
    # case is normalised
    ("HTTPS://A.EXAMPLE.COM", "https://a.example.com"),
    ("Http://App.Example.Com:8080", "http://app.example.com:8080"),
    # punycode is an ordinary ASCII name, its own origin
    ("https://xn--pp-8cd.example.com", "https://xn--pp-8cd.example.com"),
    ("https://XN--PP-8CD.example.com", "https://xn--pp-8cd.example.com"),
    # port edges
    ("http://x:1", "http://x:1"),
    ("http://x:65535", "http://x:65535"),
    # label edges: 63 characters is the maximum; inner hyphens are fine
    (f"https://{'a' * 63}.example.com", f"https://{'a' * 63}.example.com"),
    ("https://a-b--c.example.com", "https://a-b--c.example.com"),
    ("https://1a.example.com", "https://1a.example.com"),
    # IPv4
    ("http://127.0.0.1", "http://127.0.0.1"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("https://192.168.1.1:443", "https://192.168.1.1"),
    # IPv6: compressed, lower case
    ("http://[::1]", "http://[::1]"),
    ("http://[0:0:0:0:0:0:0:1]", "http://[::1]"),
    ("http://[0000:0000:0000:0000:0000:0000:0000:0001]:8080", "http://[::1]:8080"),
    ("https://[2001:DB8:0:0:0:0:0:1]", "https://[2001:db8::1]"),
    ("https://[2001:db8:0:0:1:0:0:1]:443", "https://[2001:db8::1:0:0:1]"),
    ("http://[::ffff:127.0.0.1]", "http://[::ffff:7f00:1]"),
]


@pytest.mark.parametrize(("value", "expected"), ACCEPTED)
def test_canonical_origin_accepts(value: str, expected: str) -> None:
    assert canonical_origin(value) == expected
    assert canonical_origin(expected) == expected
    assert_serialised(expected)


def test_canonical_origin_remembers_accepted_origins_only() -> None:
    """The memo gives the same answer as the parser, and never remembers a refusal."""
    from ticketd import origins

    origins._CANONICAL.clear()
    assert (
        canonical_origin("HTTPS://Remembered.Example.com:443") == "https://remembered.example.com"
    )
    assert origins._CANONICAL == {
        "HTTPS://Remembered.Example.com:443": "https://remembered.example.com"
    }
    assert (
        canonical_origin("HTTPS://Remembered.Example.com:443") == "https://remembered.example.com"
    )
    for _ in range(2):
        with pytest.raises(InvalidOrigin):
            canonical_origin("https://remembered.example.com/")
    assert len(origins._CANONICAL) == 1
    for n in range(origins._CANONICAL_SIZE + 1):  # bounded: cleared when full
        canonical_origin(f"https://h{n}.example.com")
    assert len(origins._CANONICAL) <= origins._CANONICAL_SIZE


# --- canonical_origin: refused values -------------------------------------------------------

REFUSED = {
    "null": "null",
    "NULL": "NULL",
    "empty": "",
    "space": " ",
    "scheme only": "https://",
    "no scheme": "a.example.com",
    "scheme-relative": "//a.example.com",
    "ftp": "ftp://a.example.com",
    "ws": "ws://a.example.com",
    "wss": "wss://a.example.com",
    "chrome-extension": "chrome-extension://abcdefghijklmnopabcdefghijklmnop",
    "file": "file://",
    "file with host": "file://localhost",
    "javascript": "javascript://a.example.com",
    "trailing slash": "https://a.example.com/",
    "path": "https://a.example.com/app",
    "query": "https://a.example.com?x=1",
    "empty query": "https://a.example.com?",
    "fragment": "https://a.example.com#x",
    "userinfo": "https://u:p@a.example.com",
    "user only": "https://u@a.example.com",
    "userinfo look-alike": "https://a.example.com@evil.com",
    "empty port": "https://a.example.com:",
    "port 0": "http://x:0",
    "port 65536": "http://x:65536",
    "port 99999": "http://x:99999",
    "port six digits": "http://x:100000",
    "port leading zero": "http://x:08080",
    "port leading zero default": "https://a.example.com:0443",
    "port 00": "http://x:00",
    "port sign": "http://x:+80",
    "two ports": "http://x:80:80",
    "cyrillic a (IDN look-alike)": "https://\u0430pp.example.com",
    "unicode host": "https://b\u00fccher.example",
    "fullwidth dot": "https://a\uff0eexample.com",
    "NUL": "https://a.example.com\x00",
    "NUL inside": "https://a.exa\x00mple.com",
    "tab": "https://a.example.com\t",
    "CRLF": "https://a.example.com\r\n",
    "CRLF header injection": "https://a.example.com\r\nSet-Cookie: x=1",
    "DEL": "https://a.example.com\x7f",
    "leading space": " https://a.example.com",
    "trailing space": "https://a.example.com ",
    "long (8 KB)": "https://" + "a" * 8192 + ".example.com",
    "long by one": "https://" + "a" * (MAX_ORIGIN_LENGTH - len("https://")) + "b",
    "label leading hyphen": "https://-a.example.com",
    "label trailing hyphen": "https://a-.example.com",
    "label 64 characters": f"https://{'a' * 64}.example.com",
    "host too long": "https://" + ".".join(["a" * 63] * 4) + ".com",
    "empty label": "https://a..example.com",
    "trailing dot": "https://a.example.com.",
    "leading dot": "https://.example.com",
    "underscore": "https://a_b.example.com",
    "wildcard": "https://*.example.com",
    "percent-encoded": "https://a%2eexample.com",
    "backslash": "https:\\\\a.example.com",
    "one slash": "https:/a.example.com",
    "three slashes": "https:///a.example.com",
    "IPv4 three parts": "http://127.0.0",
    "IPv4 five parts": "http://1.2.3.4.5",
    "IPv4 octet 256": "http://256.0.0.1",
    "IPv4 leading zero": "http://127.0.0.01",
    "IPv4 decimal": "http://2130706433",
    "ends in a number": "http://a.123",
    "ends in a hex number": "http://0x7f.1",
    "ends in 0x": "http://a.0x",
    "IPv6 unbracketed": "http://::1",
    "IPv6 invalid": "http://[::g]",
    "IPv6 two ::": "http://[1::2::3]",
    "IPv6 zone": "http://[fe80::1%25eth0]",
    "IPv6 unclosed": "http://[::1",
    "IPv6 empty": "http://[]",
    "IPv4 in brackets": "http://[127.0.0.1]",
}


@pytest.mark.parametrize("value", list(REFUSED.values()), ids=list(REFUSED))
def test_canonical_origin_refuses(value: str) -> None:
    with pytest.raises(InvalidOrigin) as info:
        canonical_origin(value)
    # The message never repeats the value (it may be attacker-controlled).
    if len(value) > 8:
        assert value not in str(info.value)


def test_canonical_origin_length_limit_is_inclusive() -> None:
    value = "https://" + "a" * (MAX_ORIGIN_LENGTH - len("https://"))
    assert len(value) == MAX_ORIGIN_LENGTH
    # At the limit the value gets past the length check (and fails on the host).
    with pytest.raises(InvalidOrigin, match=r"^origin host is too long$"):
        canonical_origin(value)
    with pytest.raises(InvalidOrigin, match=r"^origin is too long$"):
        canonical_origin(value + "a")


@pytest.mark.parametrize("value", [None, 1, b"https://a.example.com", ["https://a.example.com"]])
def test_canonical_origin_refuses_non_strings(value: object) -> None:
    with pytest.raises(InvalidOrigin, match="string"):
        canonical_origin(value)  # type: ignore[arg-type]


def test_invalid_origin_is_a_value_error_and_a_ticket_error() -> None:
    with pytest.raises(ValueError, match="null"):
        canonical_origin("null")
    assert issubclass(InvalidOrigin, TicketError)


def test_punycode_is_not_the_ascii_name_it_resembles() -> None:
    assert canonical_origin("https://xn--pp-8cd.example.com") != canonical_origin(
        "https://app.example.com"
    )


# --- OriginPattern ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scheme", "suffix", "wildcard", "shown"),
    [
        (
            "https://app.example.com",
            "https",
            "https://app.example.com",
            False,
            "https://app.example.com",
        ),
        (
            "  HTTPS://App.Example.com:443 ",
            "https",
            "https://app.example.com",
            False,
            "https://app.example.com",
        ),
        ("http://localhost:3000", "http", "http://localhost:3000", False, "http://localhost:3000"),
        ("https://*.example.com", "https", ".example.com", True, "https://*.example.com"),
        ("https://*.example.com:443", "https", ".example.com", True, "https://*.example.com"),
        (
            "http://*.example.com:8080",
            "http",
            ".example.com:8080",
            True,
            "http://*.example.com:8080",
        ),
        ("HTTPS://*.EXAMPLE.CO.UK", "https", ".example.co.uk", True, "https://*.example.co.uk"),
    ],
)
def test_origin_pattern_parse(
    text: str, scheme: str, suffix: str, wildcard: bool, shown: str
) -> None:
    pattern = OriginPattern.parse(text)
    assert pattern == OriginPattern(scheme=scheme, suffix=suffix, wildcard=wildcard)
    assert str(pattern) == shown
    assert OriginPattern.parse(str(pattern)) == pattern


@pytest.mark.parametrize(
    "text",
    [
        "https://*.com",
        "https://*.localhost",
        "https://a.*.example.com",
        "https://*.*.example.com",
        "https://*.example.*",
        "*://x.com",
        "https://*",
        "https://*.",
        "https://**.example.com",
        "https://*example.com",
        "https://x*.example.com",
        "https://*.example.com/",
        "https://*.example.com:0",
        "https://*.0.0.1",
        "ftp://*.example.com",
        "null",
        "",
        "https://app.example.com/",
        "https://u@app.example.com",
    ],
)
def test_origin_pattern_refused_at_parse(text: str) -> None:
    with pytest.raises(InvalidOrigin):
        OriginPattern.parse(text)


WILDCARD = "https://*.example.com"


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("https://a.example.com", True),
        ("https://app.example.com", True),
        ("https://xn--pp-8cd.example.com", True),
        (f"https://{'a' * 63}.example.com", True),
        ("https://1.example.com", True),
        ("https://example.com", False),
        ("https://a.b.example.com", False),
        ("https://.example.com", False),
        ("https://aexample.com", False),
        ("https://a.example.com.evil.com", False),
        ("https://a.example.com:8443", False),
        ("http://a.example.com", False),
        ("https://a.example.org", False),
        ("https://a.notexample.com", False),
    ],
)
def test_wildcard_matches_exactly_one_label(origin: str, expected: bool) -> None:
    assert OriginPattern.parse(WILDCARD).matches(origin) is expected


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("http://a.example.com:8080", True),
        ("http://a.example.com", False),
        ("http://a.example.com:8081", False),
        ("https://a.example.com:8080", False),
    ],
)
def test_wildcard_with_port(origin: str, expected: bool) -> None:
    assert OriginPattern.parse("http://*.example.com:8080").matches(origin) is expected


def test_exact_pattern_matches_itself_only() -> None:
    pattern = OriginPattern.parse("https://app.example.com")
    assert pattern.matches("https://app.example.com") is True
    assert pattern.matches("https://app.example.com:8443") is False
    assert pattern.matches("https://a.app.example.com") is False


# --- OriginAllowlist -------------------------------------------------------------------------

EXACT = OriginAllowlist(["https://app.example.com"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://app.example.com", "https://app.example.com"),
        ("HTTPS://APP.EXAMPLE.COM", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
    ],
)
def test_allowlist_check_returns_canonical(value: str, expected: str) -> None:
    assert EXACT.check(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "https://app.example.com.evil.com",
        "https://evilapp.example.com",
        "https://app.example.co",
        "https://pp.example.com",
        "https://a.app.example.com",
        "https://example.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://\u0430pp.example.com",
        "https://xn--pp-8cd.example.com",
        "https://app.example.com/",
        "https://u:p@app.example.com",
        "null",
        "",
    ],
)
def test_allowlist_check_refuses(value: str) -> None:
    with pytest.raises(InvalidOrigin):
        EXACT.check(value)


def test_allowlist_allows_takes_canonical_origins_only() -> None:
    # allows() does no canonicalisation: the caller passes check()'s output.
    assert EXACT.allows("https://app.example.com") is True
    assert EXACT.allows("HTTPS://APP.EXAMPLE.COM") is False
    assert EXACT.allows("https://app.example.com:443") is False


def test_allowlist_mixed_patterns() -> None:
    allowlist = OriginAllowlist(
        ["https://app.example.com", OriginPattern.parse("https://*.tenants.example.com")]
    )
    assert allowlist.check("https://app.example.com") == "https://app.example.com"
    assert allowlist.check("https://acme.tenants.example.com") == "https://acme.tenants.example.com"
    for refused in (
        "https://tenants.example.com",
        "https://a.b.tenants.example.com",
        "https://other.example.com",
    ):
        with pytest.raises(InvalidOrigin, match="allowlist"):
            allowlist.check(refused)


def test_allowlist_bool_and_repr() -> None:
    assert not OriginAllowlist([])
    assert bool(EXACT) is True
    empty = OriginAllowlist([])
    with pytest.raises(InvalidOrigin, match="allowlist"):
        empty.check("https://app.example.com")
    allowlist = OriginAllowlist(["https://app.example.com", "https://*.example.com:8443"])
    assert repr(allowlist) == (
        "OriginAllowlist(['https://app.example.com', 'https://*.example.com:8443'])"
    )


def test_allowlist_refuses_bad_pattern_at_construction() -> None:
    with pytest.raises(InvalidOrigin):
        OriginAllowlist(["https://app.example.com", "https://*.com"])


# --- properties ------------------------------------------------------------------------------

_label = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
_hosts = st.one_of(
    st.lists(_label, min_size=1, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a.exploded.upper()}]"),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.text(st.sampled_from("abc019.-[]:%_*xX"), max_size=12),
)
_ports = st.one_of(
    st.just(""),
    st.integers(min_value=0, max_value=70000).map(lambda p: f":{p}"),
    st.text(st.sampled_from("0123456789"), max_size=7).map(lambda p: f":{p}"),
)
_near_origins = st.builds(
    lambda scheme, host, port, tail: f"{scheme}://{host}{port}{tail}",
    st.sampled_from(["http", "https", "HTTP", "Https", "ws", "ftp", "h", ""]),
    _hosts,
    _ports,
    st.sampled_from(["", "", "", "/", "/x", "?", "#", "@h", "\x00", " ", "\r\n", "\u0430"]),
)
_anything = st.one_of(st.text(), st.text(alphabet=st.characters(codec="ascii")), _near_origins)


@settings(max_examples=400, deadline=None)
@given(_anything)
@example("https://a.example.com:443")
@example("http://[::ffff:1.2.3.4]")
@example("null")
def test_canonical_origin_returns_str_or_raises_invalid_origin(value: str) -> None:
    try:
        origin = canonical_origin(value)
    except InvalidOrigin:
        return
    assert type(origin) is str
    assert_serialised(origin)
    assert canonical_origin(origin) == origin


@settings(max_examples=200, deadline=None)
@given(_near_origins.filter(lambda v: "://" in v))
def test_canonical_origin_accepted_values_match_browser_shape(value: str) -> None:
    try:
        origin = canonical_origin(value)
    except InvalidOrigin:
        return
    # Only case and an explicit default port may differ from the input.
    assert origin == value.lower() or origin == value.lower().rsplit(":", 1)[0] or "[" in origin


_pattern_texts = st.one_of(
    st.text(),
    _near_origins,
    _near_origins.map(lambda v: v.replace("://", "://*.", 1)),
    st.builds(
        lambda a, b: f"https://{a}*{b}",
        st.text(st.sampled_from("a.*-"), max_size=4),
        st.text(st.sampled_from("a.*-:8"), max_size=10),
    ),
)


@settings(max_examples=300, deadline=None)
@given(_pattern_texts)
def test_origin_pattern_parse_raises_only_invalid_origin(text: str) -> None:
    try:
        pattern = OriginPattern.parse(text)
    except InvalidOrigin:
        return
    assert OriginPattern.parse(str(pattern)) == pattern
    if not pattern.wildcard:
        assert pattern.matches(pattern.suffix)
        assert_serialised(pattern.suffix)
    else:
        assert "*" not in pattern.suffix
        assert pattern.suffix.startswith(".")
        assert pattern.matches(f"{pattern.scheme}://a{pattern.suffix}")
        assert not pattern.matches(f"{pattern.scheme}://a.b{pattern.suffix}")
        assert not pattern.matches(f"{pattern.scheme}:/{pattern.suffix}")


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["https://*.example.com", "http://*.example.com:8080"]), _anything)
def test_wildcard_match_implies_one_label_and_same_scheme(pattern_text: str, value: str) -> None:
    pattern = OriginPattern.parse(pattern_text)
    try:
        origin = canonical_origin(value)
    except InvalidOrigin:
        return
    if pattern.matches(origin):
        scheme, _, host_port = origin.partition("://")
        assert scheme == pattern.scheme
        label, _, rest = host_port.partition(".")
        assert "." + rest == pattern.suffix
        assert label
