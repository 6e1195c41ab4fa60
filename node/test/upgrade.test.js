// ticketUpgrade on a real ws server and a real redis-server.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, beforeEach, describe, test } from "node:test";
import WebSocket from "ws";
import { createVerifier, isTombstone, logId, newTicket, ticketKey } from "../src/index.js";
import { blackhole, ORIGIN, rawHandshake, recordV1, startRedis, wsServer } from "./support.js";

const PREFIX = "ticketd:";
let redis;
let verifier;
let app;
const accepted = [];
const lines = [];
const logger = {
  info: (m) => lines.push(m),
  warn: (m) => lines.push(m),
  error: (m) => lines.push(m),
  debug: (m) => lines.push(m),
};

async function mint(options = {}) {
  const ticket = newTicket();
  await redis.client.set(ticketKey(PREFIX, ticket), recordV1(options), { PX: 30_000 });
  return ticket;
}

/** Whether the ticket's record (not the tombstone a redeem leaves) is still in Redis. */
const exists = async (ticket) => {
  const value = await redis.client.get(ticketKey(PREFIX, ticket));
  return value !== null && !isTombstone(value);
};

function open(url, protocols, options = { origin: ORIGIN }) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, protocols, options);
    ws.on("open", () => resolve({ ws, protocol: ws.protocol }));
    ws.on("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    ws.on("error", (error) => resolve({ error }));
  });
}

before(async () => {
  redis = await startRedis();
  verifier = createVerifier({ redis: redis.url, audience: "chat", logger });
  app = await wsServer({
    verifier,
    path: "/ws",
    logger,
    onAccept(ws, req, claims) {
      accepted.push({ claims, onSocket: ws.ticketd.claims, onRequest: req.ticketd.claims });
      ws.on("message", (data) => ws.send(`${claims.subject}:${data}`));
    },
  });
});

after(async () => {
  await app.close();
  await verifier.close();
  await redis.stop();
});

beforeEach(() => {
  accepted.length = 0;
  lines.length = 0;
});

describe("accepted handshakes", () => {
  test("query transport: claims on the socket and the request, echo works, ticket gone", async () => {
    const ticket = await mint({ subject: "user-7" });
    const { ws, protocol } = await open(`${app.url}/ws?ticket=${ticket}`);
    assert.equal(protocol, "");
    const reply = new Promise((resolve) => ws.once("message", (d) => resolve(String(d))));
    ws.send("hi");
    assert.equal(await reply, "user-7:hi");
    assert.equal(accepted.length, 1);
    assert.equal(accepted[0].claims.subject, "user-7");
    assert.equal(accepted[0].onSocket, accepted[0].claims);
    assert.equal(accepted[0].onRequest, accepted[0].claims);
    assert.equal(await exists(ticket), false);
    ws.close();
  });

  for (const order of ["ticketd.v1 first", "ticket first"]) {
    test(`subprotocol transport (${order}): the server answers ticketd.v1, never the ticket`, async () => {
      const ticket = await mint();
      const protocols =
        order === "ticket first" ? [`ticket.${ticket}`, "ticketd.v1"] : ["ticketd.v1", `ticket.${ticket}`];
      const { ws, protocol } = await open(`${app.url}/ws`, protocols);
      assert.equal(protocol, "ticketd.v1");
      ws.close();
    });
  }

  test("the 101 never carries the ticket", async () => {
    const ticket = await mint();
    const { text } = await rawHandshake(app.port, {
      headers: { "Sec-WebSocket-Protocol": `ticket.${ticket}, ticketd.v1` },
    });
    assert.match(text, /^HTTP\/1\.1 101 /);
    assert.match(text, /\r\nSec-WebSocket-Protocol: ticketd\.v1\r\n/i);
    assert.ok(!text.includes(ticket));
  });

  test("no log line carries the ticket", async () => {
    const ticket = await mint();
    await rawHandshake(app.port, { target: `/ws?ticket=${ticket}`, headers: { Origin: "https://evil.example.com" } });
    await rawHandshake(app.port, { target: `/ws?ticket=${ticket}` });
    assert.ok(lines.length >= 2);
    assert.ok(
      lines.some((l) => l.includes(`reason=origin_mismatch ticket=${logId(ticket)}`)),
      lines.join("\n"),
    );
    assert.ok(lines.every((l) => !l.includes(ticket)));
  });
});

describe("refusals before the 101", () => {
  const expectRefusal = (text, status) => {
    const [head, body] = text.split("\r\n\r\n");
    assert.match(head, new RegExp(`^HTTP/1\\.1 ${status} `));
    assert.match(head, /\r\nConnection: close/);
    assert.match(head, /\r\nContent-Length: 16/);
    assert.equal(body, "ticket rejected\n");
  };

  test("the whole refusal arrives, then the connection closes", async () => {
    const { text, closed } = await rawHandshake(app.port, { target: "/ws" });
    expectRefusal(text, 401);
    assert.equal(closed, true);
  });

  test("the ws client sees the status and the body (not just a 1006)", async () => {
    const result = await open(`${app.url}/ws?ticket=${newTicket()}`);
    assert.equal(result.status, 401);
    assert.equal(result.body, "ticket rejected\n");
    assert.equal(result.headers["cache-control"], "no-store");
  });

  const cases = [
    ["evil Origin", { headers: { Origin: "https://evil.example.com" } }, 403, false],
    ["Origin null", { headers: { Origin: "null" } }, 403, false],
    ["no Origin", { headers: { Origin: null } }, 403, false],
    ["two Origin headers", { headers: { Origin: [ORIGIN, ORIGIN] } }, 403, false],
    ["POST (not an upgrade): ticket left", { method: "POST" }, 400, true],
    ["Upgrade: h2c: ticket left", { headers: { Upgrade: "h2c" } }, 400, true],
    ["version 8: ticket left", { headers: { "Sec-WebSocket-Version": "8" } }, 400, true],
  ];
  for (const [name, request, status, left] of cases) {
    test(name, async () => {
      const ticket = await mint();
      const { text } = await rawHandshake(app.port, { target: `/ws?ticket=${ticket}`, ...request });
      expectRefusal(text, status);
      assert.equal(await exists(ticket), left);
    });
  }

  test("another path: 404, ticket left", async () => {
    const ticket = await mint();
    const { text } = await rawHandshake(app.port, { target: `/other?ticket=${ticket}` });
    assert.match(text, /^HTTP\/1\.1 404 /);
    assert.equal(await exists(ticket), true);
  });

  test("replay: 401", async () => {
    const ticket = await mint();
    const first = await open(`${app.url}/ws?ticket=${ticket}`);
    assert.ok(first.ws);
    first.ws.close();
    const replayed = (await rawHandshake(app.port, { target: `/ws?ticket=${ticket}` })).text;
    expectRefusal(replayed, 401);
    // The client cannot tell a replay from an unknown ticket: the same bytes.
    const unknown = (await rawHandshake(app.port, { target: `/ws?ticket=${newTicket()}` })).text;
    assert.equal(replayed, unknown);
    // The log can: one line with the replay's facts (same client: both from 127.0.0.1).
    const replays = lines.filter((l) => l.includes("detail=replayed"));
    assert.equal(replays.length, 1);
    assert.match(replays[0], new RegExp(`ticket=${logId(ticket)} since_first_use_ms=\\d+ same_client=yes`));
    const unknownLines = lines.filter((l) => l.startsWith("ticket rejected reason=invalid") && !l.includes("detail="));
    assert.equal(unknownLines.length, 1);
    assert.ok(!lines.some((l) => l.includes(ticket)));
  });

  test("two tickets: 400, neither consumed", async () => {
    const [t, u] = [await mint(), await mint()];
    const { text } = await rawHandshake(app.port, {
      target: `/ws?ticket=${t}`,
      headers: { "Sec-WebSocket-Protocol": `ticketd.v1, ticket.${u}` },
    });
    expectRefusal(text, 400);
    assert.deepEqual([await exists(t), await exists(u)], [true, true]);
  });

  test("malformed: 401, no Redis call", async () => {
    const before = Number((await redis.client.info("stats")).match(/total_commands_processed:(\d+)/)[1]);
    expectRefusal((await rawHandshake(app.port, { target: `/ws?ticket=${"A".repeat(42)}B` })).text, 401);
    const after = Number((await redis.client.info("stats")).match(/total_commands_processed:(\d+)/)[1]);
    assert.equal(after - before, 1); // the first INFO itself
  });

  test("bound client address: the peer address is checked", async () => {
    const other = await mint({ clientIp: "203.0.113.9" });
    expectRefusal((await rawHandshake(app.port, { target: `/ws?ticket=${other}` })).text, 403);
    const same = await mint({ clientIp: "127.0.0.1" });
    assert.match((await rawHandshake(app.port, { target: `/ws?ticket=${same}` })).text, /^HTTP\/1\.1 101 /);
  });
});

describe("Redis trouble", () => {
  test("a hung Redis: 503 with Retry-After within the deadline, fail closed", async () => {
    const hole = await blackhole();
    const slow = createVerifier({ redis: hole.url, audience: "chat", deadlineMs: 300, logger });
    const server = await wsServer({ verifier: slow, logger });
    try {
      const started = Date.now();
      const { text } = await rawHandshake(server.port, { target: `/ws?ticket=${newTicket()}` });
      const took = Date.now() - started;
      assert.match(text, /^HTTP\/1\.1 503 /);
      assert.match(text, /\r\nRetry-After: 1\r\n/);
      assert.ok(text.endsWith("\r\n\r\nticket rejected\n"));
      assert.ok(took < 4000, `answered after ${took} ms`); // node-redis alone would wait forever
    } finally {
      await server.close();
      await slow.close().catch(() => {});
      await hole.close();
    }
  });

  test("a client that resets the connection during the redeem does not crash the process", async () => {
    const hole = await blackhole();
    const slow = createVerifier({ redis: hole.url, audience: "chat", deadlineMs: 300, logger });
    const server = await wsServer({ verifier: slow, logger });
    const crashes = [];
    const onCrash = (error) => crashes.push(error);
    process.on("uncaughtException", onCrash);
    try {
      await new Promise((resolve) => {
        const socket = connect(server.port, "127.0.0.1", () => {
          socket.write(
            `GET /ws?ticket=${newTicket()} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
              `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: ${ORIGIN}\r\n\r\n`,
          );
          setTimeout(() => {
            socket.resetAndDestroy();
            resolve();
          }, 50);
        });
        socket.on("error", () => {});
      });
      await new Promise((resolve) => setTimeout(resolve, 600)); // the redeem fails and tries to answer
      assert.deepEqual(crashes, []);
    } finally {
      process.off("uncaughtException", onCrash);
      await server.close();
      await slow.close().catch(() => {});
      await hole.close();
    }
  });
});

describe("configuration", () => {
  test("a ws server attached to an HTTP server is refused (it would skip the ticket)", async () => {
    const { WebSocketServer } = await import("ws");
    const { ticketUpgrade } = await import("../src/index.js");
    const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
    try {
      assert.throws(() => ticketUpgrade({ wss, verifier }), /noServer/);
    } finally {
      wss.close();
    }
  });

  test("createVerifier needs an audience", () => {
    assert.throws(() => createVerifier({ redis: redis.client }), /audience/);
  });
});
