"""The replay webhook: Standard Webhooks signatures, delivery to a real local receiver,
and a blackholed receiver that never holds up a redeem."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading

import fakeredis
import pytest

from tests.support.webhooks import TIMEOUT, receiver
from ticketd import TicketIssuer, TicketRejected, TicketStore, TicketVerifier
from ticketd.exceptions import Detail, Reason
from ticketd.tombstones import Replay
from ticketd.webhook import ReplayWebhook, replay_payload, sign, signing_key, verify

ORIGIN = "https://app.example.com"
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()

# The example of the Standard Webhooks specification (and of its reference libraries).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY = (
    "msg_p5jXN8AQM9LWM0D4loKWxJek",
    1614265330,
    b'{"test": 2432232314}',
)
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_signature_is_the_standard_webhooks_one() -> None:
    assert sign(signing_key(SPEC_SECRET), SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": f"v1,bm90IGl0 {SPEC_SIGNATURE}",  # several signatures: any one
    }
    assert verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP + 10)
    assert not verify(SPEC_SECRET, headers, SPEC_BODY + b" ", now=SPEC_TIMESTAMP)
    assert not verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP + 301)  # too old
    assert not verify(SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP)
    assert not verify(SPEC_SECRET, {}, SPEC_BODY, now=SPEC_TIMESTAMP)


@pytest.mark.parametrize(
    "secret", ["", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_!!!", "whsec_c2hvcnQ="]
)
def test_a_bad_secret_is_refused_without_echoing_it(secret: str) -> None:
    signing_key(SPEC_SECRET)  # the control
    with pytest.raises(ValueError, match=r"^a webhook secret ") as info:
        signing_key(secret)
    assert str(info.value) in {  # fixed texts: never the secret
        "a webhook secret has the form whsec_<base64>",
        "a webhook secret needs at least 24 bytes of key",
    }


def test_the_payload_holds_no_secret() -> None:
    rejection = TicketRejected(
        Reason.INVALID,
        ticket_hash="Ab3dEf9h",
        detail=Detail.REPLAYED,
        replay=Replay(950, False, "conn", "S" * 22, "H" * 22, action="close_first"),
    )
    payload = replay_payload(rejection, at=1_767_225_600.5)
    assert payload == {
        "type": "ticket.replayed",
        "timestamp": "2026-01-01T00:00:00.500Z",
        "data": {
            "ticket": "Ab3dEf9h",
            "subject": "S" * 22,
            "since_first_use_ms": 950,
            "same_client": False,
            "retry": False,
            "action": "close_first",
        },
    }


# -- a real receiver -------------------------------------------------------------------------


async def replay_once(webhook: ReplayWebhook) -> TicketRejected:
    store = TicketStore(fakeredis.FakeAsyncRedis(), batch=False)
    issued = await TicketIssuer(store).mint("u", origin=ORIGIN, audience="chat")
    verifier = TicketVerifier(store, audience="chat", observers=[webhook])
    await verifier.redeem(issued.ticket, origin=ORIGIN, client_ip="192.0.2.1")
    with pytest.raises(TicketRejected) as info:
        await verifier.redeem(issued.ticket, origin=ORIGIN, client_ip="192.0.2.99")
    assert issued.ticket not in json.dumps(replay_payload(info.value, at=0))
    return info.value


async def test_a_replay_is_delivered_signed() -> None:
    with receiver() as hook:
        webhook = ReplayWebhook(hook.url, SECRET, timeout=TIMEOUT)
        rejection = await replay_once(webhook)
        webhook.join()
        webhook.close()
    assert (webhook.delivered, webhook.dropped) == (1, 0)
    ((headers, body),) = hook.received
    assert verify(SECRET, headers, body, now=int(headers["webhook-timestamp"]))
    # Checked by hand too, the way any Standard Webhooks receiver does it.
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    digest = hmac.new(b"k" * 32, signed, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(digest).decode()
    assert headers["webhook-id"].startswith("msg_")
    data = json.loads(body)["data"]
    assert data["ticket"] == rejection.ticket_hash
    assert (data["same_client"], data["action"]) == (False, "none")
    assert b"192.0.2" not in body


async def test_a_blackholed_receiver_never_holds_up_the_redeem() -> None:
    with receiver(hold=True) as hook:
        webhook = ReplayWebhook(hook.url, SECRET, timeout=TIMEOUT, retries=0)
        # If the redeem waited on the delivery it would wait for `release`, which is only
        # set below: the redeem returning first is the proof, no clock involved.
        rejection = await replay_once(webhook)
        assert rejection.detail is Detail.REPLAYED
        assert hook.arrived.wait(TIMEOUT)  # the notification is on the wire, held there
        assert webhook.delivered == 0
        hook.release.set()
        webhook.join()
        webhook.close()
    assert webhook.delivered == 1


async def test_drops_are_counted_and_never_raised() -> None:
    drops: list[str] = []
    with receiver(hold=True) as hook:
        webhook = ReplayWebhook(
            hook.url, SECRET, queue_size=1, timeout=TIMEOUT, retries=0, on_drop=drops.append
        )
        await replay_once(webhook)  # taken by the delivery thread, held by the receiver
        assert hook.arrived.wait(TIMEOUT)
        await replay_once(webhook)  # waits in the queue (size 1)
        await replay_once(webhook)  # no room: dropped, the redeem unaffected
        assert drops == ["queue_full"]
        hook.release.set()
        webhook.join()
        webhook.close()
    assert (webhook.delivered, webhook.dropped) == (2, 1)


async def test_a_failing_receiver_is_retried_then_dropped() -> None:
    drops: list[str] = []
    with receiver(status=500) as hook:
        webhook = ReplayWebhook(
            hook.url, SECRET, timeout=TIMEOUT, retries=2, backoff=0, on_drop=drops.append
        )
        await replay_once(webhook)
        webhook.join()
        webhook.close()
    assert drops == ["failed"]
    assert len(hook.received) == 3  # the first attempt and two retries
    assert len({headers["webhook-id"] for headers, _ in hook.received}) == 1  # one message


def test_the_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        ReplayWebhook("file:///etc/passwd", SECRET)


@pytest.mark.parametrize("answer", [b"garbage\r\n\r\n", b"HTTP/1.1 200 " + b"x" * 70_000])
async def test_a_receiver_answering_garbage_is_a_failed_delivery(answer: bytes) -> None:
    """A reply http.client cannot parse (BadStatusLine, LineTooLong) is a failed attempt:
    retried, then dropped and counted; the delivery thread lives on and join() returns.
    (Found by a hostile review: it killed the thread and left join() hanging.)"""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(TIMEOUT)
    port = server.getsockname()[1]

    def serve() -> None:
        for _ in range(2):  # the attempt and its one retry
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    drops: list[str] = []
    webhook = ReplayWebhook(
        f"http://127.0.0.1:{port}/hook",
        SECRET,
        timeout=TIMEOUT,
        retries=1,
        backoff=0,
        on_drop=drops.append,
    )
    try:
        await replay_once(webhook)
        finished = threading.Thread(target=webhook.join, daemon=True)
        finished.start()
        finished.join(TIMEOUT * 3)
        assert not finished.is_alive(), "join() hangs: the delivery thread died"
        assert drops == ["failed"]
        with receiver() as hook:  # the thread still delivers what comes next
            webhook.url = hook.url
            await replay_once(webhook)
            webhook.join()
        assert webhook.delivered == 1
    finally:
        webhook.close()
        thread.join(TIMEOUT)
        server.close()
