"""Checks on every HTTP request before routing: the ``Host`` header and a canonical path.

- **Host** (:mod:`ticketd.hosts`): two ``Host`` headers are refused (``400
  duplicate_host``); with ``TICKETD_ALLOWED_HOSTS`` set, a missing or unlisted host
  is refused (``421 host_not_allowed``), DNS rebinding's signature.
- **Canonical path**: the route table matches the *decoded* path, so
  ``/v1/tickets/%72edeem`` would reach the redeem endpoint past an ingress rule
  written for ``/v1/tickets/redeem``. The raw path (``scope["raw_path"]``) must
  be the one spelling of its route: no percent-encoding, no empty, ``.`` or ``..``
  segment, no trailing slash, nothing but ``A-Z a-z 0-9 . _ ~ -`` in a segment.
  Anything else is ``400 non_canonical_path``, whatever it would have matched.
  Case variants (``/V1/tickets``) simply match no route (404).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

from starlette.requests import Request

from ..handshake import header_values
from ..hosts import check_host
from .requests import refuse, request_id

__all__ = ["RequestGuard", "is_canonical_path"]

_Scope: TypeAlias = MutableMapping[str, Any]
_Receive: TypeAlias = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send: TypeAlias = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_ASGIApp: TypeAlias = Callable[[_Scope, _Receive, _Send], Awaitable[None]]

_CANONICAL_PATH = re.compile(rb"/|(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._~-]+)+")


def is_canonical_path(raw_path: bytes) -> bool:
    """Whether a raw request path is the single spelling of a route::

    >>> is_canonical_path(b"/v1/tickets"), is_canonical_path(b"/v1/%74ickets")
    (True, False)
    """
    return _CANONICAL_PATH.fullmatch(raw_path) is not None


class RequestGuard:
    """ASGI middleware refusing non-canonical paths and disallowed hosts (``http`` scopes)."""

    def __init__(self, app: _ASGIApp, service: Any) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        code = self.refusal(scope)
        if code is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        response = refuse(self.service.metrics, code, request_id(request), where="request")
        await response(scope, receive, send)

    def refusal(self, scope: _Scope) -> str | None:
        """The problem code refusing this request, or ``None``."""
        hosts = header_values(scope.get("headers", []), "host")
        refused = check_host(hosts, self.service.allowed_hosts)
        if refused is not None:
            return refused
        raw_path = scope.get("raw_path") or str(scope.get("path", "")).encode("latin-1")
        if not is_canonical_path(bytes(raw_path)):
            return "non_canonical_path"
        return None
