// Types for ticketd-client.js (GET /v1/client.js).

/** How the ticket travels in the handshake. */
export type Transport = "subprotocol" | "query";

/** The mint endpoint's answer (POST /v1/tickets, 201). */
export interface Ticket {
  ticket: string;
  expires_in: number;
  expires_at: number;
  audience: string;
}

export type State = "idle" | "minting" | "connecting" | "open" | "waiting" | "revoked" | "closed";

export interface Status {
  state: State;
  /** Consecutive failed attempts so far (reset when a socket opens). */
  attempt: number;
  /** Set with state "waiting": milliseconds until the next attempt. */
  delayMs?: number;
  /** The error that caused "waiting", or the terminal error with "closed". */
  error?: TicketdError | null;
}

export interface ConnectOptions {
  /** The ticketd mint endpoint, e.g. "https://tickets.example.com/v1/tickets". */
  mintUrl: string;
  /** The WebSocket endpoint (ws:, wss:, or http(s): / relative, converted for "query"). */
  socketUrl: string;
  /** Audience to mint for; the service's first audience when omitted. */
  audience?: string;
  /** Default "subprotocol": keeps the ticket out of URLs and access logs. */
  transport?: Transport;
  onMessage?: (data: unknown, event: MessageEvent) => void;
  onOpen?: (event: Event) => void;
  /** Every close, including refused handshakes (code 1006) that are then retried. */
  onClose?: (event: CloseEvent) => void;
  /** Every failure; `error.terminal` means no further attempt will be made. */
  onError?: (error: TicketdError) => void;
  onStatus?: (status: Status) => void;
  /**
   * The server closed the socket with 4403 (revoked: logout, ban, password change). One
   * re-mint is attempted (a new login may exist); if it fails or is revoked again, the
   * controller stops with a terminal error (`closeCode` 4403). Never a loop.
   */
  onRevoked?: (event: CloseEvent) => void;
  /**
   * The server closed the socket with 4401: the session ended (expired) or the socket
   * reached the server's maximum lifetime. The client re-mints at once (with backoff if
   * the socket had been open for under a second); the mint decides whether the session
   * still holds.
   */
  onSessionEnded?: (event: CloseEvent) => void;
  /**
   * The mint answered 401 or 403: there is no login to mint from (the session expired,
   * was revoked, or the user logged out). The controller has stopped (the error is
   * terminal; `closeCode` 4403 after a revocation). Show a login prompt here.
   */
  onLoggedOut?: (error: TicketdError) => void;
  /** Exponential backoff with jitter between attempts. Defaults: 500 ms, 30 s. */
  backoff?: { initialMs?: number; maxMs?: number };
}

export interface Controller {
  /** Send on the open socket; false (nothing sent) when not connected. */
  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): boolean;
  /** Stop for good: no reconnect, the socket is closed with `code`. */
  close(code?: number, reason?: string): void;
  /** The current socket, or null between attempts. */
  readonly socket: WebSocket | null;
  readonly state: State;
}

export declare const SUBPROTOCOL: "ticketd.v1";
/** Close code: the session ended; the client re-mints at once. */
export declare const CLOSE_SESSION_ENDED: 4401;
/** Close code: revoked; the client stops after at most one re-mint attempt. */
export declare const CLOSE_REVOKED: 4403;

export declare class TicketdError extends Error {
  constructor(
    message: string,
    info?: {
      status?: number;
      terminal?: boolean;
      retryAfterMs?: number;
      closeCode?: number;
      cause?: unknown;
    },
  );
  /** HTTP status of the mint response; 0 for a network or CORS failure. */
  readonly status: number;
  /** 401/403 from the mint: retrying cannot help, the controller has stopped. */
  readonly terminal: boolean;
  /** From Retry-After (429, 503); a floor for the next delay. */
  readonly retryAfterMs: number;
  /** The close code that ended the connection for good (4403 when revoked), else 0. */
  readonly closeCode: number;
}

export declare function mintTicket(
  mintUrl: string,
  audience?: string,
  signal?: AbortSignal,
): Promise<Ticket>;

export declare function openSocket(socketUrl: string, ticket: string, transport: Transport): WebSocket;

export declare function connect(options: ConnectOptions): Controller;
