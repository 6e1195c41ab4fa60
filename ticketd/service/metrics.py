"""Prometheus metrics. Labels are bounded sets (outcome codes), never values
such as tickets, subjects or origins."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .. import __version__

__all__ = [
    "LATENCY_BUCKETS",
    "Metrics",
]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """One registry per application, so tests and embedders never collide.

    With ``PROMETHEUS_MULTIPROC_DIR`` set (``ticketd serve --workers N`` sets it),
    ``/metrics`` aggregates every worker's files.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.mints = Counter(
            "ticketd_mints", "Mint requests by outcome code.", ["outcome"], registry=r
        )
        self.minted = self.mints.labels("ok")
        """``mints{outcome="ok"}``, looked up once (the mint's hot path counts it)."""
        self.redemptions = Counter(
            "ticketd_redemptions",
            "Redeem attempts by outcome (ok or a reason).",
            ["outcome", "via"],
            registry=r,
        )
        self.replays = Counter(
            "ticketd_replays",
            "Replayed tickets: kind=retry for the same client within the grace, else replay.",
            ["kind"],
            registry=r,
        )
        self.replay_webhook_dropped = Counter(
            "ticketd_replay_webhook_dropped",
            "Replay webhook notifications dropped, by cause (queue_full, failed).",
            ["cause"],
            registry=r,
        )
        self.mint_latency = Histogram(
            "ticketd_mint_duration_seconds",
            "Mint handler latency.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.redeem_latency = Histogram(
            "ticketd_redeem_duration_seconds",
            "HTTP redeem handler latency.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "ticketd_store_errors", "Ticket store failures.", ["operation"], registry=r
        )
        self.rate_limited = Counter(
            "ticketd_rate_limited", "Mints refused by a limit.", ["limit"], registry=r
        )
        self.revocations = Counter(
            "ticketd_revocations",
            "Revocations accepted, by kind (subject, session, connection).",
            ["kind"],
            registry=r,
        )
        self.ready = Gauge(
            "ticketd_ready",
            "1 when this instance reports ready.",
            registry=r,
            multiprocess_mode="livemin",
        )
        # A gauge, not an Info: Info metrics are not supported in multiprocess mode.
        build = Gauge(
            "ticketd_build_info",
            "Build information (always 1).",
            ["version"],
            registry=r,
            multiprocess_mode="max",
        )
        build.labels(__version__).set(1)

    def exposition_registry(self) -> CollectorRegistry:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not directory:
            return self.registry
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return registry
