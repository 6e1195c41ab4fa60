/**
 * Reading a ticket and an Origin out of a WebSocket opening handshake. No I/O.
 * The same rules as the Python `ticketd.handshake` (docs/PROTOCOL.md section 1):
 * exactly one of `?ticket=T` or the subprotocols `ticketd.v1` + `ticket.T`.
 * Headers are `[name, value]` pairs (from Node's `req.rawHeaders`) so that
 * repeated headers stay visible.
 */
import { TicketRejected } from "./errors.js";
import { isWellFormed } from "./tickets.js";

export const QUERY_PARAMETER = "ticket";
export const SUBPROTOCOL = "ticketd.v1";
export const SUBPROTOCOL_TICKET_PREFIX = "ticket.";
const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;
const WEBSOCKET_KEY = /^[+/0-9A-Za-z]{22}==$/;

// Near misses (docs/PROTOCOL.md section 1): the name in another case or
// percent-encoded, blanks ("+", encoded) around it, an encoded separator. Such a
// parameter or token is a ticket that is malformed: refused unburned, and counted.
const hex = (c) => c.charCodeAt(0).toString(16).padStart(2, "0");
const NAME = [...QUERY_PARAMETER].map((c) => `(?:${c}|%${hex(c)}|%${hex(c.toUpperCase())})`).join("");
const BLANK = "(?:[\\s+]|%(?:20|09|0a|0d|2b))";
const QUERY_NEAR_MISS = new RegExp(`^${BLANK}*${NAME}${BLANK}*(?:=|%3d)`, "i");
const TOKEN_NEAR_MISS = new RegExp(`^${NAME}\\s*\\.`, "i");

/** `req.rawHeaders` (a flat list) as `[name, value]` pairs. */
export function headerPairs(rawHeaders) {
  const pairs = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) pairs.push([rawHeaders[i], rawHeaders[i + 1]]);
  return pairs;
}

export function headerValues(headers, name) {
  name = name.toLowerCase();
  return headers.filter(([k]) => String(k).toLowerCase() === name).map(([, v]) => String(v));
}

function queryString(target) {
  if (target.startsWith("/") || target.startsWith("?") || ABSOLUTE_FORM.test(target)) {
    const afterQuery = target.includes("?") ? target.slice(target.indexOf("?") + 1) : "";
    return afterQuery.split("#")[0];
  }
  return target;
}

/** Python's unquote_plus, as far as comparing the result with an ASCII name goes. */
function unquotePlus(text) {
  return text.replace(/\+/g, " ").replace(/%([0-9A-Fa-f]{2})/g, (_, hex) => String.fromCharCode(parseInt(hex, 16)));
}

function ticketParams(query) {
  const values = [];
  for (const part of query.split("&")) {
    const eq = part.indexOf("=");
    const name = eq === -1 ? part : part.slice(0, eq);
    const value = eq === -1 ? "" : part.slice(eq + 1);
    if (name === QUERY_PARAMETER) values.push(value);
    else if (QUERY_NEAR_MISS.test(part) || (/[%+]/.test(name) && unquotePlus(name).trim() === QUERY_PARAMETER)) {
      values.push("%"); // a near miss: never well formed
    }
  }
  return values;
}

/** Offered subprotocol tokens, trimmed, in order. */
export function offeredSubprotocols(headers) {
  return headerValues(headers, "sec-websocket-protocol").flatMap((line) =>
    line.split(",").map((token) => token.trim()),
  );
}

/**
 * The one ticket of a handshake: `{ ticket, transport, subprotocol }`, or throws
 * TicketRejected with `missing`, `duplicate` or `malformed` (nothing consumed).
 */
export function extractTicket(target, headers) {
  const found = ticketParams(queryString(target)).map((value) => [value, "query"]);
  const offered = offeredSubprotocols(headers);
  for (const token of offered) {
    if (token.startsWith(SUBPROTOCOL_TICKET_PREFIX)) {
      found.push([token.slice(SUBPROTOCOL_TICKET_PREFIX.length), "subprotocol"]);
    } else if (TOKEN_NEAR_MISS.test(token)) {
      found.push(["%", "subprotocol"]); // a near miss: never well formed
    }
  }
  if (found.length === 0) throw new TicketRejected("missing");
  if (found.length > 1) throw new TicketRejected("duplicate");
  const [ticket, transport] = found[0];
  if (transport === "subprotocol" && !offered.includes(SUBPROTOCOL)) {
    throw new TicketRejected("malformed");
  }
  if (!isWellFormed(ticket)) throw new TicketRejected("malformed");
  return { ticket, transport, subprotocol: transport === "subprotocol" ? SUBPROTOCOL : null };
}

/** The raw Origin header, or null when it is absent or sent more than once. */
export function requestOrigin(headers) {
  const values = headerValues(headers, "origin");
  return values.length === 1 ? values[0] : null;
}

const tokens = (line) => new Set(line.split(",").map((t) => t.trim().toLowerCase()));

/** Whether a request is a well-formed RFC 6455 opening handshake (checked before any redeem). */
export function isWebSocketUpgrade(method, headers) {
  if (String(method).toUpperCase() !== "GET") return false;
  const upgrade = headerValues(headers, "upgrade");
  const connection = headerValues(headers, "connection");
  const version = headerValues(headers, "sec-websocket-version");
  const key = headerValues(headers, "sec-websocket-key");
  if (upgrade.length !== 1 || !tokens(upgrade[0]).has("websocket")) return false;
  if (!connection.some((line) => tokens(line).has("upgrade"))) return false;
  if (version.length !== 1 || version[0] !== "13" || key.length !== 1) return false;
  return WEBSOCKET_KEY.test(key[0].trim());
}
