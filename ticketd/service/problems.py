"""RFC 9457 problem responses with stable codes.

Every refusal of the service is one of :data:`PROBLEMS`. The body never echoes
the ticket, the cookie or the Origin; ``detail`` is fixed text per code.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import JSONResponse

__all__ = [
    "MEDIA_TYPE",
    "PROBLEMS",
    "PROBLEM_TYPE_BASE",
    "Problem",
    "problem_response",
]

PROBLEM_TYPE_BASE = "urn:ticketd:problem:"
MEDIA_TYPE = "application/problem+json"


@dataclass(frozen=True, slots=True)
class Problem:
    code: str
    status: int
    title: str


PROBLEMS: dict[str, Problem] = {
    p.code: p
    for p in [
        Problem("origin_not_allowed", 403, "Origin not allowed"),
        Problem("cross_site", 403, "Cross-site request refused"),
        Problem("unauthenticated", 401, "Session cookie missing or invalid"),
        Problem("unsupported_media_type", 415, "Body must be application/json"),
        Problem("body_too_large", 413, "Request body too large"),
        Problem("invalid_body", 400, "Request body is not valid"),
        Problem("unknown_audience", 400, "Audience not served by this ticketd"),
        Problem("rate_limited", 429, "Too many requests"),
        Problem("too_many_outstanding", 429, "Too many outstanding tickets"),
        Problem("store_unavailable", 503, "Ticket store unavailable"),
        Problem("method_not_allowed", 405, "Method not allowed"),
        Problem("not_found", 404, "Not found"),
        Problem("invalid_service_key", 401, "Service key missing or invalid"),
        Problem("invalid_authorization", 400, "Authorization header repeated or malformed"),
        Problem("redeem_disabled", 404, "Redeem endpoint disabled"),
        Problem("not_ready", 503, "Not ready"),
        Problem("internal_error", 500, "Internal error"),
        # Answered by ticketd serve's HTTP protocol before any route (see server.py).
        Problem("headers_too_large", 431, "Request headers too large"),
        Problem("header_timeout", 408, "Request headers not received in time"),
        # Every request, before routing (see edge.py).
        Problem("host_not_allowed", 421, "Host not served here"),
        Problem("duplicate_host", 400, "More than one Host header"),
        Problem("non_canonical_path", 400, "Request path is not in canonical form"),
        # Redeem outcomes, for trusted services only (see REJECTION_STATUS).
        Problem("missing", 401, "Ticket missing"),
        Problem("duplicate", 400, "Ticket given more than once"),
        Problem("malformed", 401, "Ticket malformed"),
        Problem("invalid", 401, "Ticket unknown, expired or already used"),
        Problem("origin_mismatch", 403, "Origin does not match the ticket"),
        Problem("audience_mismatch", 403, "Audience does not match the ticket"),
        Problem("ip_mismatch", 403, "Client address does not match the ticket"),
        Problem("bad_handshake", 400, "Not a WebSocket handshake"),
        Problem("revoked", 403, "Ticket revoked"),
        # Revocation (POST /v1/tickets refuses a revoked login; POST /v1/revocations).
        Problem("session_revoked", 401, "Session revoked: log in again"),
        # Session lifetime (POST /v1/tickets refuses a session about to expire).
        Problem("session_expiring", 401, "Session about to expire: log in again"),
        Problem("revocations_disabled", 404, "Revocations endpoint disabled"),
    ]
}


def problem_response(
    code: str,
    *,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    problem = PROBLEMS[code]
    body: dict[str, object] = {
        "type": PROBLEM_TYPE_BASE + problem.code,
        "title": problem.title,
        "status": problem.status,
        "code": problem.code,
    }
    if request_id:
        body["request_id"] = request_id
    all_headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    all_headers.update(headers or {})
    return JSONResponse(
        body, status_code=problem.status, headers=all_headers, media_type=MEDIA_TYPE
    )
