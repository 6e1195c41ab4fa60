/**
 * Tombstones: what a redeemed ticket leaves in Redis until its TTL, and what a
 * replay learns from it (docs/PROTOCOL.md section 8; Python's ticketd.tombstones). No I/O.
 *
 *     [0, first_used_ms, client|null, subject|null, session|null]
 *
 * `client` is 8 characters of a hash of the first redeemer's address,
 * `subject`/`session` the revocation hashes S and H once the record was accepted. The
 * first connection's id is not stored: it is `connectionIdOf(ticket)`.
 */
import { createHash } from "node:crypto";
import { canonicalIp } from "./binding.js";
import { sessionHash, subjectId } from "./revocation.js";

const MAX_MILLIS = 2 ** 53;
const b64sha256 = (text, length) =>
  createHash("sha256").update(text, "utf8").digest().toString("base64url").slice(0, length);

/** The id of the connection a ticket opens: 16 URL-safe characters of a hash of it. */
export function connectionIdOf(ticket) {
  return b64sha256(`connection:${ticket}`, 16);
}

/** 8 characters of a hash of the client address (canonical form), or null. */
export function clientFingerprint(clientIp) {
  if (typeof clientIp !== "string" || clientIp === "") return null;
  return b64sha256(`client:${canonicalIp(clientIp) ?? clientIp}`, 8);
}

/** The tombstone a redeem writes before it knows the record. */
export function firstUse(clientIp, nowSeconds) {
  return {
    firstUsedMs: Math.round(nowSeconds * 1000),
    client: clientFingerprint(clientIp),
    subject: null,
    session: null,
  };
}

/** The tombstone once the record was accepted: with the subject and session hashes. */
export function settled(tombstone, claims) {
  return {
    ...tombstone,
    subject: subjectId(claims.subject),
    session: claims.session ? sessionHash(claims.session) : null,
  };
}

export function encodeTombstone(t) {
  return JSON.stringify([0, t.firstUsedMs, t.client, t.subject, t.session]);
}

const asText = (raw) => (typeof raw === "string" ? raw : Buffer.from(raw).toString("utf8"));

/** Whether a stored value is a tombstone (records never start with `[0,`). */
export function isTombstone(raw) {
  return asText(raw).startsWith("[0,");
}

const optionalText = (v) => v === null || typeof v === "string";

/** Parse a tombstone; throws a RangeError on anything else. */
export function decodeTombstone(raw) {
  let item;
  try {
    item = JSON.parse(asText(raw));
  } catch {
    throw new RangeError("unknown tombstone format");
  }
  if (!Array.isArray(item) || item.length !== 5 || item[0] !== 0) throw new RangeError("unknown tombstone format");
  const [, firstUsedMs, client, subject, session] = item;
  // JSON.parse reads 1.0 as 1: the raw text decides whether the time was an integer.
  const literal = /^\[\s*0\s*,\s*(-?\d+)\s*,/.exec(asText(raw));
  if (
    literal === null ||
    !Number.isInteger(firstUsedMs) ||
    Math.abs(firstUsedMs) > MAX_MILLIS ||
    BigInt(literal[1]) !== BigInt(firstUsedMs) ||
    ![client, subject, session].every(optionalText)
  ) {
    throw new RangeError("malformed tombstone");
  }
  return { firstUsedMs, client, subject, session };
}

/** What a tombstone reveals to a redeem of `ticket` from `clientIp` at `nowSeconds`. */
export function replayOf(tombstone, ticket, clientIp, nowSeconds) {
  const fingerprint = clientFingerprint(clientIp);
  return {
    sinceFirstUseMs: Math.max(0, Math.round(nowSeconds * 1000) - tombstone.firstUsedMs),
    sameClient: fingerprint !== null && fingerprint === tombstone.client,
    connection: connectionIdOf(ticket),
    subject: tombstone.subject,
    session: tombstone.session,
  };
}
