// Revocation after the 101 (4403) and session expiry (4401), on a real redis-server.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";
import {
  createRevocationFeed,
  createVerifier,
  isTombstone,
  newTicket,
  sessionHash,
  subjectId,
  ticketKey,
} from "../src/index.js";
import { sessionKey, subjectKey } from "../src/revocation.js";
import { ORIGIN, rawHandshake, recordV2, startRedis, wsServer } from "./support.js";

const PREFIX = "ticketd:";
let redis;
let verifier;
let feed;
let app;

before(async () => {
  redis = await startRedis();
  verifier = createVerifier({ redis: redis.url, audience: "chat" });
  feed = createRevocationFeed({ redis: redis.url, sweepIntervalMs: 60_000 });
  await feed.start();
  app = await wsServer({ verifier, revocations: feed, path: "/ws" });
});

after(async () => {
  await app.close();
  await feed.close();
  await verifier.close();
  await redis.stop();
});

let n = 0;
async function connectAs({
  subject = `user-${++n}`,
  session = "sess-1",
  authMs = Date.now() - 60_000,
  sessionExpiresMs = Date.now() + 3_600_000,
} = {}) {
  const ticket = newTicket();
  await redis.client.set(ticketKey(PREFIX, ticket), recordV2({ subject, session, authMs, sessionExpiresMs }), {
    PX: 30_000,
  });
  const ws = new WebSocket(`${app.url}/ws?ticket=${ticket}`, { origin: ORIGIN });
  const closed = new Promise((resolve) => ws.on("close", (code) => resolve(code)));
  await new Promise((resolve, reject) => {
    ws.on("open", resolve);
    ws.on("unexpected-response", (_q, res) => reject(new Error(`refused ${res.statusCode}`)));
  });
  return { ws, closed, subject, session, authMs };
}

const event = (fields) =>
  redis.client.sendCommand([
    "XADD",
    `${PREFIX}revocations`,
    "MAXLEN",
    "~",
    "10000",
    "*",
    "v",
    "1",
    "at",
    String(Date.now()),
    ...Object.entries(fields).flat(),
  ]);

const stillOpen = async (ws) => {
  await new Promise((resolve) => setTimeout(resolve, 200));
  return ws.readyState === WebSocket.OPEN;
};

describe("the revocation stream closes matching sockets with 4403", () => {
  test("subject event: sessions that began before not_before close, later ones stay", async () => {
    const old = await connectAs({ subject: "alice", authMs: Date.now() - 60_000 });
    const fresh = await connectAs({ subject: "alice", session: "sess-2", authMs: Date.now() + 60_000 });
    const other = await connectAs({ subject: "bob" });
    await event({ kind: "subject", subject: subjectId("alice"), not_before: String(Date.now()) });
    assert.equal(await old.closed, 4403);
    assert.equal(await stillOpen(fresh.ws), true);
    assert.equal(await stillOpen(other.ws), true);
    fresh.ws.close();
    other.ws.close();
  });

  test("subject event with an excepted session (log out everywhere else)", async () => {
    const mine = await connectAs({ subject: "carol", session: "keep" });
    const elsewhere = await connectAs({ subject: "carol", session: "drop" });
    await event({
      kind: "subject",
      subject: subjectId("carol"),
      not_before: String(Date.now()),
      except: sessionHash("keep"),
    });
    assert.equal(await elsewhere.closed, 4403);
    assert.equal(await stillOpen(mine.ws), true);
    mine.ws.close();
  });

  test("session event", async () => {
    const a = await connectAs({ subject: "dave", session: "s-a" });
    const b = await connectAs({ subject: "dave", session: "s-b" });
    await event({ kind: "session", subject: subjectId("dave"), session: sessionHash("s-a") });
    assert.equal(await a.closed, 4403);
    assert.equal(await stillOpen(b.ws), true);
    b.ws.close();
  });

  test("connection event: the connection id is on ws.ticketd", async () => {
    const c = await connectAs({ subject: "erin" });
    const server = [...app.wss.clients].find((ws) => ws.ticketd.claims.subject === "erin");
    await event({ kind: "connection", subject: subjectId("erin"), connection: server.ticketd.connectionId });
    assert.equal(await c.closed, 4403);
  });

  test("after a dropped stream connection the feed resumes from the last id", async () => {
    const c = await connectAs({ subject: "frank" });
    const errors = feed.stats.readErrors;
    await redis.client.sendCommand(["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
    await event({ kind: "subject", subject: subjectId("frank"), not_before: String(Date.now()) });
    assert.equal(await c.closed, 4403);
    assert.ok(feed.stats.readErrors > errors, "the kill did drop the stream connection");
  });
});

describe("state is the truth", () => {
  test("the sweep closes a socket whose revocation never reached the stream", async () => {
    const c = await connectAs({ subject: "gina", session: "s-g" });
    await redis.client.set(sessionKey(PREFIX, subjectId("gina"), sessionHash("s-g")), String(Date.now()));
    assert.equal(await stillOpen(c.ws), true); // no event: only the sweep can see it
    await feed.sweep();
    assert.equal(await c.closed, 4403);
  });

  test("a stream trimmed past the last id seen triggers a resync", async () => {
    await redis.client.set(subjectKey(PREFIX, subjectId("hank")), JSON.stringify([Date.now(), null]));
    const standby = createRevocationFeed({ redis: redis.client });
    const entry = standby.hold({ subjectHash: subjectId("hank"), sessionHash: null, authAtMs: 1, connectionId: null });
    const closes = [];
    entry.attach((code) => closes.push(code));
    await event({ kind: "session", subject: subjectId("nobody"), session: "x" });
    standby.lastId = "99999999999999-0"; // newer than the stream's first entry: nothing lost
    await standby._resyncIfTrimmed();
    assert.deepEqual([standby.stats.resyncs, closes], [0, []]);
    standby.lastId = "1-0"; // as if we had been away while the stream was trimmed
    await standby._resyncIfTrimmed();
    assert.deepEqual([standby.stats.resyncs, closes], [1, [4403]]);
  });

  test("a revoked session is refused at redeem, before the 101", async () => {
    await redis.client.set(sessionKey(PREFIX, subjectId("ivan"), sessionHash("s-i")), String(Date.now()));
    const ticket = newTicket();
    await redis.client.set(
      ticketKey(PREFIX, ticket),
      recordV2({ subject: "ivan", session: "s-i", authMs: Date.now() - 1000 }),
    );
    const { text } = await rawHandshake(app.port, { target: `/ws?ticket=${ticket}` });
    assert.match(text, /^HTTP\/1\.1 403 /);
    assert.ok(isTombstone(await redis.client.get(ticketKey(PREFIX, ticket)))); // burned all the same
  });

  test("an event between the redeem and the 101 is not lost (held, then attached)", () => {
    const entry = feed.hold({ subjectHash: subjectId("judy"), sessionHash: null, authAtMs: 1, connectionId: "c" });
    feed.apply({ v: "1", kind: "subject", subject: subjectId("judy"), not_before: "2" });
    const closes = [];
    entry.attach((code) => closes.push(code));
    entry.release();
    assert.deepEqual(closes, [4403]);
  });

  test("released connections leave the registry", async () => {
    const before = feed.size;
    const c = await connectAs({ subject: "kim" });
    assert.equal(feed.size, before + 1);
    c.ws.close();
    await c.closed;
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(feed.size, before);
  });
});

describe("session lifetime", () => {
  test("the socket closes with 4401 when the session expires", async () => {
    const c = await connectAs({ subject: "lee", sessionExpiresMs: Date.now() + 400 });
    assert.equal(await c.closed, 4401);
  });
});
