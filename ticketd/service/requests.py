"""What every handler asks of a request: its id, its body, its Origin, its client address.

Plain functions and two small lookups the handlers share; the refusal helper logs
and counts one problem response. :class:`~.runtime.Service` composes the lookups
(``service.origins``, ``service.addresses``); nothing here holds other state.
"""

from __future__ import annotations

import logging
import os
import random
import re

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..exceptions import InvalidOrigin
from ..origins import OriginAllowlist
from .clientip import TrustedProxies
from .metrics import Metrics
from .problems import PROBLEMS, problem_response

__all__ = [
    "MAX_BODY_BYTES",
    "ClientAddresses",
    "OriginCheck",
    "is_json",
    "read_body",
    "refuse",
    "request_id",
]

_logger = logging.getLogger("ticketd.service")

MAX_BODY_BYTES = 8 * 1024
_CACHE_SIZE = 4096
_DIGITS = re.compile(r"[0-9]{1,12}")  # str.isdigit() also accepts "²", which int() refuses
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ids = random.Random()  # noqa: S311 - request ids, never secrets (tickets use secrets)
os.register_at_fork(after_in_child=_ids.seed)  # forked workers: their own sequence
_JSON_MEDIA = re.compile(r"application/json\s*(;\s*charset=\"?utf-8\"?\s*)?", re.IGNORECASE)


def request_id(request: Request) -> str:
    """The caller's ``X-Request-ID`` if it is safe to log, else a fresh one."""
    given = request.headers.get("x-request-id")
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given
    # 16 hex digits like uuid4().hex[:16]. An id must be unique, not unpredictable:
    # the PRNG spares every request a getrandom() system call.
    return f"{_ids.getrandbits(64):016x}"


def is_json(request: Request) -> bool:
    """Whether the request body is declared as JSON (UTF-8)."""
    return _JSON_MEDIA.fullmatch(request.headers.get("content-type", "").strip()) is not None


async def read_body(request: Request) -> bytes | None:
    """The body, or ``None`` if it is (or declares to be) over :data:`MAX_BODY_BYTES`."""
    declared = request.headers.get("content-length")
    if declared == "0":  # the usual mint: nothing to read
        return b""
    if declared is not None and (not _DIGITS.fullmatch(declared) or int(declared) > MAX_BODY_BYTES):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


def refuse(
    metrics: Metrics,
    code: str,
    rid: str,
    *,
    where: str,
    headers: dict[str, str] | None = None,
    detail: str = "",
) -> JSONResponse:
    """Log a refusal (no secrets), count it if it is a mint's, and answer its problem."""
    status = PROBLEMS[code].status
    _logger.info(
        "%s refused code=%s status=%d request_id=%s%s",
        where,
        code,
        status,
        rid,
        f" {detail}" if detail else "",
        extra={"code": code, "status": status, "request_id": rid},
    )
    if where == "mint":
        metrics.mints.labels(code).inc()
    return problem_response(code, request_id=rid, headers=headers)


class OriginCheck:
    """The request's one canonical, allowed Origin (the allowlist is fixed per process)."""

    def __init__(self, allowlist: OriginAllowlist) -> None:
        self.allowlist = allowlist
        self._allowed: dict[str, str] = {}

    def check(self, request: Request) -> str:
        """The request's canonical Origin if it is the only one and on the allowlist.

        Raises :class:`~ticketd.exceptions.InvalidOrigin` otherwise (missing, repeated,
        malformed or not listed).
        """
        origins = request.headers.getlist("origin")
        if len(origins) != 1:
            raise InvalidOrigin("exactly one Origin header is required")
        known = self._allowed.get(origins[0])  # the few allowed spellings, remembered
        if known is None:
            known = self.allowlist.check(origins[0])
            if len(self._allowed) >= _CACHE_SIZE:
                self._allowed.clear()
            self._allowed[origins[0]] = known
        return known


class ClientAddresses:
    """The client address: the peer, or what trusted proxies forwarded."""

    def __init__(self, proxies: TrustedProxies) -> None:
        self.proxies = proxies
        self._peers: dict[str | None, str | None] = {}

    def client_ip(self, request: Request) -> str | None:
        peer = request.client.host if request.client else None
        forwarded = request.headers.getlist("x-forwarded-for")
        if forwarded:
            return self.proxies.client_ip(peer, forwarded)
        try:  # no header: the answer depends on the peer alone
            return self._peers[peer]
        except KeyError:
            ip = self.proxies.client_ip(peer, forwarded)
            if len(self._peers) >= _CACHE_SIZE:
                self._peers.clear()
            self._peers[peer] = ip
            return ip
