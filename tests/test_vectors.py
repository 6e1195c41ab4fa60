"""The conformance vectors (tests/vectors/*.json) against the Python implementation.

The same files are run by the Node package's suite (node/test/vectors.test.js), so
the two verifiers cannot drift. Vectors flagged ``"needs": "revocation"`` (record
v2, the revocation keys and rule) run like every other one.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from tests import make_vectors
from ticketd import StoreUnavailable, TicketRejected, TicketStore, TicketVerifier
from ticketd.exceptions import REJECTION_STATUS, InvalidOrigin, Reason
from ticketd.handshake import extract_ticket, is_websocket_upgrade, request_origin
from ticketd.integrations._common import DENIAL_BODY
from ticketd.lifetime import deadline_of
from ticketd.origins import canonical_origin
from ticketd.revocation import (
    RevocationState,
    Target,
    decode_event,
    is_revoked,
    matches,
    session_hash,
    subject_id,
    target_of,
)
from ticketd.revoker import check_revoked
from ticketd.tickets import Claims, decode_record, is_well_formed, log_id, ticket_digest, ticket_key
from ticketd.tombstones import (
    client_fingerprint,
    connection_id,
    decode_tombstone,
    is_tombstone,
)

VECTORS = Path(__file__).resolve().parent / "vectors"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def cases(items: list[dict[str, Any]]) -> list[Any]:
    """One pytest param per vector, named by it."""
    return [pytest.param(item, id=item["name"]) for item in items]


def test_vector_files_are_what_the_generator_writes() -> None:
    for name, value in make_vectors.build().items():
        assert (VECTORS / name).read_text() == make_vectors.render(value), (
            f"tests/vectors/{name} is stale: python -m tests.make_vectors"
        )


# --- tickets and keys ----------------------------------------------------------------------

TICKETS = load("tickets.json")


@pytest.mark.parametrize("vector", TICKETS["well_formed"], ids=lambda v: v["log_id"])
def test_ticket_keys(vector: dict[str, Any]) -> None:
    ticket = vector["ticket"]
    assert is_well_formed(ticket)
    assert ticket_digest(ticket) == vector["digest"]
    assert ticket_key(TICKETS["prefix"], ticket) == vector["key"]
    assert ticket_key("app1:", ticket) == vector["key_with_prefix"]
    assert log_id(ticket) == vector["log_id"]


@pytest.mark.parametrize("value", TICKETS["malformed"], ids=repr)
def test_malformed_tickets(value: object) -> None:
    assert not is_well_formed(value)


def test_a_malformed_ticket_costs_no_redis_call() -> None:
    redeem = load("redeem.json")
    malformed = [c for c in redeem if c["outcome"] == "malformed"]
    assert malformed
    assert all(c["redis_calls"] == 0 for c in malformed)
    # One atomic take; a second, best-effort write only after an accepted record (the
    # subject and session hashes) or a replay of a settled first use (its tombstone
    # back; an unsettled one is left to the first use's own settle).
    replays_back = 0
    for c in redeem:
        if c["outcome"] != "malformed" and not c.get("needs"):
            replay = c.get("replay") if c.get("detail") == "replayed" else None
            settles = c["outcome"] == "ok" or (replay is not None and replay["subject"] is not None)
            replays_back += replay is not None and settles
            assert c["redis_calls"] == (2 if settles else 1), c["name"]
    assert replays_back  # the vectors hold a write-back too


# --- records -------------------------------------------------------------------------------


def claim_fields(claims: Any) -> dict[str, Any]:
    return {name: getattr(claims, name) for name in vars(type(claims)) if not name.startswith("_")}


RECORDS = load("records.json")
V2_FULL = next(r["raw"] for r in RECORDS if r["name"] == "v2 full")


@pytest.mark.parametrize("vector", cases(RECORDS))
def test_records(vector: dict[str, Any]) -> None:
    if vector["claims"] is None:
        decode_record(V2_FULL)  # a refusal of a v2 record proves something only if v2 reads
        with pytest.raises(ValueError, match=r"record|Expecting|Extra data|Unterminated|Invalid"):
            decode_record(vector["raw"])
    else:
        claims = decode_record(vector["raw"])
        for name, expected in vector["claims"].items():
            value = getattr(claims, name)
            assert (dict(value) if name == "extra" else value) == expected, name


# --- origins -------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", cases(load("origins.json")))
def test_origins(vector: dict[str, Any]) -> None:
    if vector["canonical"] is None:
        with pytest.raises(InvalidOrigin):
            canonical_origin(vector["input"])
    else:
        assert canonical_origin(vector["input"]) == vector["canonical"]
        assert canonical_origin(vector["canonical"]) == vector["canonical"]


# --- handshakes ----------------------------------------------------------------------------

HANDSHAKE = load("handshake.json")


@pytest.mark.parametrize("vector", cases(HANDSHAKE["extract"]))
def test_extract_ticket(vector: dict[str, Any]) -> None:
    headers = [tuple(pair) for pair in vector["headers"]]
    if "reason" in vector:
        with pytest.raises(TicketRejected) as info:
            extract_ticket(vector["target"], headers)
        assert info.value.reason.value == vector["reason"]
        assert info.value.status == vector["status"]
    else:
        presented = extract_ticket(vector["target"], headers)
        assert (presented.ticket, presented.transport) == (vector["ticket"], vector["transport"])


@pytest.mark.parametrize("vector", cases(HANDSHAKE["upgrade"]))
def test_is_websocket_upgrade(vector: dict[str, Any]) -> None:
    headers = [tuple(pair) for pair in vector["headers"]]
    assert is_websocket_upgrade(vector["method"], headers) is vector["upgrade"]


@pytest.mark.parametrize("vector", HANDSHAKE["request_origin"], ids=repr)
def test_request_origin(vector: dict[str, Any]) -> None:
    assert request_origin([tuple(pair) for pair in vector["headers"]]) == vector["origin"]


# --- redeem --------------------------------------------------------------------------------


async def redeem_once(vector: dict[str, Any]) -> dict[str, Any]:
    client = fakeredis.FakeAsyncRedis()
    key = (
        ticket_key(vector["prefix"], vector["ticket"]) if is_well_formed(vector["ticket"]) else None
    )
    if vector["record"] is not None and key is not None:
        await client.set(key, vector["record"])
    for state_key, value in vector.get("revocation_state", {}).items():
        await client.set(state_key, value)
    verifier = TicketVerifier(
        TicketStore(client, batch=False),
        key_prefix=vector["prefix"],
        audience=vector["audience"],
        leeway=vector["leeway_ms"] / 1000,
        clock=lambda: vector["now_ms"] / 1000,
    )
    try:
        claims = await verifier.redeem(
            vector["ticket"], origin=vector["origin"], client_ip=vector["client_ip"]
        )
        # The revocation read every Python redeemer makes after the verifier (HTTP
        # endpoint, adapters): PROTOCOL.md section 4 step 5.
        if await check_revoked(client, vector["prefix"], target_of(claims), deadline=1.0):
            raise TicketRejected(Reason.REVOKED)
    except TicketRejected as exc:
        outcome: dict[str, Any] = {"outcome": exc.reason.value, "status": exc.status}
        outcome["detail"] = exc.detail.value if exc.detail is not None else None
        outcome["replay"] = exc.replay
    except StoreUnavailable:
        outcome = {"outcome": "store_unavailable", "status": 503}
    else:
        outcome = {"outcome": "ok", "status": 101, "claims": claims}
    left = await client.get(key) if key is not None else None
    outcome["record_left"] = left is not None and not is_tombstone(left)
    text = left.decode() if isinstance(left, bytes) else left
    outcome["tombstone"] = text if text is not None and is_tombstone(text) else None
    await client.aclose()
    return outcome


@pytest.mark.parametrize("vector", cases(load("redeem.json")))
def test_redeem(vector: dict[str, Any]) -> None:
    result = asyncio.run(redeem_once(vector))
    assert (result["outcome"], result["status"]) == (vector["outcome"], vector["status"])
    assert result["record_left"] is vector["record_left"]
    assert result["tombstone"] == vector["tombstone"]
    if "replay" in vector:
        assert result["detail"] == vector["detail"] == "replayed"
        replay = result["replay"]
        assert {name: getattr(replay, name) for name in vector["replay"]} == vector["replay"]
    elif result["outcome"] != "ok":
        assert result["detail"] != "replayed"
    if vector["outcome"] == "ok":
        for name, expected in vector["claims"].items():
            value = getattr(result["claims"], name)
            assert (dict(value) if name == "extra" else value) == expected, name


# --- revocation ----------------------------------------------------------------------------

REVOCATION = load("revocation.json")


def target(who: dict[str, Any]) -> Target:
    return Target(
        subject=who["subject_hash"],
        session=who.get("session_hash"),
        auth_at_ms=who["auth_at_ms"],
        connection=who.get("connection_id"),
    )


def state(values: dict[str, Any]) -> RevocationState:
    not_before, except_session = values.get("subject") or (None, None)
    return RevocationState(
        not_before_ms=not_before,
        except_session=except_session,
        session_revoked=bool(values.get("session")),
        connection_revoked=bool(values.get("connection")),
    )


@pytest.mark.parametrize("vector", REVOCATION["subject_ids"], ids=repr)
def test_subject_ids(vector: dict[str, Any]) -> None:
    assert subject_id(vector["subject"]) == vector["id"]


@pytest.mark.parametrize("vector", REVOCATION["session_hashes"], ids=repr)
def test_session_hashes(vector: dict[str, Any]) -> None:
    assert session_hash(vector["session"]) == vector["hash"]


@pytest.mark.parametrize("vector", cases(REVOCATION["rules"]))
def test_revocation_rule(vector: dict[str, Any]) -> None:
    assert is_revoked(state(vector["state"]), target(vector["who"])) is vector["revoked"]


@pytest.mark.parametrize("vector", cases(REVOCATION["events"]))
def test_revocation_events(vector: dict[str, Any]) -> None:
    event = decode_event(vector["event"])
    revokes = event is not None and matches(event, target(vector["who"]))
    assert revokes is vector["revokes"]


def test_revocation_vectors_follow_the_spec() -> None:
    """The spec functions that wrote the revocation vectors still agree with them."""
    for vector in REVOCATION["subject_ids"]:
        assert make_vectors.spec_subject_id(vector["subject"]) == vector["id"]
    for vector in REVOCATION["rules"]:
        assert make_vectors.spec_revoked(vector["who"], vector["state"]) is vector["revoked"]


# --- close codes and statuses --------------------------------------------------------------


def test_statuses_and_body() -> None:
    codes = load("close_codes.json")
    python = {reason.value: status for reason, status in REJECTION_STATUS.items()}
    expected = dict(codes["rejection_status"])
    assert expected["revoked"] == 403
    assert python == expected
    assert {r.value for r in Reason} == set(expected)
    assert codes["denial_body"] == DENIAL_BODY
    assert {c["code"] for c in codes["close_codes"]} == {4401, 4403, 1012}


# --- connection lifetime -------------------------------------------------------------------


@pytest.mark.parametrize("vector", cases(load("lifetime.json")["deadlines"]))
def test_lifetime_deadline(vector: dict[str, Any]) -> None:
    expires = vector["session_expires_at_ms"]
    claims = Claims(
        subject="u",
        origin="https://app.example.com",
        audience="chat",
        issued_at=0.0,
        expires_at=30.0,
        session_expires_at=None if expires is None else expires / 1000,
    )
    max_ms = vector["max_lifetime_ms"]
    deadline = deadline_of(
        claims,
        vector["now_ms"] / 1000,
        max_lifetime=None if max_ms is None else max_ms / 1000,
        jitter=lambda bound: vector["jitter_fraction"] * bound,
    )
    got = deadline and {"at_ms": round(deadline.at * 1000), "cause": deadline.cause}
    assert got == vector["expected"]


# --- tombstones ----------------------------------------------------------------------------

TOMBSTONES = load("tombstones.json")


@pytest.mark.parametrize("vector", TOMBSTONES["fingerprints"], ids=lambda v: repr(v["client_ip"]))
def test_client_fingerprints(vector: dict[str, Any]) -> None:
    assert client_fingerprint(vector["client_ip"]) == vector["fingerprint"]


def test_connection_ids() -> None:
    for vector in TOMBSTONES["connection_ids"]:
        assert connection_id(vector["ticket"]) == vector["connection"]


@pytest.mark.parametrize("vector", TOMBSTONES["valid"], ids=lambda v: v["raw"])
def test_valid_tombstones(vector: dict[str, Any]) -> None:
    assert is_tombstone(vector["raw"])
    tombstone = decode_tombstone(vector["raw"])
    fields = ("first_used_ms", "client", "subject", "session")
    assert {name: getattr(tombstone, name) for name in fields} == {k: vector[k] for k in fields}


@pytest.mark.parametrize("raw", TOMBSTONES["invalid"], ids=repr)
def test_invalid_tombstones(raw: str) -> None:
    decode_tombstone(TOMBSTONES["valid"][0]["raw"])  # the control: a valid one decodes
    with pytest.raises(ValueError, match="tombstone"):
        decode_tombstone(raw)


@pytest.mark.parametrize("raw", TOMBSTONES["records_are_not_tombstones"], ids=repr)
def test_records_are_not_tombstones(raw: str) -> None:
    assert not is_tombstone(raw)
    decode_record(raw)
