"""Verified session cookies are remembered, and still expire exactly when itsdangerous says."""

from __future__ import annotations

import time

import pytest

from tests.support.service_support import SECRET
from ticketd.service.sessioncache import VerifiedCookies
from ticketd.sessions import SessionInvalid, SessionVerifier, issue_session_cookie


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    clock = [1_900_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])  # itsdangerous reads time.time()
    return clock


def cache(max_age: int = 60) -> VerifiedCookies:
    sessions = SessionVerifier(
        "ticketd", secret=SECRET, fallbacks=[], max_age=max_age, subject_key="user_id"
    )
    return VerifiedCookies(
        sessions, cookie_name="session", max_age=max_age, clock=lambda: time.time()
    )


def test_a_remembered_cookie_expires_at_max_age(now: list[float]) -> None:
    cookies = cache(max_age=60)
    headers = [f"session={issue_session_cookie({'user_id': 'alice'}, secret=SECRET)}"]
    assert cookies.subject(headers) == "alice"
    now[0] += 60
    assert cookies.subject(headers) == "alice"  # remembered; exactly max_age old
    now[0] += 1
    with pytest.raises(SessionInvalid) as refused:
        cookies.subject(headers)
    assert refused.value.reason == "expired"


def test_a_cookie_from_the_future_is_refused_even_when_remembered(now: list[float]) -> None:
    cookies = cache()
    headers = [f"session={issue_session_cookie({'user_id': 'bob'}, secret=SECRET)}"]
    assert cookies.subject(headers) == "bob"
    now[0] -= 5  # the clock steps back: the signature is now dated in the future
    with pytest.raises(SessionInvalid) as refused:
        cookies.subject(headers)
    assert refused.value.reason == "expired"


def test_only_verified_cookies_are_remembered(now: list[float]) -> None:
    cookies = cache()
    good = issue_session_cookie({"user_id": "carol"}, secret=SECRET)
    assert cookies.subject([f"session={good}"]) == "carol"
    forged = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    for _ in range(2):
        with pytest.raises(SessionInvalid) as refused:
            cookies.subject([f"session={forged}"])
        assert refused.value.reason == "bad_signature"
    with pytest.raises(SessionInvalid) as duplicate:
        cookies.subject([f"session={good}; session={good}"])
    assert duplicate.value.reason == "duplicate"
