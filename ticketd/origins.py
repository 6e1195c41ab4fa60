"""Web origins: one canonical form, exact matching, and anchored allowlist patterns.

A browser serialises an origin as ``scheme://host[:port]`` (RFC 6454, WHATWG URL):
lowercase scheme and host, no default port, no path, no userinfo, punycode for
international names. :func:`canonical_origin` accepts exactly that shape (plus
upper case and an explicit default port, which it folds away) and refuses
everything else, including the opaque origin ``null``. The same function runs at
mint and at redeem, so the comparison is a plain string equality.

Allowlist patterns are explicit: ``https://app.example.com`` matches itself only;
``https://*.example.com`` matches exactly one extra label (``https://a.example.com``,
not ``https://example.com`` nor ``https://a.b.example.com``), same scheme and port.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .exceptions import InvalidOrigin

__all__ = [
    "DEFAULT_PORTS",
    "MAX_ORIGIN_LENGTH",
    "OriginAllowlist",
    "OriginPattern",
    "canonical_origin",
]

MAX_ORIGIN_LENGTH = 512
"""Far above any real origin (a DNS name has at most 253 characters)."""

DEFAULT_PORTS = {"http": 80, "https": 443}

_ORIGIN = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_IPV4_LIKE = re.compile(r"[0-9.]+")
_NUMBER_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
"""WHATWG's "ends in a number": such a host is parsed as IPv4 or refused by browsers."""


_CANONICAL: dict[str, str] = {}
_CANONICAL_SIZE = 4096
"""Origins already canonicalised (only accepted ones; cleared when full): a server sees
a handful of origins, and every mint and every redeem canonicalises one."""


def canonical_origin(value: str) -> str:
    """Return the canonical serialisation of ``value`` or raise :class:`InvalidOrigin`.

    Only ``http`` and ``https`` origins are accepted; ``null``, paths (even ``/``),
    queries, fragments, userinfo, non-ASCII and control characters are refused.
    """
    known = _CANONICAL.get(value) if type(value) is str else None
    if known is not None:
        return known
    canonical = _canonical_origin(value)
    if len(_CANONICAL) >= _CANONICAL_SIZE:
        _CANONICAL.clear()
    _CANONICAL[value] = canonical
    return canonical


def _canonical_origin(value: str) -> str:
    if not isinstance(value, str):
        raise InvalidOrigin("origin must be a string")
    if len(value) > MAX_ORIGIN_LENGTH:
        raise InvalidOrigin("origin is too long")
    if not value.isascii() or not value.isprintable():
        raise InvalidOrigin("origin contains non-ASCII or control characters")
    if value == "null":
        raise InvalidOrigin("opaque origin 'null' is not allowed")
    match = _ORIGIN.fullmatch(value)
    if match is None:
        raise InvalidOrigin("origin must be scheme://host[:port] with nothing else")
    scheme = match["scheme"].lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidOrigin("origin scheme must be http or https")
    host = _canonical_host(match["host"])
    port_text = match["port"]
    if port_text is None:
        return f"{scheme}://{host}"
    if len(port_text) > 1 and port_text.startswith("0"):
        raise InvalidOrigin("origin port has leading zeros")
    port = int(port_text)
    if not 0 < port < 65536:
        raise InvalidOrigin("origin port is out of range")
    if port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _canonical_host(host: str) -> str:
    if host.startswith("["):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise InvalidOrigin("origin host is not a valid IPv6 address") from None
        return f"[{address.compressed}]"
    host = host.lower()
    if _IPV4_LIKE.fullmatch(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise InvalidOrigin("origin host is not a valid IPv4 address") from None
    if len(host) > 253:
        raise InvalidOrigin("origin host is too long")
    labels = host.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidOrigin("origin host is not a valid DNS name")
    # No browser sends such a host (``a.123``, ``0x7f.1``); accepting one would
    # also let ``http://*.0.0.1`` match the IP origin ``http://127.0.0.1``.
    if _NUMBER_LABEL.fullmatch(labels[-1]):
        raise InvalidOrigin("origin host ends in a number but is not an IPv4 address")
    return host


@dataclass(frozen=True, slots=True)
class OriginPattern:
    """One allowlist entry: an exact origin, or ``scheme://*.domain[:port]``."""

    scheme: str
    suffix: str
    """For an exact entry, the whole canonical origin; for a wildcard, ``.domain[:port]``."""
    wildcard: bool

    @classmethod
    def parse(cls, text: str) -> OriginPattern:
        """Parse one allowlist entry; raise :class:`InvalidOrigin` if it is not valid."""
        text = text.strip()
        scheme, sep, rest = text.partition("://*.")
        if not sep:
            origin = canonical_origin(text)
            return cls(scheme=origin.split(":", 1)[0], suffix=origin, wildcard=False)
        if "*" in rest:
            raise InvalidOrigin("a wildcard may only stand for the first label")
        # Validate the rest by canonicalising a stand-in label in the wildcard's place.
        origin = canonical_origin(f"{scheme}://wildcard.{rest}")
        scheme = origin.split(":", 1)[0]
        suffix = origin[len(f"{scheme}://wildcard") :]
        if suffix.partition(":")[0].count(".") < 2:
            raise InvalidOrigin("a wildcard needs a registrable domain (*.example.com)")
        return cls(scheme=scheme, suffix=suffix, wildcard=True)

    def matches(self, origin: str) -> bool:
        """Match a *canonical* origin against this entry."""
        if not self.wildcard:
            return origin == self.suffix
        prefix = f"{self.scheme}://"
        if not origin.startswith(prefix) or not origin.endswith(self.suffix):
            return False
        label = origin[len(prefix) : len(origin) - len(self.suffix)]
        return bool(label) and _LABEL.fullmatch(label) is not None

    def __str__(self) -> str:
        return self.suffix if not self.wildcard else f"{self.scheme}://*{self.suffix}"


class OriginAllowlist:
    """A set of :class:`OriginPattern`; :meth:`check` returns the canonical origin."""

    def __init__(self, patterns: Iterable[str | OriginPattern]) -> None:
        self.patterns = tuple(
            p if isinstance(p, OriginPattern) else OriginPattern.parse(p) for p in patterns
        )
        self._exact = frozenset(p.suffix for p in self.patterns if not p.wildcard)
        self._wildcards = tuple(p for p in self.patterns if p.wildcard)

    def allows(self, origin: str) -> bool:
        """Whether a canonical origin is on the list."""
        return origin in self._exact or any(p.matches(origin) for p in self._wildcards)

    def check(self, value: str) -> str:
        """Canonicalise ``value`` and return it if allowed, else raise :class:`InvalidOrigin`."""
        origin = canonical_origin(value)
        if not self.allows(origin):
            raise InvalidOrigin("origin is not on the allowlist")
        return origin

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __repr__(self) -> str:
        return f"OriginAllowlist({[str(p) for p in self.patterns]!r})"
