"""TrustedProxies: X-Forwarded-For is believed only from configured proxies."""

from __future__ import annotations

import pytest

from ticketd.service.clientip import TrustedProxies

PROXIES = TrustedProxies(["10.0.0.0/8", "::1/128"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("198.51.100.9", ["203.0.113.1"], "198.51.100.9"),  # untrusted peer: header ignored
        ("10.0.0.2", ["203.0.113.1"], "203.0.113.1"),
        ("10.0.0.2", ["203.0.113.1, 10.0.0.3"], "203.0.113.1"),  # skip trusted hops
        ("10.0.0.2", ["198.51.100.7, 203.0.113.1"], "203.0.113.1"),  # rightmost untrusted
        ("10.0.0.2", ["203.0.113.1:51000"], "203.0.113.1"),  # hop with a port
        ("10.0.0.2", ["[2001:db8::7]:443"], "2001:db8::7"),
        ("::ffff:10.0.0.2", ["203.0.113.1"], "203.0.113.1"),  # IPv4-mapped peer unmapped
        ("10.0.0.2", ["not-an-ip"], "10.0.0.2"),  # garbage: what we can see
        ("10.0.0.2", [], "10.0.0.2"),
        ("::ffff:198.51.100.9", [], "198.51.100.9"),
    ],
)
def test_client_ip(peer: str, forwarded: list[str], client: str) -> None:
    assert PROXIES.client_ip(peer, forwarded) == client


def test_no_proxies_configured_means_the_peer() -> None:
    assert TrustedProxies([]).client_ip("10.0.0.2", ["203.0.113.1"]) == "10.0.0.2"
