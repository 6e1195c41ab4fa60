"""The public API is exactly what each module's ``__all__`` says (pinned here).

A name defined at the top of a ticketd module is either in its ``__all__`` or starts
with ``_``, never a third kind; changing an ``__all__`` means changing this file,
which is the review point for an API change.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import types
from pathlib import Path

import pytest

import ticketd

PACKAGE = Path(ticketd.__file__).parent
MODULES = ["ticketd", *(m.name for m in pkgutil.walk_packages(ticketd.__path__, "ticketd."))]

EXPECTED: dict[str, set[str]] = {
    "ticketd": {
        "BlockingTicketStore", "BlockingTicketVerifier", "Claims", "Detail", "InvalidOrigin",
        "InvalidSubject", "IssuedTicket", "OriginAllowlist", "PresentedTicket",
        "REJECTION_STATUS", "Reason", "RedisOptions", "StoreOperation", "StoreUnavailable",
        "TicketError", "TicketIssuer", "TicketRejected", "TicketStore", "TicketVerifier",
        "__version__", "canonical_origin", "extract_ticket", "is_websocket_upgrade",
        "request_origin",
    },
    "ticketd.audit": {
        "AuditConfig", "CATALOG", "Check", "Report", "Result", "SCHEMA_ID", "Severity", "Status",
        "render", "run_audit",
    },
    "ticketd.audit.__main__": set(),
    "ticketd.audit.base": {
        "AuditBase", "FOREIGN_ORIGIN", "Inconclusive", "grade", "http_status", "lookalikes",
        "worst",
    },
    "ticketd.audit.catalog": {"CATALOG", "CONTROLS", "Check", "Severity", "Status", "check"},
    "ticketd.audit.cli": {"ACK_FLAG", "DESCRIPTION", "add_parser", "config_from", "main", "run"},
    "ticketd.audit.mint_checks": {"MintChecks"},
    "ticketd.audit.probe": {
        "Headers", "HttpResponse", "OpenSocket", "Upgrade", "UpgradeOutcome", "header",
        "http_request", "open_socket", "upgrade",
    },
    "ticketd.audit.report": {
        "EXIT_FAIL", "EXIT_INCONCLUSIVE", "EXIT_OK", "EXIT_USAGE", "Report", "Result", "SCHEMA_ID",
        "render", "to_dict", "to_json", "to_junit", "to_sarif", "to_text",
    },
    "ticketd.audit.runner": {"Audit", "run_audit"},
    "ticketd.audit.selftest": {"EXPECTED", "real_ticketd", "self_test", "weak_config"},
    "ticketd.audit.session": {
        "AuditConfig", "BudgetExhausted", "Redactor", "Session", "is_loopback",
    },
    "ticketd.audit.upgrade_checks": {"UpgradeChecks"},
    "ticketd.audit.weak": {"ALLOWED_ORIGIN", "AUDIENCES", "WEAKNESSES", "WeakServer"},
    "ticketd.batching": {
        "Command", "CommandBatcher", "direct_pool", "exchange", "send_batch", "strand_none",
    },
    "ticketd.roundtrip": {"RoundTrip", "Script", "send_with_scripts"},
    "ticketd.binding": {"canonical_ip", "check_binding"},
    "ticketd.connection": {
        "RedisOptions", "async_client", "client_address", "client_kwargs",
        "client_socket_timeout", "sync_client",
    },
    "ticketd.demo": {"AUDIENCE", "FOREIGN_ORIGIN", "build_demo", "demo_origins", "main", "run"},
    "ticketd.exceptions": {
        "Detail", "InvalidOrigin", "InvalidSubject", "REJECTION_STATUS", "Reason",
        "SessionExpiring", "StoreOperation", "StoreUnavailable", "TicketError", "TicketRejected",
    },
    "ticketd.handshake": {
        "HeaderPairs", "PresentedTicket", "QUERY_PARAMETER", "SUBPROTOCOL",
        "SUBPROTOCOL_TICKET_PREFIX", "TICKET_MENTION", "Transport", "extract_ticket",
        "header_values",
        "is_websocket_upgrade", "request_origin",
    },
    "ticketd.hosts": {
        "DUPLICATE_HOST", "HOST_NOT_ALLOWED", "HostAllowlist", "HostPattern", "HostRefusal",
        "check_host",
    },
    "ticketd.integrations": set(),
    "ticketd.integrations._hosts": {
        "HOST_DENIAL_BODY", "HOST_STATUS", "HostDenied", "allowlist_of", "refuse_host",
    },
    "ticketd.integrations._common": {
        "Admitted", "DENIAL_BODY", "Denied", "UNAVAILABLE_STATUS", "admit", "admit_blocking",
        "is_ticket_subprotocol", "missing_extra", "present", "redeem", "redeem_blocking",
    },
    "ticketd.integrations._live": {
        "AsgiLive", "LIVE_ATTRIBUTE", "LIVE_KEY", "aiohttp_closer", "hold", "hold_blocking",
        "needs_closer", "starlette_closer", "websockets_closer", "websockets_sync_closer",
    },
    "ticketd.integrations.aiohttp": {
        "CLAIMS_KEY", "LIVE_KEY", "PROTOCOLS", "accept_websocket", "check_ticket",
    },
    "ticketd.integrations.asgi": {
        "ASGIApp", "CLAIMS_KEY", "Message", "Receive", "STATE_KEY", "SUBPROTOCOL_KEY", "Scope",
        "Send", "TicketMiddleware", "admitted_scope", "check_scope", "claims_from_scope", "deny",
        "handshake_headers", "ticket_subprotocol",
    },
    "ticketd.integrations.channels": {
        "TicketAuthMiddleware", "TicketAuthMiddlewareStack", "claims_from_scope",
        "ticket_subprotocol",
    },
    "ticketd.integrations.starlette": {
        "TicketDenied", "install", "require_ticket", "ticket_denied_handler",
    },
    "ticketd.integrations.websockets": {
        "CLAIMS_ATTRIBUTE", "MISPLACED_HOOK", "check_before_redeem", "claims_of", "finish",
        "peer_ip", "respond", "select_subprotocol", "ticket_auth",
    },
    "ticketd.integrations.websockets_sync": {"claims_of", "select_subprotocol", "ticket_auth"},
    "ticketd.issuer": {
        "DEFAULT_KEY_PREFIX", "DEFAULT_TTL", "IssuedTicket", "MAX_AUDIENCE_LENGTH",
        "MAX_EXTRA_BYTES", "MAX_SAFE_INTEGER", "MAX_SUBJECT_LENGTH", "MAX_TTL",
        "MIN_SESSION_REMAINING", "MIN_TTL", "PreparedTicket", "TicketIssuer",
        "validate_audience", "validate_extra", "validate_subject",
    },
    "ticketd.liveness": {
        "BlockingRevocationWatch", "RevocationWatch", "WatchObserver", "WatchStats",
    },
    "ticketd.registry": {
        "CLOSE_TIMEOUT", "Closer", "LiveConnection", "LiveConnections", "REVOKED_CLOSE_CODE",
        "SESSION_ENDED_CLOSE_CODE", "STALE_CLOSE_CODE",
    },
    "ticketd.lifetime": {
        "JITTER_FRACTION", "MAX_JITTER", "MAX_LIFETIME", "RECHECK_INTERVAL", "SESSION_EXPIRED",
        "ConnectionLifetime", "Deadline", "Jitter", "LifetimeObserver", "deadline_of",
    },
    "ticketd.origins": {
        "DEFAULT_PORTS", "MAX_ORIGIN_LENGTH", "OriginAllowlist", "OriginPattern",
        "canonical_origin",
    },
    "ticketd.revocation": {
        "CONNECTION_ID", "EVENT_VERSION", "Kind", "Revocation", "RevocationState", "STREAM_MAXLEN",
        "SessionRef", "Target", "decode_event", "decode_state", "encode_event", "is_revoked",
        "matches", "session_hash", "session_ref", "signed_at", "state_keys", "state_value",
        "stream_key", "subject_id", "target_of",
    },
    "ticketd.revocation_metrics": {
        "PROPAGATION_BUCKETS", "PrometheusLifetimeObserver", "PrometheusWatchObserver",
    },
    "ticketd.redemption_metrics": {"PrometheusRedemptionObserver", "replay_kind"},
    "ticketd.replay": {
        "DEFAULT_REPLAY_GRACE", "RedemptionObserver", "ReplayPolicy", "action_for", "is_retry",
        "notify", "outcome_of", "replay_fields", "replay_policy", "responded", "revocation_for",
    },
    "ticketd.takes": {
        "acknowledged", "as_bytes", "replicated_take", "take_command", "take_options",
    },
    "ticketd.tombstones": {
        "TOMBSTONE_VERSION", "Replay", "Tombstone", "client_fingerprint", "connection_id",
        "decode_tombstone", "encode_tombstone", "first_use", "is_tombstone", "replay_of",
        "settled",
    },
    "ticketd.webhook": {
        "EVENT_TYPE", "ReplayWebhook", "check_url", "replay_payload", "sign", "signing_key",
        "verify",
    },
    "ticketd.revoker": {
        "BlockingRevoker", "DEFAULT_TTL", "Revoker", "StateRead", "check_revoked",
        "check_revoked_blocking",
    },
    "ticketd.redaction": {
        "DEFAULT_LOGGERS", "REDACTED", "TicketRedactionFilter", "install_redaction", "redact",
        "remove_redaction",
    },
    "ticketd.redemption": {"DEFAULT_LEEWAY", "Handshake", "TakeTicket", "decide", "ticket_to_take"},
    "ticketd.service": {"ConfigError", "Settings", "create_app", "load_settings"},
    "ticketd.service.app": {"create_app", "redis_options"},
    "ticketd.service.cli": {
        "DEV_ORIGINS", "add_demo_arguments", "app_from_environment", "build_parser", "main",
    },
    "ticketd.service.diagnostics": {
        "check_redeem_command", "check_store", "describe_failure", "redis_target",
        "warn_if_unreachable",
    },
    "ticketd.service.clientip": {"IPNetwork", "TrustedProxies"},
    "ticketd.service.logconfig": {
        "DenialResponseNoise", "JSONFormatter", "configure_logging", "logging_config",
    },
    "ticketd.service.metrics": {"LATENCY_BUCKETS", "Metrics"},
    "ticketd.service.mint": {"PROBLEM_CODES", "MintedResponse", "mint", "preflight"},
    "ticketd.service.mintplan": {"MintPlan", "Revoked"},
    "ticketd.service.openapi": {"render", "spec"},
    "ticketd.service.problems": {
        "MEDIA_TYPE", "PROBLEMS", "PROBLEM_TYPE_BASE", "Problem", "problem_response",
    },
    "ticketd.service.probes": {"READYZ_PROBLEM_CODES", "client_js", "livez", "metrics", "readyz"},
    "ticketd.service.rawroutes": {"RawEndpoint", "RawRoutes"},
    "ticketd.service.ratelimit": {
        "BUCKET_MS", "CLOCK_SKEW_MS", "LIMIT_SCRIPT", "Counter", "CounterPair", "Limited",
        "MintLimits", "Rate",
    },
    "ticketd.service.edge": {"RequestGuard", "is_canonical_path"},
    "ticketd.service.redeem": {
        "PROBLEM_CODES", "bearer_credential", "redeem", "service_request_body",
    },
    "ticketd.service.revocations": {"PROBLEM_CODES", "revoke", "session_state_read"},
    "ticketd.service.redis_url": {"redis_url_problem"},
    "ticketd.service.requests": {
        "MAX_BODY_BYTES", "ClientAddresses", "OriginCheck", "is_json", "read_body", "refuse",
        "request_id",
    },
    "ticketd.service.runtime": {"MAX_BODY_BYTES", "Service", "is_json", "redis_options"},
    "ticketd.service.schemas": {
        "ClaimsBody", "MintRequest", "MintResponse", "ProblemBody", "RedeemRequest",
        "RevocationRequest", "RevocationResponse",
    },
    "ticketd.service.sessioncache": {"MAX_ENTRIES", "MAX_HEADER_BYTES", "VerifiedCookies"},
    "ticketd.service.secret_strength": {"MIN_SECRET_BITS", "estimated_bits", "weakness"},
    "ticketd.service.server": {
        "BoundedH11Protocol", "BoundedHttpToolsProtocol", "DrainingServer", "HTTP_PARSERS",
        "bounded_http_protocol", "configure_header_limits",
    },
    "ticketd.service.settings": {
        "CommaList", "ConfigError", "ENV_PREFIX", "MIN_SECRET_BYTES", "PLACEHOLDER_WORDS",
        "Settings", "build_settings", "load_settings",
    },
    "ticketd.sessions": {
        "MAX_COOKIE_LENGTH", "SessionFormat", "SessionInvalid", "SessionReason",
        "SessionVerifier", "TICKETD_SALT", "cookie_values", "issue_session_cookie",
    },
    "ticketd.store": {
        "AsyncRedisLike", "BlockingTicketStore", "DEFAULT_DEADLINE", "MAX_ORPHANS",
        "StoreOptions", "SyncRedisLike", "TicketStore",
    },
    "ticketd.tickets": {
        "Claims", "JSONValue", "Subject", "TICKET_BYTES", "TICKET_LENGTH", "decode_record",
        "encode_record", "is_well_formed", "log_id", "new_ticket", "ticket_digest", "ticket_key",
    },
    "ticketd.verifier": {"BlockingTicketVerifier", "TicketVerifier"},
}  # fmt: skip


def _top_level_names(module: str) -> list[str]:
    """Names bound at the top of a module's source (defs, classes, assignments; not imports)."""
    path = PACKAGE.parent.joinpath(*module.split("."))
    source = (path / "__init__.py") if path.is_dir() else path.with_suffix(".py")
    names = []
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return names


def test_every_module_is_pinned() -> None:
    assert set(MODULES) == set(EXPECTED)


@pytest.mark.parametrize("module", MODULES)
def test_all_is_pinned_and_every_name_exists(module: str) -> None:
    imported = importlib.import_module(module)
    assert set(imported.__all__) == EXPECTED[module]
    assert len(imported.__all__) == len(set(imported.__all__))
    for name in imported.__all__:
        assert hasattr(imported, name), f"{module}.{name}"


@pytest.mark.parametrize("module", MODULES)
def test_every_name_is_exported_or_private(module: str) -> None:
    exported = set(importlib.import_module(module).__all__)
    third_kind = [
        n for n in _top_level_names(module) if not n.startswith("_") and n not in exported
    ]
    assert third_kind == [], f"{module}: export these or prefix them with _"


def test_top_level_package_exports_only_all() -> None:
    public = {
        name
        for name in dir(ticketd)
        if not name.startswith("_") and not isinstance(getattr(ticketd, name), types.ModuleType)
    }
    assert public - {"annotations"} == set(ticketd.__all__) - {"__version__"}
