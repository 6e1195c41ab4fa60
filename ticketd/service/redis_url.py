"""Checking ``TICKETD_REDIS_URL`` at start-up, so a typo is a configuration error.

redis-py parses a URL lazily and forgivingly: a database path that is not a number
is silently database 0, an unknown query option becomes a keyword argument that
fails with a ``TypeError`` on the first connection, a port out of range raises
from deep inside ``from_url``. :func:`redis_url_problem` checks what redis-py
would do with the URL and says, in one line, what is wrong — never the URL
itself, nor any part of it but an option's name, since it may carry a password.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from redis.connection import URL_QUERY_ARGUMENT_PARSERS as _REDIS_PARSERS

__all__ = ["redis_url_problem"]

_PARSERS = cast(Mapping[str, Callable[[str], Any]], _REDIS_PARSERS)
_SCHEMES = ("redis", "rediss", "unix")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_CONNECTION_OPTIONS = frozenset(_PARSERS) | {
    "client_name",
    "password",
    "username",
}
_TLS_OPTIONS = frozenset(
    {"ssl_ca_certs", "ssl_ca_path", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile"}
)


def redis_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a Redis URL for redis-py, or ``None``."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in _SCHEMES:  # redis-py matches the scheme case-sensitively
        return "must start with redis://, rediss:// or unix://"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "the port must be a number from 1 to 65535"
    problem = _query_problem(parts.query, tls=parts.scheme == "rediss")
    if problem is not None:
        return problem
    if parts.scheme == "unix":
        return None if parts.path else "unix:// needs the socket's path (unix:///run/redis.sock)"
    if port == 0:
        return "the port must be a number from 1 to 65535"
    if not parts.hostname or not _is_host(unquote(parts.hostname)):
        return "the host is missing or not a host name or IP address"
    database = unquote(parts.path).removeprefix("/")
    if database and not (database.isascii() and database.isdigit()):
        return "the path must be a database number (redis://host:6379/0)"
    return None


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.removesuffix(".").split(".")
        return len(host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)
    return True


def _query_problem(query: str, *, tls: bool) -> str | None:
    try:
        options = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        return "the query string is not name=value pairs"
    allowed = _CONNECTION_OPTIONS | (_TLS_OPTIONS if tls else frozenset())
    for name, value in options:
        if name not in allowed:
            shown = name if name.isidentifier() and len(name) <= 40 else "?"
            return f"unknown option {shown!r} in the query string"
        parser = _PARSERS.get(name)
        if parser is not None:
            try:
                parser(value)
            except (TypeError, ValueError):
                return f"option {name!r} has an invalid value"
    return None
