"""Terminal 3: sign in, mint a ticket, connect with it, then try the same ticket again."""

import asyncio
import json
import urllib.request

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from ticketd.sessions import issue_session_cookie

ORIGIN = "http://127.0.0.1:8080"  # the page's origin: one of TICKETD_ALLOWED_ORIGINS
SECRET = "dev-only-not-a-secret-shared-with-the-app"  # TICKETD_SESSION_SECRET


def mint():
    # What your app's login sets; the browser sends it to ticketd with the mint request.
    cookie = issue_session_cookie({"user_id": "alice"}, secret=SECRET)
    request = urllib.request.Request(
        "http://127.0.0.1:8080/v1/tickets",
        method="POST",
        headers={"Origin": ORIGIN, "Cookie": f"session={cookie}"},
    )
    with urllib.request.urlopen(request) as response:
        body = json.load(response)
        print(f"minted: {response.status}, expires in {body['expires_in']} s")
        return body["ticket"]


async def main():
    ticket = mint()
    protocols = ["ticketd.v1", f"ticket.{ticket}"]  # what client.js sends
    async with connect("ws://127.0.0.1:8001", origin=ORIGIN, subprotocols=protocols) as ws:
        print(await ws.recv())
    try:
        async with connect("ws://127.0.0.1:8001", origin=ORIGIN, subprotocols=protocols):
            print("replay accepted: this must not happen")
    except InvalidStatus as exc:
        print(f"replay refused: {exc.response.status_code}")


asyncio.run(main())
