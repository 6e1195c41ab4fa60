/**
 * Tickets and their records: format check, hashing, record decoding. No I/O.
 *
 * A ticket is 32 random bytes as 43 URL-safe base64 characters; Redis holds only
 * a record under a hash of it (docs/PROTOCOL.md sections 1 to 3). The record is a
 * compact JSON array versioned by its first element:
 *
 *     v1: [1, subject, origin, audience, issued_at_ms, expires_at_ms, client_ip|null, extra?]
 *     v2: [2, subject, origin, audience, issued_at_ms, expires_at_ms, client_ip|null,
 *          session|null, auth_at_ms|null, session_expires_at_ms|null, extra?]
 *
 * JSON.parse cannot tell `1` from `1.0`, nor keep integers beyond 2^53 exact, so the
 * decoder first marks every number literal that Python would not read as an exact
 * integer; such a literal in an integer field makes the record unreadable, as in Python.
 */
import { createHash, randomBytes } from "node:crypto";

export const TICKET_LENGTH = 43;
const TICKET = /^[A-Za-z0-9_-]{43}$/;
const MAX_MILLIS = 2 ** 53;
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const NOT_INTEGER = "\u0000ticketd:not-an-integer";

/** A fresh ticket: 256 random bits, URL-safe, 43 characters. */
export function newTicket() {
  return randomBytes(32).toString("base64url");
}

/** Whether `ticket` has the exact shape a ticketd mint produces (one spelling per ticket). */
export function isWellFormed(ticket) {
  if (typeof ticket !== "string" || !TICKET.test(ticket)) return false;
  // 43 characters carry 258 bits: the last one's 2 low bits must be zero (one spelling).
  return ALPHABET.indexOf(ticket[42]) % 4 === 0;
}

/** B64(SHA256(ticket)[:16]): 22 characters. */
export function ticketDigest(ticket) {
  return createHash("sha256").update(ticket, "latin1").digest().subarray(0, 16).toString("base64url");
}

/** The Redis key of a ticket's record. */
export function ticketKey(prefix, ticket) {
  return prefix + ticketDigest(ticket);
}

/** A short, non-secret identifier of a ticket for logs (8 characters of its hash). */
export function logId(ticket) {
  return ticketDigest(ticket).slice(0, 8);
}

function isMillis(value) {
  return Number.isInteger(value) && value >= -MAX_MILLIS && value <= MAX_MILLIS;
}

function isSubject(value) {
  return typeof value === "string" || Number.isSafeInteger(value);
}

/**
 * Replace every number literal Python would read as a float (`1.0`, `1e3`) or as an
 * integer no double holds exactly by a marker object, so a type check refuses it.
 */
function markInexactNumbers(text) {
  let out = "";
  let last = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      for (i++; i < text.length && text.charCodeAt(i) !== 34; i++) if (text.charCodeAt(i) === 92) i++;
    } else if (c === 45 /* - */ || (c >= 48 && c <= 57)) {
      let j = i + 1;
      let integer = true;
      for (; j < text.length; j++) {
        const d = text.charCodeAt(j);
        if (d >= 48 && d <= 57) continue;
        if (d === 46 || d === 101 || d === 69 || d === 43 || d === 45)
          integer = false; // . e E + -
        else break;
      }
      // Up to 15 digits every integer is exact; only longer ones need the careful check.
      if (!integer || j - i > 15) {
        const literal = text.slice(i, j);
        if (!exactInteger(literal)) {
          out += text.slice(last, i) + `{${JSON.stringify(NOT_INTEGER)}:${literal}}`;
          last = j;
        }
      }
      i = j - 1;
    }
  }
  return last === 0 ? text : out + text.slice(last);
}

function exactInteger(literal) {
  if (!/^-?(0|[1-9][0-9]*)$/.test(literal)) return false;
  const value = Number(literal);
  return Number.isFinite(value) && BigInt(literal) === BigInt(value);
}

function restoreNumbers(value) {
  if (Array.isArray(value)) return value.map(restoreNumbers);
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === NOT_INTEGER) return value[NOT_INTEGER];
    return Object.fromEntries(keys.map((k) => [k, restoreNumbers(value[k])]));
  }
  return value;
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

/**
 * Parse a stored record into claims (times in seconds, as the Python Claims).
 * Throws a RangeError on anything unexpected: callers refuse the ticket as `invalid`.
 */
export function decodeRecord(raw) {
  let item;
  try {
    item = JSON.parse(markInexactNumbers(typeof raw === "string" ? raw : Buffer.from(raw).toString("utf8")));
  } catch {
    throw new RangeError("unknown ticket record format");
  }
  const lengths = { 1: [7, 8], 2: [10, 11] };
  if (!Array.isArray(item) || !Number.isInteger(item[0]) || !lengths[item[0]]?.includes(item.length)) {
    throw new RangeError("unknown ticket record format");
  }
  const [version, subject, origin, audience, issuedMs, expiresMs, clientIp] = item;
  let session = null;
  let authMs = null;
  let sessionExpiresMs = null;
  let extra = item[7] ?? {};
  if (version === 2) {
    [session, authMs, sessionExpiresMs] = item.slice(7, 10);
    extra = item[10] ?? {};
    if (item.length === 11 && item[10] === null) extra = null;
  } else if (item.length === 8 && item[7] === null) extra = null;
  if (
    !isSubject(subject) ||
    typeof origin !== "string" ||
    typeof audience !== "string" ||
    !isMillis(issuedMs) ||
    !isMillis(expiresMs) ||
    !(clientIp === null || typeof clientIp === "string") ||
    !(session === null || typeof session === "string") ||
    !(authMs === null || isMillis(authMs)) ||
    !(sessionExpiresMs === null || isMillis(sessionExpiresMs)) ||
    !isObject(extra)
  ) {
    throw new RangeError("malformed ticket record");
  }
  return {
    version,
    subject,
    origin,
    audience,
    issuedAt: issuedMs / 1000,
    expiresAt: expiresMs / 1000,
    clientIp,
    session,
    authAt: authMs === null ? null : authMs / 1000,
    sessionExpiresAt: sessionExpiresMs === null ? null : sessionExpiresMs / 1000,
    extra: restoreNumbers(extra),
  };
}
