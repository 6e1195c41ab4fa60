"""A WebSocket server process for the revocation tests and ``make bench``.

``python -m tests.revoke_ws_server --port P --redis-url URL [--cluster] [--feed-url URL]``

An echo server behind ``process_response=ticket_auth(verifier, watch=watch)``; ``GET /stats``
answers the watch's counters as JSON, ``GET /metrics`` its Prometheus metrics.
Prints ``ready`` on stdout once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, generate_latest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ticketd import RedisOptions, TicketStore, TicketVerifier
from ticketd.connection import async_client
from ticketd.integrations.websockets import select_subprotocol, ticket_auth
from ticketd.liveness import RevocationWatch
from ticketd.revocation_metrics import PrometheusWatchObserver


async def run(args: argparse.Namespace) -> None:
    options = RedisOptions(url=args.redis_url, cluster=args.cluster, socket_timeout=2)
    client = async_client(options)
    feed = async_client(RedisOptions(url=args.feed_url, cluster=args.cluster, socket_timeout=2))
    registry = CollectorRegistry()
    watch = RevocationWatch(
        client,
        feed_client=feed if args.feed_url != args.redis_url else None,
        sweep_interval=args.sweep_interval,
        observer=PrometheusWatchObserver(registry),
        deadline=2.0,
    )
    verifier = TicketVerifier(TicketStore(client, deadline=2.0), audience="chat")
    check = ticket_auth(verifier, watch=watch)

    async def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/stats":
            stats = watch.stats
            body = {
                "closed": stats.closed,
                "propagation": list(stats.propagation),
                "gaps": stats.gaps,
                "feed_errors": stats.feed_errors,
                "live": len(watch.connections),
                "ready": watch.ready,
            }
            return connection.respond(200, json.dumps(body))
        if request.path == "/metrics":
            return connection.respond(200, generate_latest(registry).decode())
        return None

    async def process_response(
        connection: ServerConnection, request: Request, response: Response
    ) -> Response | None:
        if request.path in ("/stats", "/metrics"):
            return None  # keep the response process_request made
        return await check(connection, request, response)

    async def echo(connection: ServerConnection) -> None:
        try:
            async for message in connection:
                await connection.send(message)
        except ConnectionClosed:
            pass

    watch.start()
    async with serve(
        echo,
        "127.0.0.1",
        args.port,
        process_request=process_request,
        process_response=process_response,
        select_subprotocol=select_subprotocol,
    ):
        print("ready", flush=True)
        await asyncio.get_running_loop().create_future()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--feed-url")
    parser.add_argument("--cluster", action="store_true")
    parser.add_argument("--sweep-interval", type=float, default=30.0)
    args = parser.parse_args(argv)
    args.feed_url = args.feed_url or args.redis_url
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
