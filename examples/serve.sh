#!/bin/sh
# Terminal 1: a Redis, and ticketd on it. `--dev` allows the origins http://127.0.0.1:8080
# and http://localhost:8080; the values below are obviously fake and for this machine only.
redis-server --port 6390 --bind 127.0.0.1 --save '' --appendonly no &
export TICKETD_REDIS_URL=redis://127.0.0.1:6390/0  # the Redis the WebSocket server shares
export TICKETD_AUDIENCES=chat                       # the service tickets are minted for
export TICKETD_SESSION_SECRET=dev-only-not-a-secret-shared-with-the-app   # signs the cookie
export TICKETD_SERVICE_KEYS=dev-only-not-a-secret-service-key-for-curl   # turns on /redeem
exec ticketd serve --dev --port 8080
