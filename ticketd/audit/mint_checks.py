"""The mint checks (CSRF, CORS, response headers) and the session cookie's attributes."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

from . import probe
from .base import FOREIGN_ORIGIN, AuditBase, Inconclusive, http_status, lookalikes, worst
from .catalog import Status

__all__ = ["MintChecks"]

_JSON = re.compile(r"^application/(?:[\w.+-]+\+)?json\b", re.I)


class MintChecks(AuditBase):
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
                f"login answered {http_status(response)} without a Set-Cookie for {name!r}",
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
            self.record(
                "control.mint", Status.INCONCLUSIVE, f"mint answered {http_status(control)}"
            )
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
            return worst(grades)

        self.run_check("mint.origin.lookalike", lookalike)
        cross = (("Sec-Fetch-Site", "cross-site"),)
        self.run_check("mint.fetch_metadata", refused(cfg.origin, extra=cross))

        def methods() -> tuple[Status, str]:
            graded = []
            for method in ("GET", "PUT"):
                status, text = refused(cfg.origin, method=method)()
                graded.append((status, f"{method}: {text}"))
            return worst(graded)

        self.run_check("mint.method", methods)
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
        return Status.PASS, f"foreign: {http_status(foreign)}, no ACAO; allowed: {how}"


def _mint_refused(r: probe.HttpResponse, ticket: str | None, allowed: str) -> tuple[Status, str]:
    """A refusal passes; so does an ACAO naming the allowed origin (it lets the app read it)."""
    if r.status == 0:
        raise Inconclusive(http_status(r))
    acao = r.header("access-control-allow-origin")
    if ticket is not None:
        return Status.FAIL, f"{http_status(r)}: a ticket was minted ({ticket})"
    if 200 <= r.status < 300:
        return Status.FAIL, f"{http_status(r)}: accepted (no ticket in the body)"
    if acao is not None and acao != allowed:
        return Status.FAIL, f"{http_status(r)} but Access-Control-Allow-Origin {acao!r}"
    return Status.PASS, f"{http_status(r)}, no Access-Control-Allow-Origin for it"


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
