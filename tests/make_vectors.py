"""Write the conformance vectors in ``tests/vectors/`` (``python -m tests.make_vectors``).

Expected values come from the Python implementation wherever it exists (tickets,
keys, origins, handshakes, record v1, redeem). Record v2 and the revocation rule
(docs/PROTOCOL.md sections 3 and 6) are computed here from the spec, by the small
reference functions below, and flagged ``"needs": "revocation"``: the Python side
of those lands with the revocation work, and tests/test_vectors.py expects them to
fail until it does.

pytest (tests/test_vectors.py) and ``node --test`` (node/test/vectors.test.js) both
run every vector; tests/test_vectors.py also checks the files are what this script
writes, so a change to the Python behaviour cannot leave stale vectors behind.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import fakeredis

from tests.test_handshake import QUERY_TARGETS, REJECTIONS, SUBPROTOCOL_HEADERS, UPGRADES, T, U
from tests.test_origins import ACCEPTED, REFUSED
from ticketd import StoreUnavailable, TicketRejected, TicketStore, TicketVerifier
from ticketd.exceptions import InvalidOrigin
from ticketd.handshake import extract_ticket, is_websocket_upgrade, request_origin
from ticketd.redemption import DEFAULT_LEEWAY
from ticketd.tickets import Claims, decode_record, is_well_formed, log_id, ticket_digest, ticket_key
from ticketd.tombstones import (
    Tombstone,
    client_fingerprint,
    connection_id,
    decode_tombstone,
    encode_tombstone,
    is_tombstone,
)

VECTORS = Path(__file__).resolve().parent / "vectors"
PREFIX = "ticketd:"
NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ORIGIN = "https://app.example.com"
REVOCATION = "revocation"
UNAVAILABLE_STATUS = 503
LEEWAY_MS = round(DEFAULT_LEEWAY * 1000)
STATUS = {
    "missing": 401,
    "malformed": 401,
    "invalid": 401,
    "duplicate": 400,
    "bad_handshake": 400,
    "origin_mismatch": 403,
    "audience_mismatch": 403,
    "ip_mismatch": 403,
    "revoked": 403,
}


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _pairs(headers: Any) -> list[list[str]]:
    return [[_text(k), _text(v)] for k, v in headers]


# --- reference functions for what Python does not have yet (PROTOCOL.md 2, 3, 6) ----------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def spec_subject_id(subject: str | int) -> str:
    text = f"s:{subject}" if isinstance(subject, str) else f"i:{subject}"
    return _b64(hashlib.sha256(text.encode("utf-8")).digest()[:16])


def spec_session_hash(session: str) -> str:
    return _b64(hashlib.sha256(f"session:{session}".encode()).digest()[:16])


def spec_revoked(who: dict[str, Any], state: dict[str, Any]) -> bool:
    """PROTOCOL.md section 6, as written."""
    marker = state.get("subject")
    if marker is not None:
        not_before, except_hash = marker
        excepted = who["session_hash"] is not None and who["session_hash"] == except_hash
        if who["auth_at_ms"] < not_before and not excepted:
            return True
    return bool(state.get("session")) or bool(state.get("connection"))


# --- tickets and keys ----------------------------------------------------------------------


def ticket_vectors() -> dict[str, Any]:
    samples = [
        T,
        U,
        "A" * 43,
        "_" * 42 + "w",
        "-" * 42 + "g",
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFE",
    ]
    well_formed = [
        {
            "ticket": t,
            "digest": ticket_digest(t),
            "key": ticket_key(PREFIX, t),
            "key_with_prefix": ticket_key("app1:", t),
            "log_id": log_id(t),
        }
        for t in samples
    ]
    assert all(is_well_formed(v["ticket"]) for v in well_formed)
    malformed: list[Any] = [
        "",
        T[:-1],
        T + "A",
        T[:-1] + "B",  # non-canonical last character
        "A" * 42 + "B",
        T[:-1] + "=",
        T[:42] + "+",
        T[:42] + "/",
        "+" + T[1:],
        " " + T[1:],
        T[:42] + "\n",
        T[:20] + "." + T[21:],
        T[:42] + "\u00e9",
        "%" + T[1:],
        "*",
        None,
        43,
        [T],
    ]
    assert not any(is_well_formed(m) for m in malformed)
    return {"prefix": PREFIX, "well_formed": well_formed, "malformed": malformed}


# --- records -------------------------------------------------------------------------------


def _claims_dict(claims: Claims) -> dict[str, Any]:
    return claims.as_dict()


def record_vectors() -> list[dict[str, Any]]:
    base = [1, "user-1", ORIGIN, "chat", NOW_MS, NOW_MS + 30_000, None]
    v1_raw: dict[str, str] = {
        "v1 minimal": json.dumps(base),
        "v1 compact": json.dumps(base, separators=(",", ":")),
        "v1 integer subject": json.dumps([1, 12345, *base[2:]]),
        "v1 negative subject": json.dumps([1, -7, *base[2:]]),
        "v1 zero subject": json.dumps([1, 0, *base[2:]]),
        "v1 max safe subject": json.dumps([1, 2**53 - 1, *base[2:]]),
        "v1 min safe subject": json.dumps([1, -(2**53 - 1), *base[2:]]),
        "v1 empty string subject": json.dumps([1, "", *base[2:]]),
        "v1 unicode subject": json.dumps(
            [1, "\u00e9l\u00e8ve-\U0001f600", *base[2:]], ensure_ascii=False
        ),
        "v1 escaped unicode subject": json.dumps([1, "\u00e9l\u00e8ve", *base[2:]]),
        "v1 client ip": json.dumps([*base[:6], "203.0.113.9"]),
        "v1 extra": json.dumps([*base, {"room": "r1", "n": 2, "f": 1.5, "deep": {"a": [1, None]}}]),
        "v1 empty extra": json.dumps([*base, {}]),
        "v1 max millis": json.dumps([*base[:4], 2**53, 2**53, None]),
        "v1 negative millis": json.dumps([*base[:4], -(2**53), 0, None]),
        "v1 whitespace": ' [ 1 , "u" , "' + ORIGIN + '" , "chat" , 1 , 2 , null ] ',
        # refused
        "version 0": json.dumps([0, *base[1:]]),
        "version 3": json.dumps([3, *base[1:]]),
        "version true": json.dumps([True, *base[1:]]),
        "version 1.0": "[1.0," + json.dumps(base[1:])[1:],
        "version string": json.dumps(["1", *base[1:]]),
        "too short": json.dumps(base[:6]),
        "too long": json.dumps([*base, {}, 1]),
        "not an array": json.dumps({"v": 1}),
        "empty array": "[]",
        "empty": "",
        "not JSON": "ticket",
        "truncated": json.dumps(base)[:-1],
        "bool subject": json.dumps([1, True, *base[2:]]),
        "null subject": json.dumps([1, None, *base[2:]]),
        "float subject": json.dumps([1, 1.5, *base[2:]]),
        "integral float subject": "[1,1.0," + json.dumps(base[2:])[1:],
        "exponent subject": "[1,1e3," + json.dumps(base[2:])[1:],
        "list subject": json.dumps([1, ["u"], *base[2:]]),
        "origin null": json.dumps([1, "u", None, *base[3:]]),
        "audience number": json.dumps([1, "u", ORIGIN, 7, *base[4:]]),
        "float millis": json.dumps([*base[:4], NOW_MS + 0.5, NOW_MS, None]),
        "integral float millis": json.dumps(base[:4])[:-1] + f",{NOW_MS}.0,{NOW_MS},null]",
        "string millis": json.dumps([*base[:4], str(NOW_MS), NOW_MS, None]),
        "bool millis": json.dumps([*base[:4], True, NOW_MS, None]),
        "millis beyond 2^53": json.dumps([*base[:4], 2**53 + 1, NOW_MS, None]),
        "millis below -2^53": json.dumps([*base[:4], NOW_MS, -(2**53) - 1, None]),
        "huge millis": json.dumps([*base[:4], 10**400, NOW_MS, None]),
        "client ip number": json.dumps([*base[:6], 1234]),
        "extra list": json.dumps([*base, [1]]),
        "extra null": json.dumps([*base, None]),
        "extra string": json.dumps([*base, "x"]),
    }
    out: list[dict[str, Any]] = []
    for name, raw in v1_raw.items():
        try:
            claims: dict[str, Any] | None = _claims_dict(decode_record(raw))
        except ValueError:
            claims = None
        out.append({"name": name, "raw": raw, "claims": claims})
    out += _v2_records()
    return out


def _v2(
    *,
    subject: str | int = "user-1",
    session: str | None = "sess-1",
    auth_ms: int | None = NOW_MS - 3_600_000,
    session_expires_ms: int | None = NOW_MS + 3_600_000,
    extra: dict[str, Any] | None = None,
    client_ip: str | None = None,
) -> list[Any]:
    item: list[Any] = [2, subject, ORIGIN, "chat", NOW_MS, NOW_MS + 30_000, client_ip]
    item += [session, auth_ms, session_expires_ms]
    if extra:
        item.append(extra)
    return item


def _v2_claims(item: list[Any]) -> dict[str, Any]:
    return {
        "subject": item[1],
        "origin": item[2],
        "audience": item[3],
        "issued_at": item[4] / 1000,
        "expires_at": item[5] / 1000,
        "client_ip": item[6],
        "session": item[7],
        "auth_at": None if item[8] is None else item[8] / 1000,
        "session_expires_at": None if item[9] is None else item[9] / 1000,
        "extra": item[10] if len(item) > 10 else {},
    }


def _v2_records() -> list[dict[str, Any]]:
    accepted = {
        "v2 full": _v2(),
        "v2 integer subject": _v2(subject=12345),
        "v2 no session": _v2(session=None, auth_ms=None, session_expires_ms=None),
        "v2 stateless cookie session": _v2(session="t1767222000"),
        "v2 extra": _v2(extra={"room": "r1"}),
        "v2 client ip": _v2(client_ip="2001:db8::1"),
    }
    out: list[dict[str, Any]] = [
        {"name": name, "raw": json.dumps(item), "claims": _v2_claims(item), "needs": REVOCATION}
        for name, item in accepted.items()
    ]
    full = _v2()
    refused = {
        "v2 too short": json.dumps(full[:9]),
        "v2 too long": json.dumps([*full, {}, 1]),
        "v2 session number": json.dumps([*full[:7], 5, *full[8:]]),
        "v2 auth_at string": json.dumps([*full[:8], "1", full[9]]),
        "v2 auth_at float": json.dumps([*full[:8], 1.5, full[9]]),
        "v2 session_expires_at bool": json.dumps([*full[:9], True]),
        "v2 extra list": json.dumps([*full, []]),
        "v2 as v1 length": json.dumps(full[:7]),
        "v1 with v2 length": json.dumps([1, *full[1:]]),
    }
    out += [
        {"name": name, "raw": raw, "claims": None, "needs": REVOCATION}
        for name, raw in refused.items()
    ]
    return out


# --- origins -------------------------------------------------------------------------------


def origin_vectors() -> list[dict[str, Any]]:
    from ticketd.origins import canonical_origin

    inputs: list[tuple[str, str]] = [(v, v) for v, _ in ACCEPTED]
    inputs += [(name, value) for name, value in REFUSED.items()]
    inputs += [
        ("IPv6 full zeros", "http://[::]"),
        ("IPv6 mixed case", "http://[FE80::AbCd]"),
        ("IPv6 leading zeros in group", "http://[2001:0db8::0001]:8443"),
        ("IPv6 embedded IPv4", "http://[::1.2.3.4]"),
        ("IPv6 longest zero run", "http://[1:0:0:2:0:0:0:3]"),
        ("IPv6 tie goes to first run", "http://[1:0:0:2:0:0:3:4]"),
        ("IPv6 single zero not compressed", "http://[1:0:2:3:4:5:6:7]"),
        ("IPv6 eight groups and ::", "http://[1:2:3:4:5:6:7::8]"),
        ("IPv6 leading zero IPv4 part", "http://[::ffff:1.2.3.04]"),
        ("IPv6 five-digit group", "http://[00001::]"),
        ("IPv6 with port 80 https", "https://[::1]:80"),
        ("IPv4 zero", "http://0.0.0.0"),
        ("IPv4 broadcast", "http://255.255.255.255:65535"),
        ("IPv4 with trailing dot", "http://1.2.3.4."),
        ("single label", "http://intranet"),
        ("digit label not last", "http://123.example.com"),
        ("all-digit last label with letters before", "http://a.b.9"),
        ("hex last label upper", "http://a.0X10"),
        ("0x alone", "http://0x"),
        ("hex-like word", "http://a.0xg"),
        ("host 253 characters", "http://" + ".".join(["a" * 63] * 3 + ["a" * 61])),
        ("host 254 characters", "http://" + ".".join(["a" * 63] * 3 + ["a" * 62])),
        ("uppercase scheme HTTP default port", "HTTP://X:80"),
        ("scheme with plus", "git+https://a.example.com"),
        ("port 5 digits leading zero", "http://x:01234"),
        ("port zero padded default", "http://x:080"),
        ("at sign only", "https://@a.example.com"),
        ("origin with semicolon", "https://a.example.com;"),
        ("origin with comma list", "https://a.example.com, https://b.example.com"),
        ("non-string number", 5),  # type: ignore[list-item]
        ("non-string null", None),  # type: ignore[list-item]
    ]
    out: list[dict[str, Any]] = []
    for name, value in inputs:
        try:
            canonical: str | None = canonical_origin(value)
        except InvalidOrigin:
            canonical = None
        out.append({"name": name, "input": value, "canonical": canonical})
    return out


# --- handshakes ----------------------------------------------------------------------------


def handshake_vectors() -> dict[str, Any]:
    extract: list[dict[str, Any]] = []
    cases: list[tuple[str, str, Any]] = [(n, t, []) for n, t in QUERY_TARGETS.items()]
    cases += [(n, "/ws", h) for n, h in SUBPROTOCOL_HEADERS.items()]
    cases += [(n, t, h) for n, (t, h, _) in REJECTIONS.items()]
    for name, target, headers in cases:
        entry: dict[str, Any] = {"name": name, "target": target, "headers": _pairs(headers)}
        try:
            presented = extract_ticket(target, headers)
        except TicketRejected as exc:
            entry |= {"reason": exc.reason.value, "status": exc.status}
        else:
            entry |= {"ticket": presented.ticket, "transport": presented.transport}
        extract.append(entry)
    upgrades: list[dict[str, Any]] = [
        {"name": name, "method": method, "headers": _pairs(headers), "upgrade": expected}
        for name, (method, headers, expected) in UPGRADES.items()
    ]
    for entry in upgrades:
        pairs = [(k, v) for k, v in entry["headers"]]
        assert is_websocket_upgrade(entry["method"], pairs) is entry["upgrade"]
    origins = []
    header_lists: tuple[list[list[str]], ...] = (
        [],
        [["Host", "a"]],
        [["Origin", ORIGIN]],
        [["origin", "null"]],
        [["ORIGIN", ""]],
        [["Origin", ORIGIN], ["Origin", ORIGIN]],
        [["Origin", ORIGIN], ["origin", "https://b.example.com"]],
    )
    for headers in header_lists:
        origin = request_origin([(k, v) for k, v in headers])
        origins.append({"headers": headers, "origin": origin})
    return {"extract": extract, "upgrade": upgrades, "request_origin": origins}


# --- redeem --------------------------------------------------------------------------------


def _record(**overrides: Any) -> str:
    item: list[Any] = [1, "user-1", ORIGIN, "chat", NOW_MS - 1_000, NOW_MS + 29_000, None]
    for index, value in overrides.get("set", {}).items():
        item[int(index)] = value
    return json.dumps(item, separators=(",", ":"))


def redeem_cases() -> list[dict[str, Any]]:
    """Inputs: a ticket, what Redis holds under its key, the handshake; verifier audience 'chat'."""
    good = _record()
    cases: list[dict[str, Any]] = [
        {"name": "accepted", "record": good, "origin": ORIGIN},
        {"name": "origin default port folds", "record": good, "origin": ORIGIN + ":443"},
        {"name": "origin upper case folds", "record": good, "origin": "HTTPS://APP.EXAMPLE.COM"},
        {"name": "unknown ticket", "record": None, "origin": ORIGIN},
        {"name": "malformed ticket", "ticket": T[:-1] + "B", "record": good, "origin": ORIGIN},
        {"name": "short ticket", "ticket": "abc", "record": None, "origin": ORIGIN},
        {
            "name": "expired beyond the leeway",
            "record": _record(set={5: NOW_MS - 5_000}),
            "origin": ORIGIN,
        },
        {
            "name": "expired 1 ms beyond the leeway",
            "record": _record(set={5: NOW_MS - 5_001}),
            "origin": ORIGIN,
        },
        {
            "name": "expired within the leeway",
            "record": _record(set={5: NOW_MS - 4_999}),
            "origin": ORIGIN,
        },
        {
            "name": "expired now, within the leeway",
            "record": _record(set={5: NOW_MS}),
            "origin": ORIGIN,
        },
        {
            "name": "issued in the future beyond the leeway",
            "record": _record(set={4: NOW_MS + 5_001}),
            "origin": ORIGIN,
        },
        {
            "name": "issued in the future within the leeway",
            "record": _record(set={4: NOW_MS + 5_000}),
            "origin": ORIGIN,
        },
        {
            "name": "issued in the future checked before expiry",
            "record": _record(set={4: NOW_MS + 9_000, 5: NOW_MS - 9_000}),
            "origin": "null",
        },
        {
            "name": "session ended before the redeem (no leeway)",
            "record": json.dumps(_v2(session_expires_ms=NOW_MS), separators=(",", ":")),
            "origin": ORIGIN,
        },
        {
            "name": "session ends 1 ms after the redeem",
            "record": json.dumps(_v2(session_expires_ms=NOW_MS + 1), separators=(",", ":")),
            "origin": ORIGIN,
        },
        {"name": "unreadable record", "record": "{oops", "origin": ORIGIN},
        {"name": "record of another version", "record": "[9]", "origin": ORIGIN},
        {"name": "origin missing", "record": good, "origin": None},
        {"name": "origin null", "record": good, "origin": "null"},
        {"name": "origin other", "record": good, "origin": "https://evil.example.com"},
        {"name": "origin with path", "record": good, "origin": ORIGIN + "/"},
        {"name": "origin other scheme", "record": good, "origin": "http://app.example.com"},
        {"name": "origin other port", "record": good, "origin": ORIGIN + ":8443"},
        {"name": "origin unparsable", "record": good, "origin": "not an origin"},
        {"name": "audience other", "record": _record(set={3: "billing"}), "origin": ORIGIN},
        {
            "name": "audience checked after origin",
            "record": _record(set={3: "billing"}),
            "origin": "null",
        },
        {
            "name": "expiry checked before origin",
            "record": _record(set={5: NOW_MS - 1}),
            "origin": "null",
        },
        {
            "name": "ip bound, same",
            "record": _record(set={6: "203.0.113.9"}),
            "origin": ORIGIN,
            "client_ip": "203.0.113.9",
        },
        {
            "name": "ip bound, same with port",
            "record": _record(set={6: "203.0.113.9"}),
            "origin": ORIGIN,
            "client_ip": "203.0.113.9:51234",
        },
        {
            "name": "ip bound, IPv4-mapped IPv6",
            "record": _record(set={6: "203.0.113.9"}),
            "origin": ORIGIN,
            "client_ip": "::ffff:203.0.113.9",
        },
        {
            "name": "ip bound, bracketed IPv6 with port",
            "record": _record(set={6: "2001:db8::1"}),
            "origin": ORIGIN,
            "client_ip": "[2001:DB8:0::1]:443",
        },
        {
            "name": "ip bound, other",
            "record": _record(set={6: "203.0.113.9"}),
            "origin": ORIGIN,
            "client_ip": "198.51.100.7",
        },
        {
            "name": "ip bound, none presented",
            "record": _record(set={6: "203.0.113.9"}),
            "origin": ORIGIN,
        },
        {"name": "ip not bound", "record": good, "origin": ORIGIN, "client_ip": "198.51.100.7"},
        {
            "name": "ip checked after audience",
            "record": _record(set={3: "billing", 6: "203.0.113.9"}),
            "origin": ORIGIN,
            "client_ip": "198.51.100.7",
        },
    ]
    out = []
    for case in cases:
        case.setdefault("ticket", T)
        case.setdefault("client_ip", None)
        case |= {"now_ms": NOW_MS, "leeway_ms": LEEWAY_MS, "audience": "chat", "prefix": PREFIX}
        case |= asyncio.run(_python_redeem(case))
        out.append(case)
    return out + _revocation_redeem_cases() + _replay_cases()


def _tombstone(
    client_ip: str | None,
    *,
    ago_ms: int = 1_500,
    subject: str | None = None,
    session: str | None = None,
) -> str:
    """A tombstone as the spec says (PROTOCOL.md section 8), computed here, not by ticketd."""
    fingerprint = (
        None
        if client_ip is None
        else base64.urlsafe_b64encode(hashlib.sha256(f"client:{client_ip}".encode()).digest())
        .rstrip(b"=")
        .decode()[:8]
    )
    item = [0, NOW_MS - ago_ms, fingerprint, subject, session]
    return json.dumps(item, separators=(",", ":"))


def _replay_cases() -> list[dict[str, Any]]:
    """What Redis holds is a tombstone: a replay, refused as ``invalid`` (PROTOCOL.md 8)."""
    first_ip = "203.0.113.9"
    subject = spec_subject_id("user-1")
    session = spec_session_hash("sess-1")
    cases: list[dict[str, Any]] = [
        {
            "name": "replayed, another client",
            "record": _tombstone(first_ip, subject=subject),
            "client_ip": "198.51.100.7",
        },
        {
            "name": "replayed, same client",
            "record": _tombstone(first_ip, subject=subject),
            "client_ip": first_ip,
        },
        {
            "name": "replayed, same client with port",
            "record": _tombstone(first_ip, subject=subject),
            "client_ip": first_ip + ":4431",
        },
        {
            "name": "replayed, same client as IPv4-mapped IPv6",
            "record": _tombstone(first_ip, subject=subject),
            "client_ip": "::ffff:" + first_ip,
        },
        {
            "name": "replayed, no address now",
            "record": _tombstone(first_ip, subject=subject),
            "client_ip": None,
        },
        {
            "name": "replayed, no address at first use",
            "record": _tombstone(None, subject=subject),
            "client_ip": None,
        },
        {
            "name": "replayed, with a session",
            "record": _tombstone(first_ip, subject=subject, session=session),
            "client_ip": "198.51.100.7",
        },
        {
            "name": "replayed, first use refused",
            "record": _tombstone(first_ip),
            "client_ip": "198.51.100.7",
        },
        {
            "name": "replayed, first use in the future",
            "record": _tombstone(first_ip, ago_ms=-9_000),
            "client_ip": "198.51.100.7",
        },
        {"name": "unreadable tombstone", "record": "[0,1]", "client_ip": None},
        {
            "name": "tombstone of another length",
            "record": "[0,1,null,null,null,1]",
            "client_ip": None,
        },
    ]
    out = []
    for case in cases:
        case |= {"ticket": T, "origin": ORIGIN, "now_ms": NOW_MS, "leeway_ms": LEEWAY_MS}
        case |= {"audience": "chat", "prefix": PREFIX}
        case |= asyncio.run(_python_redeem(case))
        out.append(case)
    return out


class _CountingRedis(fakeredis.FakeAsyncRedis):
    calls = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        type(self).calls += 1
        return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


async def _python_redeem(case: dict[str, Any]) -> dict[str, Any]:
    _CountingRedis.calls = 0
    client = _CountingRedis()
    if case["record"] is not None and is_well_formed(case["ticket"]):
        await client.set(ticket_key(PREFIX, case["ticket"]), case["record"])
    _CountingRedis.calls = 0
    verifier = TicketVerifier(
        TicketStore(client, batch=False),
        audience=case["audience"],
        leeway=case["leeway_ms"] / 1000,
        clock=lambda: NOW_MS / 1000,
    )
    try:
        claims = await verifier.redeem(
            case["ticket"], origin=case["origin"], client_ip=case["client_ip"]
        )
    except TicketRejected as exc:
        result: dict[str, Any] = {"outcome": exc.reason.value, "status": exc.status}
        if exc.detail is not None and exc.detail.value == "replayed" and exc.replay is not None:
            result["detail"] = exc.detail.value
            result["replay"] = {
                "since_first_use_ms": exc.replay.since_first_use_ms,
                "same_client": exc.replay.same_client,
                "connection": exc.replay.connection,
                "subject": exc.replay.subject,
                "session": exc.replay.session,
            }
    except StoreUnavailable:  # pragma: no cover - fakeredis does not fail
        result = {"outcome": "store_unavailable", "status": UNAVAILABLE_STATUS}
    else:
        result = {"outcome": "ok", "status": 101, "claims": claims.as_dict()}
    await verifier.store.drain()  # the settle is sent after redeem returns
    result["redis_calls"] = _CountingRedis.calls
    left = (
        await client.get(ticket_key(PREFIX, case["ticket"]))
        if is_well_formed(case["ticket"])
        else None
    )
    result["record_left"] = left is not None and not is_tombstone(left)
    text = left.decode() if isinstance(left, bytes) else left
    result["tombstone"] = text if text is not None and is_tombstone(text) else None
    await client.aclose()
    return result


def _revocation_redeem_cases() -> list[dict[str, Any]]:
    """Redeem with revocation state (PROTOCOL.md 4 step 5); expected from the spec."""
    session = "sess-1"
    s_hash = spec_session_hash(session)
    subject = spec_subject_id("user-1")
    auth_ms = NOW_MS - 3_600_000
    record = json.dumps(_v2(session=session, auth_ms=auth_ms))
    u_key = f"{PREFIX}rv:{{{subject}}}:u"
    s_key = f"{PREFIX}rv:{{{subject}}}:s:{s_hash}"
    states: list[tuple[str, dict[str, str], bool]] = [
        ("v2, no revocation state", {}, False),
        ("v2, subject revoked after login", {u_key: json.dumps([auth_ms + 1, None])}, True),
        ("v2, subject revoked at login", {u_key: json.dumps([auth_ms, None])}, False),
        (
            "v2, subject revoked, this session excepted",
            {u_key: json.dumps([auth_ms + 1, s_hash])},
            False,
        ),
        (
            "v2, subject revoked, another session excepted",
            {u_key: json.dumps([auth_ms + 1, spec_session_hash("other")])},
            True,
        ),
        ("v2, session revoked", {s_key: str(NOW_MS - 5)}, True),
        (
            "v2, another session revoked",
            {f"{PREFIX}rv:{{{subject}}}:s:{spec_session_hash('other')}": str(NOW_MS)},
            False,
        ),
        (
            "v2, another subject revoked",
            {f"{PREFIX}rv:{{{spec_subject_id('user-2')}}}:u": json.dumps([NOW_MS, None])},
            False,
        ),
    ]
    out: list[dict[str, Any]] = []
    for name, state, revoked in states:
        claims = _v2_claims(json.loads(record))
        out.append(
            {
                "name": name,
                "ticket": T,
                "record": record,
                "origin": ORIGIN,
                "client_ip": None,
                "now_ms": NOW_MS,
                "leeway_ms": LEEWAY_MS,
                "audience": "chat",
                "prefix": PREFIX,
                "revocation_state": state,
                "outcome": "revoked" if revoked else "ok",
                "status": 403 if revoked else 101,
                **({} if revoked else {"claims": claims}),
                "record_left": False,
                # The verifier accepted the record (the revocation read comes after it).
                "tombstone": _tombstone(None, ago_ms=0, subject=subject, session=s_hash),
                "needs": REVOCATION,
            }
        )
    # A v1 record's auth time is its issued_at.
    v1 = _record()
    out.append(
        {
            "name": "v1, subject revoked after issue",
            "ticket": T,
            "record": v1,
            "origin": ORIGIN,
            "client_ip": None,
            "now_ms": NOW_MS,
            "leeway_ms": LEEWAY_MS,
            "audience": "chat",
            "prefix": PREFIX,
            "revocation_state": {u_key: json.dumps([NOW_MS - 999, None])},
            "outcome": "revoked",
            "status": 403,
            "record_left": False,
            "tombstone": _tombstone(None, ago_ms=0, subject=subject),
            "needs": REVOCATION,
        }
    )
    return out


# --- revocation ----------------------------------------------------------------------------


def revocation_vectors() -> dict[str, Any]:
    subjects: list[str | int] = [
        "user-1",
        "\u00e9l\u00e8ve",
        "42",
        42,
        0,
        -1,
        2**53 - 1,
        -(2**53 - 1),
    ]
    subject_ids = [{"subject": s, "id": spec_subject_id(s)} for s in subjects]
    assert spec_subject_id("42") != spec_subject_id(42)
    sessions = ["sess-1", "t1767222000", "\u00e9"]  # empty ids are refused, never hashed
    session_hashes = [{"session": s, "hash": spec_session_hash(s)} for s in sessions]
    s = spec_subject_id("user-1")
    h = spec_session_hash("sess-1")
    keys = {
        "prefix": PREFIX,
        "subject": "user-1",
        "session": "sess-1",
        "connection": "c0nn3ct10n",
        "subject_key": f"{PREFIX}rv:{{{s}}}:u",
        "session_key": f"{PREFIX}rv:{{{s}}}:s:{h}",
        "connection_key": f"{PREFIX}rv:{{{s}}}:c:c0nn3ct10n",
        "stream": f"{PREFIX}revocations",
    }
    who = {"subject_hash": s, "session_hash": h, "auth_at_ms": 1000, "connection_id": "c1"}
    nobody = {**who, "session_hash": None}
    rules: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("nothing", who, {}),
        ("subject marker after auth", who, {"subject": [1001, None]}),
        ("subject marker at auth", who, {"subject": [1000, None]}),
        ("subject marker before auth", who, {"subject": [999, None]}),
        ("subject marker, own session excepted", who, {"subject": [1001, h]}),
        (
            "subject marker, other session excepted",
            who,
            {"subject": [1001, spec_session_hash("x")]},
        ),
        ("subject marker, no session, except set", nobody, {"subject": [1001, h]}),
        ("session marker", who, {"session": True}),
        ("connection marker", who, {"connection": True}),
        ("session marker but old subject marker", who, {"subject": [1, None], "session": True}),
    ]
    rule_vectors = [
        {"name": name, "who": w, "state": state, "revoked": spec_revoked(w, state)}
        for name, w, state in rules
    ]
    events = [
        ("subject, after auth", who, {"kind": "subject", "not_before": "1001"}, True),
        ("subject, at auth", who, {"kind": "subject", "not_before": "1000"}, False),
        (
            "subject, own session excepted",
            who,
            {"kind": "subject", "not_before": "1001", "except": h},
            False,
        ),
        (
            "subject, other session excepted",
            who,
            {"kind": "subject", "not_before": "1001", "except": "x"},
            True,
        ),
        ("session, this one", who, {"kind": "session", "session": h}, True),
        ("session, another", who, {"kind": "session", "session": spec_session_hash("x")}, False),
        ("session, connection without session", nobody, {"kind": "session", "session": h}, False),
        ("connection, this one", who, {"kind": "connection", "connection": "c1"}, True),
        ("connection, another", who, {"kind": "connection", "connection": "c2"}, False),
        (
            "another subject",
            who,
            {"kind": "subject", "not_before": "9999", "subject": "other"},
            False,
        ),
        ("unknown kind", who, {"kind": "everything", "not_before": "9999"}, False),
        ("unknown version", who, {"kind": "subject", "not_before": "9999", "v": "2"}, False),
    ]
    event_vectors = [
        {
            "name": name,
            "who": w,
            "event": {"v": "1", "subject": s, "at": "5000", **fields},
            "revokes": revokes,
        }
        for name, w, fields, revokes in events
    ]
    return {
        "subject_ids": subject_ids,
        "session_hashes": session_hashes,
        "keys": keys,
        "rules": rule_vectors,
        "events": event_vectors,
        "needs": REVOCATION,
    }


def tombstone_vectors() -> dict[str, Any]:
    """Tombstone fields and decoding (PROTOCOL.md section 8), from the Python implementation."""
    addresses = [
        "203.0.113.9",
        "203.0.113.9:4431",
        "::ffff:203.0.113.9",
        "[2001:db8::1]:443",
        "2001:DB8::1",
        "not an address",
        "",
    ]
    tickets = [T, U]
    valid = [
        Tombstone(NOW_MS, "abcdefgh"),
        Tombstone(NOW_MS, None, spec_subject_id("user-1")),
        Tombstone(NOW_MS, "abcdefgh", spec_subject_id(42), spec_session_hash("s")),
    ]
    invalid = [
        "[0]",
        "[0,1]",
        "[0,1,null,null]",
        "[0,1,null,null,null,1]",
        "[0,1.5,null,null,null]",
        "[0,1.0,null,null,null]",
        "[0,1e3,null,null,null]",
        "[0,true,null,null,null]",
        "[0,1,5,null,null]",
        "[0,1,null,7,null]",
        "[0,1,null,null,[]]",
        "[false,1,null,null,null]",
        '{"v":0}',
        "[0,9007199254740993,null,null,null]",
    ]
    for raw in invalid:
        try:
            decode_tombstone(raw)
        except ValueError:
            continue
        raise AssertionError(f"{raw} decodes")  # pragma: no cover - a generator self-check
    return {
        "fingerprints": [{"client_ip": a, "fingerprint": client_fingerprint(a)} for a in addresses]
        + [{"client_ip": None, "fingerprint": None}],
        "connection_ids": [{"ticket": t, "connection": connection_id(t)} for t in tickets],
        "valid": [
            {
                "raw": encode_tombstone(t).decode(),
                "first_used_ms": t.first_used_ms,
                "client": t.client,
                "subject": t.subject,
                "session": t.session,
            }
            for t in valid
        ],
        "invalid": invalid,
        "records_are_not_tombstones": [_record(), json.dumps(_v2(session="s", auth_ms=NOW_MS))],
    }


def close_code_vectors() -> dict[str, Any]:
    return {
        "close_codes": [
            {"code": 4401, "meaning": "session_ended"},
            {"code": 4403, "meaning": "revoked"},
            {"code": 1012, "meaning": "feed_stale"},
        ],
        "rejection_status": STATUS,
        "unavailable_status": UNAVAILABLE_STATUS,
        "denial_body": "ticket rejected\n",
    }


def spec_close_deadline(
    session_expires_ms: int | None, now_ms: int, max_lifetime_ms: int | None, fraction: float
) -> dict[str, Any] | None:
    """docs/PROTOCOL.md section 7, session lifetime: the first of the session's expiry and
    the max lifetime, ``fraction`` of min(5 s, 10 % of the time left) early."""
    ends = []
    if session_expires_ms is not None:
        ends.append((session_expires_ms, "session_expired"))
    if max_lifetime_ms is not None:
        ends.append((now_ms + max_lifetime_ms, "max_lifetime"))
    if not ends:
        return None
    end, cause = min(ends)
    bound = min(5000.0, 0.1 * max(0, end - now_ms))
    return {"at_ms": round(end - min(max(fraction, 0.0), 1.0) * bound), "cause": cause}


def lifetime_vectors() -> dict[str, Any]:
    """When a socket is closed with 4401; ``jitter_fraction`` f makes ``jitter(b) = f * b``."""
    now = NOW_MS
    cases = [
        ("session, no jitter", now + 20_000, None, 0.0),
        ("session, widest jitter: 10 % of 20 s", now + 20_000, None, 1.0),
        ("session, half jitter", now + 20_000, None, 0.5),
        ("long session: jitter capped at 5 s", now + 3_600_000, None, 1.0),
        ("expired session closes at once", now - 5_000, None, 1.0),
        ("max lifetime first", now + 3_600_000, 60_000, 1.0),
        ("session first", now + 30_000, 3_600_000, 0.0),
        ("no session, max lifetime", None, 60_000, 0.0),
        ("no session, no max lifetime", None, None, 1.0),
        ("jitter below zero is clamped (never after)", now + 20_000, None, -3.0),
        ("jitter above the bound is clamped", now + 20_000, None, 7.0),
    ]
    return {
        "deadlines": [
            {
                "name": name,
                "session_expires_at_ms": expires,
                "now_ms": now,
                "max_lifetime_ms": max_ms,
                "jitter_fraction": fraction,
                "expected": spec_close_deadline(expires, now, max_ms, fraction),
            }
            for name, expires, max_ms, fraction in cases
        ]
    }


def build() -> dict[str, Any]:
    return {
        "tickets.json": ticket_vectors(),
        "records.json": record_vectors(),
        "origins.json": origin_vectors(),
        "handshake.json": handshake_vectors(),
        "redeem.json": redeem_cases(),
        "revocation.json": revocation_vectors(),
        "tombstones.json": tombstone_vectors(),
        "close_codes.json": close_code_vectors(),
        "lifetime.json": lifetime_vectors(),
    }


def render(value: Any) -> str:
    return json.dumps(value, indent=1, ensure_ascii=True) + "\n"


def main() -> None:
    VECTORS.mkdir(exist_ok=True)
    for name, value in build().items():
        (VECTORS / name).write_text(render(value))
        print(f"wrote tests/vectors/{name}")


if __name__ == "__main__":
    main()
