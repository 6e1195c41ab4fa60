// The conformance vectors of tests/vectors/ (also run by pytest, tests/test_vectors.py),
// against this package. Every vector runs here, including those the Python side
// only passes once record v2 and revocation land there.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { createClient } from "redis";
import {
  canonicalOrigin,
  closeDeadline,
  createVerifier,
  decodeRecord,
  DENIAL_BODY,
  eventRevokes,
  extractTicket,
  isRevoked,
  isWebSocketUpgrade,
  isWellFormed,
  logId,
  REJECTION_STATUS,
  requestOrigin,
  sessionHash,
  subjectId,
  ticketDigest,
  ticketKey,
  TicketRejected,
  clientFingerprint,
  connectionIdOf,
  decodeTombstone,
  isTombstone,
} from "../src/index.js";
import { CLOSE_REVOKED, CLOSE_SESSION_ENDED } from "../src/feed.js";
import { connectionKey, sessionKey, streamKey, subjectKey } from "../src/revocation.js";
import { startRedis } from "./support.js";

const load = (name) => JSON.parse(readFileSync(new URL(`../../tests/vectors/${name}`, import.meta.url), "utf8"));
export const counts = {};
const count = (file, n) => (counts[file] = (counts[file] ?? 0) + n);

/** Claims in the vectors' (and the HTTP API's) spelling. */
function snake(claims) {
  return {
    subject: claims.subject,
    origin: claims.origin,
    audience: claims.audience,
    issued_at: claims.issuedAt,
    expires_at: claims.expiresAt,
    client_ip: claims.clientIp,
    session: claims.session,
    auth_at: claims.authAt,
    session_expires_at: claims.sessionExpiresAt,
    extra: claims.extra,
  };
}

function assertClaims(claims, expected) {
  const actual = snake(claims);
  for (const [name, value] of Object.entries(expected)) assert.deepStrictEqual(actual[name], value, name);
}

describe("tickets and keys", () => {
  const vectors = load("tickets.json");
  count("tickets.json", vectors.well_formed.length + vectors.malformed.length);
  for (const v of vectors.well_formed) {
    test(`well formed ${v.log_id}`, () => {
      assert.equal(isWellFormed(v.ticket), true);
      assert.equal(ticketDigest(v.ticket), v.digest);
      assert.equal(ticketKey(vectors.prefix, v.ticket), v.key);
      assert.equal(ticketKey("app1:", v.ticket), v.key_with_prefix);
      assert.equal(logId(v.ticket), v.log_id);
    });
  }
  for (const value of vectors.malformed) {
    test(`malformed ${JSON.stringify(value)}`, () => assert.equal(isWellFormed(value), false));
  }
});

describe("records", () => {
  const vectors = load("records.json");
  count("records.json", vectors.length);
  for (const v of vectors) {
    test(v.name, () => {
      if (v.claims === null) assert.throws(() => decodeRecord(v.raw), RangeError);
      else assertClaims(decodeRecord(v.raw), v.claims);
    });
  }
});

describe("origins", () => {
  const vectors = load("origins.json");
  count("origins.json", vectors.length);
  for (const v of vectors) {
    test(v.name, () => {
      if (v.canonical === null) {
        assert.throws(() => canonicalOrigin(v.input), { name: "InvalidOrigin" });
      } else {
        assert.equal(canonicalOrigin(v.input), v.canonical);
        assert.equal(canonicalOrigin(v.canonical), v.canonical);
      }
    });
  }
});

describe("handshakes", () => {
  const vectors = load("handshake.json");
  count("handshake.json", vectors.extract.length + vectors.upgrade.length + vectors.request_origin.length);
  for (const v of vectors.extract) {
    test(`extract: ${v.name}`, () => {
      if (v.reason) {
        assert.throws(
          () => extractTicket(v.target, v.headers),
          (error) => {
            assert.ok(error instanceof TicketRejected);
            assert.equal(error.reason, v.reason);
            assert.equal(error.status, v.status);
            return true;
          },
        );
      } else {
        const presented = extractTicket(v.target, v.headers);
        assert.deepEqual([presented.ticket, presented.transport], [v.ticket, v.transport]);
      }
    });
  }
  for (const v of vectors.upgrade) {
    test(`upgrade: ${v.name}`, () => assert.equal(isWebSocketUpgrade(v.method, v.headers), v.upgrade));
  }
  for (const v of vectors.request_origin) {
    test(`origin header: ${JSON.stringify(v.headers)}`, () => assert.equal(requestOrigin(v.headers), v.origin));
  }
});

describe("redeem against a real redis-server", () => {
  const vectors = load("redeem.json");
  count("redeem.json", vectors.length);
  let redis;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => redis.stop());

  for (const v of vectors) {
    test(v.name, async () => {
      await redis.client.flushAll();
      const key = isWellFormed(v.ticket) ? ticketKey(v.prefix, v.ticket) : null;
      if (v.record !== null && key !== null) await redis.client.set(key, v.record);
      for (const [k, value] of Object.entries(v.revocation_state ?? {})) await redis.client.set(k, value);
      // Count what reaches Redis: the verifier's own connection, watched by CLIENT INFO.
      const client = createClient({ url: redis.url });
      await client.connect();
      const sent = [];
      const spy = { sendCommand: (args, options) => (sent.push(args[0]), client.sendCommand(args, options)) };
      const verifier = createVerifier({
        redis: spy,
        keyPrefix: v.prefix,
        audience: v.audience,
        leeway: v.leeway_ms / 1000,
        clock: () => v.now_ms / 1000,
      });
      let outcome;
      try {
        const claims = await verifier.redeem(v.ticket, { origin: v.origin, clientIp: v.client_ip });
        outcome = { outcome: "ok", status: 101, claims };
      } catch (error) {
        assert.ok(error instanceof TicketRejected, String(error));
        outcome = { outcome: error.reason, status: error.status, error };
      }
      assert.deepEqual([outcome.outcome, outcome.status], [v.outcome, v.status]);
      if (v.outcome === "ok") assertClaims(outcome.claims, v.claims);
      if (v.replay !== undefined) {
        assert.equal(outcome.error.detail, v.detail);
        const r = outcome.error.replay;
        assert.deepEqual(
          {
            since_first_use_ms: r.sinceFirstUseMs,
            same_client: r.sameClient,
            connection: r.connection,
            subject: r.subject,
            session: r.session,
          },
          v.replay,
        );
      } else if (outcome.error) {
        assert.notEqual(outcome.error.detail, "replayed");
      }
      const left = key === null ? null : await redis.client.get(key);
      assert.equal(left !== null && !isTombstone(left), v.record_left);
      assert.equal(left !== null && isTombstone(left) ? left : null, v.tombstone);
      if (v.redis_calls !== undefined) {
        // The take and the settle, as in Python; Node adds the revocation read (MGET) after.
        assert.equal(sent.filter((c) => c !== "MGET").length, v.redis_calls);
      }
      if (v.outcome === "malformed") assert.deepEqual(sent, []);
      await client.close();
    });
  }
});

describe("tombstones", () => {
  const vectors = load("tombstones.json");
  count(
    "tombstones.json",
    vectors.fingerprints.length +
      vectors.connection_ids.length +
      vectors.valid.length +
      vectors.invalid.length +
      vectors.records_are_not_tombstones.length,
  );
  for (const v of vectors.fingerprints) {
    test(`fingerprint ${JSON.stringify(v.client_ip)}`, () =>
      assert.equal(clientFingerprint(v.client_ip), v.fingerprint));
  }
  for (const v of vectors.connection_ids) {
    test(`connection id ${v.ticket.slice(0, 6)}`, () => assert.equal(connectionIdOf(v.ticket), v.connection));
  }
  for (const v of vectors.valid) {
    test(`tombstone ${v.raw}`, () => {
      assert.ok(isTombstone(v.raw));
      const t = decodeTombstone(v.raw);
      assert.deepEqual(
        [t.firstUsedMs, t.client, t.subject, t.session],
        [v.first_used_ms, v.client, v.subject, v.session],
      );
    });
  }
  for (const raw of vectors.invalid) {
    test(`not a tombstone ${raw}`, () => {
      decodeTombstone(vectors.valid[0].raw); // the control
      assert.throws(() => decodeTombstone(raw), RangeError);
    });
  }
  for (const raw of vectors.records_are_not_tombstones) {
    test(`a record is not a tombstone ${raw.slice(0, 12)}`, () => {
      assert.equal(isTombstone(raw), false);
      decodeRecord(raw);
    });
  }
});

describe("revocation", () => {
  const vectors = load("revocation.json");
  count(
    "revocation.json",
    vectors.subject_ids.length + vectors.session_hashes.length + 1 + vectors.rules.length + vectors.events.length,
  );
  for (const v of vectors.subject_ids) {
    test(`subject id ${JSON.stringify(v.subject)}`, () => assert.equal(subjectId(v.subject), v.id));
  }
  for (const v of vectors.session_hashes) {
    test(`session hash ${JSON.stringify(v.session)}`, () => assert.equal(sessionHash(v.session), v.hash));
  }
  test("keys", () => {
    const k = vectors.keys;
    const s = subjectId(k.subject);
    assert.equal(subjectKey(k.prefix, s), k.subject_key);
    assert.equal(sessionKey(k.prefix, s, sessionHash(k.session)), k.session_key);
    assert.equal(connectionKey(k.prefix, s, k.connection), k.connection_key);
    assert.equal(streamKey(k.prefix), k.stream);
  });
  const who = (w) => ({
    subjectHash: w.subject_hash,
    sessionHash: w.session_hash,
    authAtMs: w.auth_at_ms,
    connectionId: w.connection_id,
  });
  for (const v of vectors.rules) {
    test(`rule: ${v.name}`, () => {
      const state = {
        subject: v.state.subject ? { notBeforeMs: v.state.subject[0], exceptSession: v.state.subject[1] } : null,
        session: Boolean(v.state.session),
        connection: Boolean(v.state.connection),
      };
      assert.equal(isRevoked(who(v.who), state), v.revoked);
    });
  }
  for (const v of vectors.events) {
    test(`event: ${v.name}`, () => assert.equal(eventRevokes(who(v.who), v.event), v.revokes));
  }
});

describe("close codes and statuses", () => {
  const vectors = load("close_codes.json");
  count("close_codes.json", vectors.close_codes.length + Object.keys(vectors.rejection_status).length + 1);
  test("statuses", () => {
    assert.deepEqual({ ...REJECTION_STATUS }, vectors.rejection_status);
    assert.equal(DENIAL_BODY, vectors.denial_body);
  });
  test("close codes", () => {
    const byMeaning = Object.fromEntries(vectors.close_codes.map((c) => [c.meaning, c.code]));
    assert.equal(CLOSE_REVOKED, byMeaning.revoked);
    assert.equal(CLOSE_SESSION_ENDED, byMeaning.session_ended);
  });
});

describe("connection lifetime", () => {
  const vectors = load("lifetime.json");
  count("lifetime.json", vectors.deadlines.length);
  for (const v of vectors.deadlines) {
    test(`deadline: ${v.name}`, () => {
      const claims = { sessionExpiresAt: v.session_expires_at_ms === null ? null : v.session_expires_at_ms / 1000 };
      const got = closeDeadline(claims, v.now_ms, {
        maxLifetimeMs: v.max_lifetime_ms,
        jitter: (bound) => v.jitter_fraction * bound,
      });
      assert.deepEqual(got === null ? null : { at_ms: Math.round(got.atMs), cause: got.cause }, v.expected);
    });
  }
});

after(() => {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  console.log(`conformance vectors run: ${total} ${JSON.stringify(counts)}`);
});
