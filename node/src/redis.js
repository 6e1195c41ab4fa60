/**
 * The only code that sends commands to Redis, through node-redis's `sendCommand`.
 *
 * node-redis has no command timeout by default, and queues commands while it
 * reconnects: a redeem could wait forever. Every command here runs under a
 * deadline (a timer raced against the reply) and every failure becomes
 * StoreUnavailable: fail closed.
 */
import { createClient } from "redis";
import { StoreUnavailable } from "./errors.js";

export const DEFAULT_DEADLINE_MS = 1000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 1000;

/**
 * The redeem command on a record key: replace the record by `tombstone` and return
 * what was there (`SET key tombstone XX GET KEEPTTL`, Redis 6.2+; the reply is the old
 * value or null). Without a tombstone, the plain `GETDEL`.
 */
export function redeemCommand(key, tombstone = null) {
  return tombstone === null ? ["GETDEL", key] : ["SET", key, tombstone, "XX", "GET", "KEEPTTL"];
}

/** Replace a tombstone by another, keeping the TTL (`SET key tombstone XX KEEPTTL`). */
export function settleCommand(key, tombstone) {
  return ["SET", key, tombstone, "XX", "KEEPTTL"];
}

/** A connected-on-demand node-redis client for `url`, with explicit timeouts. */
export function clientFromUrl(url, { connectTimeoutMs = DEFAULT_CONNECT_TIMEOUT_MS, logger }) {
  const client = createClient({
    url,
    socket: {
      connectTimeout: connectTimeoutMs,
      reconnectStrategy: (retries) => Math.min(50 * 2 ** retries, 2000),
    },
  });
  let logged = 0;
  client.on("error", (error) => {
    const now = Date.now();
    if (now - logged > 5000) {
      logged = now;
      logger.warn(`redis connection error: ${error?.name ?? "Error"}: ${error?.message ?? ""}`);
    }
  });
  return client;
}

/** Connect a client we own, once; errors are reported through the commands that need it. */
export function ensureConnected(client) {
  if (client.isOpen || typeof client.connect !== "function") return Promise.resolve();
  if (!client.__ticketdConnecting) {
    client.__ticketdConnecting = client.connect().catch(() => {
      client.__ticketdConnecting = null;
    });
  }
  return client.__ticketdConnecting;
}

/**
 * Pending deadlines, checked by one coarse timer rather than a timer per command
 * (a setTimeout per redeem costs a third of the throughput). Resolution: TICK_MS.
 */
const TICK_MS = 20;
const pending = new Set();
let ticker = null;

function watch(deadlineMs, operation) {
  let entry;
  const expired = new Promise((_, reject) => {
    entry = { at: performance.now() + deadlineMs, reject, deadlineMs, operation };
  });
  pending.add(entry);
  if (ticker === null) {
    ticker = setInterval(() => {
      const now = performance.now();
      for (const e of pending) {
        if (e.at <= now) {
          pending.delete(e);
          e.reject(
            new StoreUnavailable(`${e.operation} failed: deadline of ${e.deadlineMs} ms passed`, {
              operation: e.operation,
            }),
          );
        }
      }
      if (pending.size === 0) {
        clearInterval(ticker);
        ticker = null;
      }
    }, TICK_MS);
    ticker.unref?.();
  }
  return { expired, done: () => pending.delete(entry) };
}

/** Run `args` on `client` within `deadlineMs`; any failure is StoreUnavailable(operation). */
export async function send(client, args, { deadlineMs, operation }) {
  const deadline = watch(deadlineMs, operation);
  try {
    // Not node-redis's own `timeout` option: it costs an AbortSignal per command (half the throughput).
    return await Promise.race([client.sendCommand(args), deadline.expired]);
  } catch (error) {
    if (error instanceof StoreUnavailable) throw error;
    throw new StoreUnavailable(`${operation} failed: ${error?.name ?? "Error"}`, { operation, cause: error });
  } finally {
    deadline.done();
  }
}

/** Close a client we own: gracefully, or destroyed after `graceMs` (a hung Redis never answers). */
export async function closeClient(client, graceMs = 1000) {
  if (!client.isOpen) return;
  let timer;
  const late = new Promise((resolve) => (timer = setTimeout(resolve, graceMs, "late")));
  const closed = (typeof client.close === "function" ? client.close() : client.quit()).catch(() => "failed");
  if ((await Promise.race([closed, late])) !== undefined && client.isOpen) client.destroy();
  clearTimeout(timer);
}
