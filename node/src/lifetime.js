/**
 * Sockets that end with their session (docs/PROTOCOL.md section 7, close code 4401).
 *
 * `closeDeadline()` is the pure decision, the same as Python's `ticketd.lifetime`: the
 * session's expiry (`claims.sessionExpiresAt`) or `maxLifetimeMs` after the accept,
 * whichever comes first, minus a jitter of up to min(5 s, 10 % of the lifetime left),
 * so that sockets opened together do not reconnect together. The close comes before
 * the deadline, never after. Claims without `sessionExpiresAt` (v1 records) get only
 * the max-lifetime timer, or none.
 *
 * `armLifetime()` schedules the close on one timer per socket (re-armed at most every
 * 2^31-1 ms, the longest `setTimeout`), cleared when the socket closes.
 */
import { CLOSE_SESSION_ENDED } from "./feed.js";

export const SESSION_EXPIRED = "session_expired";
export const MAX_LIFETIME = "max_lifetime";
export const MAX_JITTER_MS = 5000;
export const JITTER_FRACTION = 0.1;
const MAX_TIMER_MS = 2 ** 31 - 1;
const REASONS = { [SESSION_EXPIRED]: "session ended", [MAX_LIFETIME]: "max lifetime" };

/** `jitter(boundMs)`: milliseconds in [0, boundMs] to close before the deadline. */
const uniform = (boundMs) => Math.random() * boundMs;

/**
 * When (epoch ms, jitter applied) and why a socket accepted at `nowMs` is to be closed,
 * or null when there is neither a session expiry nor a maximum lifetime.
 */
export function closeDeadline(claims, nowMs, { maxLifetimeMs = null, jitter = uniform } = {}) {
  const ends = [];
  if (claims.sessionExpiresAt !== null && claims.sessionExpiresAt !== undefined) {
    ends.push([claims.sessionExpiresAt * 1000, SESSION_EXPIRED]);
  }
  if (maxLifetimeMs !== null && maxLifetimeMs !== undefined) ends.push([nowMs + maxLifetimeMs, MAX_LIFETIME]);
  if (ends.length === 0) return null;
  const [endMs, cause] = ends.reduce((a, b) => (b[0] < a[0] ? b : a));
  const bound = Math.min(MAX_JITTER_MS, JITTER_FRACTION * Math.max(0, endMs - nowMs));
  const early = Math.min(Math.max(jitter(bound), 0), bound); // before the deadline, never after
  return { atMs: endMs - early, cause };
}

/**
 * Close `ws` with 4401 at its deadline; returns the function that cancels the timer.
 * `onClose(cause)` runs once per close it made (the hook for
 * `ticketd_connection_lifetime_closed_total{cause}`).
 */
export function armLifetime(ws, claims, { maxLifetimeMs = null, jitter = uniform, onClose, log } = {}) {
  const deadline = closeDeadline(claims, Date.now(), { maxLifetimeMs, jitter });
  if (deadline === null) return () => {};
  let timer = null;
  const wake = () => {
    const left = deadline.atMs - Date.now();
    if (left > 0) {
      timer = setTimeout(wake, Math.min(left, MAX_TIMER_MS));
      timer.unref?.();
      return;
    }
    timer = null;
    if (ws.readyState !== ws.OPEN) return;
    ws.close(CLOSE_SESSION_ENDED, REASONS[deadline.cause]);
    log?.info(`connection closed code=${CLOSE_SESSION_ENDED} cause=${deadline.cause}`);
    onClose?.(deadline.cause);
  };
  wake();
  return () => clearTimeout(timer);
}
