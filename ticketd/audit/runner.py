"""One audit run: the checks of :mod:`ticketd.audit.catalog`, in order, against one target.

Order matters: positive controls first (a valid mint, a valid upgrade), then the
negative checks that depend on them, then the checks that change state for good
(logout) last. A check whose control did not pass is inconclusive, never a pass;
so is one that could not get a fresh ticket, or ran out of request budget.

The mint and upgrade checks live in :mod:`~ticketd.audit.mint_checks` and
:mod:`~ticketd.audit.upgrade_checks`; the transport and after-the-handshake
checks, which use both, are here.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from . import probe
from .base import Inconclusive, http_status
from .catalog import CATALOG, Status
from .mint_checks import MintChecks
from .report import Report, Result
from .session import AuditConfig, is_loopback
from .upgrade_checks import UpgradeChecks

__all__ = ["Audit", "run_audit"]

_METRIC = re.compile(r'^ticketd_redemptions_total\{[^}]*outcome="replayed"[^}]*\}\s+(\S+)', re.M)


def run_audit(config: AuditConfig) -> Report:
    """Run every check against ``config``'s target and return the report."""
    return Audit(config).run()


class Audit(MintChecks, UpgradeChecks):
    """One run: login, mint, every socket, transport, then what happens after the handshake."""

    # -- the run -------------------------------------------------------------------------

    def run(self) -> Report:
        started = time.monotonic()
        report = Report(
            self.config.mint_url,
            list(self.config.socket_urls),
            self.config.origin,
            datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        try:
            self.login()
            self.mint_checks()
            for index, url in enumerate(self.config.socket_urls):
                self.upgrade_checks(index, url)
            self.transport_checks()
            self.after_checks()
        finally:
            report.results = self._in_catalog_order()
            report.duration = time.monotonic() - started
            report.requests = self.session.requests
        return report

    def _in_catalog_order(self) -> list[Result]:
        rank = {c.id: i for i, c in enumerate(CATALOG)}
        return sorted(self.results, key=lambda r: rank[r.id])

    # -- transport -----------------------------------------------------------------------

    def transport_checks(self) -> None:
        cfg = self.config
        urls = [cfg.mint_url, *cfg.socket_urls]
        plaintext = [u for u in urls if urlsplit(u).scheme in ("http", "ws")]
        local = all(is_loopback(u) for u in urls)
        if plaintext and local and not cfg.production:
            why = "plaintext loopback target (pass --production to treat it as production)"
            self.skip("transport.plaintext", why)
            self.skip("transport.hsts", why)
            return
        if plaintext:
            self.run_check(
                "transport.plaintext",
                lambda: (Status.FAIL, f"served over plaintext: {', '.join(plaintext)}"),
            )
        else:
            self.run_check("transport.plaintext", self._plaintext_refused)
        self.run_check("transport.hsts", self._hsts)

    def _plaintext_refused(self) -> tuple[Status, str]:
        """The http:// mint and the ws:// sockets (default ports) must not work."""
        parts = urlsplit(self.config.mint_url)
        plain = urlunsplit(("http", parts.hostname or "", parts.path, parts.query, ""))
        saved, self.config.mint_url = self.config.mint_url, plain
        try:
            r = self.mint_request(origin=self.config.origin)
        finally:
            self.config.mint_url = saved
        if self.ticket_of(r) is not None:
            return Status.FAIL, f"{plain} minted a ticket over plaintext"
        seen = [f"{plain}: {http_status(r)}, no ticket"]
        for index, url in enumerate(self.config.socket_urls):
            sock = urlsplit(url)
            ws = urlunsplit(("ws", sock.hostname or "", sock.path, sock.query, ""))
            ticket = self.fresh_ticket(self.config.audience_of(index))
            outcome = self.session.upgrade(ws, origin=self.config.origin, ticket=ticket)
            if outcome.outcome == "accepted":
                return Status.FAIL, f"{ws} opened a socket over plaintext: {outcome.describe()}"
            seen.append(f"{ws}: {outcome.describe()}")
        return Status.PASS, "; ".join(seen)

    def _hsts(self) -> tuple[Status, str]:
        if urlsplit(self.config.mint_url).scheme != "https":
            return Status.FAIL, "the mint is not served over https"
        value = self._control.header("strict-transport-security") or ""
        match = re.search(r"max-age=(\d+)", value)
        if match and int(match.group(1)) > 0:
            return Status.PASS, f"Strict-Transport-Security: {value}"
        return Status.FAIL, f"no usable Strict-Transport-Security ({value or 'absent'})"

    # -- after the handshake -------------------------------------------------------------

    def after_checks(self) -> None:
        cfg = self.config
        url = cfg.socket_urls[0] if cfg.socket_urls else ""
        if cfg.metrics_url:
            self.run_check("after.replay_metric", lambda: self._replay_metric(url), url)
        else:
            self.skip("after.replay_metric", "pass --metrics-url to check it", url)
        if cfg.logout_url:
            self.run_check("after.logout", lambda: self._logout(url), url)
        else:
            self.skip("after.logout", "pass --logout-url to check it", url)

    def _scrape(self) -> float | None:
        """The replayed counter, ``None`` when the target exposes no such series."""
        assert self.config.metrics_url is not None
        r = self.session.http(self.config.metrics_url)
        if r.status != 200:
            raise Inconclusive(f"metrics: {http_status(r)}")
        found = _METRIC.search(r.body.decode("utf-8", "replace"))
        return float(found.group(1)) if found else None

    def _replay_metric(self, url: str) -> tuple[Status, str]:
        before = self._scrape()
        self._replay(url, self.config.audience_of(0), [])
        after = self._scrape()
        if after is None:  # e.g. the service's metrics, when the replay was the WS tier's
            raise Inconclusive(
                'the target does not expose ticketd_redemptions_total{outcome="replayed"}'
            )
        before = before or 0.0
        text = f"replayed went from {before:g} to {after:g} after one replay"
        return (Status.PASS if after > before else Status.FAIL), text

    def _logout(self, url: str) -> tuple[Status, str]:
        opened = self.session.open_socket(url, self.fresh_ticket(self.config.audience_of(0)))
        if not isinstance(opened, probe.OpenSocket):
            raise Inconclusive(f"could not open a socket: {opened.describe()}")
        try:
            assert self.config.logout_url is not None
            started = time.monotonic()
            r = self.session.http(
                self.config.logout_url,
                "POST",
                headers=[("Origin", self.config.origin), *self._cookie_header()],
            )
            if not 200 <= r.status < 400:
                raise Inconclusive(
                    f"logout answered {http_status(r)}: the target does not expose it"
                )
            code = opened.wait_close(1.0)
            elapsed = time.monotonic() - started
        finally:
            opened.close()
        if code == 4403:
            return Status.PASS, f"closed with 4403 {elapsed * 1000:.0f} ms after logout"
        if code == "open":
            return Status.FAIL, "the socket was still open 1 s after logout"
        return Status.WARN, f"closed with {code} (not 4403) {elapsed * 1000:.0f} ms after logout"
