// ticketd browser client: mint a ticket with the session cookie, open the WebSocket with it,
// reconnect with a FRESH ticket each time (a ticket works once and lives ~30 s).
// ES module, no dependencies. Served by ticketd at GET /v1/client.js.
//
//   import { connect } from "/v1/client.js";
//   const chat = connect({ mintUrl: "/v1/tickets", socketUrl: "wss://rt.example.com/ws",
//                          audience: "chat", onMessage: (data) => console.log(data) });
//   chat.send("hi");  chat.close();

/** The subprotocol the server answers with when the ticket travels as `ticket.<T>`. */
export const SUBPROTOCOL = "ticketd.v1";

/** Mint statuses that no retry can fix. */
const TERMINAL_STATUSES = new Set([400, 401, 403, 413, 415]);
/** Mint statuses that mean the login is gone (expired, revoked, logged out): onLoggedOut. */
const LOGGED_OUT_STATUSES = new Set([401, 403]);
/** A 4401 this soon after the open is not a session that ran its course (clocks apart, a
 * tiny max lifetime): the re-mint then backs off like a failure instead of running at once. */
const QUICK_END_MS = 1000;
// A socket open this long after a 4403 and its re-mint ends the revocation episode.
const REVOKED_RESET_MS = 30000;

/** Close codes after the 101 (docs/PROTOCOL.md section 7). */
export const CLOSE_SESSION_ENDED = 4401; // re-mint at once; a 401/403 from the mint stops
export const CLOSE_REVOKED = 4403; // stop after at most one re-mint attempt

/**
 * A failed mint or connection attempt. `terminal` errors end retries: 401 and 403 from
 * the mint (not logged in, or refused), and 400/413/415 (a request that will never be
 * accepted as sent). An origin that is not on ticketd's allowlist gets no CORS headers,
 * so the browser reports a network failure (status 0), which is retried with backoff.
 */
export class TicketdError extends Error {
  /**
   * @param {string} message
   * @param {{status?: number, terminal?: boolean, retryAfterMs?: number, closeCode?: number, cause?: unknown}} [info]
   */
  constructor(message, info = {}) {
    super(message, { cause: info.cause });
    this.name = "TicketdError";
    /** HTTP status of the mint response; 0 when there was none (network or CORS failure). */
    this.status = info.status ?? 0;
    /** True when retrying cannot help (not logged in, refused, or a bad request). */
    this.terminal = info.terminal ?? false;
    /** Minimum wait before retrying, from the mint's Retry-After header (429, 503). */
    this.retryAfterMs = info.retryAfterMs ?? 0;
    /** The WebSocket close code that ended the connection (e.g. 4403), 0 if none. */
    this.closeCode = info.closeCode ?? 0;
  }
}

/**
 * Ask ticketd for a ticket (POST, session cookie included).
 * @param {string} mintUrl
 * @param {string} [audience]
 * @param {AbortSignal} [signal]
 * @returns {Promise<import("./ticketd-client").Ticket>}
 */
export async function mintTicket(mintUrl, audience, signal) {
  let response;
  try {
    response = await fetch(mintUrl, {
      method: "POST",
      credentials: "include",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ audience }),
      signal,
    });
  } catch (cause) {
    throw new TicketdError("ticket request failed", { cause });
  }
  if (!response.ok) {
    const status = response.status;
    throw new TicketdError(`ticket request refused (${status})`, {
      status,
      terminal: TERMINAL_STATUSES.has(status),
      retryAfterMs: 1000 * (Number(response.headers.get("Retry-After")) || 0),
    });
  }
  const body = await response.json().catch(() => null);
  if (typeof body?.ticket !== "string") {
    throw new TicketdError("malformed ticket response", { status: response.status });
  }
  return body;
}

/**
 * Open a WebSocket presenting `ticket` with the chosen transport.
 * @param {string} socketUrl @param {string} ticket @param {"subprotocol"|"query"} transport
 */
export function openSocket(socketUrl, ticket, transport) {
  const url = new URL(socketUrl, location.href); // relative and http(s) URLs work too
  if (url.protocol === "http:" || url.protocol === "https:") url.protocol = url.protocol.replace("http", "ws");
  if (transport === "subprotocol") return new WebSocket(url.href, [SUBPROTOCOL, "ticket." + ticket]);
  url.searchParams.set("ticket", ticket);
  return new WebSocket(url.href);
}

/**
 * Keep a ticket-authenticated WebSocket open. See ticketd-client.d.ts for the options.
 * @param {import("./ticketd-client").ConnectOptions} options
 * @returns {import("./ticketd-client").Controller}
 */
export function connect(options) {
  // Reconnects after every close it did not ask for (close()), each time with a new ticket.
  const { mintUrl, socketUrl, audience, transport = "subprotocol" } = options;
  const initialMs = options.backoff?.initialMs ?? 500;
  const maxMs = options.backoff?.maxMs ?? 30000;
  if (transport !== "subprotocol" && transport !== "query") throw new TypeError(`unknown transport ${transport}`);
  /** @type {WebSocket | null} */ let socket = null;
  const abort = new AbortController();
  let stopped = false, failures = 0, timer = 0;
  // After a 4403 exactly one re-mint is tried (a new login may have happened); a second
  // 4403, or any failure of that attempt, stops for good. Reset only by a socket that then
  // stayed open REVOKED_RESET_MS (the new login holds): a 4403 soon after the reconnect
  // still stops, so no loop is possible, and a later drop is an ordinary retry.
  let revokedOnce = false;
  // Consecutive 4401s on sockets that ended within QUICK_END_MS: the exponent of the backoff.
  let quickEnds = 0;
  let state = "idle";

  const report = (next, extra = {}) => {
    state = next;
    options.onStatus?.({ state: next, attempt: failures, ...extra });
  };
  const stop = (error) => {
    stopped = true;
    clearTimeout(timer);
    abort.abort();
    report("closed", error ? { error } : {});
  };
  const retry = (error) => {
    if (stopped) return;
    if (error) options.onError?.(error);
    // Exponential backoff with "equal jitter": half fixed, half random; Retry-After is a floor.
    const ceiling = Math.min(maxMs, initialMs * 2 ** failures++);
    const delayMs = Math.max(ceiling / 2 + Math.random() * (ceiling / 2), error?.retryAfterMs ?? 0);
    report("waiting", { delayMs, error });
    timer = setTimeout(run, delayMs);
  };

  async function run() {
    if (stopped) return;
    report("minting");
    let ticket;
    try {
      ({ ticket } = await mintTicket(mintUrl, audience, abort.signal));
    } catch (error) {
      if (stopped) return;
      if (error.terminal || revokedOnce) {
        // After a 4403 the attempt's failure ends it, and says it was a revocation.
        const final = revokedOnce
          ? new TicketdError(error.message, { ...error, cause: error, terminal: true, closeCode: CLOSE_REVOKED })
          : error;
        options.onError?.(final);
        // 401/403 from the mint: no login to mint from (e.g. after a 4401, the session ended).
        if (LOGGED_OUT_STATUSES.has(error.status)) options.onLoggedOut?.(final);
        stop(final);
      } else {
        retry(error);
      }
      return;
    }
    if (stopped) return;
    report("connecting");
    const ws = (socket = openSocket(socketUrl, ticket, transport));
    let opened = false;
    let openedAt = 0;
    ws.addEventListener("open", (event) => {
      opened = true;
      openedAt = Date.now();
      failures = 0;
      report("open");
      options.onOpen?.(event);
    });
    ws.addEventListener("message", (event) => options.onMessage?.(event.data, event));
    ws.addEventListener("close", (event) => {
      if (socket === ws) socket = null;
      options.onClose?.(event);
      if (stopped) return;
      if (revokedOnce && opened && Date.now() - openedAt >= REVOKED_RESET_MS) revokedOnce = false;
      if (event.code === CLOSE_REVOKED || (revokedOnce && !opened)) {
        // Revoked: tell the page, try one re-mint (at most), then stop.
        if (event.code === CLOSE_REVOKED) options.onRevoked?.(event);
        if (revokedOnce) {
          const error = new TicketdError(`connection revoked (close ${event.code})`, { terminal: true, closeCode: CLOSE_REVOKED });
          options.onError?.(error);
          stop(error);
          return;
        }
        revokedOnce = true;
        report("revoked");
        timer = setTimeout(run, 0);
        return;
      }
      if (event.code === CLOSE_SESSION_ENDED && opened) {
        options.onSessionEnded?.(event);
        if (Date.now() - openedAt < QUICK_END_MS) {
          failures = ++quickEnds; // never a tight loop: 2^n backoff until a socket lasts
          retry(new TicketdError("session ended at once (close 4401)", { closeCode: CLOSE_SESSION_ENDED }));
          return;
        }
        quickEnds = 0;
        report("minting");
        timer = setTimeout(run, 0); // the session ended: re-mint at once (the mint decides)
        return;
      }
      // Refused handshakes are invisible to scripts (close 1006 before "open"): retry them too,
      // always with a new ticket.
      retry(opened ? null : new TicketdError(`connection failed (close ${event.code})`));
    });
  }

  queueMicrotask(run);
  return {
    send(data) {
      if (!socket || socket.readyState !== WebSocket.OPEN) return false;
      socket.send(data);
      return true;
    },
    close(code = 1000, reason = "") {
      if (stopped) return;
      const ws = socket;
      stop(null);
      ws?.close(code, reason);
    },
    get socket() { return socket; },
    get state() { return state; },
  };
}
