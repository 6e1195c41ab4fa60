"""What one audit run holds: the target, the request budget, the secrets to redact.

Every request of a run goes through :class:`Session`: strictly one after the
other (the parallel-upgrade check is the single, bounded exception), with a delay
between requests and a hard budget. Every ticket the run obtains and the session
cookie are registered with :class:`Redactor`, and every line of evidence passes
through it: outputs show hash prefixes only.
"""

from __future__ import annotations

import hashlib
import ipaddress
import ssl
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from ..tickets import log_id
from . import probe

__all__ = ["AuditConfig", "BudgetExhausted", "Redactor", "Session", "is_loopback"]


@dataclass
class AuditConfig:
    """The target and how gently to treat it."""

    mint_url: str
    socket_urls: Sequence[str]
    origin: str
    cookie: str | None = None
    audiences: Sequence[str] = ()
    metrics_url: str | None = None
    logout_url: str | None = None
    login_url: str | None = None
    login_body: str = "{}"
    cookie_name: str = "session"
    transport: Literal["subprotocol", "query"] = "subprotocol"
    production: bool = False
    max_requests: int = 300
    delay: float = 0.05
    timeout: float = 5.0
    parallel: int = 5
    ca_file: str | None = None

    def urls(self) -> list[str]:
        named = [self.mint_url, *self.socket_urls, self.metrics_url, self.logout_url]
        return [u for u in (*named, self.login_url) if u]

    def audience_of(self, index: int) -> str | None:
        return self.audiences[index] if index < len(self.audiences) else None


class BudgetExhausted(Exception):
    """The run used its whole request budget; what is left is inconclusive."""


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Redactor:
    """Replaces every registered secret with a short hash of it."""

    _secrets: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ticket(self, ticket: str) -> str:
        with self._lock:
            self._secrets[ticket] = f"[ticket #{log_id(ticket)}]"
        return ticket

    def cookie(self, value: str) -> None:
        digest = hashlib.sha256(value.encode()).hexdigest()[:8]
        with self._lock:
            self._secrets[value] = f"[cookie #{digest}]"
            _name, _, val = value.partition("=")
            if val and len(val) >= 8:
                self._secrets[val] = f"[cookie #{digest}]"

    def __call__(self, text: str) -> str:
        with self._lock:
            items = sorted(self._secrets.items(), key=lambda kv: -len(kv[0]))
        for secret, label in items:
            text = text.replace(secret, label)
        return text


class Session:
    """The budgeted, paced, redacting front of :mod:`ticketd.audit.probe`."""

    def __init__(self, config: AuditConfig) -> None:
        self.config = config
        self.redact = Redactor()
        self.requests = 0
        self._last = 0.0
        self.context = ssl.create_default_context(cafile=config.ca_file)
        if config.cookie:
            self.redact.cookie(config.cookie)

    def _spend(self, count: int = 1) -> None:
        if self.requests + count > self.config.max_requests:
            raise BudgetExhausted(f"request budget of {self.config.max_requests} exhausted")
        wait = self._last + self.config.delay - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.requests += count

    def _done(self) -> None:
        self._last = time.monotonic()

    def http(
        self,
        url: str,
        method: str = "GET",
        *,
        headers: probe.Headers = (),
        body: bytes | None = None,
    ) -> probe.HttpResponse:
        self._spend()
        try:
            return probe.http_request(
                url,
                method,
                headers=headers,
                body=body,
                timeout=self.config.timeout,
                context=self.context,
            )
        finally:
            self._done()

    def upgrade(
        self,
        url: str,
        *,
        origin: str | None,
        ticket: str | None = None,
        cookie: bool = True,
        transport: Literal["subprotocol", "query"] | None = None,
    ) -> probe.Upgrade:
        self._spend()
        try:
            return probe.upgrade(
                url,
                origin=origin,
                ticket=ticket,
                cookie=self.config.cookie if cookie else None,
                transport=transport or self.config.transport,
                timeout=self.config.timeout,
                context=self.context,
            )
        finally:
            self._done()

    def upgrade_parallel(self, url: str, ticket: str, n: int) -> list[probe.Upgrade]:
        """``n`` upgrades with one ticket, released together (the only concurrency)."""
        self._spend(n)
        barrier = threading.Barrier(n)
        try:
            with ThreadPoolExecutor(max_workers=n) as pool:
                futures = [
                    pool.submit(
                        probe.upgrade,
                        url,
                        origin=self.config.origin,
                        ticket=ticket,
                        cookie=self.config.cookie,
                        transport=self.config.transport,
                        timeout=self.config.timeout,
                        barrier=barrier,
                        context=self.context,
                    )
                    for _ in range(n)
                ]
                return [f.result() for f in futures]
        finally:
            self._done()

    def open_socket(self, url: str, ticket: str) -> probe.OpenSocket | probe.Upgrade:
        self._spend()
        try:
            return probe.open_socket(
                url,
                origin=self.config.origin,
                ticket=ticket,
                cookie=self.config.cookie,
                transport=self.config.transport,
                timeout=self.config.timeout,
                context=self.context,
            )
        finally:
            self._done()
