"""uvicorn with a drain phase: readiness turns false before the process stops."""

from __future__ import annotations

import logging
import threading
from types import FrameType
from typing import Any

import uvicorn

__all__ = ["DrainingServer"]

_logger = logging.getLogger("ticketd.service")


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT: report not-ready, keep serving ``drain_seconds``, then exit.

    Load balancers polling ``/readyz`` stop sending new requests during the drain;
    uvicorn then lets in-flight requests finish (``timeout_graceful_shutdown``).
    A second signal exits at once. ``service`` is the app's
    :class:`~ticketd.service.app.Service` (``app.state.service``).
    """

    def __init__(self, config: uvicorn.Config, service: Any, *, drain_seconds: float) -> None:
        super().__init__(config)
        self.service = service
        self.drain_seconds = drain_seconds

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.service.draining or self.drain_seconds <= 0:
            self.service.draining = True
            super().handle_exit(sig, frame)
            return
        self.service.draining = True
        _logger.info("draining: /readyz answers 503, exiting in %.1f s", self.drain_seconds)
        timer = threading.Timer(self.drain_seconds, super().handle_exit, (sig, frame))
        timer.daemon = True
        timer.start()
