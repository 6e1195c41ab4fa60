"""What to do about a replayed ticket: the policies, the grace rule, the observer hook. No I/O.

A replay (:mod:`ticketd.tombstones`) is always refused with ``invalid``, the answer an
unknown ticket gets. What else happens is the policy (``TICKETD_ON_REPLAY`` for the
service, ``on_replay=`` for a verifier):

- ``alert`` (default): log it, count it, call the observers (the webhook) — nothing
  else;
- ``close_first``: also revoke the connection the ticket opened first (kind
  ``connection``; its id is derived from the ticket,
  :func:`~ticketd.tombstones.connection_id`, and the subject comes from the settled
  tombstone), so every WebSocket process closes it with 4403: one of the two holders
  of the ticket was not meant to have it;
- ``revoke_session``: also revoke the login the ticket was minted from (kind
  ``session``; a ticket without a session falls back to ``close_first``).

The active policies ignore a replay **from the same client within the grace**
(:data:`DEFAULT_REPLAY_GRACE`): a proxy that retries an upgrade is not an attack.

``revoke_session`` is opt-in because it hands a lever to whoever holds an old ticket:
a ticket leaked from a log or a proxy, replayed within its TTL, would log its user
out. ``close_first`` costs the same holder only one socket, which the browser client
reconnects with a fresh ticket.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import replace

from .exceptions import Detail, TicketError, TicketRejected
from .revocation import Revocation
from .tickets import Claims
from .tombstones import Replay

__all__ = [
    "DEFAULT_REPLAY_GRACE",
    "RedemptionObserver",
    "ReplayPolicy",
    "action_for",
    "is_retry",
    "notify",
    "outcome_of",
    "replay_fields",
    "replay_policy",
    "responded",
    "revocation_for",
]

_logger = logging.getLogger("ticketd.replay")

DEFAULT_REPLAY_GRACE = 2.0
"""Seconds within which a replay from the same client counts as a retry."""


class ReplayPolicy(enum.StrEnum):
    """What a verifier does about a replay beyond refusing it (values are stable)."""

    ALERT = "alert"
    CLOSE_FIRST = "close_first"
    REVOKE_SESSION = "revoke_session"


def replay_policy(value: object) -> ReplayPolicy:
    """``value`` as a :class:`ReplayPolicy`; ``ValueError`` naming the choices otherwise."""
    if isinstance(value, str):
        for policy in ReplayPolicy:
            if value == policy.value:
                return policy
    choices = ", ".join(p.value for p in ReplayPolicy)
    raise ValueError(f"unknown replay policy (choose one of {choices})")


def is_retry(replay: Replay, grace: float) -> bool:
    """A replay from the same client within ``grace`` seconds of the first use."""
    return replay.same_client and replay.since_first_use_ms <= grace * 1000


def action_for(replay: Replay, policy: ReplayPolicy, grace: float) -> str:
    """The action a policy takes: ``none``, ``ignored_retry``, ``no_target`` (the first
    use was refused, so there is nothing to close), ``close_first`` or ``revoke_session``."""
    if policy is ReplayPolicy.ALERT:
        return "none"
    if is_retry(replay, grace):
        return "ignored_retry"
    if replay.subject is None:
        return "no_target"
    if policy is ReplayPolicy.REVOKE_SESSION and replay.session is not None:
        return "revoke_session"
    return "close_first"


def revocation_for(replay: Replay, action: str, *, at_ms: int) -> Revocation | None:
    """The revocation an action writes (``None``: the action writes nothing)."""
    if replay.subject is None:
        return None
    if action == "close_first":
        return Revocation("connection", replay.subject, at_ms, connection=replay.connection)
    if action == "revoke_session" and replay.session is not None:
        return Revocation("session", replay.subject, at_ms, session=replay.session)
    return None


def responded(rejection: TicketRejected, action: str, *, grace: float) -> TicketRejected:
    """``rejection`` with its replay's ``action`` and ``retry`` filled in."""
    if rejection.replay is None:
        return rejection
    replay = replace(rejection.replay, action=action, retry=is_retry(rejection.replay, grace))
    return TicketRejected(
        rejection.reason,
        ticket_hash=rejection.ticket_hash,
        detail=rejection.detail,
        replay=replay,
    )


def outcome_of(result: Claims | BaseException) -> str:
    """The ``outcome`` label of a redeem: ``ok``, ``replayed``, a reason, ``store_unavailable``."""
    if isinstance(result, Claims):
        return "ok"
    if isinstance(result, TicketRejected):
        return "replayed" if result.detail is Detail.REPLAYED else result.reason.value
    if isinstance(result, TicketError):
        return "store_unavailable"
    return "error"


class RedemptionObserver:
    """Told about every redeem a verifier finishes (``observers=`` of a verifier).

    ``outcome`` is :func:`outcome_of`'s label; ``rejection`` the refusal (``None`` for
    ``ok`` and ``store_unavailable``), with ``rejection.replay`` for a replay. Called
    on the redeeming task or thread: it must not block (queue, do not send).
    """

    def redeemed(self, outcome: str, rejection: TicketRejected | None) -> None:
        """One redeem finished."""


def replay_fields(replay: Replay | None) -> str:
    """A replay's facts for a log line (``""`` for no replay): nothing secret in them."""
    if replay is None:
        return ""
    return (
        f" since_first_use_ms={replay.since_first_use_ms}"
        f" same_client={'yes' if replay.same_client else 'no'}"
        f" retry={'yes' if replay.retry else 'no'}"
        f" action={replay.action}"
        f" subject={(replay.subject or '-')[:8]}"
    )


def notify(observers: Sequence[RedemptionObserver], result: Claims | TicketError) -> None:
    """Tell each observer; one that raises is logged and skipped, never fails the redeem."""
    rejection = result if isinstance(result, TicketRejected) else None
    outcome = outcome_of(result)
    for observer in observers:
        try:
            observer.redeemed(outcome, rejection)
        except Exception:
            _logger.exception("redemption observer %s failed", type(observer).__name__)
