"""Log configuration: one JSON object per line, or plain text for development.

Tickets and cookies never reach a log line from ticketd itself; records from
servers we do not control (uvicorn's handshake line carries the query string)
go through :mod:`ticketd.redaction`'s filter on the handler.
"""

from __future__ import annotations

import json
import logging
import logging.config
import time
from typing import Any

__all__ = ["DenialResponseNoise", "JSONFormatter", "configure_logging", "logging_config"]

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "color_message",  # uvicorn's ANSI-coloured duplicate of the message
}


class JSONFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "event", ...extra}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            payload["error"] = record.exc_info[0].__name__
        return json.dumps(payload, default=str, separators=(",", ":"))


class DenialResponseNoise(logging.Filter):
    """Drop uvicorn's ERROR "ASGI callable returned without completing handshake." only.

    uvicorn's ``websockets-sansio`` protocol (its default since 0.35) never marks the
    handshake complete after a WebSocket Denial Response (``websocket.http.response.*``),
    which is how ticketd's adapters refuse a ticket with 401/403. When the app then
    returns, it logs that line at ERROR although the client got the intended status
    (and uvicorn's own access line already says which). Every correct refusal would page
    whoever alerts on ERROR. Upstream: uvicorn pull request #3138 (the wsproto protocol
    already behaves). Only that exact record on ``uvicorn.error`` is dropped.
    """

    MESSAGE = "ASGI callable returned without completing handshake."

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "uvicorn.error" and record.msg == self.MESSAGE)


def logging_config(level: str = "info", fmt: str = "json") -> dict[str, Any]:
    """A ``dictConfig`` for ticketd and uvicorn (also handed to uvicorn's ``log_config``)."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JSONFormatter"}
        if fmt == "json"
        else {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {
            "redact": {"()": "ticketd.redaction.TicketRedactionFilter"},
            "denial_noise": {"()": f"{__name__}.DenialResponseNoise"},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
                "filters": ["redact"],
            }
        },
        "loggers": {
            "ticketd": {"level": level.upper()},
            "uvicorn": {"level": level.upper()},
            "uvicorn.error": {"level": level.upper(), "filters": ["denial_noise"]},
            "uvicorn.access": {"level": level.upper()},
        },
        "root": {"handlers": ["default"], "level": level.upper()},
    }


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    logging.config.dictConfig(logging_config(level, fmt))
