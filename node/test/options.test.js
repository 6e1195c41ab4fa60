// createVerifier refuses options it does not know, and names the Python-only replay ones.
import assert from "node:assert/strict";
import { test } from "node:test";
import { createVerifier } from "ticketd";

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
