"""One audit run: the checks of :mod:`ticketd.audit.catalog`, in order, against one target.

Order matters: positive controls first (a valid mint, a valid upgrade), then the
negative checks that depend on them, then the checks that change state for good
(logout) last. A check whose control did not pass is inconclusive, never a pass;
so is one that could not get a fresh ticket, or ran out of request budget.

Upgrade outcomes are graded the same way everywhere: refused before 101 is a pass,
101 then close a warning (the socket was opened, if briefly), 101 then data or an
open socket a failure.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from ..tickets import new_ticket
from . import probe
from .catalog import CATALOG, Status, check
from .report import Report, Result
from .session import AuditConfig, BudgetExhausted, Session, is_loopback

__all__ = ["FOREIGN_ORIGIN", "Audit", "lookalikes", "run_audit"]

FOREIGN_ORIGIN = "https://ticketd-audit.invalid"
_JSON = re.compile(r"^application/(?:[\w.+-]+\+)?json\b", re.I)
_METRIC = re.compile(r'^ticketd_redemptions_total\{[^}]*outcome="replayed"[^}]*\}\s+(\S+)', re.M)


class _Inconclusive(Exception):
    """A check could not be decided (no fresh ticket, no answer): never a pass."""


def run_audit(config: AuditConfig) -> Report:
    """Run every check against ``config``'s target and return the report."""
    return Audit(config).run()


def lookalikes(origin: str) -> list[str]:
    """Origins a careless comparison confuses with ``origin``: prefix, suffix, scheme."""
    parts = urlsplit(origin)
    flipped = "http" if parts.scheme == "https" else "https"
    return [
        f"{origin}.ticketd-audit.invalid",
        f"{parts.scheme}://ticketd-audit-{parts.netloc}",
        urlunsplit((flipped, parts.netloc, "", "", "")),
    ]


def _grade(outcome: probe.Upgrade) -> tuple[Status, str]:
    """Grade a handshake that should have been refused."""
    if outcome.outcome == "refused":
        return Status.PASS, outcome.describe()
    if outcome.outcome == "closed":
        return Status.WARN, outcome.describe()
    if outcome.outcome == "accepted":
        return Status.FAIL, outcome.describe()
    raise _Inconclusive(outcome.describe())


def _worst(grades: list[tuple[Status, str]]) -> tuple[Status, str]:
    order = [Status.PASS, Status.WARN, Status.FAIL]
    worst = max(grades, key=lambda g: order.index(g[0]))
    return worst[0], "; ".join(g[1] for g in grades)


class Audit:
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
        except _Inconclusive as exc:
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
        if method == "POST":
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
            raise _Inconclusive(f"could not mint a fresh ticket: {_status(response)}")
        return ticket

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

    # -- cookie --------------------------------------------------------------------------

    def login(self) -> None:
        if not self.config.login_url:
            why = "the cookie was given on the command line (pass --login-url to check it)"
            self.skip("cookie.attributes", why)
            return
        response = self.session.http(
            self.config.login_url,
            "POST",
            headers=[("Origin", self.config.origin), ("Content-Type", "application/json")],
            body=self.config.login_body.encode(),
        )
        name = self.config.cookie_name
        line = next(
            (c for c in response.all("set-cookie") if c.split("=", 1)[0].strip() == name), None
        )
        if line is None:
            self.record(
                "cookie.attributes",
                Status.INCONCLUSIVE,
                f"login answered {_status(response)} without a Set-Cookie for {name!r}",
            )
            return
        pair = line.split(";", 1)[0].strip()
        self.session.redact.cookie(pair)
        self.config.cookie = pair
        self._cookie_from_login = line
        self.cookie_attributes(line)

    def cookie_attributes(self, line: str) -> None:
        attributes = {
            a.split("=", 1)[0].strip().lower(): a.partition("=")[2].strip().lower()
            for a in line.split(";")[1:]
        }
        problems, warnings = [], []
        if "httponly" not in attributes:
            problems.append("no HttpOnly")
        samesite = attributes.get("samesite")
        if samesite == "none":
            problems.append("SameSite=None")
        elif samesite is None:
            warnings.append("no SameSite (browsers default to Lax, older ones to None)")
        plaintext = urlsplit(self.config.mint_url).scheme == "http"
        if "secure" not in attributes and (self.config.production or not plaintext):
            problems.append("no Secure")
        status = Status.FAIL if problems else Status.WARN if warnings else Status.PASS
        detail = ", ".join(problems + warnings) or "HttpOnly, SameSite=" + str(samesite)
        if plaintext and not self.config.production and "secure" not in attributes:
            detail += " (Secure not required on a plaintext test target)"
        self.record("cookie.attributes", status, f"Set-Cookie observed at login: {detail}")

    # -- mint ----------------------------------------------------------------------------

    def mint_checks(self) -> None:
        cfg = self.config
        control = self.mint_request(origin=cfg.origin, audience=cfg.audience_of(0))
        self._control = control
        ticket = self.ticket_of(control)
        if ticket is None:
            self.record("control.mint", Status.INCONCLUSIVE, f"mint answered {_status(control)}")
        else:
            self.record("control.mint", Status.PASS, f"HTTP {control.status}, {ticket}")
        responses = [control]

        def refused(origin: str | None, **kw: object) -> Callable[[], tuple[Status, str]]:
            def body() -> tuple[Status, str]:
                r = self.mint_request(origin=origin, **kw)  # type: ignore[arg-type]
                responses.append(r)
                return _mint_refused(r, self.ticket_of(r), cfg.origin)

            return body

        self.run_check("mint.origin.foreign", refused(FOREIGN_ORIGIN))
        self.run_check("mint.origin.null", refused("null"))
        self.run_check("mint.origin.missing", refused(None))

        def lookalike() -> tuple[Status, str]:
            grades = []
            for origin in lookalikes(cfg.origin):
                r = self.mint_request(origin=origin)
                responses.append(r)
                status, text = _mint_refused(r, self.ticket_of(r), cfg.origin)
                grades.append((status, f"{origin}: {text}"))
            return _worst(grades)

        self.run_check("mint.origin.lookalike", lookalike)
        cross = (("Sec-Fetch-Site", "cross-site"),)
        self.run_check("mint.fetch_metadata", refused(cfg.origin, extra=cross))
        self.run_check("mint.method", refused(cfg.origin, method="GET"))
        self.run_check("mint.content_type", refused(cfg.origin, content_type="text/plain"))
        self.run_check("mint.cookie", refused(cfg.origin, cookie=False))
        self.run_check("mint.preflight", lambda: self._preflight(responses))
        self.run_check("mint.cors.wildcard", lambda: _no_wildcard(responses))
        self.run_check("mint.response_headers", lambda: _ticket_headers(control))

    def _preflight(self, responses: list[probe.HttpResponse]) -> tuple[Status, str]:
        def ask(origin: str) -> probe.HttpResponse:
            r = self.session.http(
                self.config.mint_url,
                "OPTIONS",
                headers=[
                    ("Origin", origin),
                    ("Access-Control-Request-Method", "POST"),
                    ("Access-Control-Request-Headers", "content-type"),
                ],
            )
            responses.append(r)
            return r

        foreign, allowed = ask(FOREIGN_ORIGIN), ask(self.config.origin)
        problems = []
        if foreign.header("access-control-allow-origin") is not None:
            problems.append(
                f"foreign origin answered with Access-Control-Allow-Origin "
                f"{foreign.header('access-control-allow-origin')!r}"
            )
        acao = allowed.header("access-control-allow-origin")
        if acao is not None and acao != self.config.origin:
            problems.append(f"allowed origin answered with Access-Control-Allow-Origin {acao!r}")
        if problems:
            return Status.FAIL, "; ".join(problems)
        how = "the exact origin" if acao else "no CORS (same-origin deployment)"
        return Status.PASS, f"foreign: {_status(foreign)}, no ACAO; allowed: {how}"

    # -- upgrade -------------------------------------------------------------------------

    def upgrade_checks(self, index: int, url: str) -> None:
        cfg = self.config
        audience = cfg.audience_of(index)
        primary = index == 0

        def control() -> tuple[Status, str]:
            outcome = self.session.upgrade(
                url, origin=cfg.origin, ticket=self.fresh_ticket(audience)
            )
            if outcome.outcome == "accepted":
                return Status.PASS, outcome.describe()
            raise _Inconclusive(f"a valid ticket did not open the socket: {outcome.describe()}")

        self.run_check("control.upgrade", control, url)

        def refused(**kw: object) -> Callable[[], tuple[Status, str]]:
            return lambda: _grade(self.session.upgrade(url, **kw))  # type: ignore[arg-type]

        self.run_check("upgrade.no_ticket", refused(origin=cfg.origin, cookie=False), url)
        self.run_check("upgrade.cookie_only", refused(origin=cfg.origin), url)
        self.run_check("upgrade.cswsh", refused(origin=FOREIGN_ORIGIN), url)
        burned: list[str] = []

        def with_origin(origin: str | None) -> Callable[[], tuple[Status, str]]:
            def body() -> tuple[Status, str]:
                ticket = self.fresh_ticket(audience)
                burned.append(ticket)
                return _grade(self.session.upgrade(url, origin=origin, ticket=ticket))

            return body

        self.run_check("upgrade.origin.foreign", with_origin(FOREIGN_ORIGIN), url)
        if primary:
            self.run_check("upgrade.origin.null", with_origin("null"), url)
            self.run_check("upgrade.origin.missing", with_origin(None), url)

            def lookalike() -> tuple[Status, str]:
                grades = []
                for origin in lookalikes(cfg.origin):
                    status, text = with_origin(origin)()
                    grades.append((status, f"{origin}: {text}"))
                return _worst(grades)

            self.run_check("upgrade.origin.lookalike", lookalike, url)

            def burns() -> tuple[Status, str]:
                status, text = _grade(
                    self.session.upgrade(url, origin=cfg.origin, ticket=burned[0])
                )
                return status, f"the same ticket from the allowed origin: {text}"

            self.run_check("upgrade.origin.burns", burns, url)
        replayed: list[probe.Upgrade] = []
        self.run_check("upgrade.replay", lambda: self._replay(url, audience, replayed), url)
        if not primary:
            return
        self.run_check("upgrade.parallel", lambda: self._parallel(url, audience), url)
        self.run_check(
            "upgrade.indistinguishable", lambda: self._indistinguishable(url, replayed), url
        )
        self.run_check("upgrade.prefetch", lambda: self._prefetch(url, audience), url)
        self.run_check("upgrade.subprotocol_echo", lambda: self._echo(url, audience), url)
        others = [
            (u, a)
            for u, a in zip(cfg.socket_urls[1:], cfg.audiences[1:], strict=False)
            if a != audience
        ]
        if audience is None or not others:
            self.skip(
                "upgrade.audience",
                "needs two --socket-url with different --audience (one per socket, in order)",
                url,
            )
        else:
            other_url, _ = others[0]
            self.run_check(
                "upgrade.audience",
                lambda: _grade(
                    self.session.upgrade(
                        other_url, origin=cfg.origin, ticket=self.fresh_ticket(audience)
                    )
                ),
                url,
            )

    def _replay(
        self, url: str, audience: str | None, keep: list[probe.Upgrade]
    ) -> tuple[Status, str]:
        ticket = self.fresh_ticket(audience)
        first = self.session.upgrade(url, origin=self.config.origin, ticket=ticket)
        if first.outcome != "accepted":
            raise _Inconclusive(f"first use not accepted: {first.describe()}")
        second = self.session.upgrade(url, origin=self.config.origin, ticket=ticket)
        keep.append(second)
        status, text = _grade(second)
        return status, f"second use: {text}"

    def _parallel(self, url: str, audience: str | None) -> tuple[Status, str]:
        n = self.config.parallel
        outcomes = self.session.upgrade_parallel(url, self.fresh_ticket(audience), n)
        opened = sum(o.outcome == "accepted" for o in outcomes)
        late = sum(o.outcome == "closed" for o in outcomes)
        text = f"{n} upgrades with one ticket: {opened} accepted, {late} 101-then-close"
        if any(o.outcome == "error" for o in outcomes):
            raise _Inconclusive(text + ", some got no answer")
        if opened > 1:
            return Status.FAIL, text
        if opened == 0:
            raise _Inconclusive(text + " (none accepted)")
        return (Status.WARN if late else Status.PASS), text

    def _indistinguishable(self, url: str, replayed: list[probe.Upgrade]) -> tuple[Status, str]:
        cfg = self.config
        unknown = self.session.upgrade(url, origin=cfg.origin, ticket=new_ticket())
        malformed = self.session.upgrade(url, origin=cfg.origin, ticket="not-a-ticket")
        seen = {"replayed": replayed[0], "unknown": unknown, "malformed": malformed}
        for name, outcome in seen.items():
            if outcome.outcome != "refused":
                raise _Inconclusive(f"{name} ticket not refused: {outcome.describe()}")
        shapes = {(o.status, o.body) for o in seen.values()}
        text = ", ".join(f"{n}: HTTP {o.status} ({len(o.body)}-byte body)" for n, o in seen.items())
        return (Status.PASS if len(shapes) == 1 else Status.FAIL), text

    def _prefetch(self, url: str, audience: str | None) -> tuple[Status, str]:
        ticket = self.fresh_ticket(audience)
        parts = urlsplit(url)
        scheme = "https" if parts.scheme == "wss" else "http"
        query = (parts.query + "&" if parts.query else "") + f"ticket={ticket}"
        plain = urlunsplit((scheme, parts.netloc, parts.path, query, ""))
        get = self.session.http(plain, headers=[("Origin", self.config.origin)])
        after = self.session.upgrade(url, origin=self.config.origin, ticket=ticket)
        text = f"plain GET: {_status(get)}; upgrade with the same ticket: {after.describe()}"
        if after.outcome == "accepted":
            return Status.PASS, text
        if after.outcome == "error":
            raise _Inconclusive(text)
        return Status.FAIL, text

    def _echo(self, url: str, audience: str | None) -> tuple[Status, str]:
        ticket = self.fresh_ticket(audience)
        outcome = self.session.upgrade(
            url, origin=self.config.origin, ticket=ticket, transport="subprotocol"
        )
        if outcome.outcome == "error":
            raise _Inconclusive(outcome.describe())
        leaked = [n for n, v in outcome.headers if ticket in v]
        if ticket.encode() in outcome.body:
            leaked.append("body")
        selected = probe.header(outcome.headers, "sec-websocket-protocol")
        if leaked:
            return Status.FAIL, f"the ticket is echoed in {', '.join(leaked)}"
        return Status.PASS, f"{outcome.describe()}, selected subprotocol {selected!r}"

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
        seen = [f"{plain}: {_status(r)}, no ticket"]
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
            raise _Inconclusive(f"metrics: {_status(r)}")
        found = _METRIC.search(r.body.decode("utf-8", "replace"))
        return float(found.group(1)) if found else None

    def _replay_metric(self, url: str) -> tuple[Status, str]:
        before = self._scrape()
        self._replay(url, self.config.audience_of(0), [])
        after = self._scrape()
        if after is None:  # e.g. the service's metrics, when the replay was the WS tier's
            raise _Inconclusive(
                'the target does not expose ticketd_redemptions_total{outcome="replayed"}'
            )
        before = before or 0.0
        text = f"replayed went from {before:g} to {after:g} after one replay"
        return (Status.PASS if after > before else Status.FAIL), text

    def _logout(self, url: str) -> tuple[Status, str]:
        opened = self.session.open_socket(url, self.fresh_ticket(self.config.audience_of(0)))
        if not isinstance(opened, probe.OpenSocket):
            raise _Inconclusive(f"could not open a socket: {opened.describe()}")
        try:
            assert self.config.logout_url is not None
            started = time.monotonic()
            r = self.session.http(
                self.config.logout_url,
                "POST",
                headers=[("Origin", self.config.origin), *self._cookie_header()],
            )
            if not 200 <= r.status < 400:
                raise _Inconclusive(f"logout answered {_status(r)}: the target does not expose it")
            code = opened.wait_close(1.0)
            elapsed = time.monotonic() - started
        finally:
            opened.close()
        if code == 4403:
            return Status.PASS, f"closed with 4403 {elapsed * 1000:.0f} ms after logout"
        if code == "open":
            return Status.FAIL, "the socket was still open 1 s after logout"
        return Status.WARN, f"closed with {code} (not 4403) {elapsed * 1000:.0f} ms after logout"


def _status(r: probe.HttpResponse) -> str:
    return f"HTTP {r.status}" if r.status else f"no answer ({r.error})"


def _mint_refused(r: probe.HttpResponse, ticket: str | None, allowed: str) -> tuple[Status, str]:
    """A refusal passes; so does an ACAO naming the allowed origin (it lets the app read it)."""
    if r.status == 0:
        raise _Inconclusive(_status(r))
    acao = r.header("access-control-allow-origin")
    if ticket is not None:
        return Status.FAIL, f"{_status(r)}: a ticket was minted ({ticket})"
    if 200 <= r.status < 300:
        return Status.FAIL, f"{_status(r)}: accepted (no ticket in the body)"
    if acao is not None and acao != allowed:
        return Status.FAIL, f"{_status(r)} but Access-Control-Allow-Origin {acao!r}"
    return Status.PASS, f"{_status(r)}, no Access-Control-Allow-Origin for it"


def _no_wildcard(responses: list[probe.HttpResponse]) -> tuple[Status, str]:
    wild = [r for r in responses if r.header("access-control-allow-origin") == "*"]
    if not wild:
        return Status.PASS, f"none of {len(responses)} mint responses had ACAO '*'"
    creds = any(
        (r.header("access-control-allow-credentials") or "").lower() == "true" for r in wild
    )
    text = f"{len(wild)} of {len(responses)} mint responses had ACAO '*'"
    return Status.FAIL, text + (" with Access-Control-Allow-Credentials: true" if creds else "")


def _ticket_headers(r: probe.HttpResponse) -> tuple[Status, str]:
    problems = []
    if "no-store" not in (r.header("cache-control") or "").lower():
        problems.append("no Cache-Control: no-store")
    if not _JSON.match(r.header("content-type") or ""):
        problems.append(f"Content-Type {r.header('content-type')!r}")
    if (r.header("x-content-type-options") or "").lower() != "nosniff":
        problems.append("no X-Content-Type-Options: nosniff")
    if problems:
        return Status.FAIL, ", ".join(problems)
    return Status.PASS, "no-store, application/json, nosniff"
