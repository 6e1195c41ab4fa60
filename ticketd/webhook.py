"""The replay webhook: a signed POST per replayed ticket, sent in the background.

The signature is the Standard Webhooks one (https://www.standardwebhooks.com/):
three headers, ``webhook-id``, ``webhook-timestamp`` (seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, keyed by
the secret given as ``whsec_<base64 key>``. A receiver checks it with
:func:`verify` (or any Standard Webhooks library).

The body holds no ticket, no cookie, no address: the ticket's 8-character log id,
``S(subject)``, the milliseconds since the first use, whether it came from the same
client (and counted as a retry), and what the replay policy did::

    {"type": "ticket.replayed", "timestamp": "2026-12-02T03:40:00.123Z",
     "data": {"ticket": "Ab3dEf9h", "subject": "<22 chars>", "since_first_use_ms": 950,
              "same_client": false, "retry": false, "action": "close_first"}}

**The handshake never waits on it.** :meth:`ReplayWebhook.redeemed` (a
:class:`~ticketd.replay.RedemptionObserver`) only puts the notification on a bounded
queue; one daemon thread delivers, with a timeout per attempt and a few retries
with backoff. A full queue, or a notification whose attempts all failed, is
dropped and reported through ``on_drop(cause)`` (``queue_full``, ``failed``), which
:class:`~ticketd.redemption_metrics.PrometheusRedemptionObserver` counts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.client
import json
import logging
import queue
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from .exceptions import TicketRejected
from .replay import RedemptionObserver

__all__ = [
    "EVENT_TYPE",
    "ReplayWebhook",
    "check_url",
    "replay_payload",
    "sign",
    "signing_key",
    "verify",
]

_logger = logging.getLogger("ticketd.webhook")

EVENT_TYPE = "ticket.replayed"
_PREFIX = "whsec_"


def signing_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ``ValueError`` (without the secret)."""
    if not isinstance(secret, str) or not secret.startswith(_PREFIX):
        raise ValueError("a webhook secret has the form whsec_<base64>")
    try:
        key = base64.b64decode(secret[len(_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret has the form whsec_<base64>") from None
    if len(key) < 24:
        raise ValueError("a webhook secret needs at least 24 bytes of key")
    return key


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256>``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float, tolerance: float = 300
) -> bool:
    """Whether ``body`` with ``headers`` (lower-case names) is signed by ``secret`` and
    its timestamp is within ``tolerance`` seconds of ``now``."""
    try:
        message_id = headers["webhook-id"]
        timestamp = int(headers["webhook-timestamp"])
        presented = headers["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(signing_key(secret), message_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in presented)


def replay_payload(rejection: TicketRejected, *, at: float) -> dict[str, Any]:
    """The webhook body of a replay (see the module docstring)."""
    replay = rejection.replay
    if replay is None:
        raise ValueError("not a replay")
    stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    return {
        "type": EVENT_TYPE,
        "timestamp": stamp.replace("+00:00", "Z"),
        "data": {
            "ticket": rejection.ticket_hash,
            "subject": replay.subject,
            "since_first_use_ms": replay.since_first_use_ms,
            "same_client": replay.same_client,
            "retry": replay.retry,
            "action": replay.action,
        },
    }


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is a failed delivery, never a re-POST elsewhere


class ReplayWebhook(RedemptionObserver):
    """POST a signed notification to ``url`` for every replay (a verifier's observer).

    ``queue_size`` bounds the notifications waiting; ``timeout`` is per attempt,
    ``retries`` the attempts after the first (waiting ``backoff`` seconds, doubled each time).
    """

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        queue_size: int = 256,
        timeout: float = 2.0,
        retries: int = 3,
        backoff: float = 0.5,
        on_drop: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_url(url)
        self.url = url
        self._key = signing_key(secret)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.on_drop = on_drop
        self.clock = clock
        self.delivered = 0
        self.dropped = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=queue_size)
        self._opener = urllib.request.build_opener(_NoRedirects())
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def redeemed(self, outcome: str, rejection: TicketRejected | None) -> None:
        if rejection is None or rejection.replay is None:
            return
        body = json.dumps(replay_payload(rejection, at=self.clock()), separators=(",", ":"))
        try:
            self._queue.put_nowait(body.encode())
        except queue.Full:
            self._drop("queue_full")
            return
        self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="ticketd-replay-webhook", daemon=True
                )
                self._thread.start()

    def _drop(self, cause: str) -> None:
        with self._lock:  # the delivery thread and the redeeming ones both drop
            self.dropped += 1
        _logger.warning("replay webhook notification dropped cause=%s", cause)
        if self.on_drop is not None:
            self.on_drop(cause)

    def _run(self) -> None:
        while (body := self._queue.get()) is not None:
            try:
                if self._deliver(body):
                    self.delivered += 1
                else:
                    self._drop("failed")
            except Exception:  # a bug here must not kill the thread or strand join()
                _logger.exception("replay webhook delivery failed unexpectedly")
                self._drop("failed")
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _deliver(self, body: bytes) -> bool:
        message_id = "msg_" + secrets.token_urlsafe(16)
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            timestamp = int(self.clock())
            headers = {
                "Content-Type": "application/json",
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(self._key, message_id, timestamp, body),
            }
            # The scheme was checked in __init__ (http or https only).
            request = urllib.request.Request(  # noqa: S310
                self.url, data=body, headers=headers, method="POST"
            )
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    if 200 <= response.status < 300:
                        return True
            # URLError, HTTPError and timeouts are OSErrors; a receiver that answers
            # garbage raises http.client.HTTPException (BadStatusLine, LineTooLong...).
            except (OSError, ValueError, http.client.HTTPException) as exc:
                _logger.info(
                    "replay webhook attempt %d failed: %s", attempt + 1, type(exc).__name__
                )
        return False

    def join(self) -> None:
        """Wait until every queued notification was delivered or dropped (tests, shutdown)."""
        self._queue.join()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the delivery thread after what is queued (waiting up to ``timeout``)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        thread.join(timeout)


def check_url(url: str) -> None:
    """``ValueError`` unless ``url`` is http(s) with a host, a valid port and no
    credentials (the body is signed; a password in the URL would end up in logs and
    process listings). The message never repeats the URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("the webhook URL must be http:// or https://")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the webhook URL has an invalid port") from None
    if not parts.hostname:
        raise ValueError("the webhook URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the webhook URL must not hold credentials (the body is signed)")
    if port == 0:
        raise ValueError("the webhook URL has an invalid port")
