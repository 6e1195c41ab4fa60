/**
 * ticketd for Node `ws` servers: redeem single-use, Origin-bound WebSocket tickets
 * minted by the ticketd service, and close revoked or expired sockets.
 * The wire contract is docs/PROTOCOL.md of the ticketd repository.
 */
export { REJECTION_STATUS, StoreUnavailable, TicketdError, TicketRejected, UNAVAILABLE_STATUS } from "./errors.js";
export { canonicalIp, checkBinding, DEFAULT_LEEWAY } from "./binding.js";
export { CLOSE_REVOKED, CLOSE_SESSION_ENDED, createRevocationFeed } from "./feed.js";
export { extractTicket, isWebSocketUpgrade, requestOrigin, SUBPROTOCOL } from "./handshake.js";
export {
  armLifetime,
  closeDeadline,
  JITTER_FRACTION,
  MAX_JITTER_MS,
  MAX_LIFETIME,
  SESSION_EXPIRED,
} from "./lifetime.js";
export { canonicalOrigin, InvalidOrigin } from "./origins.js";
export { redeemCommand } from "./redis.js";
export { eventRevokes, isRevoked, revocationSubject, sessionHash, subjectId } from "./revocation.js";
export { decodeRecord, isWellFormed, logId, newTicket, ticketDigest, ticketKey } from "./tickets.js";
export { clientFingerprint, connectionIdOf, decodeTombstone, isTombstone } from "./tombstones.js";
export { DENIAL_BODY, ticketProtocols, ticketUpgrade } from "./upgrade.js";
export { createVerifier, DEFAULT_KEY_PREFIX, outcomeOf } from "./verifier.js";
