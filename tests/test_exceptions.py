"""Tests for ticketd.exceptions: the reason set, its HTTP mapping, the exception tree."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest

import ticketd
import ticketd.exceptions
from ticketd.exceptions import (
    REJECTION_STATUS,
    InvalidOrigin,
    Reason,
    StoreOperation,
    StoreUnavailable,
    TicketError,
    TicketRejected,
)
from ticketd.sessions import SessionInvalid, SessionReason

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
}


def test_reason_set_is_pinned() -> None:
    assert set(Reason) == set(EXPECTED)
    assert len(Reason) == 8


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


def _package_exception_classes() -> set[type[BaseException]]:
    """Every exception class defined in any ticketd module (the optional extras included)."""
    found: set[type[BaseException]] = set()
    for info in pkgutil.walk_packages(ticketd.__path__, "ticketd."):
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an adapter whose framework is not installed
            continue
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__.startswith("ticketd")
            ):
                found.add(value)
    return found


def test_the_tree_in_the_docstring_lists_every_exception_the_package_defines() -> None:
    doc = ticketd.exceptions.__doc__ or ""
    tree = set(re.findall(r"^ {4}(?: [├└]── )?([A-Z]\w+) {2}", doc, flags=re.MULTILINE))
    defined = {cls.__name__ for cls in _package_exception_classes()}
    assert defined == tree
    assert {"SessionInvalid", "InvalidSubject", "StoreUnavailable"} <= defined


def test_store_unavailable_carries_operation_and_cause_never_a_password() -> None:
    cause = ConnectionError("Error 111 connecting to redis://app:hunter2@10.0.0.5:6380/0.")
    exc = StoreUnavailable.from_error(StoreOperation.REDEEM, cause, where="10.0.0.5:6380")
    assert exc.operation is StoreOperation.REDEEM
    assert exc.cause is cause
    assert "hunter2" not in str(exc)
    assert str(exc) == (
        "redeem failed on 10.0.0.5:6380: ConnectionError: "
        "Error 111 connecting to redis://***@10.0.0.5:6380/0."
    )
    silent = StoreUnavailable.from_error(StoreOperation.PING, TimeoutError())
    assert str(silent) == "ping failed: TimeoutError: no answer within the deadline"


def test_session_reasons_are_an_enum() -> None:
    assert {r.value for r in SessionReason} == {
        "missing", "duplicate", "too_long", "bad_signature", "expired", "bad_payload",
        "no_subject", "bad_subject",
    }  # fmt: skip
    exc = SessionInvalid(SessionReason.EXPIRED)
    assert exc.reason is SessionReason.EXPIRED
    assert isinstance(exc.reason, str)
    assert exc.reason.value == "expired"
    assert str(exc) == "expired"
