"""Request and response bodies of the HTTP API (also the source of the OpenAPI spec)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ClaimsBody",
    "MintRequest",
    "MintResponse",
    "ProblemBody",
    "RedeemRequest",
    "RevocationRequest",
    "RevocationResponse",
]


class MintRequest(BaseModel):
    """Optional body of ``POST /v1/tickets``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    audience: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Target service; defaults to the first configured audience.",
    )
    claims: dict[str, Any] | None = Field(
        default=None, description="Small extra claims (JSON object, at most 1 KiB serialised)."
    )


class MintResponse(BaseModel):
    ticket: str = Field(description="Single-use secret: pass it to the WebSocket handshake.")
    expires_in: int = Field(description="Seconds until the ticket expires.")
    expires_at: float = Field(description="Expiry as seconds since the epoch.")
    audience: str


class RedeemRequest(BaseModel):
    """Body of ``POST /v1/tickets/redeem`` (WebSocket servers not written in Python)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    ticket: str = Field(max_length=256)
    origin: str | None = Field(
        default=None, max_length=2048, description="Origin header of the handshake."
    )
    audience: str | None = Field(
        default=None,
        max_length=128,
        description="The redeeming service's audience; required when ticketd serves several.",
    )
    client_ip: str | None = Field(default=None, max_length=64)


class ClaimsBody(BaseModel):
    subject: str | int
    origin: str
    audience: str
    issued_at: float
    expires_at: float
    client_ip: str | None
    extra: dict[str, Any]
    session: str | None = None
    auth_at: float | None = None
    session_expires_at: float | None = None


class RevocationRequest(BaseModel):
    """Body of ``POST /v1/revocations``: a subject, and at most one of session / connection."""

    model_config = ConfigDict(extra="forbid", strict=True)

    subject: str | int = Field(description="The user: every session unless narrowed below.")
    session: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Revoke only this session (the app's session id, or 't' + cookie signing "
        "time for stateless cookies).",
    )
    except_session: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Revoke every session of the subject but this one (log out other devices).",
    )
    connection: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Revoke one live connection (its registry id).",
    )
    reason: str | None = Field(
        default=None, max_length=200, description="Free text for the logs (truncated to 64)."
    )


class RevocationResponse(BaseModel):
    kind: str = Field(description="subject, session or connection")
    revoked_at: float = Field(description="When the revocation took effect, seconds since epoch.")


class ProblemBody(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str
    title: str
    status: int
    code: str
    request_id: str | None = None
