/**
 * Every error the package throws, and the HTTP status of each refusal reason.
 *
 *     TicketdError            base of everything below
 *      ├── TicketRejected     the ticket is refused; `.reason` says why, `.status` the HTTP status
 *      └── StoreUnavailable   Redis (or the redeem endpoint) failed or did not answer in time: 503
 *
 * The reasons and statuses are the Python verifier's (docs/PROTOCOL.md section 4).
 * The reason is for logs, metrics and trusted code; browsers only ever get the
 * status and the body "ticket rejected".
 */

/** @type {Readonly<Record<string, number>>} */
export const REJECTION_STATUS = Object.freeze({
  missing: 401,
  malformed: 401,
  invalid: 401,
  duplicate: 400,
  bad_handshake: 400,
  origin_mismatch: 403,
  audience_mismatch: 403,
  ip_mismatch: 403,
  revoked: 403,
});

export const UNAVAILABLE_STATUS = 503;

export class TicketdError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

export class TicketRejected extends TicketdError {
  /**
   * @param {string} reason one of the keys of REJECTION_STATUS
   * @param {{ ticketHash?: string | null, detail?: string | null }} [options] the log id of
   *   a well-formed ticket; a detail for logs only (`issued_in_future`, `expired_by_clock`,
   *   `session_ended`, `unreadable_record`, `replayed`, as Python's `Detail`); for a replay, `replay`:
   *   `{ sinceFirstUseMs, sameClient, connection, subject, session }`
   */
  constructor(reason, { ticketHash = null, detail = null, replay = null } = {}) {
    if (!Object.hasOwn(REJECTION_STATUS, reason)) {
      throw new TypeError(`unknown rejection reason ${JSON.stringify(reason)}`);
    }
    super(reason);
    this.reason = reason;
    this.ticketHash = ticketHash;
    this.detail = detail;
    this.replay = replay;
  }

  get status() {
    return REJECTION_STATUS[this.reason];
  }
}

export class StoreUnavailable extends TicketdError {
  /**
   * @param {string} message what failed, without any secret
   * @param {{ operation?: string, cause?: unknown }} [options]
   */
  constructor(message, { operation = "redeem", cause } = {}) {
    super(message);
    this.operation = operation;
    if (cause !== undefined) this.cause = cause;
  }

  get status() {
    return UNAVAILABLE_STATUS;
  }
}
