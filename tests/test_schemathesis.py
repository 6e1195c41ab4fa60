"""Schemathesis against the committed openapi/openapi.json and the real service.

The service runs on a live uvicorn (``serve_app``) over a real redis-server, so every
generated request goes through the same HTTP stack, Redis client and store as in
production. Schemathesis cannot know the session cookie, the allowed Origin or the
service key (configuration, not schema), so about half of the generated calls get them
added and the other half go without, to cover the refusals.

Every built-in check runs (no 5xx, documented status codes, content types, response
schemas and headers, negative data refused, auth not ignored, unsupported methods
refused) except ``positive_data_acceptance``: a schema-valid mint can still be refused
by configuration the spec cannot express (``audience`` must be one of
``TICKETD_AUDIENCES`` → 400 ``unknown_audience``; ``claims`` must fit in 1 KiB → 400
``invalid_body``). ``negative_data_rejection`` also accepts 413: a schema-violating body
larger than 8 KiB is refused for its size before its schema is looked at.

Responses random generation cannot reach (200 redeem, 201 mint followed by a redeem,
429, 503 with Redis down) are validated against the same spec in the second half.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import CheckFunction
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.redisproc import RedisServer
from tests.support.service_support import (
    APP_ORIGIN,
    SERVICE_KEY,
    cookie_for,
    make_settings,
    running_service,
)

SPEC = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {"enabled": False},
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "405", "413", "415", "422"]
            },
        }
    }
)
schema = schemathesis.openapi.from_path(SPEC, config=CONFIG)

EXAMPLES = 60
"""Fuzzing examples per operation; the whole module takes about 10 s on 2 cores."""


def credentials(path: str) -> dict[str, str]:
    """What a real caller adds to each operation."""
    if path == "/v1/tickets":
        return {"Origin": APP_ORIGIN, "Cookie": f"session={cookie_for('schemathesis')}"}
    if path == "/v1/tickets/redeem":
        return {"Authorization": f"Bearer {SERVICE_KEY}"}
    return {}


@pytest.fixture(scope="module")
def base_url(redis_server: RedisServer) -> Iterator[str]:
    settings_ = make_settings(
        redis_server.url,
        rate_limit_per_ip="0",
        rate_limit_per_subject="0",
        max_outstanding_per_subject=0,
    )
    with running_service(settings_) as base:
        yield base


@schema.parametrize()
@schema.given(with_credentials=st.booleans())
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_service_conforms_to_committed_spec(
    case: Any, with_credentials: bool, base_url: str
) -> None:
    headers = credentials(case.path) if with_credentials else {}
    response = case.call_and_validate(base_url=base_url, headers=headers, timeout=10)
    assert response.status_code < 500, response.text


# --- responses random input cannot reach ------------------------------------------------


CONFORMANCE: list[CheckFunction] = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
"""For hand-made requests: the checks about the response itself (the others would judge
the request schemathesis thinks was sent, without the credentials added here)."""


def validated(path: str, response: httpx.Response, body: Any = None) -> httpx.Response:
    """Check ``response`` against the committed spec for ``POST path``."""
    case = schema[path]["POST"].Case(body=body, media_type="application/json")
    case.validate_response(response, checks=CONFORMANCE)
    assert response.status_code < 500 or response.status_code == 503, response.text
    return response


def test_success_and_binding_refusals_conform(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as http:
        body = {"audience": "chat", "claims": {"room": "r1"}}
        minted = validated(
            "/v1/tickets",
            http.post("/v1/tickets", json=body, headers=credentials("/v1/tickets")),
            body,
        )
        assert minted.status_code == 201
        ticket = minted.json()["ticket"]
        auth = credentials("/v1/tickets/redeem")
        for redeem_body, status in [
            ({"ticket": ticket, "origin": APP_ORIGIN, "audience": "chat"}, 200),
            ({"ticket": ticket, "origin": APP_ORIGIN, "audience": "chat"}, 401),
        ]:
            response = http.post("/v1/tickets/redeem", json=redeem_body, headers=auth)
            assert validated("/v1/tickets/redeem", response, redeem_body).status_code == status
        for audience, status in [("billing", 403), ("nope", 400)]:
            body = {"audience": audience}
            response = http.post("/v1/tickets", json=body, headers=credentials("/v1/tickets"))
            if status == 403:  # minted for billing, presented for chat
                ticket = response.json()["ticket"]
                redeem_body = {"ticket": ticket, "origin": APP_ORIGIN, "audience": "chat"}
                response = http.post("/v1/tickets/redeem", json=redeem_body, headers=auth)
                body = redeem_body
                path = "/v1/tickets/redeem"
            else:
                path = "/v1/tickets"
            assert validated(path, response, body).status_code == status


def test_rate_limited_and_unavailable_conform(private_redis: RedisServer) -> None:
    settings_ = make_settings(
        private_redis.url, rate_limit_per_subject="1/minute", max_outstanding_per_subject=0
    )
    with running_service(settings_) as base, httpx.Client(base_url=base, timeout=10) as http:
        headers = credentials("/v1/tickets")
        assert (
            validated("/v1/tickets", http.post("/v1/tickets", headers=headers)).status_code == 201
        )
        limited = validated("/v1/tickets", http.post("/v1/tickets", headers=headers))
        assert limited.status_code == 429
        private_redis.stop()
        other = {"Origin": APP_ORIGIN, "Cookie": f"session={cookie_for('other')}"}
        down = validated("/v1/tickets", http.post("/v1/tickets", headers=other))
        assert (down.status_code, down.headers["retry-after"]) == (503, "1")
        body = {"ticket": "A" * 43, "origin": APP_ORIGIN, "audience": "chat"}
        redeem = http.post(
            "/v1/tickets/redeem", json=body, headers=credentials("/v1/tickets/redeem")
        )
        assert validated("/v1/tickets/redeem", redeem, body).status_code == 503
        ready = http.get("/readyz")
        schema["/readyz"]["GET"].Case().validate_response(ready, checks=CONFORMANCE)
        assert ready.status_code == 503
