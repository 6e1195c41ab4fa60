"""The ``Host`` header allowlist: defence in depth against DNS rebinding. No I/O.

A page on ``http://attacker.example`` whose name is re-pointed at ticketd's address
(DNS rebinding) reaches ticketd with ``Host: attacker.example``; the browser thinks
it is same-origin with the attacker. Origin checks already keep such a page from
minting; a host allowlist also keeps it away from every other endpoint, and keeps
a ticketd reachable under an unexpected name from answering at all.

Patterns, with ports explicit (the ``Host`` header carries a port only when the
URL had a non-default one, and a pattern says which it accepts):

- ``ticketd.example.com`` — that host, without a port;
- ``ticketd.example.com:8443`` — that host on port 8443 only;
- ``ticketd.example.com:*`` — that host with any port or none;
- ``*.example.com`` (also with ``:port`` or ``:*``) — exactly one extra label, like
  the origin allowlist: ``a.example.com``, not ``example.com`` nor ``a.b.example.com``;
- IP literals: ``127.0.0.1:8080``, ``[::1]:*``.

Hosts compare in the origin allowlist's canonical form (lower case, IPv4 and IPv6
normalised, one trailing dot dropped). A request with no ``Host``, two ``Host``
headers, or a value that is not ``host[:port]`` is refused whatever the list says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from .exceptions import InvalidOrigin
from .origins import canonical_origin

__all__ = [
    "DUPLICATE_HOST",
    "HOST_NOT_ALLOWED",
    "HostAllowlist",
    "HostPattern",
    "HostRefusal",
    "check_host",
]

HostRefusal: TypeAlias = Literal["host_not_allowed", "duplicate_host"]
HOST_NOT_ALLOWED: Final = "host_not_allowed"
DUPLICATE_HOST: Final = "duplicate_host"

_HOST = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}|\*))?")
_ANY_PORT = "*"


def _split(value: str, *, pattern: bool) -> tuple[str, int | str | None]:
    """``(canonical host, port)``; raise :class:`ValueError` for anything else."""
    match = _HOST.fullmatch(value.strip())
    if match is None or (match["port"] == _ANY_PORT and not pattern):
        raise ValueError(f"{value!r} is not host[:port]")
    host = match["host"]
    if host.endswith(".") and not host.endswith(".."):
        host = host[:-1]
    try:
        host = canonical_origin(f"http://{host}").removeprefix("http://")
    except InvalidOrigin as exc:
        raise ValueError(f"{value!r}: {exc}") from None
    port_text = match["port"]
    if port_text is None or port_text == _ANY_PORT:
        return host, port_text
    port = int(port_text)
    if not 0 < port < 65536 or (len(port_text) > 1 and port_text.startswith("0")):
        raise ValueError(f"{value!r}: the port must be 1-65535 without leading zeros")
    return host, port


@dataclass(frozen=True, slots=True)
class HostPattern:
    """One allowlist entry; see the module docstring for the forms."""

    host: str
    """The canonical host, or for a wildcard the suffix after ``*`` (``.example.com``)."""
    port: int | str | None
    """A port, ``"*"`` for any port or none, ``None`` for no port."""
    wildcard: bool

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        """Parse one entry; :class:`ValueError` says what is wrong with it."""
        text = text.strip()
        wildcard = text.startswith("*.")
        if "*" in (text[2:] if wildcard else text).rpartition(":")[0]:
            raise ValueError(f"{text!r}: a wildcard may only stand for the first label")
        host, port = _split(("wildcard" + text[1:]) if wildcard else text, pattern=True)
        if not wildcard:
            return cls(host=host, port=port, wildcard=False)
        suffix = host.removeprefix("wildcard")
        if suffix.count(".") < 2:
            raise ValueError(f"{text!r}: a wildcard needs a registrable domain (*.example.com)")
        return cls(host=suffix, port=port, wildcard=True)

    def matches(self, host: str, port: int | None) -> bool:
        """Match a canonical host and its port (``None``: the header had none)."""
        if self.port != _ANY_PORT and self.port != port:
            return False
        if not self.wildcard:
            return host == self.host
        label = host.removesuffix(self.host)
        return label != host and bool(label) and "." not in label and not label.startswith("[")

    def __str__(self) -> str:
        host = f"*{self.host}" if self.wildcard else self.host
        return host if self.port is None else f"{host}:{self.port}"


class HostAllowlist:
    """A set of :class:`HostPattern`. An empty list allows every well-formed host."""

    def __init__(self, patterns: Iterable[str | HostPattern]) -> None:
        self.patterns = tuple(
            p if isinstance(p, HostPattern) else HostPattern.parse(p) for p in patterns
        )

    def allows(self, value: str) -> bool:
        """Whether one ``Host`` header value is well formed and on the list."""
        try:
            host, port = _split(value, pattern=False)
        except ValueError:
            return False
        assert port is None or isinstance(port, int)
        return not self.patterns or any(p.matches(host, port) for p in self.patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __repr__(self) -> str:
        return f"HostAllowlist({[str(p) for p in self.patterns]!r})"


def check_host(values: Sequence[str], allowlist: HostAllowlist | None) -> HostRefusal | None:
    """The refusal for a request's ``Host`` header values, or ``None`` to let it through.

    Two or more ``Host`` headers are always refused (``duplicate_host``): servers and
    proxies disagree on which one counts. Without an allowlist nothing else is
    checked; with one, a missing, malformed or unlisted host is ``host_not_allowed``::

        check_host(["ticketd.example.com"], HostAllowlist(["ticketd.example.com"]))  # None
    """
    if len(values) > 1:
        return DUPLICATE_HOST
    if not allowlist:
        return None
    if not values or not allowlist.allows(values[0]):
        return HOST_NOT_ALLOWED
    return None
