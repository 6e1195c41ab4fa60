// Types of the ticketd package for Node `ws` servers (the JavaScript is in src/).
import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import type { WebSocket, WebSocketServer } from "ws";

export type Reason =
  | "missing"
  | "malformed"
  | "invalid"
  | "duplicate"
  | "bad_handshake"
  | "origin_mismatch"
  | "audience_mismatch"
  | "ip_mismatch"
  | "revoked";

export type Subject = string | number;

/** What a redeemed ticket says about the connection. Times in seconds since the epoch. */
export interface Claims {
  version: 1 | 2;
  subject: Subject;
  origin: string;
  audience: string;
  issuedAt: number;
  expiresAt: number;
  clientIp: string | null;
  /** Record v2: the app session's id (or "t" + signing time for stateless cookies). */
  session: string | null;
  authAt: number | null;
  sessionExpiresAt: number | null;
  extra: Record<string, unknown>;
}

export interface Logger {
  debug?(message: string): void;
  info?(message: string): void;
  warn?(message: string): void;
  error?(message: string): void;
}

export const REJECTION_STATUS: Readonly<Record<Reason, number>>;
export const UNAVAILABLE_STATUS: 503;
export const DEFAULT_KEY_PREFIX: "ticketd:";
/** Seconds the issuer's and the verifier's clocks may disagree (as Python's DEFAULT_LEEWAY). */
export const DEFAULT_LEEWAY: 5;
export const SUBPROTOCOL: "ticketd.v1";
export const DENIAL_BODY: "ticket rejected\n";
export const CLOSE_REVOKED: 4403;
export const CLOSE_SESSION_ENDED: 4401;

export class TicketdError extends Error {}

/** A replayed ticket: the client sees "invalid"; logs and metrics see this. */
export interface Replay {
  readonly sinceFirstUseMs: number;
  readonly sameClient: boolean;
  readonly connection: string;
  /** S(subject), or null when the first use was refused. */
  readonly subject: string | null;
  /** H(session), or null. */
  readonly session: string | null;
}

export class TicketRejected extends TicketdError {
  constructor(reason: Reason, options?: { ticketHash?: string | null; detail?: string | null; replay?: Replay | null });
  readonly reason: Reason;
  /** The ticket's log id (8 characters of its hash) when it was well formed. */
  readonly ticketHash: string | null;
  /** For logs only: "issued_in_future", "expired_by_clock", "session_ended", "unreadable_record" or "replayed". */
  readonly detail: string | null;
  /** With detail "replayed": what the ticket's tombstone tells (docs/PROTOCOL.md section 8). */
  readonly replay: Replay | null;
  readonly status: number;
}

export class StoreUnavailable extends TicketdError {
  constructor(message: string, options?: { operation?: string; cause?: unknown });
  readonly operation: string;
  readonly status: 503;
}

export class InvalidOrigin extends Error {}

/** The slice of a node-redis client the package uses. */
export interface RedisLike {
  sendCommand(args: ReadonlyArray<string>, options?: object): Promise<unknown>;
  duplicate?(): RedisLike & {
    connect(): Promise<unknown>;
    destroy(): void;
    on(event: "error", listener: (error: unknown) => void): unknown;
  };
}

export interface RedeemOptions {
  /** The Origin header of the handshake (null when absent or repeated). */
  origin?: string | null;
  /** The client's address, checked when the ticket was bound to one. */
  clientIp?: string | null;
  /** Called with the claims after the binding checks, before the revocation read. */
  onClaims?: (claims: Claims) => void;
}

export interface Verifier {
  readonly audience: string;
  readonly deadlineMs: number;
  redeem(ticket: string, options?: RedeemOptions): Promise<Claims>;
  close(): Promise<void>;
}

export interface RedisVerifier extends Verifier {
  readonly redis: RedisLike;
  readonly keyPrefix: string;
  revoked(who: RevocationSubject): Promise<boolean>;
}

export interface RedisVerifierOptions {
  /** A node-redis client (yours to connect and close) or a redis:// URL (the verifier's). */
  redis: RedisLike | string;
  audience: string;
  keyPrefix?: string;
  /** The whole redeem's Redis budget; past it, StoreUnavailable (default 1000). */
  deadlineMs?: number;
  connectTimeoutMs?: number;
  /** Seconds two clocks may disagree (default 5, as Python). */
  leeway?: number;
  /** Read the revocation state at redeem (default true). */
  checkRevocation?: boolean;
  /** Seconds since the epoch (default: Date.now() / 1000). */
  clock?: () => number;
  logger?: Logger;
  /** Told every redeem's outcome (metrics); its exceptions are logged and ignored. */
  onRedeemed?: RedeemedHook;
}

/** The `outcome` label of ticketd_redemptions_total: "ok", "replayed", a reason, "store_unavailable". */
export type RedeemedHook = (outcome: string, error: TicketdError | null) => void;
export function outcomeOf(error: unknown): string;

export interface HttpVerifierOptions {
  /** ticketd's POST /v1/tickets/redeem URL. */
  redeemUrl: string | URL;
  /** One of ticketd's TICKETD_SERVICE_KEYS. */
  serviceKey: string;
  audience: string;
  deadlineMs?: number;
  logger?: Logger;
  fetch?: typeof fetch;
  onRedeemed?: RedeemedHook;
}

export function createVerifier(options: RedisVerifierOptions): RedisVerifier;
export function createVerifier(options: HttpVerifierOptions): Verifier;

export interface RevocationSubject {
  subjectHash: string;
  sessionHash: string | null;
  authAtMs: number;
  connectionId: string | null;
}

export interface HeldConnection {
  readonly who: RevocationSubject;
  readonly revoked: boolean;
  attach(close: (code: number, reason: string) => void): void;
  release(): void;
}

export interface RevocationFeedOptions {
  redis: RedisLike | string;
  keyPrefix?: string;
  /** How often every live connection's state is re-read (default 30000). */
  sweepIntervalMs?: number;
  deadlineMs?: number;
  logger?: Logger;
}

export interface RevocationFeed {
  readonly size: number;
  readonly stats: { events: number; closed: number; resyncs: number; sweeps: number; readErrors: number };
  start(): Promise<void>;
  close(): Promise<void>;
  hold(who: RevocationSubject): HeldConnection;
  apply(fields: Record<string, string>): void;
  sweep(): Promise<void>;
}

export function createRevocationFeed(options: RevocationFeedOptions): RevocationFeed;

/** What ticketUpgrade puts on the socket (`ws.ticketd`) and the request (`req.ticketd`). */
export interface TicketdConnection {
  claims: Claims;
  subprotocol: "ticketd.v1" | null;
  connectionId: string;
}

declare module "ws" {
  interface WebSocket {
    ticketd?: TicketdConnection;
  }
}

declare module "node:http" {
  interface IncomingMessage {
    ticketd?: TicketdConnection;
  }
}

export interface TicketUpgradeOptions {
  /** A WebSocketServer created with { noServer: true }. */
  wss: WebSocketServer;
  verifier: Verifier;
  /** Only this path is served (others: 404, ticket untouched). */
  path?: string;
  /** Runs after the 101 (default: wss.emit("connection", ws, req)). */
  onAccept?: (ws: WebSocket, req: IncomingMessage, claims: Claims) => void;
  /** Closes revoked sockets with 4403. */
  revocations?: RevocationFeed;
  /** The client address to check bound tickets against (default: the peer address). */
  clientIp?: (req: IncomingMessage) => string | null | undefined;
  /**
   * Close every socket with 4401 after this many milliseconds, even while its session
   * lasts (jittered a little earlier). Sockets always close with 4401 at the session's expiry.
   */
  maxLifetimeMs?: number | null;
  /** Each 4401 close this handler made, by cause: `ticketd_connection_lifetime_closed_total{cause}`. */
  onLifetimeClose?: (cause: LifetimeCause) => void;
  logger?: Logger;
}

export type LifetimeCause = "session_expired" | "max_lifetime";
export const SESSION_EXPIRED: "session_expired";
export const MAX_LIFETIME: "max_lifetime";
export const MAX_JITTER_MS: 5000;
export const JITTER_FRACTION: 0.1;

/** When (epoch ms, jitter applied) and why a socket accepted at `nowMs` is closed with 4401. */
export function closeDeadline(
  claims: Pick<Claims, "sessionExpiresAt">,
  nowMs: number,
  options?: { maxLifetimeMs?: number | null; jitter?: (boundMs: number) => number },
): { atMs: number; cause: LifetimeCause } | null;

/** Close `ws` with 4401 at its deadline; returns the function that cancels the timer. */
export function armLifetime(
  ws: WebSocket,
  claims: Claims,
  options?: {
    maxLifetimeMs?: number | null;
    jitter?: (boundMs: number) => number;
    onClose?: (cause: LifetimeCause) => void;
    log?: Logger;
  },
): () => void;

export type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** The `server.on("upgrade", ...)` listener. */
export function ticketUpgrade(options: TicketUpgradeOptions): UpgradeListener;

export function ticketProtocols(
  appHandleProtocols?: (protocols: Set<string>, req: IncomingMessage) => string | false,
): (protocols: Set<string>, req: IncomingMessage) => string | false;

export function isWellFormed(ticket: unknown): ticket is string;
export function newTicket(): string;
export function ticketDigest(ticket: string): string;
export function ticketKey(prefix: string, ticket: string): string;
export function logId(ticket: string): string;
export function decodeRecord(raw: string | Uint8Array): Claims;
export function canonicalOrigin(value: unknown): string;
export function canonicalIp(address: string | null | undefined): string | null;
export function checkBinding(
  claims: Claims,
  options: {
    origin: string | null | undefined;
    audience?: string | null;
    clientIp?: string | null;
    now: number;
    ticketHash?: string | null;
  },
): Claims;
export type HeaderPairs = ReadonlyArray<readonly [string, string]>;
export function extractTicket(
  target: string,
  headers: HeaderPairs,
): { ticket: string; transport: "query" | "subprotocol"; subprotocol: "ticketd.v1" | null };
export function isWebSocketUpgrade(method: string, headers: HeaderPairs): boolean;
export function requestOrigin(headers: HeaderPairs): string | null;
/** `SET key tombstone XX GET KEEPTTL`, or `GETDEL key` without a tombstone. */
export function redeemCommand(key: string, tombstone?: string | null): [string, ...string[]];

/** The id the connection a ticket opens is registered under (a replay's close_first revokes it). */
export function connectionIdOf(ticket: string): string;
/** 8 characters of a hash of a client address, or null. */
export function clientFingerprint(clientIp: string | null | undefined): string | null;
export interface Tombstone {
  readonly firstUsedMs: number;
  readonly client: string | null;
  readonly subject: string | null;
  readonly session: string | null;
}
export function isTombstone(raw: string | Uint8Array): boolean;
/** Throws a RangeError unless `raw` is a tombstone. */
export function decodeTombstone(raw: string | Uint8Array): Tombstone;
export function subjectId(subject: Subject): string;
export function sessionHash(session: string): string;
export function revocationSubject(claims: Claims, connectionId?: string | null): RevocationSubject;
export function isRevoked(
  who: RevocationSubject,
  state: {
    subject: { notBeforeMs: number; exceptSession: string | null } | null | "unreadable";
    session: boolean;
    connection: boolean;
  },
): boolean;
export function eventRevokes(who: RevocationSubject, event: Record<string, string>): boolean;

export type { Server };
