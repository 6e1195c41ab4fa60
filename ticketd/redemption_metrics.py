"""Prometheus metrics for the redeems of a WebSocket process (the service's names).

Needs ``prometheus-client`` (the ``server`` extra). A verifier in a WebSocket
process tells its observers every outcome; this one counts them under the names
the HTTP service uses, so one dashboard reads both (``via`` tells them apart)::

    from prometheus_client import CollectorRegistry
    registry = CollectorRegistry()
    metrics = PrometheusRedemptionObserver(registry)
    verifier = TicketVerifier(store, audience="chat", observers=[metrics])

Labels are bounded: ``outcome`` is ``ok``, ``replayed``, a
:class:`~ticketd.Reason` value or ``store_unavailable``; ``via`` is given once;
``kind`` (replays) is ``retry`` (the same client within the grace) or ``replay``;
``cause`` (webhook drops) is ``queue_full`` or ``failed``.
"""

from __future__ import annotations

try:
    from prometheus_client import CollectorRegistry, Counter
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "ticketd.redemption_metrics needs prometheus-client: pip install 'ticketd[server]'"
    ) from exc

from .exceptions import TicketRejected
from .replay import RedemptionObserver

__all__ = ["PrometheusRedemptionObserver", "replay_kind"]


def replay_kind(rejection: TicketRejected) -> str:
    """The ``kind`` label of a replay: ``retry`` or ``replay``."""
    return "retry" if rejection.replay is not None and rejection.replay.retry else "replay"


class PrometheusRedemptionObserver(RedemptionObserver):
    """Counts ``ticketd_redemptions_total{outcome,via}`` and ``ticketd_replays_total{kind}``;
    :meth:`webhook_dropped` is the replay webhook's ``on_drop``."""

    def __init__(self, registry: CollectorRegistry, *, via: str = "websocket") -> None:
        self.via = via
        self._redemptions = Counter(
            "ticketd_redemptions",
            "Redeem attempts by outcome (ok or a reason).",
            ["outcome", "via"],
            registry=registry,
        )
        self._replays = Counter(
            "ticketd_replays",
            "Replayed tickets: kind=retry for the same client within the grace, else replay.",
            ["kind"],
            registry=registry,
        )
        self._dropped = Counter(
            "ticketd_replay_webhook_dropped",
            "Replay webhook notifications dropped, by cause (queue_full, failed).",
            ["cause"],
            registry=registry,
        )

    def redeemed(self, outcome: str, rejection: TicketRejected | None) -> None:
        self._redemptions.labels(outcome, self.via).inc()
        if rejection is not None and rejection.replay is not None:
            self._replays.labels(replay_kind(rejection)).inc()

    def webhook_dropped(self, cause: str) -> None:
        self._dropped.labels(cause).inc()
