-- POST /v1/tickets with the benchmark session cookie and Origin (set by the harness).
wrk.method = "POST"
wrk.headers["Origin"] = os.getenv("BENCH_ORIGIN")
wrk.headers["Cookie"] = "session=" .. os.getenv("BENCH_COOKIE")
