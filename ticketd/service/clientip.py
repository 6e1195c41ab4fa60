"""The client's address, trusting ``X-Forwarded-For`` only from configured proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from ..binding import canonical_ip

__all__ = [
    "IPNetwork",
    "TrustedProxies",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """Resolve the client address behind a chain of trusted reverse proxies.

    Walks ``X-Forwarded-For`` from the right, skipping trusted proxies; the first
    untrusted hop is the client. A header from an untrusted peer is ignored, so
    clients cannot choose their own rate-limit key.
    """

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks: Sequence[IPNetwork] = tuple(
            ipaddress.ip_network(n, strict=False) for n in networks
        )

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client_ip(self, peer: str | None, forwarded_for: Sequence[str]) -> str | None:
        """The client's canonical address (see :func:`~ticketd.binding.canonical_ip`)."""
        peer = canonical_ip(peer) or peer
        if peer is None or not self.networks or not self.trusts(peer):
            return peer
        hops = [hop.strip() for line in forwarded_for for hop in line.split(",")]
        for hop in reversed(hops):
            address = canonical_ip(hop)  # also "1.2.3.4:5678" and "[2001:db8::1]:443"
            if address is None:
                return peer  # garbage in the chain: fall back to what we can see
            if not self.trusts(address):
                return address
        return peer
