"""The upgrade checks: CSWSH, Origin binding, single use, and what the handshake reveals."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from ..tickets import new_ticket
from . import probe
from .base import FOREIGN_ORIGIN, AuditBase, Inconclusive, grade, http_status, lookalikes, worst
from .catalog import Status

__all__ = ["UpgradeChecks"]


class UpgradeChecks(AuditBase):
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
            raise Inconclusive(f"a valid ticket did not open the socket: {outcome.describe()}")

        self.run_check("control.upgrade", control, url)

        def refused(**kw: object) -> Callable[[], tuple[Status, str]]:
            return lambda: grade(self.session.upgrade(url, **kw))  # type: ignore[arg-type]

        self.run_check("upgrade.no_ticket", refused(origin=cfg.origin, cookie=False), url)
        self.run_check("upgrade.cookie_only", refused(origin=cfg.origin), url)
        self.run_check("upgrade.cswsh", refused(origin=FOREIGN_ORIGIN), url)
        burned: list[str] = []

        def with_origin(origin: str | None) -> Callable[[], tuple[Status, str]]:
            def body() -> tuple[Status, str]:
                ticket = self.fresh_ticket(audience)
                burned.append(ticket)
                return grade(self.session.upgrade(url, origin=origin, ticket=ticket))

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
                return worst(grades)

            self.run_check("upgrade.origin.lookalike", lookalike, url)

            def burns() -> tuple[Status, str]:
                status, text = grade(self.session.upgrade(url, origin=cfg.origin, ticket=burned[0]))
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
                lambda: grade(
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
            raise Inconclusive(f"first use not accepted: {first.describe()}")
        second = self.session.upgrade(url, origin=self.config.origin, ticket=ticket)
        keep.append(second)
        status, text = grade(second)
        return status, f"second use: {text}"

    def _parallel(self, url: str, audience: str | None) -> tuple[Status, str]:
        n = self.config.parallel
        outcomes = self.session.upgrade_parallel(url, self.fresh_ticket(audience), n)
        opened = sum(o.outcome == "accepted" for o in outcomes)
        late = sum(o.outcome == "closed" for o in outcomes)
        text = f"{n} upgrades with one ticket: {opened} accepted, {late} 101-then-close"
        if any(o.outcome == "error" for o in outcomes):
            raise Inconclusive(text + ", some got no answer")
        if opened > 1:
            return Status.FAIL, text
        if opened == 0:
            raise Inconclusive(text + " (none accepted)")
        return (Status.WARN if late else Status.PASS), text

    def _indistinguishable(self, url: str, replayed: list[probe.Upgrade]) -> tuple[Status, str]:
        cfg = self.config
        unknown = self.session.upgrade(url, origin=cfg.origin, ticket=new_ticket())
        malformed = self.session.upgrade(url, origin=cfg.origin, ticket="not-a-ticket")
        seen = {"replayed": replayed[0], "unknown": unknown, "malformed": malformed}
        for name, outcome in seen.items():
            if outcome.outcome != "refused":
                raise Inconclusive(f"{name} ticket not refused: {outcome.describe()}")
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
        text = f"plain GET: {http_status(get)}; upgrade with the same ticket: {after.describe()}"
        if after.outcome == "accepted":
            return Status.PASS, text
        if after.outcome == "error":
            raise Inconclusive(text)
        return Status.FAIL, text

    def _echo(self, url: str, audience: str | None) -> tuple[Status, str]:
        ticket = self.fresh_ticket(audience)
        outcome = self.session.upgrade(
            url, origin=self.config.origin, ticket=ticket, transport="subprotocol"
        )
        if outcome.outcome == "error":
            raise Inconclusive(outcome.describe())
        leaked = [n for n, v in outcome.headers if ticket in v]
        if ticket.encode() in outcome.body:
            leaked.append("body")
        selected = probe.header(outcome.headers, "sec-websocket-protocol")
        if leaked:
            return Status.FAIL, f"the ticket is echoed in {', '.join(leaked)}"
        return Status.PASS, f"{outcome.describe()}, selected subprotocol {selected!r}"
