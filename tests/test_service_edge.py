"""Every request, before routing: canonical raw paths and the Host header (edge.RequestGuard).

Raw sockets, because HTTP clients normalise the very paths under test (``/./``, ``//``).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.support.servers import serve_app
from tests.support.service_support import APP_ORIGIN, cookie_for, make_settings, ticket_keys
from ticketd.service import create_app
from ticketd.service.edge import is_canonical_path
from ticketd.service.settings import ConfigError, build_settings


def raw_request(
    base: str, head: str, body: bytes = b""
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Send one request exactly as written; the status, headers and JSON body of the answer."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_head, _, payload = data.partition(b"\r\n\r\n")
    lines = status_head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    try:
        parsed = json.loads(payload) if payload else {}
    except ValueError:
        parsed = {"raw": payload.decode("latin-1")}
    return int(lines[0].split(" ")[1]), headers, parsed


def mint_head(path: str, *, host: str = "ticketd.example.com") -> tuple[str, bytes]:
    body = b'{"audience":"chat"}'
    head = (
        f"POST {path} HTTP/1.1\nHost: {host}\nOrigin: {APP_ORIGIN}\n"
        f"Cookie: session={cookie_for(7)}\nContent-Type: application/json\n"
        f"Content-Length: {len(body)}\nConnection: close\n"
    )
    return head, body


# -- canonical paths ------------------------------------------------------------------------

# Each of these decodes or normalises to /v1/tickets (or another route) somewhere.
VARIANTS = [
    "/v1/%74ickets",
    "/v1/%74%69%63%6B%65%74%73",
    "/%761/tickets",
    "/v1/tickets%2F",
    "/v1%2Ftickets",
    "/v1/tickets/",
    "//v1/tickets",
    "/v1//tickets",
    "/v1/./tickets",
    "/./v1/tickets",
    "/v1/x/../tickets",
    "/v1/%2e/tickets",
    "/v1/tickets/.",
    "/v1/tickets%00",
    "/v1/tickets;x=1",
    "/v1/tickets%20",
]


@pytest.mark.parametrize("path", VARIANTS)
def test_no_route_is_reachable_through_a_variant_of_its_path(
    service: str, redis_sync: redis.Redis, path: str
) -> None:
    head, body = mint_head(path)
    status, headers, problem = raw_request(service, head, body)
    assert (status, problem.get("code")) == (400, "non_canonical_path"), problem
    assert "location" not in headers  # never a redirect (built from Host) either
    assert ticket_keys(redis_sync) == []


def test_the_canonical_path_still_works(service: str, redis_sync: redis.Redis) -> None:
    head, body = mint_head("/v1/tickets")  # the control: same request, canonical spelling
    status, _, answer = raw_request(service, head, body)
    assert status == 201, answer
    assert len(ticket_keys(redis_sync)) == 1
    status, _, _ = raw_request(service, "GET /livez?x=%2F HTTP/1.1\nHost: h\nConnection: close\n")
    assert status == 200  # the query string is not the path


@pytest.mark.parametrize("path", ["/V1/tickets", "/v1/Tickets", "/LIVEZ"])
def test_case_variants_match_no_route(service: str, path: str) -> None:
    head, body = mint_head(path)
    status, headers, problem = raw_request(service, head, body)
    assert (status, problem.get("code")) == (404, "not_found")
    assert "location" not in headers


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        (b"/", True),
        (b"/v1/tickets/redeem", True),
        (b"/v1/client.js", True),
        (b"/a/..b", True),  # a segment that merely starts with dots
        (b"", False),
        (b"v1/tickets", False),
        (b"/v1/tickets/..", False),
        (b"/v1/tickets%2fredeem", False),
        (b"/v1/ticket\xc3\xa9s", False),
    ],
)
def test_is_canonical_path(path: bytes, canonical: bool) -> None:
    assert is_canonical_path(path) is canonical


# -- hosts --------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["httptools", "h11"])
def guarded(request: pytest.FixtureRequest) -> Iterator[str]:
    settings = make_settings(
        None, allowed_hosts="ticketd.example.com,*.rt.example.com:8443,127.0.0.1:*"
    )
    with serve_app(create_app(settings), http=request.param) as base:
        yield base


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("ticketd.example.com", 200),
        ("TICKETD.EXAMPLE.COM.", 200),  # one spelling: case and a trailing dot fold away
        ("a.rt.example.com:8443", 200),
        ("127.0.0.1:1234", 200),
        ("attacker.example", 421),  # DNS rebinding: the attacker's name on our address
        ("ticketd.example.com:8080", 421),  # the list says "no port"
        ("a.rt.example.com", 421),  # wrong port (none)
        ("a.b.rt.example.com:8443", 421),  # a wildcard is one label
        ("rt.example.com:8443", 421),
        ("ticketd.example.com.attacker.example", 421),
        ("user@ticketd.example.com", 421),
        ("ticketd.example.com, attacker.example", 421),  # a comma-joined pair
    ],
)
def test_allowed_hosts(
    guarded: str, host: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ticketd.service")
    got, _, problem = raw_request(
        guarded, f"GET /livez HTTP/1.1\nHost: {host}\nConnection: close\n"
    )
    assert got == status, problem
    if status == 421:
        assert problem["code"] == "host_not_allowed"
        assert "request refused code=host_not_allowed status=421" in caplog.text
        assert host not in caplog.text  # the log names the code, not the attacker's value


def test_no_host_header_is_not_allowed(guarded: str) -> None:
    status, _, problem = raw_request(guarded, "GET /livez HTTP/1.0\n")
    assert (status, problem.get("code")) == (421, "host_not_allowed")


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_two_host_headers_are_refused_without_an_allowlist(http: str) -> None:
    with serve_app(create_app(make_settings(None)), http=http) as base:
        for hosts in (("a.example", "b.example"), ("a.example", "a.example")):
            lines = "".join(f"Host: {h}\n" for h in hosts)
            status, _, problem = raw_request(
                base, f"GET /livez HTTP/1.1\n{lines}Connection: close\n"
            )
            assert status == 400, problem
            if http == "httptools":  # h11 refuses the request itself, before the app
                assert problem["code"] == "duplicate_host"


def test_allowed_hosts_setting_is_validated() -> None:
    for bad in ("*.com", "a.*.example.com", "host:99999", "https://host", "ex ample.com"):
        with pytest.raises(ConfigError, match="TICKETD_ALLOWED_HOSTS"):
            build_settings(
                {
                    "allowed_origins": APP_ORIGIN,
                    "session_secret": "test-only-session-key-0123456789abcdefghij",
                    "allowed_hosts": bad,
                }
            )
