/**
 * Binding checks on a removed record, in the order of docs/PROTOCOL.md section 4:
 * expiry, Origin, audience, client address. No I/O.
 */
import { TicketRejected } from "./errors.js";
import { canonicalOrigin, ipv6Groups, parseIPv4 } from "./origins.js";

/**
 * One spelling per client address, or null if `address` is not one: no port, no
 * brackets, IPv4-mapped IPv6 unmapped (Python's `canonical_ip`).
 */
export function canonicalIp(address) {
  if (typeof address !== "string" || !address) return null;
  let text = address.trim();
  if (text.startsWith("[")) {
    const end = text.indexOf("]");
    text = end === -1 ? text.slice(1) : text.slice(1, end);
  } else if (text.split(":").length === 2) {
    text = text.slice(0, text.indexOf(":"));
  }
  const v4 = parseIPv4(text);
  if (v4 !== null) return v4;
  const v6 = ipv6Groups(text);
  if (v6 === null) return null;
  const g = v6.groups;
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    return `${g[6] >> 8}.${g[6] & 255}.${g[7] >> 8}.${g[7] & 255}`;
  }
  return v6.compressed;
}

function presentedOrigin(origin) {
  if (origin === null || origin === undefined) return null;
  try {
    return canonicalOrigin(origin);
  } catch {
    return null;
  }
}

export const DEFAULT_LEEWAY = 5;

/**
 * Return `claims` if the connection matches them, else throw TicketRejected.
 * `now` and `leeway` (how far two clocks may disagree) are in seconds; `audience`
 * null or undefined skips the audience check. As Python's `decide`: a record issued
 * after `now + leeway`, or expired by `now` beyond the leeway, is `invalid`.
 */
export function checkBinding(
  claims,
  { origin, audience, clientIp = null, now, leeway = DEFAULT_LEEWAY, ticketHash = null },
) {
  if (claims.issuedAt > now + leeway) {
    throw new TicketRejected("invalid", { ticketHash, detail: "issued_in_future" });
  }
  if (now >= claims.expiresAt + leeway) {
    throw new TicketRejected("invalid", { ticketHash, detail: "expired_by_clock" });
  }
  // No leeway: a socket must never open after the session it was minted from ended.
  if (claims.sessionExpiresAt !== null && claims.sessionExpiresAt !== undefined && now >= claims.sessionExpiresAt) {
    throw new TicketRejected("invalid", { ticketHash, detail: "session_ended" });
  }
  const presented = presentedOrigin(origin);
  if (presented === null || presented !== claims.origin) {
    throw new TicketRejected("origin_mismatch", { ticketHash });
  }
  if (audience !== null && audience !== undefined && audience !== claims.audience) {
    throw new TicketRejected("audience_mismatch", { ticketHash });
  }
  if (claims.clientIp !== null) {
    const seen = canonicalIp(clientIp) ?? clientIp;
    const bound = canonicalIp(claims.clientIp) ?? claims.clientIp;
    if (seen !== bound) throw new TicketRejected("ip_mismatch", { ticketHash });
  }
  return claims;
}
