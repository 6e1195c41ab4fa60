"""Session cookies: real Flask/Starlette cookies accepted, every refusal has its reason."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from markupsafe import Markup

from tests.support.cookies import KEY, flask_cookie, starlette_cookie
from ticketd.exceptions import TicketError
from ticketd.sessions import (
    MAX_COOKIE_LENGTH,
    TICKETD_SALT,
    SessionFormat,
    SessionInvalid,
    SessionVerifier,
    cookie_values,
    issue_session_cookie,
)

# Obviously fake, but they pass the service's secret checks.
OLD_KEY = "test-only-old-key-0123456789abcdefghij"
OLDER_KEY = "test-only-older-key-0123456789abcdefgh"
OTHER_KEY = "test-only-other-key-0123456789abcdefgh"

FORMATS: tuple[SessionFormat, ...] = ("ticketd", "flask", "starlette")


# -- cookies made by the real libraries ------------------------------------------------


def make_cookie(fmt: SessionFormat, data: dict[str, Any], *, secret: str = KEY) -> str:
    if fmt == "flask":
        return flask_cookie(data, secret=secret)
    if fmt == "starlette":
        return starlette_cookie(data, secret=secret)
    return issue_session_cookie(data, secret=secret)


def verifier(fmt: SessionFormat, **kwargs: Any) -> SessionVerifier:
    kwargs.setdefault("secret", KEY)
    return SessionVerifier(fmt, **kwargs)


def reason_of(call: Callable[[], object]) -> str:
    with pytest.raises(SessionInvalid) as info:
        call()
    assert isinstance(info.value, TicketError)
    assert str(info.value) == info.value.reason
    return info.value.reason


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """itsdangerous's clock, for signing and verifying alike: set ``clock[0]``."""
    now = [1_700_000_000]
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: now[0])
    return now


# -- accepted ---------------------------------------------------------------------------


def test_flask_cookie_with_login_user_id_string() -> None:
    cookie = flask_cookie({"_user_id": "42"})
    v = verifier("flask", subject_key="_user_id")
    assert v.subject([f"session={cookie}"], cookie_name="session") == "42"


def test_flask_cookie_with_integer_user_id() -> None:
    cookie = flask_cookie({"user_id": 7})
    subject = verifier("flask").subject([f"session={cookie}"], cookie_name="session")
    assert subject == 7
    assert type(subject) is int


def test_flask_compressed_cookie() -> None:
    cookie = flask_cookie({"user_id": 7, "padding": "a" * 3000})
    assert cookie.startswith(".")  # Flask chose zlib
    assert len(cookie) < 200
    v = verifier("flask")
    assert v.subject_from(cookie) == 7
    assert v.load(cookie)["padding"] == "a" * 3000


def test_flask_tagged_json_values_beside_the_subject() -> None:
    when = datetime.datetime(2024, 2, 29, 12, 30, 5, tzinfo=datetime.UTC)
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    cookie = flask_cookie(
        {
            "user_id": 7,
            "pair": (1, "two"),
            "raw": b"\x00\xffbytes",
            "when": when,
            "ident": ident,
            "html": Markup("<b>hi</b>"),
            "tricky": {" t": "not a tuple"},  # Flask tags it as " di"
            "nested": [(1, 2), {"inner": b"x"}],
        }
    )
    payload = verifier("flask").load(cookie)
    assert payload == {
        "user_id": 7,
        "pair": (1, "two"),
        "raw": b"\x00\xffbytes",
        "when": when,
        "ident": ident,
        "html": "<b>hi</b>",
        "tricky": {" t": "not a tuple"},
        "nested": [(1, 2), {"inner": b"x"}],
    }
    assert type(payload["pair"]) is tuple
    assert type(payload["ident"]) is uuid.UUID
    assert verifier("flask").subject_from(cookie) == 7


def test_starlette_cookie() -> None:
    cookie = starlette_cookie({"user_id": 1})
    subject = verifier("starlette").subject([f"session={cookie}"], cookie_name="session")
    assert subject == 1
    assert type(subject) is int


def test_ticketd_cookie() -> None:
    cookie = issue_session_cookie({"user_id": "alice"}, secret=KEY)
    assert verifier("ticketd").subject([f"session={cookie}"], cookie_name="session") == "alice"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("subject", [42, 0, -1, "42", "alice", "x" * 256])
def test_int_and_str_subjects_keep_their_type(fmt: SessionFormat, subject: int | str) -> None:
    got = verifier(fmt).subject_from(make_cookie(fmt, {"user_id": subject}))
    assert got == subject
    assert type(got) is type(subject)


def test_custom_cookie_name_and_other_cookies() -> None:
    cookie = issue_session_cookie({"uid": 5}, secret=KEY)
    v = verifier("ticketd", subject_key="uid")
    headers = [f"theme=dark; app_sess={cookie}; session=garbage2"]
    assert v.subject(headers, cookie_name="app_sess") == 5


def test_quoted_cookie_value_is_accepted() -> None:
    cookie = issue_session_cookie({"user_id": 5}, secret=KEY)
    assert verifier("ticketd").subject([f'session="{cookie}"'], cookie_name="session") == 5


# -- rotation -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_fallback_key_still_accepted(fmt: SessionFormat) -> None:
    cookie = make_cookie(fmt, {"user_id": 3}, secret=OLD_KEY)
    assert verifier(fmt, secret=KEY, fallbacks=[OLD_KEY]).subject_from(cookie) == 3
    assert verifier(fmt, secret=KEY, fallbacks=[OLD_KEY, OLDER_KEY]).subject_from(cookie) == 3
    older = make_cookie(fmt, {"user_id": 4}, secret=OLDER_KEY)
    assert verifier(fmt, secret=KEY, fallbacks=[OLD_KEY, OLDER_KEY]).subject_from(older) == 4


@pytest.mark.parametrize("fmt", FORMATS)
def test_retired_key_refused(fmt: SessionFormat) -> None:
    cookie = make_cookie(fmt, {"user_id": 3}, secret=OLDER_KEY)
    assert reason_of(lambda: verifier(fmt, secret=KEY).subject_from(cookie)) == "bad_signature"
    v = verifier(fmt, secret=KEY, fallbacks=[OLD_KEY])
    assert reason_of(lambda: v.subject_from(cookie)) == "bad_signature"


def test_bytes_keys() -> None:
    cookie = issue_session_cookie({"user_id": 1}, secret=KEY.encode())
    v = SessionVerifier("ticketd", secret=OTHER_KEY.encode(), fallbacks=[KEY.encode()])
    assert v.subject_from(cookie) == 1


# -- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [[], [""], ["other=1"], ["session2=x; xsession=y"]])
def test_missing(headers: list[str]) -> None:
    v = verifier("ticketd")
    assert reason_of(lambda: v.subject(headers, cookie_name="session")) == "missing"


def test_duplicate_in_one_header() -> None:
    cookie = issue_session_cookie({"user_id": 1}, secret=KEY)
    v = verifier("ticketd")
    headers = [f"session={cookie}; session={cookie}"]
    assert reason_of(lambda: v.subject(headers, cookie_name="session")) == "duplicate"
    # A tossed cookie with another value is the realistic case.
    tossed = issue_session_cookie({"user_id": 2}, secret=OTHER_KEY)
    headers = [f"session={tossed}; other=1; session={cookie}"]
    assert reason_of(lambda: v.subject(headers, cookie_name="session")) == "duplicate"


def test_duplicate_across_two_cookie_headers() -> None:
    cookie = issue_session_cookie({"user_id": 1}, secret=KEY)
    v = verifier("ticketd")
    headers = [f"session={cookie}", f"a=b; session={cookie}"]
    assert reason_of(lambda: v.subject(headers, cookie_name="session")) == "duplicate"
    # One of each is fine.
    assert v.subject([f"session={cookie}", "a=b"], cookie_name="session") == 1


def _replace_char(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


@pytest.mark.parametrize("fmt", FORMATS)
def test_tampered_payload(fmt: SessionFormat) -> None:
    cookie = make_cookie(fmt, {"user_id": 1})
    tampered = _replace_char(cookie, 3)
    assert tampered != cookie
    assert reason_of(lambda: verifier(fmt).subject_from(tampered)) == "bad_signature"


@pytest.mark.parametrize("fmt", FORMATS)
def test_tampered_signature(fmt: SessionFormat) -> None:
    cookie = make_cookie(fmt, {"user_id": 1})
    start = cookie.rindex(".") + 1  # first signature character: all six bits count
    tampered = _replace_char(cookie, start)
    assert reason_of(lambda: verifier(fmt).subject_from(tampered)) == "bad_signature"


@pytest.mark.parametrize("fmt", FORMATS)
def test_wrong_key(fmt: SessionFormat) -> None:
    cookie = make_cookie(fmt, {"user_id": 1}, secret=OTHER_KEY)
    assert reason_of(lambda: verifier(fmt).subject_from(cookie)) == "bad_signature"


def test_signature_text_mentioning_age_is_not_expired() -> None:
    # Regression: the reason was chosen by searching the exception text for "age",
    # and that text quotes the presented signature.
    cookie = issue_session_cookie({"user_id": 1}, secret=KEY)
    payload, timestamp, _ = cookie.split(".")
    forged = f"{payload}.{timestamp}.AgEAgEAgEAgEAgEAgEAgEAgEAgE"
    assert reason_of(lambda: verifier("ticketd").subject_from(forged)) == "bad_signature"


@pytest.mark.parametrize("fmt", FORMATS)
def test_expired(fmt: SessionFormat, clock: list[int]) -> None:
    cookie = make_cookie(fmt, {"user_id": 1})
    v = verifier(fmt, max_age=3600)
    clock[0] += 3600
    assert v.subject_from(cookie) == 1  # exactly max_age old: still valid
    clock[0] += 1
    assert reason_of(lambda: v.subject_from(cookie)) == "expired"


def test_expired_with_default_max_age(clock: list[int]) -> None:
    cookie = issue_session_cookie({"user_id": 1}, secret=KEY)
    clock[0] += 14 * 24 * 3600 + 1
    assert reason_of(lambda: verifier("ticketd").subject_from(cookie)) == "expired"


def test_expired_with_a_subclassed_signer() -> None:
    # No patching of the verifier at all: the cookie carries a 2001 timestamp.
    class OldSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return 1_000_000_000

    cookie = URLSafeTimedSerializer(KEY, salt=TICKETD_SALT, signer=OldSigner).dumps({"user_id": 1})
    assert reason_of(lambda: verifier("ticketd").subject_from(cookie)) == "expired"
    # The same signer without max_age checks would accept it: only the age is wrong.
    assert URLSafeTimedSerializer(KEY, salt=TICKETD_SALT).loads(cookie) == {"user_id": 1}


@pytest.mark.parametrize("fmt", FORMATS)
def test_future_dated(fmt: SessionFormat, clock: list[int]) -> None:
    cookie = make_cookie(fmt, {"user_id": 1})
    clock[0] -= 1
    assert reason_of(lambda: verifier(fmt).subject_from(cookie)) == "expired"


@pytest.mark.parametrize(
    ("made", "checked"),
    [(a, b) for a in FORMATS for b in FORMATS if a != b],
)
def test_wrong_format(made: SessionFormat, checked: SessionFormat) -> None:
    cookie = make_cookie(made, {"user_id": 1})
    assert verifier(made).subject_from(cookie) == 1
    assert reason_of(lambda: verifier(checked).subject_from(cookie)) == "bad_signature"


@pytest.mark.parametrize("fmt", FORMATS)
def test_too_long(fmt: SessionFormat) -> None:
    v = verifier(fmt)
    assert reason_of(lambda: v.subject_from("x" * (MAX_COOKIE_LENGTH + 1))) == "too_long"
    assert reason_of(lambda: v.subject_from("x" * MAX_COOKIE_LENGTH)) == "bad_signature"
    # Refused before any verification, even when correctly signed.
    noise = base64.b64encode(hashlib.shake_256(b"pad").digest(3200)).decode()  # no zlib gain
    data = {"user_id": 1, "pad": noise}
    # Werkzeug itself warns about (and the warning filter fails) a cookie this large.
    signed = _flask_serializer().dumps(data) if fmt == "flask" else make_cookie(fmt, data)
    assert len(signed) > MAX_COOKIE_LENGTH
    assert reason_of(lambda: v.subject_from(signed)) == "too_long"


def test_too_long_through_subject() -> None:
    headers = ["session=" + "x" * (MAX_COOKIE_LENGTH + 1)]
    v = verifier("ticketd")
    assert reason_of(lambda: v.subject(headers, cookie_name="session")) == "too_long"


# Correctly signed, but not a payload the format can decode.


def _ticketd_signed(raw: bytes) -> str:
    return URLSafeTimedSerializer(KEY, salt=TICKETD_SALT).make_signer().sign(raw).decode()


def _flask_serializer() -> URLSafeTimedSerializer:
    """Flask's session serializer settings, with plain JSON."""
    return URLSafeTimedSerializer(
        KEY,
        salt="cookie-session",
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1},
    )


def _flask_signed(raw: bytes) -> str:
    return _flask_serializer().make_signer().sign(raw).decode()


def _starlette_signed(raw: bytes) -> str:
    return TimestampSigner(KEY).sign(raw).decode()


@pytest.mark.parametrize(
    ("fmt", "cookie"),
    [
        ("ticketd", _ticketd_signed(base64.urlsafe_b64encode(b"not json").rstrip(b"="))),
        ("ticketd", _ticketd_signed(b"!!not-base64!!")),
        ("ticketd", _ticketd_signed(b".bm90IHpsaWI")),  # "compressed", but not zlib
        ("flask", _flask_signed(base64.urlsafe_b64encode(b"{broken").rstrip(b"="))),
        ("flask", _flask_signed(b".bm90IHpsaWI")),
        ("flask", _flask_signed(base64.urlsafe_b64encode(b'{" t": 5}').rstrip(b"="))),
        ("starlette", _starlette_signed(b"!!not-base64!!")),
        ("starlette", _starlette_signed(base64.b64encode(b"{broken"))),
        ("starlette", _starlette_signed(base64.b64encode(b"\xff\xfe"))),
    ],
    ids=[
        "ticketd-not-json",
        "ticketd-not-base64",
        "ticketd-not-zlib",
        "flask-not-json",
        "flask-not-zlib",
        "flask-bad-tuple-tag",
        "starlette-not-base64",
        "starlette-not-json",
        "starlette-not-utf8",
    ],
)
def test_signed_but_undecodable_payload(fmt: SessionFormat, cookie: str) -> None:
    assert reason_of(lambda: verifier(fmt).subject_from(cookie)) == "bad_payload"


@pytest.mark.parametrize("payload", [[1, 2], "user", 42, None, True])
def test_payload_not_a_dict(payload: object) -> None:
    ticketd = URLSafeTimedSerializer(KEY, salt=TICKETD_SALT).dumps(payload)
    assert reason_of(lambda: verifier("ticketd").subject_from(ticketd)) == "no_subject"
    starlette = _starlette_signed(base64.b64encode(json.dumps(payload).encode()))
    assert reason_of(lambda: verifier("starlette").subject_from(starlette)) == "no_subject"


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_subject(fmt: SessionFormat) -> None:
    cookie = make_cookie(fmt, {"uid": 1, "csrf": "x"})
    assert reason_of(lambda: verifier(fmt).subject_from(cookie)) == "no_subject"
    assert verifier(fmt, subject_key="uid").subject_from(cookie) == 1


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("subject", [True, False, [1], {"id": 1}, None, 1.0, 1.5, "", "x" * 257])
def test_bad_subject(fmt: SessionFormat, subject: object) -> None:
    cookie = make_cookie(fmt, {"user_id": subject})
    assert reason_of(lambda: verifier(fmt).subject_from(cookie)) == "bad_subject"


@pytest.mark.parametrize(
    ("subject", "code"),
    [
        (2**53, "unsafe_integer"),
        (-(2**53), "unsafe_integer"),
        ("   ", "blank"),
        ("bob\x00", "control_character"),
        ("bob\u202e", "control_character"),
    ],
)
def test_subject_no_backend_reads_the_same_is_bad(subject: object, code: str) -> None:
    """Before, these reached the mint. From 2**53 on, a JSON double stops telling ids apart
    (2**53 + 1 reads as 2**53)."""
    cookie = make_cookie("ticketd", {"user_id": subject})
    with pytest.raises(SessionInvalid) as info:
        verifier("ticketd").subject_from(cookie)
    assert (info.value.reason, info.value.subject_code) == ("bad_subject", code)


def test_flask_tagged_subject_is_bad() -> None:
    v = verifier("flask")
    for subject in [(1,), b"42", uuid.UUID(int=1)]:
        cookie = flask_cookie({"user_id": subject})
        assert v.load(cookie) == {"user_id": subject}
        with pytest.raises(SessionInvalid) as info:
            v.subject_from(cookie)
        assert info.value.reason == "bad_subject"


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown session format 'django'"):
        SessionVerifier("django", secret=KEY)  # type: ignore[arg-type]


# -- cookie_values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], []),
        ([""], []),
        (["   "], []),
        ([";;"], []),
        (["session=abc"], ["abc"]),
        (['session="abc"'], ["abc"]),
        (['session="a b"'], ["a b"]),
        (['session="'], ['"']),
        (["  session = abc ;other=1"], ["abc"]),
        (["other=1;session=abc;  third=3"], ["abc"]),
        (["session2=a; xsession=b; session_=c; session=d"], ["d"]),
        (["session2=a; xsession=b"], []),
        (["Session=a; SESSION=b"], []),  # names are case-sensitive
        (["session"], []),  # no "=": not a cookie pair
        (["session="], [""]),
        (["session=a=b=="], ["a=b=="]),
        (["session=a; session=b", "session=c"], ["a", "b", "c"]),
    ],
)
def test_cookie_values(headers: list[str], expected: list[str]) -> None:
    assert cookie_values(headers, "session") == expected


def test_empty_cookie_value_is_refused_as_a_bad_signature() -> None:
    v = verifier("ticketd")
    assert reason_of(lambda: v.subject(["session="], cookie_name="session")) == "bad_signature"
