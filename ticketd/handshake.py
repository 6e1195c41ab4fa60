"""Reading a ticket and an Origin out of a WebSocket opening handshake. No I/O.

Two transports are supported:

- the query parameter ``?ticket=T`` (the default);
- the subprotocol form, ``new WebSocket(url, ["ticketd.v1", "ticket." + T])``.
  The server must answer with ``Sec-WebSocket-Protocol: ticketd.v1``
  (:data:`SUBPROTOCOL`), never with the ticket-bearing token.

A ticket given twice, in any combination, is refused with ``duplicate`` before
anything is consumed. So are requests that are not WebSocket upgrades (a link
prefetcher's GET must not burn a ticket).

Headers are passed as ``(name, value)`` pairs, ``str`` or ``bytes`` (ASGI), so
that repeated headers stay visible.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias
from urllib.parse import unquote_plus

from .exceptions import Reason, TicketRejected
from .tickets import is_well_formed

__all__ = [
    "QUERY_PARAMETER",
    "SUBPROTOCOL",
    "SUBPROTOCOL_TICKET_PREFIX",
    "HeaderPairs",
    "PresentedTicket",
    "Transport",
    "extract_ticket",
    "header_values",
    "is_websocket_upgrade",
    "request_origin",
]

QUERY_PARAMETER = "ticket"
SUBPROTOCOL = "ticketd.v1"
SUBPROTOCOL_TICKET_PREFIX = "ticket."

HeaderPairs: TypeAlias = Iterable[tuple[str | bytes, str | bytes]]
Transport: TypeAlias = Literal["query", "subprotocol"]

_ABSOLUTE_FORM = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True, slots=True)
class PresentedTicket:
    """A well-formed ticket found in a handshake, and how it came."""

    ticket: str
    transport: Transport

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server must select in its 101 response, if any."""
        return SUBPROTOCOL if self.transport == "subprotocol" else None

    def __repr__(self) -> str:  # never show the secret
        return f"PresentedTicket(transport={self.transport!r})"


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def header_values(headers: HeaderPairs, name: str) -> list[str]:
    """All values of header ``name`` (case-insensitive), in order."""
    name = name.lower()
    return [_text(v) for k, v in headers if _text(k).lower() == name]


def extract_ticket(target: str, headers: HeaderPairs) -> PresentedTicket:
    """Find the one ticket in a handshake.

    ``target`` is the request target (path with optional query string) or a bare
    query string. Raises :class:`TicketRejected` with ``missing``, ``duplicate``
    or ``malformed``; none of them touches the store.
    """
    headers = list(headers)
    query = _query_string(target)
    found: list[tuple[str, Transport]] = [(value, "query") for value in _ticket_params(query)]
    offered = [
        token.strip()
        for line in header_values(headers, "sec-websocket-protocol")
        for token in line.split(",")
    ]
    found += [
        (token[len(SUBPROTOCOL_TICKET_PREFIX) :], "subprotocol")
        for token in offered
        if token.startswith(SUBPROTOCOL_TICKET_PREFIX)
    ]
    if not found:
        raise TicketRejected(Reason.MISSING)
    if len(found) > 1:
        raise TicketRejected(Reason.DUPLICATE)
    ticket, transport = found[0]
    if transport == "subprotocol" and SUBPROTOCOL not in offered:
        # Without ticketd.v1 on offer the server has nothing safe to select.
        raise TicketRejected(Reason.MALFORMED)
    if not is_well_formed(ticket):
        raise TicketRejected(Reason.MALFORMED)
    return PresentedTicket(ticket=ticket, transport=transport)


def _ticket_params(query: str) -> list[str]:
    """Raw values of every ``ticket`` parameter, percent-encoding left as it is.

    A parameter whose *decoded* name is ``ticket`` counts (``%74icket=`` is a ticket
    parameter), but its value is not decoded: a ticket is URL-safe and never needs
    encoding, so an encoded one is refused as malformed. Extraction, log redaction
    and the ASGI adapter's scrubbing then all see the same bytes.
    """
    values = []
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == QUERY_PARAMETER or (
            ("%" in name or "+" in name) and unquote_plus(name) == QUERY_PARAMETER
        ):
            values.append(value if name == QUERY_PARAMETER else "%")  # "%": never well formed
    return values


def _query_string(target: str) -> str:
    """The query string of a request target, or ``target`` itself if it is a bare one.

    A request target starts with ``/`` (origin-form) or ``scheme://`` (absolute-form);
    anything else is a bare query string, which may itself contain ``/`` and ``?``
    (``next=/a?b&ticket=T``). No URL parser here: ``urlsplit`` raises ``ValueError``
    on targets such as ``//[``, and this function must not raise.
    """
    if target.startswith(("/", "?")) or _ABSOLUTE_FORM.match(target):
        return target.partition("?")[2].partition("#")[0]
    return target


def request_origin(headers: HeaderPairs) -> str | None:
    """The raw Origin header, or ``None`` when it is absent or sent more than once."""
    values = header_values(headers, "origin")
    return values[0] if len(values) == 1 else None


def is_websocket_upgrade(method: str, headers: HeaderPairs) -> bool:
    """Whether a request is a well-formed RFC 6455 opening handshake.

    Frameworks validate the handshake only after their auth hook has run, so
    adapters call this first: a plain GET must not consume a ticket.
    """
    headers = list(headers)
    if method.upper() != "GET":
        return False
    upgrade = header_values(headers, "upgrade")
    connection = header_values(headers, "connection")
    version = header_values(headers, "sec-websocket-version")
    key = header_values(headers, "sec-websocket-key")
    if len(upgrade) != 1 or "websocket" not in _tokens(upgrade[0]):
        return False
    if "upgrade" not in {t for line in connection for t in _tokens(line)}:
        return False
    if version != ["13"] or len(key) != 1:
        return False
    try:
        return len(base64.b64decode(key[0].strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def _tokens(line: str) -> set[str]:
    return {token.strip().lower() for token in line.split(",")}
