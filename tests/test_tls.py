"""ticketd over ``rediss://``: CA file, hostname checks, client certificates, the service.

Each server is a real TLS-only ``redis-server`` (``--port 0``) with certificates
generated for the test by :func:`tests.support.redis_topologies.make_certificates`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.redis_topologies import (
    TlsRedisServer,
    redis_sentinel,
    redis_tls,
    tls_certificates,
)
from tests.support.service_support import APP_ORIGIN, cookie_for, make_settings, running_service
from ticketd import (
    Reason,
    RedisOptions,
    StoreUnavailable,
    TicketIssuer,
    TicketRejected,
    TicketStore,
    TicketVerifier,
)
from ticketd.connection import async_client

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TlsRedisServer]:
    """Client certificates optional; server cert for IP 127.0.0.1 and DNS localhost."""
    with redis_tls(auth_clients="optional") as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server() -> Iterator[TlsRedisServer]:
    """Client certificates required (``--tls-auth-clients yes``)."""
    with redis_tls(auth_clients="yes") as server:
        yield server


@pytest.fixture(scope="module")
def wrong_name_server() -> Iterator[TlsRedisServer]:
    """Signed by the same CA, but for ``redis.other.invalid`` only."""
    with redis_tls(wrong_name=True) as server:
        yield server


def causes(exc: BaseException) -> str:
    """Every message in the exception's cause chain, to tell TLS failures apart."""
    seen: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < 10:
        seen.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return "\n".join(seen)


async def mint_and_redeem(options: RedisOptions) -> None:
    """Mint through one client and redeem through a verifier built from the same options."""
    client = async_client(options)
    fields: dict[str, Any] = {
        "ssl_ca_file": options.ssl_ca_file,
        "ssl_cert_file": options.ssl_cert_file,
        "ssl_key_file": options.ssl_key_file,
        "ssl_check_hostname": options.ssl_check_hostname,
    }
    verifier = TicketVerifier.from_url(options.url, audience="chat", **fields)
    try:
        issued = await TicketIssuer(TicketStore(client)).mint(
            "alice", origin=APP_ORIGIN, audience="chat"
        )
        claims = await verifier.redeem(issued.ticket, origin=APP_ORIGIN)
        assert claims.subject == "alice"
        with pytest.raises(TicketRejected) as again:
            await verifier.redeem(issued.ticket, origin=APP_ORIGIN)
        assert again.value.reason is Reason.INVALID
    finally:
        await verifier.aclose()
        await client.aclose()


async def refused(options: RedisOptions) -> str:
    """Assert the store cannot be used with ``options``; return the cause chain."""
    store = TicketStore(async_client(options))
    try:
        with pytest.raises(StoreUnavailable) as info:
            await store.ping()
    finally:
        await store.aclose()
    return causes(info.value)


async def test_mint_and_redeem_over_tls_with_ca_file(tls_server: TlsRedisServer) -> None:
    assert tls_server.url.startswith("rediss://127.0.0.1:")
    await mint_and_redeem(RedisOptions(url=tls_server.url, ssl_ca_file=tls_server.certs.ca))


async def test_hostname_checked_against_ip_and_dns_names(tls_server: TlsRedisServer) -> None:
    # The URL's host is checked against the SAN: IP:127.0.0.1 above, DNS:localhost here.
    url = tls_server.url.replace("127.0.0.1", "localhost")
    options = RedisOptions(url=url, ssl_ca_file=tls_server.certs.ca)
    assert options.ssl_check_hostname
    await mint_and_redeem(options)


async def test_plain_connection_to_tls_port_is_refused(tls_server: TlsRedisServer) -> None:
    plain = tls_server.url.replace("rediss://", "redis://")
    await refused(RedisOptions(url=plain))


async def test_server_certificate_from_unknown_ca_is_refused(tls_server: TlsRedisServer) -> None:
    chain = await refused(RedisOptions(url=tls_server.url))  # system CAs only
    assert "CERTIFICATE_VERIFY_FAILED" in chain, chain


async def test_certificate_for_another_name_is_refused(
    wrong_name_server: TlsRedisServer,
) -> None:
    certs = wrong_name_server.certs
    chain = await refused(RedisOptions(url=wrong_name_server.url, ssl_ca_file=certs.ca))
    assert "mismatch" in chain, chain
    # Same CA, checks off: it connects, so the refusal above was the hostname check.
    await mint_and_redeem(
        RedisOptions(url=wrong_name_server.url, ssl_ca_file=certs.ca, ssl_check_hostname=False)
    )


async def test_client_certificate_required_by_server(mtls_server: TlsRedisServer) -> None:
    certs = mtls_server.certs
    chain = await refused(RedisOptions(url=mtls_server.url, ssl_ca_file=certs.ca))
    # TLS 1.3: the server's "certificate required" alert may arrive, or only the reset.
    assert "certificate required" in chain.lower() or "reset by peer" in chain, chain
    await mint_and_redeem(
        RedisOptions(
            url=mtls_server.url,
            ssl_ca_file=certs.ca,
            ssl_cert_file=certs.client_cert,
            ssl_key_file=certs.client_key,
        )
    )


async def test_service_mints_over_mutual_tls(mtls_server: TlsRedisServer) -> None:
    """TICKETD_REDIS_CA_FILE/CERT_FILE/KEY_FILE reach the store and the rate limiter."""
    certs = mtls_server.certs
    settings = make_settings(
        mtls_server.url,
        redis_ca_file=certs.ca,
        redis_cert_file=certs.client_cert,
        redis_key_file=certs.client_key,
        max_outstanding_per_subject=5,  # the outstanding-ticket cap talks to Redis too
    )
    verifier = TicketVerifier.from_url(
        mtls_server.url,
        audience="chat",
        ssl_ca_file=certs.ca,
        ssl_cert_file=certs.client_cert,
        ssl_key_file=certs.client_key,
    )
    try:
        with running_service(settings) as base:
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                assert (await http.get("/readyz")).status_code == 200
                response = await http.post(
                    "/v1/tickets",
                    headers={"Origin": APP_ORIGIN, "Cookie": f"session={cookie_for(7)}"},
                    json={"audience": "chat"},
                )
                assert response.status_code == 201, response.text
        claims = await verifier.redeem(response.json()["ticket"], origin=APP_ORIGIN)
        assert claims.subject == 7
    finally:
        await verifier.aclose()
    with mtls_server.client() as client:
        assert client.keys("ticketd:rl*"), "rate-limit counters should live in the TLS Redis"


@pytest.mark.slow
async def test_service_through_sentinel_to_a_tls_master() -> None:
    """``rediss://`` + TICKETD_REDIS_SENTINELS: sentinels in plain text, master over TLS."""
    with tls_certificates() as certs, redis_sentinel(tls=certs) as topology:
        tls: dict[str, Any] = {
            "ssl_ca_file": certs.ca,
            "ssl_cert_file": certs.client_cert,
            "ssl_key_file": certs.client_key,
        }
        settings = make_settings(
            topology.master.url,
            redis_sentinels=topology.sentinel_setting,
            redis_ca_file=certs.ca,
            redis_cert_file=certs.client_cert,
            redis_key_file=certs.client_key,
        )
        assert str(settings.redis_url).startswith("rediss://")
        verifier = TicketVerifier.from_url(
            topology.master.url, sentinels=topology.sentinels, audience="chat", **tls
        )
        try:
            with running_service(settings) as base:
                async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                    assert (await http.get("/readyz")).status_code == 200
                    response = await http.post(
                        "/v1/tickets",
                        headers={"Origin": APP_ORIGIN, "Cookie": f"session={cookie_for(8)}"},
                        json={"audience": "chat"},
                    )
            assert response.status_code == 201, response.text
            claims = await verifier.redeem(response.json()["ticket"], origin=APP_ORIGIN)
            assert claims.subject == 8
        finally:
            await verifier.aclose()
