"""Tests for ticketd.exceptions: the reason set, its HTTP mapping, the exception tree."""

from __future__ import annotations

import pytest

from ticketd.exceptions import (
    REJECTION_STATUS,
    InvalidOrigin,
    Reason,
    StoreUnavailable,
    TicketError,
    TicketRejected,
)

# Dashboards and alerts key on these values: changing one is a breaking change.
EXPECTED = {
    Reason.MISSING: ("missing", 401),
    Reason.DUPLICATE: ("duplicate", 400),
    Reason.MALFORMED: ("malformed", 401),
    Reason.INVALID: ("invalid", 401),
    Reason.ORIGIN_MISMATCH: ("origin_mismatch", 403),
    Reason.AUDIENCE_MISMATCH: ("audience_mismatch", 403),
    Reason.IP_MISMATCH: ("ip_mismatch", 403),
    Reason.BAD_HANDSHAKE: ("bad_handshake", 400),
    Reason.REVOKED: ("revoked", 403),
}


def test_reason_set_is_pinned() -> None:
    assert set(Reason) == set(EXPECTED)
    assert len(Reason) == 9


def test_rejection_status_covers_every_reason_and_nothing_else() -> None:
    assert set(REJECTION_STATUS) == set(Reason)
    assert {reason: status for reason, (_, status) in EXPECTED.items()} == REJECTION_STATUS


@pytest.mark.parametrize(
    ("reason", "value", "status"), [(r, v, s) for r, (v, s) in EXPECTED.items()]
)
def test_ticket_rejected(reason: Reason, value: str, status: int) -> None:
    exc = TicketRejected(reason, ticket_hash="abcd1234")
    assert exc.reason is reason
    assert exc.reason == value
    assert reason.value == value
    assert Reason(value) is reason
    assert exc.status == status
    assert exc.ticket_hash == "abcd1234"
    assert str(exc) == value
    assert exc.args == (value,)
    assert repr(exc) == f"TicketRejected({value!r})"
    # The hash is for logs via the attribute; it does not leak into str/repr.
    assert "abcd1234" not in str(exc)
    assert "abcd1234" not in repr(exc)


def test_ticket_hash_is_optional() -> None:
    assert TicketRejected(Reason.MISSING).ticket_hash is None


def test_reason_is_a_str() -> None:
    assert isinstance(Reason.INVALID, str)
    assert f"{Reason.ORIGIN_MISMATCH}" == "origin_mismatch"
    with pytest.raises(ValueError, match="'expired'"):
        Reason("expired")


def test_exception_tree() -> None:
    for cls in (TicketRejected, StoreUnavailable, InvalidOrigin):
        assert issubclass(cls, TicketError)
    assert issubclass(TicketError, Exception)
    # InvalidOrigin is also a ValueError, so argument validation can catch it as one.
    assert issubclass(InvalidOrigin, ValueError)
    assert not issubclass(TicketRejected, ValueError)
    assert not issubclass(StoreUnavailable, TicketRejected)
    assert not issubclass(InvalidOrigin, TicketRejected)


def test_ticket_rejected_is_caught_as_ticket_error() -> None:
    with pytest.raises(TicketError) as info:
        raise TicketRejected(Reason.INVALID)
    assert isinstance(info.value, TicketRejected)
    assert info.value.status == 401
