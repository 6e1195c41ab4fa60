// Session lifetime (4401) without a revocation feed, the max lifetime, and the pure
// deadline shared with Python's ticketd.lifetime, on a real redis-server.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";
import { closeDeadline, createVerifier, MAX_LIFETIME, newTicket, SESSION_EXPIRED, ticketKey } from "../src/index.js";
import { ORIGIN, recordV1, recordV2, startRedis, wsServer } from "./support.js";

const PREFIX = "ticketd:";
const NOW = 1_800_000_000_000;
let redis;
let verifier;

before(async () => {
  redis = await startRedis();
  verifier = createVerifier({ redis: redis.url, audience: "chat" });
});

after(async () => {
  await verifier.close();
  await redis.stop();
});

async function open(app, record) {
  const ticket = newTicket();
  await redis.client.set(ticketKey(PREFIX, ticket), record, { PX: 30_000 });
  const ws = new WebSocket(`${app.url}/ws?ticket=${ticket}`, { origin: ORIGIN });
  const closed = new Promise((resolve) => ws.on("close", (code, reason) => resolve([code, String(reason)])));
  await new Promise((resolve, reject) => {
    ws.on("open", resolve);
    ws.on("unexpected-response", (_q, res) => reject(new Error(`refused ${res.statusCode}`)));
  });
  return { ws, closed };
}

const session = (sessionExpiresMs) => recordV2({ session: "s1", authMs: Date.now() - 60_000, sessionExpiresMs });

describe("the deadline (pure)", () => {
  const claims = (sessionExpiresAt) => ({ sessionExpiresAt });
  const none = () => 0;

  test("the session expiry, jittered before it by at most min(5 s, 10 %)", () => {
    const bounds = [];
    const widest = (bound) => (bounds.push(bound), bound);
    assert.deepEqual(closeDeadline(claims((NOW + 20_000) / 1000), NOW, { jitter: widest }), {
      atMs: NOW + 18_000,
      cause: SESSION_EXPIRED,
    });
    assert.deepEqual(closeDeadline(claims((NOW + 100_000) / 1000), NOW, { jitter: widest }), {
      atMs: NOW + 95_000,
      cause: SESSION_EXPIRED,
    });
    assert.deepEqual(bounds, [2000, 5000]);
  });

  test("a jitter out of bounds is clamped: never after the deadline", () => {
    const at = (jitter) => closeDeadline(claims((NOW + 20_000) / 1000), NOW, { jitter }).atMs;
    assert.equal(
      at(() => -7000),
      NOW + 20_000,
    );
    assert.equal(
      at(() => 99_000),
      NOW + 18_000,
    );
  });

  test("the max lifetime wins when it comes first; no session, no timer", () => {
    const c = claims((NOW + 100_000) / 1000);
    assert.deepEqual(closeDeadline(c, NOW, { maxLifetimeMs: 10_000, jitter: none }), {
      atMs: NOW + 10_000,
      cause: MAX_LIFETIME,
    });
    assert.equal(closeDeadline(c, NOW, { maxLifetimeMs: 1_000_000, jitter: none }).cause, SESSION_EXPIRED);
    assert.equal(closeDeadline(claims(null), NOW), null);
    assert.deepEqual(closeDeadline(claims(null), NOW, { maxLifetimeMs: 5, jitter: none }), {
      atMs: NOW + 5,
      cause: MAX_LIFETIME,
    });
  });
});

describe("sockets without a revocation feed", () => {
  let app;
  const causes = [];
  before(async () => {
    app = await wsServer({ verifier, path: "/ws", onLifetimeClose: (cause) => causes.push(cause) });
  });
  after(() => app.close());

  test("close with 4401 at the session's expiry; a lasting session stays open", async () => {
    causes.length = 0;
    const ending = await open(app, session(Date.now() + 400));
    const lasting = await open(app, session(Date.now() + 3_600_000));
    assert.deepEqual(await ending.closed, [4401, "session ended"]);
    assert.deepEqual(causes, [SESSION_EXPIRED]);
    assert.equal(lasting.ws.readyState, WebSocket.OPEN); // control
    lasting.ws.close();
    await lasting.closed;
  });

  test("a socket closed by its client before the deadline is not counted", async () => {
    causes.length = 0;
    const c = await open(app, session(Date.now() + 300));
    c.ws.close(1000);
    assert.equal((await c.closed)[0], 1000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual(causes, []);
  });
});

describe("the max lifetime", () => {
  let app;
  const causes = [];
  before(async () => {
    app = await wsServer({ verifier, path: "/ws", maxLifetimeMs: 300, onLifetimeClose: (c) => causes.push(c) });
  });
  after(() => app.close());

  test("closes with 4401 even without a session (v1 record)", async () => {
    const c = await open(app, recordV1());
    assert.deepEqual(await c.closed, [4401, "max lifetime"]);
    assert.deepEqual(causes, [MAX_LIFETIME]);
  });

  test("a bad maxLifetimeMs is refused at setup", async () => {
    await assert.rejects(wsServer({ verifier, maxLifetimeMs: 0 }), /maxLifetimeMs/);
  });
});
