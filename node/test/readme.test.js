// The README's "after" example, run as written against a real redis-server.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { newTicket, ticketKey } from "../src/index.js";
import { ORIGIN, recordV1, startRedis } from "./support.js";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
const block = readme.match(/```js readme-after\n([\s\S]*?)```/)[1];
// Inside the package, so that `import ... from "ticketd"` resolves to this package.
const script = new URL("./readme-after.generated.mjs", import.meta.url);
let redis;
let child;
let port;

before(async () => {
  redis = await startRedis();
  writeFileSync(script, block);
  child = spawn(process.execPath, [script.pathname], {
    env: { ...process.env, REDIS_URL: redis.url, PORT: "0" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  port = await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const match = out.match(/listening on (\d+)/);
      if (match) resolve(Number(match[1]));
    });
    child.once("exit", (code) => reject(new Error(`the README example exited with ${code}`)));
  });
});

after(async () => {
  child?.kill();
  rmSync(script, { force: true });
  await redis?.stop();
});

function open(url, protocols, origin) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, protocols, { origin });
    ws.on("open", () => resolve({ ws }));
    ws.on("unexpected-response", (_req, res) => resolve({ status: res.statusCode }));
  });
}

test("the README's after block accepts a ticket and echoes with the subject", async () => {
  const ticket = newTicket();
  await redis.client.set(ticketKey("ticketd:", ticket), recordV1({ subject: "reader" }));
  const { ws } = await open(`ws://127.0.0.1:${port}/ws`, ["ticketd.v1", `ticket.${ticket}`], ORIGIN);
  assert.equal(ws.protocol, "ticketd.v1");
  const reply = new Promise((resolve) => ws.once("message", (data) => resolve(String(data))));
  ws.send("hello");
  assert.equal(await reply, "reader: hello");
  ws.close();
});

test("the README's after block refuses another origin and a replay", async () => {
  const ticket = newTicket();
  await redis.client.set(ticketKey("ticketd:", ticket), recordV1());
  assert.deepEqual(await open(`ws://127.0.0.1:${port}/ws?ticket=${ticket}`, [], "https://evil.example.com"), {
    status: 403,
  });
  assert.deepEqual(await open(`ws://127.0.0.1:${port}/ws?ticket=${ticket}`, [], ORIGIN), { status: 401 });
});
