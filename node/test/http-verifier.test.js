// createVerifier({ redeemUrl }) against a stand-in for POST /v1/tickets/redeem
// (the real `ticketd serve` is exercised by tests/test_node_cross.py).
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, test } from "node:test";
import { createVerifier, newTicket, StoreUnavailable, TicketRejected } from "../src/index.js";

let server;
let url;
let answer;
const seen = [];

before(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      seen.push({ auth: req.headers.authorization, type: req.headers["content-type"], body: JSON.parse(body) });
      if (answer === "hang") return;
      res.writeHead(answer.status, { "Content-Type": "application/json" });
      res.end(JSON.stringify(answer.body));
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${server.address().port}/v1/tickets/redeem`;
});

after(() => {
  server.closeAllConnections();
  server.close();
});

const verifier = (deadlineMs = 2000) =>
  createVerifier({ redeemUrl: url, serviceKey: "test-only-service-key", audience: "chat", deadlineMs, logger: {} });

test("200: claims in this package's spelling; the request carries the bearer key and the handshake", async () => {
  answer = {
    status: 200,
    body: {
      subject: 7,
      origin: "https://app.example.com",
      audience: "chat",
      issued_at: 1.5,
      expires_at: 31.5,
      client_ip: null,
      extra: { r: 1 },
    },
  };
  const ticket = newTicket();
  const claims = await verifier().redeem(ticket, { origin: "https://app.example.com", clientIp: "203.0.113.9" });
  assert.deepEqual([claims.subject, claims.issuedAt, claims.expiresAt, claims.extra], [7, 1.5, 31.5, { r: 1 }]);
  assert.deepEqual(seen.at(-1), {
    auth: "Bearer test-only-service-key",
    type: "application/json",
    body: { ticket, origin: "https://app.example.com", audience: "chat", client_ip: "203.0.113.9" },
  });
});

for (const [code, status] of [
  ["invalid", 401],
  ["origin_mismatch", 403],
  ["audience_mismatch", 403],
  ["ip_mismatch", 403],
  ["malformed", 401],
]) {
  test(`problem ${code} → TicketRejected(${code}), ${status}`, async () => {
    answer = { status, body: { type: `urn:ticketd:problem:${code}`, title: "x", status, code } };
    await assert.rejects(verifier().redeem(newTicket(), { origin: "https://app.example.com" }), (error) => {
      assert.ok(error instanceof TicketRejected);
      assert.deepEqual([error.reason, error.status], [code, status]);
      return true;
    });
  });
}

for (const [code, status] of [
  ["store_unavailable", 503],
  ["invalid_service_key", 401],
  ["redeem_disabled", 404],
  ["invalid_body", 400],
  ["internal_error", 500],
]) {
  test(`problem ${code} → StoreUnavailable (fail closed, 503)`, async () => {
    answer = { status, body: { code, status } };
    await assert.rejects(verifier().redeem(newTicket(), { origin: "x" }), (error) => {
      assert.ok(error instanceof StoreUnavailable);
      assert.equal(error.status, 503);
      return true;
    });
  });
}

test("a hung endpoint: StoreUnavailable within the deadline", async () => {
  answer = "hang";
  const started = Date.now();
  await assert.rejects(verifier(300).redeem(newTicket(), { origin: "x" }), StoreUnavailable);
  assert.ok(Date.now() - started < 3000);
});

test("a malformed ticket is refused without a request", async () => {
  const before = seen.length;
  await assert.rejects(verifier().redeem("nope", { origin: "x" }), (e) => e.reason === "malformed");
  assert.equal(seen.length, before);
});

test("a service key is required", () => {
  assert.throws(() => createVerifier({ redeemUrl: url, audience: "chat" }), /service key/);
});
