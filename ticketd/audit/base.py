"""What every group of audit checks shares: the run's results, its controls, fresh tickets.

:class:`AuditBase` records results (redacted), decides whether a check's controls
passed (per target: a control of one socket says nothing about another), and mints
the fresh tickets the negative checks spend. Upgrade outcomes are graded the same way
everywhere (:func:`grade`): refused before 101 is a pass, 101 then close a warning
(the socket was opened, if briefly), 101 then data or an open socket a failure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from . import probe
from .catalog import Status, check
from .report import Result
from .session import AuditConfig, BudgetExhausted, Session

__all__ = [
    "FOREIGN_ORIGIN",
    "AuditBase",
    "Inconclusive",
    "grade",
    "http_status",
    "lookalikes",
    "worst",
]

FOREIGN_ORIGIN = "https://ticketd-audit.invalid"


class Inconclusive(Exception):
    """A check could not be decided (no fresh ticket, no answer): never a pass."""


def lookalikes(origin: str) -> list[str]:
    """Origins a careless comparison confuses with ``origin``: prefix, suffix, scheme."""
    parts = urlsplit(origin)
    flipped = "http" if parts.scheme == "https" else "https"
    return [
        f"{origin}.ticketd-audit.invalid",
        f"{parts.scheme}://ticketd-audit-{parts.netloc}",
        urlunsplit((flipped, parts.netloc, "", "", "")),
    ]


def grade(outcome: probe.Upgrade) -> tuple[Status, str]:
    """Grade a handshake that should have been refused."""
    if outcome.outcome == "refused":
        return Status.PASS, outcome.describe()
    if outcome.outcome == "closed":
        return Status.WARN, outcome.describe()
    if outcome.outcome == "accepted":
        return Status.FAIL, outcome.describe()
    raise Inconclusive(outcome.describe())


def worst(grades: list[tuple[Status, str]]) -> tuple[Status, str]:
    order = [Status.PASS, Status.WARN, Status.FAIL]
    worst = max(grades, key=lambda g: order.index(g[0]))
    return worst[0], "; ".join(g[1] for g in grades)


class AuditBase:
    """State and helpers of one run; the check groups subclass it."""

    def __init__(self, config: AuditConfig) -> None:
        self.config = config
        self.session = Session(config)
        self.results: list[Result] = []
        self._cookie_from_login: str | None = None  # Set-Cookie line observed at login
        self._control = probe.HttpResponse(0, error="not run")  # the control mint's response

    # -- bookkeeping ---------------------------------------------------------------------

    def record(self, check_id: str, status: Status, evidence: str, target: str = "") -> None:
        self.results.append(
            Result(check_id, status, self.session.redact(evidence), target or self.config.mint_url)
        )

    def passed(self, check_id: str, target: str = "") -> bool:
        target = target or self.config.mint_url
        found = [r for r in self.results if r.id == check_id and r.target == target]
        return bool(found) and all(r.status is Status.PASS for r in found)

    def run_check(
        self, check_id: str, body: Callable[[], tuple[Status, str]], target: str = ""
    ) -> None:
        """Run ``body`` if every control it needs passed (for this target), else inconclusive."""
        target = target or self.config.mint_url
        for need in check(check_id).needs:
            need_target = target if need.startswith(("control.upgrade", "upgrade.")) else ""
            if not self.passed(need, need_target):
                self.record(check_id, Status.INCONCLUSIVE, f"{need} did not pass", target)
                return
        try:
            status, evidence = body()
        except BudgetExhausted as exc:
            status, evidence = Status.INCONCLUSIVE, str(exc)
        except Inconclusive as exc:
            status, evidence = Status.INCONCLUSIVE, str(exc)
        self.record(check_id, status, evidence, target)

    def skip(self, check_id: str, why: str, target: str = "") -> None:
        self.record(check_id, Status.SKIPPED, why, target)

    # -- requests ------------------------------------------------------------------------

    def _cookie_header(self) -> list[tuple[str, str]]:
        return [("Cookie", self.config.cookie)] if self.config.cookie else []

    def mint_request(
        self,
        *,
        origin: str | None = None,
        cookie: bool = True,
        method: str = "POST",
        content_type: str | None = "application/json",
        audience: str | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> probe.HttpResponse:
        headers: list[tuple[str, str]] = []
        if origin is not None:
            headers.append(("Origin", origin))
        if cookie:
            headers += self._cookie_header()
        body = None
        if method != "GET":
            body = json.dumps({"audience": audience} if audience else {}).encode()
            if content_type:
                headers.append(("Content-Type", content_type))
        return self.session.http(
            self.config.mint_url, method, headers=[*headers, *extra], body=body
        )

    def ticket_of(self, response: probe.HttpResponse) -> str | None:
        if not 200 <= response.status < 300:
            return None
        try:
            ticket = json.loads(response.body).get("ticket")
        except (ValueError, AttributeError):
            return None
        return self.session.redact.ticket(ticket) if isinstance(ticket, str) and ticket else None

    def fresh_ticket(self, audience: str | None = None) -> str:
        response = self.mint_request(origin=self.config.origin, audience=audience)
        ticket = self.ticket_of(response)
        if ticket is None:
            raise Inconclusive(f"could not mint a fresh ticket: {http_status(response)}")
        return ticket


def http_status(r: probe.HttpResponse) -> str:
    return f"HTTP {r.status}" if r.status else f"no answer ({r.error})"
