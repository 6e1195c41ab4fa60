"""Terminal 2: a WebSocket server that lets in only the holders of a fresh ticket."""

import asyncio
import logging

from websockets.asyncio.server import serve

from ticketd import TicketVerifier
from ticketd.integrations.websockets import claims_of, select_subprotocol, ticket_auth


async def handler(connection):
    claims = claims_of(connection)  # subject, origin, audience, expires_at, extra
    await connection.send(f"hello {claims.subject}")
    async for message in connection:  # stay open until the client leaves
        await connection.send(f"{claims.subject}: {message}")


async def main():
    verifier = TicketVerifier.from_url("redis://127.0.0.1:6390/0", audience="chat")
    # ticket_auth() also turns on log redaction: even these DEBUG logs show no ticket.
    auth = ticket_auth(verifier)
    async with serve(
        handler, "127.0.0.1", 8001, process_request=auth, select_subprotocol=select_subprotocol
    ) as server:
        print("listening on ws://127.0.0.1:8001", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main())
