/**
 * Closing live sockets that were revoked after their 101 (docs/PROTOCOL.md section 6).
 *
 * `createRevocationFeed({ redis })` keeps a registry of live connections and
 *
 * - reads the revocation stream with `XREAD BLOCK` on a duplicated connection (a
 *   blocked connection can send nothing else), from the last id it saw, resuming
 *   from it after a dropped connection;
 * - resyncs (re-checks the Redis state of every live connection) when the id it
 *   holds is older than the stream's first entry (the stream was trimmed past it);
 * - sweeps every `sweepIntervalMs`, re-checking the state of every live connection,
 *   the backstop for anything the stream did not deliver.
 *
 * A revoked connection is closed with 4403. Connections are registered by
 * `hold()` before the redeem's own revocation read, so an event that arrives
 * between that read and the 101 is not lost.
 */
import { StoreUnavailable } from "./errors.js";
import { resolveLogger } from "./log.js";
import { clientFromUrl, closeClient, DEFAULT_DEADLINE_MS, ensureConnected, send } from "./redis.js";
import { eventRevokes, isRevoked, readState, stateKeys, streamKey } from "./revocation.js";
import { DEFAULT_KEY_PREFIX } from "./verifier.js";

export const CLOSE_REVOKED = 4403;
export const CLOSE_SESSION_ENDED = 4401;
const BLOCK_MS = 5000;
const READ_COUNT = 1000;

/** Stream ids compare as (ms, seq) pairs. */
export function compareIds(a, b) {
  const [am, as] = a.split("-").map(BigInt);
  const [bm, bs] = b.split("-").map(BigInt);
  return am === bm ? (as === bs ? 0 : as < bs ? -1 : 1) : am < bm ? -1 : 1;
}

function fieldsOf(flat) {
  const fields = {};
  for (let i = 0; i + 1 < flat.length; i += 2) fields[String(flat[i])] = String(flat[i + 1]);
  return fields;
}

export function createRevocationFeed(options) {
  return new RevocationFeed(options);
}

class RevocationFeed {
  constructor({
    redis,
    keyPrefix = DEFAULT_KEY_PREFIX,
    sweepIntervalMs = 30_000,
    deadlineMs = DEFAULT_DEADLINE_MS,
    logger,
  }) {
    this.logger = resolveLogger(logger);
    this.keyPrefix = keyPrefix;
    this.stream = streamKey(keyPrefix);
    this.deadlineMs = deadlineMs;
    this.sweepIntervalMs = sweepIntervalMs;
    this.ownsClient = typeof redis === "string";
    this.redis = this.ownsClient ? clientFromUrl(redis, { logger: this.logger }) : redis;
    if (this.redis === null || typeof this.redis?.duplicate !== "function") {
      throw new TypeError("`redis` must be a node-redis client or a redis:// URL");
    }
    /** subject hash → Set of entries `{ who, close(code, reason), revoked }` */
    this.bySubject = new Map();
    this.lastId = null;
    this.running = false;
    this.stats = { events: 0, closed: 0, resyncs: 0, sweeps: 0, readErrors: 0 };
  }

  /** Number of live (or held) connections. */
  get size() {
    let n = 0;
    for (const set of this.bySubject.values()) n += set.size;
    return n;
  }

  /** Start reading the stream and sweeping. Resolves once the start position is known. */
  async start() {
    if (this.running) return;
    this.running = true;
    if (this.ownsClient) ensureConnected(this.redis);
    this.reader = this.redis.duplicate();
    this.reader.on("error", () => {}); // reported by the read loop
    await this.reader.connect();
    this.lastId = await this._lastEntryId();
    this.loop = this._readLoop();
    this.sweeper = setInterval(() => void this.sweep(), this.sweepIntervalMs);
    this.sweeper.unref?.();
  }

  async close() {
    this.running = false;
    clearInterval(this.sweeper);
    if (this.reader) {
      this.reader.destroy();
      await this.loop?.catch(() => {});
    }
    if (this.ownsClient) await closeClient(this.redis);
  }

  /**
   * Register a connection as soon as its claims are known (before the redeem's state
   * read). Returns the entry: `entry.revoked` turns true if an event revokes it before
   * it is attached; `attach(close)` gives it the function that closes the socket;
   * `release()` forgets it (call it when the socket closes).
   */
  hold(who) {
    const entry = {
      who,
      revoked: false,
      closeSocket: null,
      attach: (closeSocket) => {
        entry.closeSocket = closeSocket;
        if (entry.revoked) closeSocket(CLOSE_REVOKED, "revoked");
      },
      release: () => {
        const set = this.bySubject.get(who.subjectHash);
        set?.delete(entry);
        if (set?.size === 0) this.bySubject.delete(who.subjectHash);
      },
    };
    let set = this.bySubject.get(who.subjectHash);
    if (!set) this.bySubject.set(who.subjectHash, (set = new Set()));
    set.add(entry);
    return entry;
  }

  _revoke(entry) {
    if (entry.revoked) return;
    entry.revoked = true;
    this.stats.closed += 1;
    this.logger.info(`closing revoked connection subject=${entry.who.subjectHash.slice(0, 8)}`);
    entry.closeSocket?.(CLOSE_REVOKED, "revoked");
  }

  /** Apply one stream event to the live connections. */
  apply(fields) {
    this.stats.events += 1;
    for (const entry of this.bySubject.get(fields.subject) ?? []) {
      if (eventRevokes(entry.who, fields)) this._revoke(entry);
    }
  }

  /** Re-check the Redis state of every live connection (one MGET per connection). */
  async sweep() {
    this.stats.sweeps += 1;
    const entries = [...this.bySubject.values()].flatMap((set) => [...set]).filter((e) => !e.revoked);
    await Promise.all(
      entries.map(async (entry) => {
        try {
          const replies = await send(this.redis, ["MGET", ...stateKeys(this.keyPrefix, entry.who)], {
            deadlineMs: this.deadlineMs,
            operation: "revocation sweep",
          });
          if (isRevoked(entry.who, readState(entry.who, replies))) this._revoke(entry);
        } catch (error) {
          if (!(error instanceof StoreUnavailable)) throw error;
          this.logger.warn(`revocation sweep failed: ${error.message}`);
        }
      }),
    );
  }

  async _lastEntryId() {
    const reply = await this.reader.sendCommand(["XREVRANGE", this.stream, "+", "-", "COUNT", "1"]);
    return reply?.length ? String(reply[0][0]) : "0-0";
  }

  /** Resync when entries after the id we hold may have been trimmed away. */
  async _resyncIfTrimmed() {
    const reply = await send(this.redis, ["XRANGE", this.stream, "-", "+", "COUNT", "1"], {
      deadlineMs: this.deadlineMs,
      operation: "revocation resync",
    });
    if (!reply?.length) return;
    const first = String(reply[0][0]);
    if (compareIds(this.lastId, first) < 0) {
      this.stats.resyncs += 1;
      this.logger.warn("revocation stream was trimmed past the last id seen: resyncing");
      await this.sweep();
    }
  }

  async _readLoop() {
    let failures = 0;
    let checkTrim = false;
    while (this.running) {
      try {
        if (checkTrim) {
          await this._resyncIfTrimmed();
          checkTrim = false;
        }
        const reply = await this.reader.sendCommand(
          ["XREAD", "COUNT", String(READ_COUNT), "BLOCK", String(BLOCK_MS), "STREAMS", this.stream, this.lastId],
          { timeout: BLOCK_MS + 2000 },
        );
        failures = 0;
        const entries = reply?.[0]?.[1] ?? [];
        for (const [id, flat] of entries) {
          this.lastId = String(id);
          this.apply(fieldsOf(flat));
        }
        checkTrim = entries.length === READ_COUNT; // we may be falling behind the trim
      } catch (error) {
        if (!this.running) return;
        this.stats.readErrors += 1;
        failures += 1;
        checkTrim = true; // after a dropped connection: resume from lastId, resync if trimmed
        if (failures === 1) this.logger.warn(`revocation stream read failed: ${error?.name ?? "Error"}`);
        await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** failures, 2000)).unref?.());
      }
    }
  }
}
