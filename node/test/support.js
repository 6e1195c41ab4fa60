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
  return JSON.stringify([
    2,
    subject,
    origin,
    audience,
    issuedMs,
    issuedMs + ttlMs,
    clientIp,
    session,
    authMs,
    sessionExpiresMs,
  ]);
}

import { createServer as createHttpServer } from "node:http";
import { connect } from "node:net";
import { WebSocketServer } from "ws";
import { ticketUpgrade } from "../src/index.js";

/** An HTTP server whose upgrades go through ticketUpgrade; resolves `{ url, port, wss, server, close }`. */
export async function wsServer(options) {
  const wss = new WebSocketServer({ noServer: true, ...(options.wssOptions ?? {}) });
  const server = createHttpServer((req, res) => res.end("app\n"));
  server.on("upgrade", ticketUpgrade({ wss, ...options }));
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    port,
    url: `ws://127.0.0.1:${port}`,
    wss,
    server,
    async close() {
      for (const ws of wss.clients) ws.terminate();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

export const WS_KEY = "dGhlIHNhbXBsZSBub25jZQ==";

/** Send a raw handshake and return everything the server wrote until it closed. */
export function rawHandshake(port, { target = "/ws", method = "GET", headers = {} } = {}) {
  const lines = [`${method} ${target} HTTP/1.1`, `Host: 127.0.0.1:${port}`];
  const all = {
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Key": WS_KEY,
    "Sec-WebSocket-Version": "13",
    Origin: ORIGIN,
    ...headers,
  };
  for (const [name, value] of Object.entries(all)) {
    for (const v of Array.isArray(value) ? value : [value]) if (v !== null) lines.push(`${name}: ${v}`);
  }
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const chunks = [];
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ text: Buffer.concat(chunks).toString("latin1"), closed: false });
    }, 5000);
    socket.on("data", (chunk) => {
      chunks.push(chunk);
      if (Buffer.concat(chunks).toString("latin1").startsWith("HTTP/1.1 101")) {
        clearTimeout(timer);
        socket.destroy();
        resolve({ text: Buffer.concat(chunks).toString("latin1"), closed: false });
      }
    });
    socket.on("error", reject);
    socket.on("end", () => {
      clearTimeout(timer);
      resolve({ text: Buffer.concat(chunks).toString("latin1"), closed: true });
    });
    socket.write(lines.join("\r\n") + "\r\n\r\n");
  });
}

/** A TCP server that accepts connections and never answers: a hung Redis. */
export async function blackhole() {
  const sockets = new Set();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `redis://127.0.0.1:${server.address().port}`,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
