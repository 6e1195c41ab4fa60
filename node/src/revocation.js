/**
 * Revocation state: key names, hashed ids and the rule (docs/PROTOCOL.md section 6). No I/O.
 *
 * State in Redis is the truth; the stream (see feed.js) only makes it fast. All keys
 * of one subject share the hash tag `{S}`, so one MGET reads them on a Cluster.
 */
import { createHash } from "node:crypto";

const hash16 = (text) => createHash("sha256").update(text, "utf8").digest().subarray(0, 16).toString("base64url");

/** S(subject): `s:` + a string subject, `i:` + the decimal of an integer one. */
export function subjectId(subject) {
  if (typeof subject === "string") return hash16("s:" + subject);
  if (Number.isSafeInteger(subject)) return hash16("i:" + String(subject));
  throw new TypeError("a subject is a string or an integer within ±(2^53 − 1)");
}

/** H(session). */
export function sessionHash(session) {
  return hash16("session:" + session);
}

export function subjectKey(prefix, subjectHash) {
  return `${prefix}rv:{${subjectHash}}:u`;
}

export function sessionKey(prefix, subjectHash, hashOfSession) {
  return `${prefix}rv:{${subjectHash}}:s:${hashOfSession}`;
}

export function connectionKey(prefix, subjectHash, connectionId) {
  return `${prefix}rv:{${subjectHash}}:c:${connectionId}`;
}

export function streamKey(prefix) {
  return `${prefix}revocations`;
}

/**
 * What a connection (or a ticket at redeem) is checked as: subject hash, session
 * hash (or null), auth time in ms (`auth_at_ms`, else `issued_at_ms`), connection id.
 */
export function revocationSubject(claims, connectionId = null) {
  const authAt = claims.authAt ?? claims.issuedAt;
  return {
    subjectHash: subjectId(claims.subject),
    sessionHash: claims.session === null || claims.session === undefined ? null : sessionHash(claims.session),
    authAtMs: Math.round(authAt * 1000),
    connectionId,
  };
}

/** Parse the subject marker `[not_before_ms, except_session_hash|null]`; throws RangeError. */
export function parseSubjectMarker(raw) {
  let value;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new RangeError("unreadable subject revocation marker");
  }
  if (
    !Array.isArray(value) ||
    value.length !== 2 ||
    !Number.isInteger(value[0]) ||
    !(value[1] === null || typeof value[1] === "string")
  ) {
    throw new RangeError("unreadable subject revocation marker");
  }
  return { notBeforeMs: value[0], exceptSession: value[1] };
}

/**
 * The rule. `state` is what Redis holds: `subject` (a parsed marker or null),
 * `session` and `connection` (whether the markers exist). An unreadable marker is
 * passed as `subject: "unreadable"` and counts as revoked (fail closed).
 */
export function isRevoked(who, state) {
  if (state.subject === "unreadable") return true;
  if (
    state.subject &&
    who.authAtMs < state.subject.notBeforeMs &&
    !(who.sessionHash !== null && who.sessionHash === state.subject.exceptSession)
  ) {
    return true;
  }
  return Boolean(state.session) || Boolean(state.connection);
}

/** Whether one stream event (its fields as an object) revokes `who`. */
export function eventRevokes(who, event) {
  if (event.v !== "1" || event.subject !== who.subjectHash) return false;
  switch (event.kind) {
    case "subject": {
      const notBefore = Number(event.not_before);
      if (!Number.isFinite(notBefore)) return true; // unreadable: fail closed, the sweep re-checks
      const excepted = event.except !== undefined && event.except !== "" && event.except === who.sessionHash;
      return who.authAtMs < notBefore && !excepted;
    }
    case "session":
      return who.sessionHash !== null && event.session === who.sessionHash;
    case "connection":
      return who.connectionId !== null && event.connection === who.connectionId;
    default:
      return false;
  }
}

/** The keys to MGET for `who` (same hash tag), and how to read the replies. */
export function stateKeys(prefix, who) {
  const keys = [subjectKey(prefix, who.subjectHash)];
  if (who.sessionHash !== null) keys.push(sessionKey(prefix, who.subjectHash, who.sessionHash));
  if (who.connectionId !== null) keys.push(connectionKey(prefix, who.subjectHash, who.connectionId));
  return keys;
}

export function readState(who, replies) {
  let subject = null;
  if (replies[0] !== null && replies[0] !== undefined) {
    try {
      subject = parseSubjectMarker(String(replies[0]));
    } catch {
      subject = "unreadable";
    }
  }
  let i = 1;
  const session = who.sessionHash !== null ? replies[i++] != null : false;
  const connection = who.connectionId !== null ? replies[i++] != null : false;
  return { subject, session, connection };
}
