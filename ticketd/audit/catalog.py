"""Every check the audit knows: a stable id, a severity, what it proves and how to fix it.

Ids are part of the audit's contract (JSON, SARIF rule ids, JUnit test names):
a check may be added, never renamed. ``needs`` names the positive controls a
check depends on: when one did not pass, the check is inconclusive, never a pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["CATALOG", "CONTROLS", "Check", "Severity", "Status", "check"]


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 - a status, not a password
    FAIL = "fail"
    WARN = "warn"
    INCONCLUSIVE = "inconclusive"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Check:
    id: str
    severity: Severity
    title: str
    remediation: str
    needs: tuple[str, ...] = ()


_MINT = ("control.mint",)
_UPGRADE = ("control.mint", "control.upgrade")
_S = Severity

CATALOG: tuple[Check, ...] = (
    Check(
        "control.mint",
        _S.INFO,
        "A mint from the allowed Origin with the session cookie returns a ticket",
        "Check --mint-url, --origin and --cookie: without a working mint nothing can be tested.",
    ),
    Check(
        "control.upgrade",
        _S.INFO,
        "A fresh ticket from the allowed Origin opens the socket",
        "Check --socket-url and --audience: the dependent upgrade checks need one valid upgrade.",
        _MINT,
    ),
    Check(
        "mint.origin.foreign",
        _S.CRITICAL,
        "Mint refuses a foreign Origin, without Access-Control-Allow-Origin",
        "Check Origin in the mint handler against an exact allowlist (TICKETD_ALLOWED_ORIGINS); "
        "never reflect the request's Origin into CORS headers.",
        _MINT,
    ),
    Check(
        "mint.origin.null",
        _S.HIGH,
        "Mint refuses Origin: null",
        "Refuse the opaque origin 'null' (sandboxed frames, file: pages, some redirects).",
        _MINT,
    ),
    Check(
        "mint.origin.missing",
        _S.HIGH,
        "Mint refuses a request without Origin",
        "Require exactly one Origin header on the mint; do not treat a missing one as same-origin.",
        _MINT,
    ),
    Check(
        "mint.origin.lookalike",
        _S.CRITICAL,
        "Mint refuses look-alike Origins (prefix, suffix, scheme)",
        "Compare the whole serialised origin exactly; wildcards must be anchored to one label.",
        _MINT,
    ),
    Check(
        "mint.fetch_metadata",
        _S.MEDIUM,
        "Mint refuses Sec-Fetch-Site: cross-site",
        "Refuse mints with Sec-Fetch-Site: cross-site (defence in depth behind the Origin check).",
        _MINT,
    ),
    Check(
        "mint.method",
        _S.MEDIUM,
        "Mint refuses methods other than POST",
        "Serve the mint on POST only: a GET can be triggered by any page (img, link, navigation).",
        _MINT,
    ),
    Check(
        "mint.content_type",
        _S.HIGH,
        "Mint refuses text/plain bodies (CORS-simple requests)",
        "Accept only application/json bodies: text/plain is sent cross-site without a preflight.",
        _MINT,
    ),
    Check(
        "mint.cookie",
        _S.HIGH,
        "Mint refuses a request without the session cookie",
        "Mint only for a verified session (TICKETD_SESSION_* must match the app's cookie).",
        _MINT,
    ),
    Check(
        "mint.preflight",
        _S.HIGH,
        "Preflight answers the exact allowed origin only",
        "Answer CORS preflights only for allowed origins, with that exact origin, never '*'.",
        _MINT,
    ),
    Check(
        "mint.cors.wildcard",
        _S.HIGH,
        "No mint response carries Access-Control-Allow-Origin: *",
        "Remove any CORS layer in front of the mint that answers '*' (with credentials or not).",
        _MINT,
    ),
    Check(
        "mint.response_headers",
        _S.MEDIUM,
        "The ticket comes with Cache-Control: no-store, JSON and nosniff",
        "Send Cache-Control: no-store, Content-Type: application/json and "
        "X-Content-Type-Options: nosniff with every ticket (and keep proxies from caching it).",
        _MINT,
    ),
    Check(
        "upgrade.no_ticket",
        _S.HIGH,
        "An upgrade without a ticket is refused before 101",
        "Put the ticket check (e.g. ticketd's adapter) on every WebSocket route, before the 101.",
        _UPGRADE,
    ),
    Check(
        "upgrade.cookie_only",
        _S.CRITICAL,
        "A session cookie alone never opens a socket",
        "Authenticate upgrades with the ticket only; ignore the session cookie on the socket.",
        _UPGRADE,
    ),
    Check(
        "upgrade.cswsh",
        _S.CRITICAL,
        "Cross-site WebSocket hijacking: a foreign Origin with the cookie and no ticket is refused",
        "Require a ticket on every upgrade and check the Origin: a cookie is sent by any site.",
        _UPGRADE,
    ),
    Check(
        "upgrade.origin.foreign",
        _S.CRITICAL,
        "A valid ticket presented from a foreign Origin is refused before 101",
        "Redeem with the handshake's Origin (verifier.redeem(ticket, origin=...)); "
        "make sure no proxy strips or rewrites Origin.",
        _UPGRADE,
    ),
    Check(
        "upgrade.origin.null",
        _S.HIGH,
        "A valid ticket presented with Origin: null is refused before 101",
        "Pass the handshake's Origin to the verifier unchanged; 'null' never matches.",
        _UPGRADE,
    ),
    Check(
        "upgrade.origin.missing",
        _S.HIGH,
        "A valid ticket presented without Origin is refused before 101",
        "Pass the handshake's Origin to the verifier; a missing Origin must not match.",
        _UPGRADE,
    ),
    Check(
        "upgrade.origin.lookalike",
        _S.CRITICAL,
        "A valid ticket presented from a look-alike Origin is refused before 101",
        "Compare origins exactly (the verifier does); do not pre-filter with startswith/endswith "
        "and then redeem with a fixed origin.",
        _UPGRADE,
    ),
    Check(
        "upgrade.origin.burns",
        _S.HIGH,
        "A ticket presented from a foreign Origin is burned",
        "Consume the ticket before checking its bindings (one atomic GETDEL), so a stolen "
        "ticket cannot be retried from the right origin.",
        (*_UPGRADE, "upgrade.origin.foreign"),
    ),
    Check(
        "upgrade.replay",
        _S.CRITICAL,
        "A ticket works once: a replay is refused",
        "Redeem with one atomic single-key command (GETDEL); never GET then DEL, never cache.",
        _UPGRADE,
    ),
    Check(
        "upgrade.parallel",
        _S.HIGH,
        "Parallel upgrades with one ticket: exactly one 101",
        "Make the redeem atomic across every WebSocket process (one Redis, GETDEL).",
        _UPGRADE,
    ),
    Check(
        "upgrade.indistinguishable",
        _S.LOW,
        "Unknown, replayed and malformed tickets get identical refusals",
        "Answer every ticket refusal with the same status class and body; keep reasons in logs.",
        (*_UPGRADE, "upgrade.replay"),
    ),
    Check(
        "upgrade.prefetch",
        _S.MEDIUM,
        "A plain GET with a ticket does not consume it",
        "Redeem only on a real WebSocket upgrade (link prefetchers and scanners send plain GETs).",
        _UPGRADE,
    ),
    Check(
        "upgrade.subprotocol_echo",
        _S.HIGH,
        "The handshake response never echoes the ticket",
        "Select 'ticketd.v1' (select_subprotocol), never the 'ticket.<T>' token; "
        "do not copy request headers into the response.",
        _UPGRADE,
    ),
    Check(
        "upgrade.audience",
        _S.HIGH,
        "A ticket for one audience is refused at another socket",
        "Give each WebSocket service its own audience and redeem with it "
        "(TicketVerifier(audience=...) or ticket_auth(verifier, audience=...)).",
        _UPGRADE,
    ),
    Check(
        "transport.plaintext",
        _S.HIGH,
        "No plaintext http:// or ws:// in production",
        "Serve the mint over https:// and the socket over wss://; refuse or redirect plaintext.",
        _MINT,
    ),
    Check(
        "transport.hsts",
        _S.MEDIUM,
        "The mint sends Strict-Transport-Security",
        "Send Strict-Transport-Security: max-age=31536000 for the mint host (at the TLS proxy).",
        _MINT,
    ),
    Check(
        "cookie.attributes",
        _S.MEDIUM,
        "The session cookie is HttpOnly, SameSite=Lax/Strict and Secure",
        "Set the session cookie with HttpOnly, SameSite=Lax (or Strict) and Secure.",
    ),
    Check(
        "after.replay_metric",
        _S.LOW,
        'A replay shows up as ticketd_redemptions_total{outcome="replayed"}',
        "Expose the redemption metrics of the WebSocket tier and alert on replays.",
        (*_UPGRADE, "upgrade.replay"),
    ),
    Check(
        "after.logout",
        _S.HIGH,
        "Logging out closes an open socket within 1 s with 4403",
        "Revoke the session at logout (POST /v1/revocations) and run the adapters' "
        "revocation feed so open sockets close with 4403.",
        _UPGRADE,
    ),
)

CONTROLS = frozenset(c.id for c in CATALOG if c.id.startswith("control."))
_BY_ID = {c.id: c for c in CATALOG}


def check(check_id: str) -> Check:
    """The catalog entry for ``check_id`` (``KeyError`` if there is none)."""
    return _BY_ID[check_id]
