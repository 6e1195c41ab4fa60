"""Soak: ``ticketd serve`` under steady mint + redeem load (``make soak``).

Not collected by pytest (no ``test_`` prefix). Samples the service's RSS (psutil when
installed, else /proc/<pid>/status); after the warm-up, RSS growth must stay under 5 %.
Every tenth ticket is left unredeemed, so Redis's key count must come back to zero by
TTL expiry once the load stops. Prints a table; exits non-zero on failure.

    python -m tests.soak --duration 120 --clients 4 --ttl 5
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx

from tests.support.redisproc import RedisServer, free_port
from tests.support.service_support import APP_ORIGIN, SECRET, SERVICE_KEY, cookie_for

MAX_GROWTH = 0.05


def rss_bytes(pid: int) -> int:
    try:
        import psutil  # type: ignore[import-not-found, import-untyped, unused-ignore]

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    raise RuntimeError("no RSS for the service process")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    parser.add_argument("--warmup", type=float, default=0.25, help="fraction that is warm-up")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--ttl", type=int, default=5, help="TICKETD_TICKET_TTL, seconds")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    args = parser.parse_args(argv)

    redis_server = RedisServer().start()
    port = free_port()
    env = {
        **os.environ,
        "TICKETD_REDIS_URL": redis_server.url,
        "TICKETD_ALLOWED_ORIGINS": APP_ORIGIN,
        "TICKETD_SESSION_SECRET": SECRET,
        "TICKETD_SERVICE_KEYS": SERVICE_KEY,
        "TICKETD_AUDIENCES": "chat",
        "TICKETD_TICKET_TTL": str(args.ttl),
        "TICKETD_RATE_LIMIT_PER_SUBJECT": "0",
        "TICKETD_RATE_LIMIT_PER_IP": "0",
        "TICKETD_MAX_OUTSTANDING_PER_SUBJECT": "0",
        "TICKETD_LOG_LEVEL": "warning",
    }
    service = subprocess.Popen(
        [sys.executable, "-m", "ticketd.service.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    failures: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if service.poll() is not None or time.monotonic() > deadline:
                print("ticketd serve did not start", file=sys.stderr)
                return 2
            time.sleep(0.1)

        def client(n: int) -> None:
            mint_headers = {"Origin": APP_ORIGIN, "Cookie": f"session={cookie_for(f's{n}')}"}
            redeem_headers = {"Authorization": f"Bearer {SERVICE_KEY}"}
            with httpx.Client(base_url=base, timeout=10) as http:
                i = 0
                while not stop.is_set():
                    i += 1
                    minted = http.post("/v1/tickets", headers=mint_headers)
                    key = f"mint {minted.status_code}"
                    if minted.status_code == 201 and i % 10:
                        body = {"ticket": minted.json()["ticket"], "origin": APP_ORIGIN}
                        redeemed = http.post(
                            "/v1/tickets/redeem", json=body, headers=redeem_headers
                        )
                        with lock:
                            counts[f"redeem {redeemed.status_code}"] += 1
                    with lock:
                        counts[key] += 1

        threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        samples: list[tuple[float, int, int]] = []
        with redis_server.client() as admin:
            while (elapsed := time.monotonic() - started) < args.duration:
                time.sleep(min(args.interval, max(0.0, args.duration - elapsed)))
                with lock:
                    done = counts["mint 201"]
                samples.append((time.monotonic() - started, rss_bytes(service.pid), done))
            stop.set()
            for thread in threads:
                thread.join()
            keys_at_stop = admin.dbsize()
            waited = time.monotonic()
            keys = keys_at_stop
            while keys and time.monotonic() - waited < args.ttl + 10:
                time.sleep(0.5)
                keys = admin.dbsize()
            drained_in = time.monotonic() - waited

        print(f"{'t (s)':>7} {'RSS (MiB)':>10} {'mints':>8}")
        for t, rss, done in samples:
            print(f"{t:7.1f} {rss / 2**20:10.1f} {done:8d}")
        warm = [s for s in samples if s[0] >= args.duration * args.warmup]
        baseline = warm[0][1] if warm else samples[0][1]
        final = samples[-1][1]
        growth = (final - baseline) / baseline
        print(f"counts: {dict(counts)}")
        print(
            f"RSS after warm-up {baseline / 2**20:.1f} MiB -> {final / 2**20:.1f} MiB "
            f"({growth:+.1%}, limit {MAX_GROWTH:.0%})"
        )
        print(f"redis keys at stop {keys_at_stop}, after {drained_in:.1f}s: {keys}")
        if growth >= MAX_GROWTH:
            failures.append(f"RSS grew {growth:.1%} after warm-up")
        if keys:
            failures.append(f"{keys} Redis keys left after the TTL")
        bad = {k: v for k, v in counts.items() if not k.endswith(("201", "200"))}
        if bad:
            failures.append(f"unexpected responses {bad}")
    finally:
        stop.set()
        service.terminate()
        try:
            service.wait(timeout=10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        redis_server.close()
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    print("soak: FAIL" if failures else "soak: OK")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
