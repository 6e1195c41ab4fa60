#!/bin/sh
# No WebSocket server at hand? Mint, redeem over HTTP as a non-Python server would, replay.
set -e
COOKIE=$(python3 -c "from ticketd.sessions import issue_session_cookie as cookie
print(cookie({'user_id': 'alice'}, secret='dev-only-not-a-secret-shared-with-the-app'))")
TICKET=$(curl -sf -X POST http://127.0.0.1:8080/v1/tickets \
  -H 'Origin: http://127.0.0.1:8080' -H "Cookie: session=$COOKIE" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["ticket"])')
for attempt in first replay; do
  curl -s -X POST http://127.0.0.1:8080/v1/tickets/redeem \
    -H 'Authorization: Bearer dev-only-not-a-secret-service-key-for-curl' \
    -H 'Content-Type: application/json' \
    -d "{\"ticket\": \"$TICKET\", \"origin\": \"http://127.0.0.1:8080\", \"audience\": \"chat\"}" \
    -w " <- $attempt: HTTP %{http_code}\n"
done
