// createVerifier refuses options it does not know, and names the Python-only replay ones.
import assert from "node:assert/strict";
import { test } from "node:test";
import { createVerifier, newTicket, outcomeOf, StoreUnavailable, TicketRejected } from "ticketd";

const base = { redis: { sendCommand: async () => null }, audience: "chat", logger: {} };

test("known options are accepted (the control)", () => {
  assert.ok(createVerifier({ ...base, keyPrefix: "p:", leeway: 1, checkRevocation: false }));
});

test("Python-only replay options are refused with the way to get them", () => {
  for (const name of ["onReplay", "replayGrace", "observers", "revocationTtl"]) {
    assert.throws(() => createVerifier({ ...base, [name]: "close_first" }), /not supported in Node.*redeemUrl/);
  }
});

test("a misspelt option is refused, not ignored", () => {
  assert.throws(() => createVerifier({ ...base, keyprefix: "p:" }), /unknown option `keyprefix`/);
  const http = { redeemUrl: "http://127.0.0.1:1/v1/tickets/redeem", serviceKey: "k", audience: "chat" };
  assert.throws(() => createVerifier({ ...http, keyPrefix: "p:" }), /unknown option `keyPrefix`/);
});

test("the HTTP verifier's documented fetch option is accepted", () => {
  const http = { redeemUrl: "http://127.0.0.1:1/v1/tickets/redeem", serviceKey: "k", audience: "chat" };
  assert.ok(createVerifier({ ...http, fetch: globalThis.fetch, logger: {} }));
});

test("onRedeemed is told every outcome with Python's labels, and cannot change one", async () => {
  const TICKET = newTicket();
  const replies = [];
  const redis = { sendCommand: async () => replies.shift() ?? null };
  const seen = [];
  const verifier = createVerifier({
    ...base,
    redis,
    checkRevocation: false,
    onRedeemed: (outcome, error) => seen.push([outcome, error?.reason ?? null]),
  });
  await assert.rejects(verifier.redeem("not a ticket", { origin: "https://app.example.com" }));
  await assert.rejects(verifier.redeem(TICKET, { origin: "https://app.example.com" })); // unknown
  replies.push("[0,1767225600000,null,null,null]"); // a tombstone: replayed
  await assert.rejects(verifier.redeem(TICKET, { origin: "https://app.example.com" }));
  const ms = Date.now();
  replies.push(JSON.stringify([1, "u", "https://app.example.com", "chat", ms - 1000, ms + 29000, null]));
  assert.equal((await verifier.redeem(newTicket(), { origin: "https://app.example.com" })).subject, "u");
  assert.deepEqual(seen, [
    ["malformed", "malformed"],
    ["invalid", "invalid"],
    ["replayed", "invalid"],
    ["ok", null],
  ]);
  const broken = createVerifier({
    ...base,
    checkRevocation: false,
    onRedeemed: () => {
      throw new Error("a bug in a metrics exporter");
    },
  });
  await assert.rejects(broken.redeem(TICKET, { origin: "https://app.example.com" }), (error) => {
    assert.equal(error.reason, "invalid"); // the refusal, not the hook's error
    return true;
  });
  assert.throws(() => createVerifier({ ...base, onRedeemed: "metrics" }), /onRedeemed must be a function/);
});

test("outcomeOf names outcomes as Python's outcome_of", () => {
  assert.equal(outcomeOf(null), "ok");
  assert.equal(outcomeOf(new TicketRejected("origin_mismatch")), "origin_mismatch");
  assert.equal(outcomeOf(new TicketRejected("invalid", { detail: "replayed" })), "replayed");
  assert.equal(outcomeOf(new StoreUnavailable("down")), "store_unavailable");
});
