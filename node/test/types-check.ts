// Compiled by `tsc --noEmit` only (npm run lint): the README's usage type-checks.
import { createServer } from "node:http";
import { WebSocketServer } from "ws";
import {
  createRevocationFeed,
  createVerifier,
  StoreUnavailable,
  ticketUpgrade,
  TicketRejected,
  type Claims,
} from "ticketd";

const verifier = createVerifier({ redis: "redis://127.0.0.1:6379/0", audience: "chat" });
const viaHttp = createVerifier({
  redeemUrl: "http://127.0.0.1:8080/v1/tickets/redeem",
  serviceKey: "k",
  audience: "chat",
});
const revocations = createRevocationFeed({ redis: "redis://127.0.0.1:6379/0" });
const wss = new WebSocketServer({ noServer: true });
const server = createServer();
server.on(
  "upgrade",
  ticketUpgrade({
    wss,
    verifier,
    revocations,
    path: "/ws",
    maxLifetimeMs: 3_600_000,
    onLifetimeClose(cause: "session_expired" | "max_lifetime") {
      console.log(cause);
    },
    onAccept(ws, req, claims: Claims) {
      const subject: string | number = claims.subject;
      const same: Claims | undefined = ws.ticketd?.claims ?? req.ticketd?.claims;
      ws.send(String(subject) + String(same?.audience));
    },
  }),
);

async function check(ticket: string): Promise<void> {
  try {
    const claims = await viaHttp.redeem(ticket, { origin: "https://app.example.com", clientIp: null });
    claims.expiresAt.toFixed();
  } catch (error) {
    if (error instanceof TicketRejected) console.log(error.reason, error.status);
    else if (error instanceof StoreUnavailable) console.log(error.status);
  }
}
void check;
