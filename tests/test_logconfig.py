"""JSON and text log output of the service, with ticket redaction on the handler."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator

import pytest

from ticketd.service.logconfig import JSONFormatter, logging_config
from ticketd.tickets import new_ticket


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def test_json_formatter_one_object_per_line() -> None:
    record = logging.LogRecord(
        "ticketd.service", logging.INFO, __file__, 1, "mint refused code=%s", ("cross_site",), None
    )
    record.code = "cross_site"
    record.request_id = "abc123"
    line = JSONFormatter().format(record)
    assert "\n" not in line
    payload = json.loads(line)
    assert payload["level"] == "info"
    assert payload["logger"] == "ticketd.service"
    assert payload["event"] == "mint refused code=cross_site"
    assert (payload["code"], payload["request_id"]) == ("cross_site", "abc123")
    assert payload["ts"].endswith("Z")


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_configured_handler_redacts_tickets(fmt: str, restore_logging: None) -> None:
    config = logging_config("info", fmt)
    config["handlers"]["default"]["stream"] = "ext://sys.stdout"
    logging.config.dictConfig(config)
    stream = io.StringIO()
    handler = logging.getLogger().handlers[-1]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    ticket = new_ticket()
    logging.getLogger("uvicorn.error").info(
        '%s - "WebSocket /ws?ticket=%s" [accepted]', "127.0.0.1:5000", ticket
    )
    output = stream.getvalue()
    assert "WebSocket /ws?ticket=" in output
    assert ticket not in output
    if fmt == "json":
        assert json.loads(output.strip().splitlines()[-1])["logger"] == "uvicorn.error"
