/**
 * Redeeming tickets: `createVerifier()` over Redis (node-redis) or over ticketd's
 * `POST /v1/tickets/redeem`. A redeem, as in docs/PROTOCOL.md section 4:
 *
 * 1. format check: a malformed ticket is refused without a Redis (or HTTP) call;
 * 2. the redeem command (`SET key tombstone XX GET KEEPTTL`) on the hashed key: the
 *    ticket is burned whatever follows, and its tombstone stays until the TTL;
 * 3. no record, or an unreadable one → `invalid`; a tombstone → `invalid` with the
 *    detail `replayed` and `error.replay` (docs/PROTOCOL.md section 8);
 * 4. binding checks (expiry, Origin, audience, client address);
 * 5. revocation state → `revoked`.
 *
 * Rejections are logged with the reason and the ticket's log id, never the ticket.
 */
import { checkBinding, DEFAULT_LEEWAY } from "./binding.js";
import { StoreUnavailable, TicketRejected, TicketdError, REJECTION_STATUS } from "./errors.js";
import { resolveLogger } from "./log.js";
import {
  clientFromUrl,
  closeClient,
  DEFAULT_DEADLINE_MS,
  ensureConnected,
  redeemCommand,
  send,
  settleCommand,
} from "./redis.js";
import { isRevoked, readState, revocationSubject, stateKeys } from "./revocation.js";
import { decodeRecord, isWellFormed, ticketDigest } from "./tickets.js";
import { decodeTombstone, encodeTombstone, firstUse, isTombstone, replayOf, settled } from "./tombstones.js";

export const DEFAULT_KEY_PREFIX = "ticketd:";

function checkAudience(audience) {
  if (typeof audience !== "string" || audience === "") {
    throw new TypeError("createVerifier needs the audience this server expects (a non-empty string)");
  }
}

/**
 * @param {object} options
 *   `{ redis, keyPrefix?, audience, deadlineMs?, checkRevocation?, clock?, logger? }` or
 *   `{ redeemUrl, serviceKey, audience, deadlineMs?, logger? }`
 */
const COMMON_OPTIONS = ["audience", "deadlineMs", "leeway", "clock", "logger", "onRedeemed"];
const REDIS_OPTIONS = new Set([...COMMON_OPTIONS, "redis", "keyPrefix", "checkRevocation", "connectTimeoutMs"]);
const HTTP_OPTIONS = new Set([...COMMON_OPTIONS, "redeemUrl", "serviceKey", "fetch"]);
const PYTHON_ONLY = new Set(["onReplay", "replayGrace", "observers", "revocationTtl"]);

function checkOptions(options, known) {
  for (const name of Object.keys(options)) {
    if (known.has(name)) continue;
    if (PYTHON_ONLY.has(name)) {
      throw new TypeError(
        `createVerifier: \`${name}\` is not supported in Node (replays are refused and logged, ` +
          "error.replay says more); for replay policies and metrics redeem through the service " +
          "(`redeemUrl`, TICKETD_ON_REPLAY) or a Python verifier",
      );
    }
    throw new TypeError(`createVerifier: unknown option \`${name}\``);
  }
}

export function createVerifier(options) {
  if (options === null || typeof options !== "object") throw new TypeError("createVerifier(options)");
  checkOptions(options, options.redeemUrl !== undefined ? HTTP_OPTIONS : REDIS_OPTIONS);
  checkAudience(options.audience);
  if (options.redeemUrl !== undefined) return new HttpVerifier(options);
  if (options.redis !== undefined) return new RedisVerifier(options);
  throw new TypeError("createVerifier needs `redis` (a node-redis client or URL) or `redeemUrl`");
}

/**
 * The `outcome` label of a redeem, as Python's `ticketd.replay.outcome_of` and the
 * `ticketd_redemptions_total{outcome}` metric: `ok`, `replayed`, a reason, `store_unavailable`.
 */
export function outcomeOf(error) {
  if (error === null || error === undefined) return "ok";
  if (error instanceof TicketRejected) return error.detail === "replayed" ? "replayed" : error.reason;
  if (error instanceof StoreUnavailable) return "store_unavailable";
  return "error";
}

class BaseVerifier {
  constructor({
    audience,
    deadlineMs = DEFAULT_DEADLINE_MS,
    leeway = DEFAULT_LEEWAY,
    clock = () => Date.now() / 1000,
    logger,
    onRedeemed,
  }) {
    if (!(Number.isFinite(deadlineMs) && deadlineMs > 0)) throw new TypeError("deadlineMs must be > 0");
    if (!(Number.isFinite(leeway) && leeway >= 0)) throw new TypeError("leeway must not be negative");
    if (onRedeemed !== undefined && typeof onRedeemed !== "function") {
      throw new TypeError("onRedeemed must be a function (outcome, error) => void");
    }
    this.audience = audience;
    this.leeway = leeway;
    this.deadlineMs = deadlineMs;
    this.clock = clock;
    this.logger = resolveLogger(logger);
    this.onRedeemed = onRedeemed;
  }

  /**
   * Consume `ticket` and return its claims if the connection matches them; every
   * outcome is told to `onRedeemed(outcome, error)` (metrics: the same labels as Python).
   */
  async redeem(ticket, options = {}) {
    try {
      const claims = await this._redeem(ticket, options);
      this._observe(null);
      return claims;
    } catch (error) {
      this._observe(error);
      throw error;
    }
  }

  _observe(error) {
    if (this.onRedeemed === undefined) return;
    try {
      this.onRedeemed(outcomeOf(error), error ?? null);
    } catch (hookError) {
      // A metrics exporter's bug must never change a redeem's outcome.
      this.logger.warn(`onRedeemed failed: ${hookError?.name ?? "Error"}`);
    }
  }

  /** Step 1: the format check; returns the digest (its first 8 characters are the log id). */
  _check(ticket) {
    if (!isWellFormed(ticket)) {
      this.logger.info("ticket rejected reason=malformed");
      throw new TicketRejected("malformed");
    }
    return ticketDigest(ticket);
  }

  _rejected(error) {
    if (error instanceof TicketRejected) {
      const detail = error.detail ? ` detail=${error.detail}` : "";
      const r = error.replay;
      const replay = r
        ? ` since_first_use_ms=${r.sinceFirstUseMs} same_client=${r.sameClient ? "yes" : "no"}` +
          ` subject=${(r.subject ?? "-").slice(0, 8)}`
        : "";
      const level = r ? "warn" : "info";
      this.logger[level](`ticket rejected reason=${error.reason}${detail} ticket=${error.ticketHash ?? "-"}${replay}`);
    } else if (error instanceof StoreUnavailable) {
      this.logger.warn(`ticket store unavailable during redeem: ${error.message}`);
    }
    return error;
  }
}

class RedisVerifier extends BaseVerifier {
  constructor(options) {
    super(options);
    const { redis, keyPrefix = DEFAULT_KEY_PREFIX, checkRevocation = true, connectTimeoutMs } = options;
    this.keyPrefix = keyPrefix;
    this.checkRevocation = checkRevocation;
    this.ownsClient = typeof redis === "string";
    this.redis = this.ownsClient ? clientFromUrl(redis, { connectTimeoutMs, logger: this.logger }) : redis;
    if (this.redis === null || typeof this.redis.sendCommand !== "function") {
      throw new TypeError("`redis` must be a node-redis client or a redis:// URL");
    }
    if (this.ownsClient) ensureConnected(this.redis);
  }

  /**
   * Consume `ticket` and return its claims if the connection matches them.
   * `onClaims(claims)` runs after the binding checks and before the revocation
   * read (ticketUpgrade registers the connection there, so no event is missed).
   */
  async _redeem(ticket, { origin = null, clientIp = null, onClaims } = {}) {
    const digest = this._check(ticket);
    const ticketHash = digest.slice(0, 8);
    const key = this.keyPrefix + digest;
    const mark = firstUse(clientIp, this.clock());
    try {
      const raw = await send(this.redis, redeemCommand(key, encodeTombstone(mark)), {
        deadlineMs: this.deadlineMs,
        operation: "redeem",
      });
      if (raw !== null && raw !== undefined && isTombstone(raw)) {
        const rejection = this._replayed(raw, { ticket, ticketHash, clientIp });
        // The first use's tombstone back (ours overwrote it) once it holds the subject.
        // Without one the first use's settle may still be on its way: writing back
        // would erase what it adds, and it replaces our tombstone anyway.
        if (rejection.replay?.subject) await this._settle(key, raw);
        throw rejection;
      }
      const claims = this._decide(raw, { ticketHash, origin, clientIp });
      await this._settle(key, encodeTombstone(settled(mark, claims)));
      onClaims?.(claims);
      if (this.checkRevocation) await this._revocationCheck(claims, ticketHash);
      return claims;
    } catch (error) {
      throw this._rejected(error);
    }
  }

  /** Best effort: the ticket is burned already; a failure costs only what a replay could tell. */
  async _settle(key, tombstone) {
    try {
      await send(this.redis, settleCommand(key, tombstone), { deadlineMs: this.deadlineMs, operation: "redeem" });
    } catch {
      // nothing to do: the tombstone keeps what the first command wrote
    }
  }

  _replayed(raw, { ticket, ticketHash, clientIp }) {
    let tombstone;
    try {
      tombstone = decodeTombstone(raw);
    } catch {
      return new TicketRejected("invalid", { ticketHash, detail: "unreadable_record" });
    }
    const replay = replayOf(tombstone, ticket, clientIp, this.clock());
    return new TicketRejected("invalid", { ticketHash, detail: "replayed", replay });
  }

  _decide(raw, { ticketHash, origin, clientIp }) {
    if (raw === null || raw === undefined) throw new TicketRejected("invalid", { ticketHash });
    let claims;
    try {
      claims = decodeRecord(raw);
    } catch {
      this.logger.error(`ticket record unreadable ticket=${ticketHash}`);
      throw new TicketRejected("invalid", { ticketHash, detail: "unreadable_record" });
    }
    return checkBinding(claims, {
      origin,
      audience: this.audience,
      clientIp,
      now: this.clock(),
      leeway: this.leeway,
      ticketHash,
    });
  }

  async _revocationCheck(claims, ticketHash) {
    const who = revocationSubject(claims);
    if (await this.revoked(who)) throw new TicketRejected("revoked", { ticketHash });
  }

  /** Whether the revocation state in Redis revokes `who` (one MGET on one hash tag). */
  async revoked(who) {
    const replies = await send(this.redis, ["MGET", ...stateKeys(this.keyPrefix, who)], {
      deadlineMs: this.deadlineMs,
      operation: "revocation check",
    });
    return isRevoked(who, readState(who, replies));
  }

  async close() {
    if (this.ownsClient) await closeClient(this.redis);
  }
}

const FROM_SNAKE = {
  subject: "subject",
  origin: "origin",
  audience: "audience",
  issued_at: "issuedAt",
  expires_at: "expiresAt",
  client_ip: "clientIp",
  session: "session",
  auth_at: "authAt",
  session_expires_at: "sessionExpiresAt",
  extra: "extra",
};

/** The claims of the redeem endpoint's 200 body, in this package's spelling. */
export function claimsFromResponse(body) {
  if (body === null || typeof body !== "object" || typeof body.origin !== "string") {
    throw new StoreUnavailable("redeem endpoint answered an unreadable body");
  }
  const claims = { session: null, authAt: null, sessionExpiresAt: null, clientIp: null, extra: {} };
  for (const [snake, camel] of Object.entries(FROM_SNAKE)) if (body[snake] !== undefined) claims[camel] = body[snake];
  claims.version = claims.session === null && claims.authAt === null ? 1 : 2;
  return claims;
}

class HttpVerifier extends BaseVerifier {
  constructor(options) {
    super(options);
    const { redeemUrl, serviceKey } = options;
    if (typeof serviceKey !== "string" || serviceKey === "") {
      throw new TypeError("createVerifier({ redeemUrl }) needs the service key");
    }
    this.redeemUrl = new URL(redeemUrl).href;
    this.serviceKey = serviceKey;
    this.fetch = options.fetch ?? globalThis.fetch;
  }

  async _redeem(ticket, { origin = null, clientIp = null, onClaims } = {}) {
    const ticketHash = this._check(ticket).slice(0, 8);
    try {
      const claims = await this._post({ ticket, origin, audience: this.audience, client_ip: clientIp }, ticketHash);
      onClaims?.(claims);
      return claims;
    } catch (error) {
      throw this._rejected(
        error instanceof TicketdError ? error : new StoreUnavailable("redeem failed", { cause: error }),
      );
    }
  }

  async _post(payload, ticketHash) {
    let response;
    let body;
    try {
      response = await this.fetch(this.redeemUrl, {
        method: "POST",
        headers: { Authorization: `Bearer ${this.serviceKey}`, "Content-Type": "application/json" },
        body: JSON.stringify(payload),
        signal: AbortSignal.timeout(this.deadlineMs),
        redirect: "error",
      });
      body = await response.json();
    } catch (error) {
      throw new StoreUnavailable(`redeem endpoint failed: ${error?.name ?? "Error"}`, { cause: error });
    }
    if (response.status === 200) return claimsFromResponse(body);
    const code = body?.code;
    if (Object.hasOwn(REJECTION_STATUS, code) && response.status === REJECTION_STATUS[code]) {
      throw new TicketRejected(code, { ticketHash });
    }
    // store_unavailable, and every configuration error (invalid_service_key,
    // redeem_disabled, invalid_body): no 101 without an answer, fail closed.
    const level = code === "store_unavailable" ? "warn" : "error";
    this.logger[level](
      `redeem endpoint refused: status=${response.status} code=${typeof code === "string" ? code : "-"}`,
    );
    throw new StoreUnavailable(`redeem endpoint answered ${response.status}`);
  }

  async close() {}
}
