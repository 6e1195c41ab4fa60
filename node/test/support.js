// Test helpers: a private redis-server on a free loopback port, records, a ws server.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "redis";

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Start redis-server (from PATH, or REDIS_SERVER) on a free port; `stop()` kills it. */
export async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "ticketd-node-redis-"));
  const binary = process.env.REDIS_SERVER ?? "redis-server";
  const child = spawn(
    binary,
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir],
    { stdio: "ignore" },
  );
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.once("error", (error) => {
    throw new Error(`cannot start ${binary} (apt-get install redis-server): ${error.message}`);
  });
  const url = `redis://127.0.0.1:${port}/0`;
  const client = createClient({ url, socket: { reconnectStrategy: false, connectTimeout: 500 } });
  client.on("error", () => {});
  for (let attempt = 0; ; attempt++) {
    try {
      await client.connect();
      break;
    } catch (error) {
      if (attempt > 200 || child.exitCode !== null) throw new Error(`redis-server did not start: ${error}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  return {
    url,
    port,
    client,
    async stop() {
      await client.close().catch(() => {});
      child.kill("SIGKILL");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const ORIGIN = "https://app.example.com";

/** A v1 record as the Python issuer writes it. */
export function recordV1({
  subject = "user-1",
  origin = ORIGIN,
  audience = "chat",
  issuedMs = Date.now(),
  ttlMs = 30_000,
  clientIp = null,
  extra,
} = {}) {
  const item = [1, subject, origin, audience, issuedMs, issuedMs + ttlMs, clientIp];
  if (extra && Object.keys(extra).length) item.push(extra);
  return JSON.stringify(item);
}

export function recordV2({
  subject = "user-1",
  origin = ORIGIN,
  audience = "chat",
  issuedMs = Date.now(),
  ttlMs = 30_000,
  clientIp = null,
  session = null,
  authMs = null,
  sessionExpiresMs = null,
} = {}) {
  return JSON.stringify([2, subject, origin, audience, issuedMs, issuedMs + ttlMs, clientIp, session, authMs, sessionExpiresMs]);
}
