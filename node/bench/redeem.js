// Node verifier redeem ops/s vs raw node-redis GETDEL at the same concurrency.
// Usage: node bench/redeem.js REDIS_URL [--ops N] [--concurrency C] [--repeat R]
// Prints a table and, last, one JSON line with the figures (read by `make bench`).
import { createClient } from "redis";
import { createVerifier, newTicket, ticketKey } from "ticketd";

const args = process.argv.slice(2);
const url = args[0];
if (!url || url.startsWith("--")) {
  // No default: a bench writes and burns tens of thousands of keys; it must never pick
  // a shared Redis by itself (make bench passes the private server it starts).
  console.error("usage: node bench/redeem.js REDIS_URL [--ops N] [--concurrency C] [--repeat R]");
  process.exit(2);
}
const option = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(args[i + 1]);
};
const ops = option("ops", 20_000);
const concurrency = option("concurrency", 64);
const repeat = option("repeat", 3);
const ORIGIN = "https://app.example.com";
const PREFIX = "ticketd:";

const client = createClient({ url, socket: { connectTimeout: 1000 } });
client.on("error", () => {});
await client.connect();

async function seed(count) {
  const now = Date.now();
  const record = JSON.stringify([1, 12345, ORIGIN, "chat", now, now + 600_000, null]);
  const tickets = Array.from({ length: count }, newTicket);
  for (let start = 0; start < count; start += 5000) {
    const batch = client.multi();
    for (const t of tickets.slice(start, start + 5000)) batch.set(ticketKey(PREFIX, t), record, { PX: 600_000 });
    await batch.execAsPipeline();
  }
  return tickets;
}

async function drive(operation) {
  const tickets = await seed(ops);
  const latencies = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < tickets.length) {
        const t = tickets[next++];
        const begun = performance.now();
        await operation(t);
        latencies.push(performance.now() - begun);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
  return { ops: tickets.length / seconds, p50_ms: at(0.5), p99_ms: at(0.99) };
}

const raw = (t) => client.sendCommand(["GETDEL", ticketKey(PREFIX, t)]);
const full = createVerifier({ redis: client, audience: "chat", logger: {} });
const bare = createVerifier({ redis: client, audience: "chat", checkRevocation: false, logger: {} });
const median = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];

const runs = [];
for (let r = 0; r < repeat; r++) {
  runs.push({
    raw_getdel: await drive(raw),
    verifier_no_revocation: await drive((t) => bare.redeem(t, { origin: ORIGIN })),
    verifier: await drive((t) => full.redeem(t, { origin: ORIGIN })),
  });
}
const med = (name, field) => median(runs.map((run) => run[name][field]));
const figures = {};
for (const name of Object.keys(runs[0]))
  figures[name] = { ops: med(name, "ops"), p50_ms: med(name, "p50_ms"), p99_ms: med(name, "p99_ms") };
figures.ratio = figures.verifier_no_revocation.ops / figures.raw_getdel.ops;
figures.ratio_with_revocation = figures.verifier.ops / figures.raw_getdel.ops;
for (const [name, f] of Object.entries(figures)) {
  if (typeof f === "object")
    console.log(
      `${name.padEnd(24)} ${f.ops.toFixed(0).padStart(8)} ops/s  p50 ${f.p50_ms.toFixed(2)} ms  p99 ${f.p99_ms.toFixed(2)} ms`,
    );
}
console.log(
  `verifier / raw GETDEL: ${figures.ratio.toFixed(2)}x (with the revocation read: ${figures.ratio_with_revocation.toFixed(2)}x)`,
);
console.log(JSON.stringify({ concurrency, ops, repeat, ...figures }));
await client.close();
