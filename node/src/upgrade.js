/**
 * `ticketUpgrade()`: the `server.on("upgrade")` listener for a `ws` server in
 * `noServer` mode. For each request, in this order:
 *
 * 1. an `error` listener on the socket, first: a client that resets the connection
 *    while the redeem is in flight must not crash the process (ECONNRESET);
 * 2. path, method and Upgrade sanity, before anything is consumed (a prefetcher's GET
 *    leaves the ticket redeemable);
 * 3. the one ticket (`?ticket=` or the `ticketd.v1` subprotocol), not consumed yet;
 * 4. the Origin header (exactly one) and the redeem, which burns the ticket;
 * 5. `wss.handleUpgrade()`, answering `ticketd.v1` (never the ticket) when the ticket
 *    came as a subprotocol; the claims go on `ws.ticketd` and `req.ticketd`.
 *
 * A refusal is a complete HTTP response before any 101 (status line, `Connection:
 * close`, `Content-Length`, the body "ticket rejected"), ended and then destroyed
 * once written, so the client receives it. Every refusal has the same body.
 */
import { STATUS_CODES } from "node:http";
import { StoreUnavailable, TicketRejected, UNAVAILABLE_STATUS } from "./errors.js";
import {
  extractTicket,
  headerPairs,
  isWebSocketUpgrade,
  requestOrigin,
  SUBPROTOCOL,
  SUBPROTOCOL_TICKET_PREFIX,
} from "./handshake.js";
import { armLifetime } from "./lifetime.js";
import { resolveLogger } from "./log.js";
import { revocationSubject } from "./revocation.js";
import { logId } from "./tickets.js";
import { connectionIdOf } from "./tombstones.js";

export const DENIAL_BODY = "ticket rejected\n";

/** The bytes of a refusal: the same body for every reason. */
export function refusal(status, { body = DENIAL_BODY, retryAfter = false } = {}) {
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}`,
    "Connection: close",
    "Content-Type: text/plain; charset=utf-8",
    `Content-Length: ${Buffer.byteLength(body)}`,
    "Cache-Control: no-store",
  ];
  if (retryAfter) lines.push("Retry-After: 1");
  return `${lines.join("\r\n")}\r\n\r\n${body}`;
}

function refuse(socket, status, options) {
  if (socket.destroyed) return;
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.once("finish", () => socket.destroy());
  socket.end(refusal(status, options));
}

/**
 * The `handleProtocols` the ws server needs: `ticketd.v1` for a ticket that came as a
 * subprotocol, never a `ticket.` token; otherwise the application's own choice.
 */
export function ticketProtocols(appHandleProtocols) {
  const handle = (protocols, req) => {
    const offered = new Set([...protocols].filter((p) => !p.startsWith(SUBPROTOCOL_TICKET_PREFIX)));
    if (req?.ticketd?.subprotocol === SUBPROTOCOL) return SUBPROTOCOL;
    offered.delete(SUBPROTOCOL);
    if (appHandleProtocols) return appHandleProtocols(offered, req);
    return offered.size ? offered.values().next().value : false;
  };
  handle.ticketd = true;
  return handle;
}

function pathOf(target) {
  const end = target.search(/[?#]/);
  return end === -1 ? target : target.slice(0, end);
}

/**
 * @param {object} options `{ wss, verifier, path?, onAccept?, revocations?, clientIp?,
 *   maxLifetimeMs?, onLifetimeClose?, logger? }`
 *   `onAccept(ws, req, claims)` runs after the 101 (default: `wss.emit("connection", ws, req)`);
 *   `clientIp(req)` the address to check a bound ticket against (default: the peer address);
 *   `revocations` a feed from `createRevocationFeed()` that closes revoked sockets with 4403.
 *   Every socket closes with 4401 at its session's expiry (`claims.sessionExpiresAt`), or
 *   after `maxLifetimeMs` if that comes first, jittered a little earlier (lifetime.js);
 *   `onLifetimeClose(cause)` counts those closes (`session_expired`, `max_lifetime`).
 */
export function ticketUpgrade({
  wss,
  verifier,
  path,
  onAccept,
  revocations,
  clientIp,
  maxLifetimeMs = null,
  onLifetimeClose,
  logger,
} = {}) {
  if (!wss || typeof wss.handleUpgrade !== "function") throw new TypeError("ticketUpgrade needs `wss`");
  if (!wss.options?.noServer) {
    // Attached to a server, ws answers every upgrade itself, without a ticket.
    throw new TypeError("ticketUpgrade needs a WebSocketServer created with { noServer: true }");
  }
  if (!verifier || typeof verifier.redeem !== "function") throw new TypeError("ticketUpgrade needs `verifier`");
  if (maxLifetimeMs !== null && !(Number.isFinite(maxLifetimeMs) && maxLifetimeMs > 0)) {
    throw new TypeError("`maxLifetimeMs` must be a positive number of milliseconds");
  }
  const log = resolveLogger(logger ?? verifier.logger);
  if (!wss.options.handleProtocols?.ticketd) {
    wss.options.handleProtocols = ticketProtocols(wss.options.handleProtocols);
  }
  const addressOf = clientIp ?? ((req) => req.socket.remoteAddress ?? null);
  const accept = onAccept ?? ((ws, req) => wss.emit("connection", ws, req));

  async function admit(req, socket, head) {
    const target = req.url ?? "/";
    if (path !== undefined && pathOf(target) !== path) {
      log.info("websocket handshake refused: path not served");
      return refuse(socket, 404, { body: "not found\n" });
    }
    const headers = headerPairs(req.rawHeaders);
    let presented;
    try {
      presented = extractTicket(target, headers);
    } catch (error) {
      if (!(error instanceof TicketRejected)) throw error;
      presented = error;
    }
    if (!isWebSocketUpgrade(req.method, headers)) {
      const ticket = presented instanceof TicketRejected ? "-" : logId(presented.ticket);
      log.info(`websocket handshake refused reason=bad_handshake ticket=${ticket}`);
      return refuse(socket, 400);
    }
    if (presented instanceof TicketRejected) {
      log.info(`websocket handshake refused reason=${presented.reason} ticket=-`);
      return refuse(socket, presented.status);
    }
    let held = null;
    let claims;
    try {
      claims = await verifier.redeem(presented.ticket, {
        origin: requestOrigin(headers),
        clientIp: addressOf(req),
        onClaims: revocations
          ? (c) => (held = revocations.hold(revocationSubject(c, connectionIdOf(presented.ticket))))
          : undefined,
      });
      if (held?.revoked) throw new TicketRejected("revoked", { ticketHash: logId(presented.ticket) });
    } catch (error) {
      held?.release();
      if (error instanceof TicketRejected) {
        log.info(`websocket handshake refused reason=${error.reason} ticket=${error.ticketHash ?? "-"}`);
        return refuse(socket, error.status);
      }
      if (error instanceof StoreUnavailable) {
        log.warn(`websocket handshake refused: store unavailable ticket=${logId(presented.ticket)}`);
        return refuse(socket, UNAVAILABLE_STATUS, { retryAfter: true });
      }
      throw error;
    }
    if (socket.destroyed || !socket.writable) {
      held?.release();
      log.info(`client left during the redeem ticket=${logId(presented.ticket)}`);
      return;
    }
    req.ticketd = {
      claims,
      subprotocol: presented.subprotocol,
      connectionId: held?.who.connectionId ?? connectionIdOf(presented.ticket),
    };
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.ticketd = req.ticketd;
      track(ws, claims, held);
      accept(ws, req, claims);
    });
  }

  function track(ws, claims, held) {
    if (held) held.attach((code, reason) => ws.close(code, reason));
    const cancel = armLifetime(ws, claims, { maxLifetimeMs, onClose: onLifetimeClose, log });
    ws.once("close", () => {
      cancel();
      held?.release();
    });
  }

  return function onUpgrade(req, socket, head) {
    socket.on("error", (error) => {
      log.debug(`websocket handshake socket error: ${error?.code ?? error?.name ?? "Error"}`);
      socket.destroy();
    });
    admit(req, socket, head).catch((error) => {
      log.error(`websocket handshake failed: ${error?.name ?? "Error"}: ${error?.message ?? ""}`);
      refuse(socket, 500);
    });
  };
}
