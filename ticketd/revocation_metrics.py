"""Prometheus metrics for a WebSocket process's live connections.

:class:`PrometheusWatchObserver` counts what its :class:`~ticketd.liveness.RevocationWatch`
closes, :class:`PrometheusLifetimeObserver` what a
:class:`~ticketd.lifetime.ConnectionLifetime` closes. Needs ``prometheus-client`` (the
``server`` extra). Labels are bounded: ``cause`` is one of ``push``, ``sweep``,
``resync``, ``stale`` for revocations, ``session_expired`` or ``max_lifetime`` for
lifetimes::

    from prometheus_client import CollectorRegistry
    registry = CollectorRegistry()
    watch = RevocationWatch(client, observer=PrometheusWatchObserver(registry))
    lifetime = ConnectionLifetime(observer=PrometheusLifetimeObserver(registry))
"""

from __future__ import annotations

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "ticketd.revocation_metrics needs prometheus-client: pip install 'ticketd[server]'"
    ) from exc

from .lifetime import MAX_LIFETIME, SESSION_EXPIRED, LifetimeObserver
from .liveness import WatchObserver

__all__ = ["PROPAGATION_BUCKETS", "PrometheusLifetimeObserver", "PrometheusWatchObserver"]

PROPAGATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PrometheusWatchObserver(WatchObserver):
    """Counts closes, propagation, gaps, feed errors, feed lag and sweeps into ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self._closed = Counter(
            "ticketd_revocation_closed",
            "Live connections closed by revocation, by cause (push, sweep, resync, stale).",
            ["cause"],
            registry=r,
        )
        self._propagation = Histogram(
            "ticketd_revocation_propagation_seconds",
            "From the revocation to the close of a matching connection by the feed.",
            buckets=PROPAGATION_BUCKETS,
            registry=r,
        )
        self._gaps = Counter(
            "ticketd_revocation_feed_gaps",
            "Times the revocation stream was trimmed past the last id seen (a resync followed).",
            registry=r,
        )
        self._errors = Counter(
            "ticketd_revocation_feed_errors", "Failed reads of the revocation feed.", registry=r
        )
        self._lag = Gauge(
            "ticketd_revocation_feed_lag_seconds",
            "Seconds since the revocation feed last heard from Redis.",
            registry=r,
            multiprocess_mode="max",
        )
        self._sweep_closed = Counter(
            "ticketd_revocation_sweep_closed",
            "Connections the periodic sweep closed (what the push missed).",
            registry=r,
        )
        self._sweeps = Counter(
            "ticketd_revocation_sweeps", "Sweeps of the live connections run.", registry=r
        )

    def closed(self, cause: str) -> None:
        self._closed.labels(cause).inc()

    def propagation(self, seconds: float) -> None:
        self._propagation.observe(seconds)

    def gap(self) -> None:
        self._gaps.inc()

    def feed_error(self) -> None:
        self._errors.inc()

    def feed_lag(self, seconds: float) -> None:
        self._lag.set(seconds)

    def swept(self, checked: int, closed: int) -> None:
        self._sweeps.inc()
        self._sweep_closed.inc(closed)


class PrometheusLifetimeObserver(LifetimeObserver):
    """Counts ``ticketd_connection_lifetime_closed_total{cause}`` into ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._closed = Counter(
            "ticketd_connection_lifetime_closed",
            "Live connections closed with 4401 at the end of their lifetime, by cause "
            "(session_expired, max_lifetime).",
            ["cause"],
            registry=registry,
        )
        for cause in (SESSION_EXPIRED, MAX_LIFETIME):  # both series exist from the start
            self._closed.labels(cause)

    def closed(self, cause: str) -> None:
        self._closed.labels(cause).inc()
