// The browser client's state machine after a 4403, with a fake WebSocket, fetch and clock
// (the Chromium tests in tests/ drive the same file against real servers).
import assert from "node:assert/strict";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const CLIENT = fileURLToPath(new URL("../../ticketd/static/ticketd-client.js", import.meta.url));

const sockets = [];
class FakeSocket extends EventTarget {
  static OPEN = 1;
  constructor() {
    super();
    this.readyState = 0;
    sockets.push(this);
  }
  fire(type, props = {}) {
    const event = new Event(type);
    Object.assign(event, props);
    this.dispatchEvent(event);
  }
  send() {}
  close() {}
}

let mintAnswers = [];
let mints = 0;
let now = 1_000_000;
globalThis.location = { href: "https://app.example.com/" };
globalThis.WebSocket = FakeSocket;
globalThis.fetch = async () => {
  mints += 1;
  const status = mintAnswers.shift() ?? 201;
  const ok = status === 201;
  return { ok, status, headers: new Headers(), json: async () => ({ ticket: "T".repeat(43), expires_in: 30 }) };
};
Date.now = () => now;
const { connect } = await import(CLIENT);
const tick = (ms = 5) => new Promise((resolve) => setTimeout(resolve, ms));

function start() {
  sockets.length = 0;
  mints = 0;
  const seen = { errors: [], closed: false };
  const controller = connect({
    mintUrl: "https://rt.example.com/v1/tickets",
    socketUrl: "wss://rt.example.com/ws",
    backoff: { initialMs: 1, maxMs: 2 },
    onError: (error) => seen.errors.push({ terminal: Boolean(error.terminal), closeCode: error.closeCode }),
    onStatus: (status) => {
      if (status.state === "closed") seen.closed = true;
    },
  });
  return { controller, seen };
}

test("a drop long after a 4403 and its reconnect is retried, not a revocation", async () => {
  const { controller, seen } = start();
  await tick();
  sockets[0].fire("open");
  sockets[0].fire("close", { code: 4403 }); // revoked once (close_first, a logout elsewhere)
  await tick();
  sockets[1].fire("open"); // the re-mint worked: a new login holds
  now += 60_000; // open for a minute
  mintAnswers = [503];
  sockets[1].fire("close", { code: 1006 }); // the network drops, the mint answers 503 once
  await tick(50);
  assert.equal(seen.closed, false, JSON.stringify(seen.errors));
  assert.deepEqual(seen.errors[0], { terminal: false, closeCode: 0 });
  assert.equal(sockets.length, 3); // retried with a new ticket and reconnected
  controller.close();
});

test("a 4403 soon after the reconnect still stops for good (never a loop)", async () => {
  const { seen } = start();
  await tick();
  sockets[0].fire("open");
  sockets[0].fire("close", { code: 4403 });
  await tick();
  sockets[1].fire("open");
  now += 1_000; // revoked again a second later
  sockets[1].fire("close", { code: 4403 });
  await tick(50);
  assert.equal(seen.closed, true);
  assert.deepEqual(seen.errors.at(-1), { terminal: true, closeCode: 4403 });
  assert.equal(mints, 2); // the first mint and the one re-mint after the first 4403
});
