"""Keeping tickets and cookies out of logs: the redaction filter and its installer.

Servers log the request target before any application code runs: uvicorn's
WebSocket handshake line on ``uvicorn.error`` (``"WebSocket /ws?ticket=..."``),
aiohttp's and gunicorn's access logs, websockets' debug log of the request line and
headers (``Sec-WebSocket-Protocol: ticketd.v1, ticket.<T>``). A ticket lives only
~30 s, but a log line lives for months, and the point of a ticket is that it
never sits anywhere durable. One call covers those loggers::

    from ticketd.redaction import install_redaction

    install_redaction()          # at start-up, before or after logging is configured

The filter rewrites ``ticket=<T>`` and ``ticket.<T>`` — and their near misses
(``Ticket=``, ``%74icket=``, ``ticket%3D``, a percent-encoded value: the same
definition :func:`ticketd.handshake.extract_ticket` refuses them by), and any
free-standing well-formed 43-character ticket whatever its name — in the message, in every
argument (uvicorn passes the path as an argument, and its access formatter needs
the arguments intact, so they are redacted one by one; only when the ticket
appears across message and argument, ``"ticket=%s"``, are they merged), in
``extra`` attributes and in formatted tracebacks. The values of ``Cookie``,
``Set-Cookie`` and ``Authorization`` header lines (websockets logs every handshake
header at DEBUG) are replaced whole. Only ticket values of 16 or more
URL-safe characters are replaced, so ticketd's own 8-character ticket hashes
(``ticket=abcd1234``) stay readable.

Where the filter sits: a logger's filters see only records logged on that very
logger, not those propagating from its children, so the filter goes on each
logger that emits (``websockets.server``, not just ``websockets``). Those
logger-level filters survive ``logging.config.dictConfig`` (which uvicorn runs at
start-up and which replaces handlers); the filter is also put on the handlers
present at install time (the named loggers', their parents' and the root's) to
catch records from child loggers nobody listed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus

from .handshake import TICKET_MENTION
from .tickets import is_well_formed

__all__ = [
    "DEFAULT_LOGGERS",
    "REDACTED",
    "TicketRedactionFilter",
    "install_redaction",
    "redact",
    "remove_redaction",
]

REDACTED = "[redacted]"

DEFAULT_LOGGERS: tuple[str, ...] = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "uvicorn.asgi",
    "websockets",
    "websockets.server",
    "websockets.client",
    "aiohttp.access",
    "aiohttp.server",
    "aiohttp.web",
    "aiohttp.websocket",
    "aiohttp.client",
    "aiohttp.internal",
    "gunicorn.error",
    "gunicorn.access",
    "daphne",
    "django.channels.server",
)
"""Loggers that write request lines or handshake headers."""

# Two rules, one definition of a ticket (ticketd.handshake and ticketd.tickets):
# 1. whatever follows a ticket name, near misses included (handshake.TICKET_MENTION:
#    "Ticket=", "%74icket=", "ticket%3D", "ticket.", percent-encoded values), when it
#    holds 16+ URL-safe characters: shorter values are ticketd's own log ids;
# 2. any free-standing well-formed ticket (43 characters, canonical last one), whatever
#    the name in front of it ("?t=...", "token=...", a bare path segment).
_MIN_VALUE = 16
_TICKET_CHARS = re.compile(r"[A-Za-z0-9_-]")
_BARE = r"(?:(?<![A-Za-z0-9_-])|(?<=%[0-9A-Fa-f]{2}))[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])"
_BARE_TICKET = re.compile(_BARE)
_BYTES_MENTION = re.compile(TICKET_MENTION.pattern.encode(), re.IGNORECASE)
_BYTES_BARE_TICKET = re.compile(_BARE.encode())


def _value_is_secret(value: str) -> bool:
    return len(_TICKET_CHARS.findall(unquote_plus(value))) >= _MIN_VALUE


def _mention(match: re.Match[str]) -> str:
    if _value_is_secret(match["value"]):
        return match["name"] + REDACTED
    return match[0]


def _bare(match: re.Match[str]) -> str:
    return REDACTED if is_well_formed(match[0]) else match[0]


def _redact_tickets(text: str) -> str:
    return _BARE_TICKET.sub(_bare, TICKET_MENTION.sub(_mention, text))


def _has_ticket(text: str) -> bool:
    return _redact_tickets(text) != text


def _redact_bytes(value: bytes) -> bytes:
    def mention(match: re.Match[bytes]) -> bytes:
        secret = _value_is_secret(match["value"].decode("latin-1"))
        return match["name"] + REDACTED.encode() if secret else match[0]

    def bare(match: re.Match[bytes]) -> bytes:
        return REDACTED.encode() if is_well_formed(match[0].decode()) else match[0]

    return _BYTES_BARE_TICKET.sub(bare, _BYTES_MENTION.sub(mention, value))


_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}
# Header lines carrying credentials, as websockets' debug log writes them ("< Cookie: ...").
# The browser sends the app's session cookie on the WebSocket handshake too.
_SECRET_HEADERS = ("cookie", "set-cookie", "authorization", "proxy-authorization")
_HEADER_LINE = re.compile(
    r"(?im)^([ \t]*[<>]?[ \t]*(?:" + "|".join(_SECRET_HEADERS) + r")[ \t]*:[ \t]*)\S.*$"
)


def redact(text: str) -> str:
    """Replace ticket values, and the values of credential header lines, in ``text``::

    >>> redact("GET /ws?ticket=" + "A" * 43 + "&x=1")
    'GET /ws?ticket=[redacted]&x=1'
    >>> redact("< Cookie: session=abc.def.ghi")
    '< Cookie: [redacted]'
    """
    return _HEADER_LINE.sub(rf"\g<1>{REDACTED}", _redact_tickets(text))


def _redact_arg(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes | bytearray):
        return _redact_bytes(bytes(value))
    if value is None or isinstance(value, int | float):
        return value
    # Objects (URLs, requests) are formatted later by %s or %r: check both.
    text, representation = str(value), repr(value)
    if _has_ticket(text) or _has_ticket(representation):
        return redact(text)
    return value


class TicketRedactionFilter(logging.Filter):
    """A filter that rewrites records in place and never drops one.

    ::

        handler.addFilter(TicketRedactionFilter())
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _redact_arg(record.msg)
        if isinstance(record.args, Mapping):
            record.args = {key: _redact_arg(value) for key, value in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(value) for value in record.args)
        if record.args:
            try:
                message = record.getMessage()
            except (TypeError, ValueError, KeyError):
                message = ""
            # "ticket=%s" with the bare ticket as argument, or "< %s: %s" with a header
            # name and its value as two arguments: only the merged message shows them.
            if _has_ticket(message) or _HEADER_LINE.search(message):
                record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):  # ``extra=`` attributes
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


_FILTER = TicketRedactionFilter()


def _targets(names: Iterable[str]) -> list[logging.Filterer]:
    loggers = [logging.getLogger(name) for name in names]
    targets: list[logging.Filterer] = list(loggers)
    for logger in [*loggers, logging.getLogger()]:
        current: logging.Logger | None = logger
        while current is not None:  # handlers reachable from this logger
            targets.extend(current.handlers)
            current = current.parent if current.propagate else None
    return targets


def install_redaction(loggers: Iterable[str] = DEFAULT_LOGGERS) -> TicketRedactionFilter:
    """Attach the redaction filter to ``loggers`` and to their handlers. Idempotent.

    ::

        install_redaction()                                   # the servers ticketd knows
        install_redaction([*DEFAULT_LOGGERS, "myapp.access"]) # plus your own
    """
    for target in _targets(loggers):
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)
    return _FILTER


def remove_redaction(loggers: Iterable[str] = DEFAULT_LOGGERS) -> None:
    """Undo :func:`install_redaction` (for tests)."""
    for target in _targets(loggers):
        target.removeFilter(_FILTER)
