"""The Grafana dashboard and Prometheus alerts in ``deploy/`` against the real service.

- Every metric a dashboard query or an alert expression names must be exposed by a
  live ``ticketd serve`` (its ``/metrics`` after mints, refusals, redemptions, a
  rate-limit hit and a store failure, so lazily created series exist too). New
  metrics are checked as soon as the service exposes them.
- ``promtool check rules`` and ``promtool test rules`` (``deploy/prometheus/alerts.test.yaml``).
- A real Prometheus server scrapes a real ``ticketd serve`` on a real redis-server;
  stopping Redis fires the store alerts, restarting it clears readiness.

``promtool`` and ``prometheus`` come from Debian's ``prometheus`` package; without them
these tests skip, unless ``TICKETD_TEST_REQUIRE_PROMETHEUS=1`` (as in CI).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import wait_until_answering
from tests.support.redisproc import RedisServer, free_port
from tests.support.service_support import APP_ORIGIN, SECRET, SERVICE_KEY, cookie_for

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "deploy" / "grafana" / "ticketd.json"
RULES = REPO / "deploy" / "prometheus" / "alerts.yaml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "alerts.test.yaml"
REQUIRE_ENV = "TICKETD_TEST_REQUIRE_PROMETHEUS"
# Series Prometheus itself attaches to every target; not the service's to expose.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
VENV_BIN = Path(sys.executable).parent


def prometheus_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found; install it (Debian: apt-get install prometheus)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {message}", pytrace=False)
        pytest.skip(message)
    return path


# --------------------------------------------------------------------------- PromQL names

_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"bool", "offset", "inf", "nan", "atan2", "start", "end"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r'__name__\s*=\s*"([^"]+)"')
_LABEL_LIST = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (Grafana ``$variables`` allowed)."""
    names = set(_NAME_MATCHER.findall(expr))
    text = _STRING.sub('""', expr)
    text = re.sub(r"\$\{?\w+\}?", "", text)  # $__rate_interval, ${job}
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # ranges and subqueries
    text = _LABEL_LIST.sub(" ", text)
    for match in _IDENTIFIER.finditer(text):
        word, call = match.group(1), match.group(2)
        if call is None and word.lower() not in _KEYWORDS:
            names.add(word)
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('sum by (outcome) (rate(ticketd_mints_total{job=~"$job"}[$__rate_interval]))', None),
        (
            "histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket[5m]))) > 0.25",
            {"a_seconds_bucket"},
        ),
        ("rate(a_sum[1m]) / ignoring (le) rate(a_count[1m:30s] offset 5m)", {"a_sum", "a_count"}),
        ('x{outcome!~"ok|rate(y)"} and on (job) z == bool 1e3', {"x", "z"}),
        ('{__name__="by_name", job="t"} unless count without (instance) (w)', {"by_name", "w"}),
        ("sum(rate(ns:rule:ratio[5m])) * 0x1F + Inf", {"ns:rule:ratio"}),
        ("label_replace(v, 'dst', '$1', 'src', '(.*)')", {"v"}),
    ],
)
def test_promql_metric_names(expr: str, names: set[str] | None) -> None:
    expected = {"ticketd_mints_total"} if names is None else names
    assert promql_metric_names(expr) == expected


def exposed_series(exposition: str) -> dict[str, str]:
    """Series name -> metric type, for every family a ``/metrics`` page declares.

    A counter ``x`` is queried as ``x_total`` (and ``x_created``), a histogram ``h``
    as ``h_bucket``/``h_sum``/``h_count``; the bare family name of either matches
    nothing in Prometheus, so it is not an exposed series.
    """
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    series: dict[str, str] = {}
    for family in text_string_to_metric_families(exposition):
        for suffix in suffixes.get(family.type, ("",)):
            series[family.name + suffix] = family.type
        for sample in family.samples:
            series[sample.name] = family.type
    return series


def test_exposed_series_strip_suffixes_by_type() -> None:
    exposition = (
        "# TYPE c counter\nc_total 1\n# TYPE h histogram\n"
        'h_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n# TYPE g gauge\ng 1\n'
        "# HELP lazy_total Declared, no sample yet.\n# TYPE lazy counter\n"
    )
    series = exposed_series(exposition)
    assert {"c_total", "h_bucket", "h_sum", "h_count", "g", "lazy_total"} <= set(series)
    for wrong in ("c", "c_bucket", "h", "h_total", "g_total", "g_count", "lazy"):
        assert wrong not in series, wrong


def unknown_metrics(exprs: dict[str, str], series: dict[str, str]) -> dict[str, set[str]]:
    unknown = {
        where: promql_metric_names(expr) - set(series) - PROMETHEUS_SERIES
        for where, expr in exprs.items()
    }
    return {where: names for where, names in unknown.items() if names}


# --------------------------------------------------------------------------- the files


def dashboard_exprs() -> dict[str, str]:
    """panel title/refId -> expr, and templating queries (``label_values(metric, label)``)."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs: dict[str, str] = {}

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                exprs[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]

    walk(dashboard["panels"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", query)
            assert match, f"variable {variable['name']}: {query}"
            exprs[f"variable {variable['name']}"] = match.group(1)
    return exprs


def rule_exprs(path: Path = RULES) -> dict[str, str]:
    groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return {
        f"rule {rule.get('alert') or rule.get('record')}": rule["expr"]
        for group in groups
        for rule in group["rules"]
    }


def test_dashboard_is_complete_and_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "ticketd-overview"
    assert dashboard["title"] == "ticketd"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    exprs = " ".join(dashboard_exprs().values())
    # What operators look for first: mints and refusals, redemptions, store errors,
    # latency from the histograms, rate limiting, readiness and versions.
    for metric in (
        "ticketd_mints_total",
        "ticketd_redemptions_total",
        "ticketd_store_errors_total",
        "ticketd_mint_duration_seconds_bucket",
        "ticketd_redeem_duration_seconds_bucket",
        "ticketd_rate_limited_total",
        "ticketd_replays_total",
        "ticketd_ready",
        "ticketd_build_info",
    ):
        assert metric in exprs, metric
    assert "histogram_quantile(0.99" in exprs


# --------------------------------------------------------------------------- live service


@dataclass
class Service:
    base: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]


@contextmanager
def ticketd_serve(redis_url: str, **settings: str) -> Iterator[Service]:
    """``ticketd serve`` as a process on a free loopback port, configured by environment."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TICKETD_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        {
            "TICKETD_REDIS_URL": redis_url,
            "TICKETD_SESSION_SECRET": SECRET,
            "TICKETD_ALLOWED_ORIGINS": APP_ORIGIN,
            "TICKETD_AUDIENCES": "chat",
            "TICKETD_SERVICE_KEYS": SERVICE_KEY,
            "TICKETD_LOG_FORMAT": "text",
            **{f"TICKETD_{key.upper()}": value for key, value in settings.items()},
        }
    )
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="ticketd-serve-"))
    log = directory / "ticketd.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "ticketd.service.cli", "serve", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    service = Service(f"http://127.0.0.1:{port}", port, process, log)
    try:
        wait_until_answering(process, f"{service.base}/livez", diagnostics=service.logs)
        yield service
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


def mint(http: httpx.Client, subject: str | None) -> httpx.Response:
    headers = {"Origin": APP_ORIGIN}
    if subject is not None:
        headers["Cookie"] = f"session={cookie_for(subject)}"
    return http.post("/v1/tickets", headers=headers, json={"audience": "chat"})


def redeem(http: httpx.Client, ticket: str) -> httpx.Response:
    return http.post(
        "/v1/tickets/redeem",
        headers={"Authorization": f"Bearer {SERVICE_KEY}"},
        json={"ticket": ticket, "origin": APP_ORIGIN, "audience": "chat"},
    )


@dataclass(frozen=True)
class Exposition:
    text: str

    @property
    def series(self) -> dict[str, str]:
        return exposed_series(self.text)

    def samples(self, name: str) -> list[dict[str, str]]:
        return [
            sample.labels
            for family in text_string_to_metric_families(self.text)
            for sample in family.samples
            if sample.name == name
        ]


@pytest.fixture(scope="module")
def live_metrics() -> Iterator[Exposition]:
    """``/metrics`` of a real ``ticketd serve`` after every kind of outcome it counts."""
    server = RedisServer().start()
    try:
        with (
            ticketd_serve(server.url, rate_limit_per_subject="3/minute") as service,
            httpx.Client(base_url=service.base, timeout=5) as http,
        ):
            assert http.get("/readyz").status_code == 200
            tickets = [mint(http, "alice").json()["ticket"] for _ in range(2)]
            assert mint(http, None).status_code == 401
            statuses = [mint(http, "limited").status_code for _ in range(4)]
            assert statuses == [201, 201, 201, 429], statuses
            assert redeem(http, tickets[0]).status_code == 200
            assert redeem(http, tickets[0]).status_code == 401  # replayed
            assert redeem(http, "A" * 43).status_code == 401  # unknown: invalid
            server.stop()
            assert mint(http, "alice").status_code == 503
            assert redeem(http, tickets[1]).status_code == 503
            assert http.get("/readyz").status_code == 503
            yield Exposition(http.get("/metrics").text)
    finally:
        server.close()


@pytest.mark.redis
def test_the_service_exposed_every_outcome_it_was_put_through(live_metrics: Exposition) -> None:
    """Labelled series exist only once used: the fixture must really have used them."""
    mints = {labels["outcome"] for labels in live_metrics.samples("ticketd_mints_total")}
    assert {"ok", "unauthenticated", "rate_limited", "store_unavailable"} <= mints, mints
    redeemed = {labels["outcome"] for labels in live_metrics.samples("ticketd_redemptions_total")}
    assert {"ok", "invalid", "replayed", "store_unavailable"} <= redeemed, redeemed
    replays = {labels["kind"] for labels in live_metrics.samples("ticketd_replays_total")}
    assert replays == {"replay"}, replays  # the HTTP caller gave no client address
    failed = {labels["operation"] for labels in live_metrics.samples("ticketd_store_errors_total")}
    assert failed == {"mint", "redeem"}, failed
    limits = {labels["limit"] for labels in live_metrics.samples("ticketd_rate_limited_total")}
    assert limits == {"subject"}, limits
    assert live_metrics.samples("ticketd_ready") == [{}]


@pytest.mark.redis
def test_dashboard_queries_name_only_exposed_metrics(live_metrics: Exposition) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 15, sorted(exprs)
    assert unknown_metrics(exprs, live_metrics.series) == {}


@pytest.mark.redis
def test_alert_rules_name_only_exposed_metrics(live_metrics: Exposition) -> None:
    exprs = rule_exprs()
    assert len(exprs) >= 5, sorted(exprs)
    assert unknown_metrics(exprs, live_metrics.series) == {}


@pytest.mark.redis
def test_a_query_on_an_unexposed_metric_is_caught(live_metrics: Exposition) -> None:
    exprs = {
        "wrong suffix": "rate(ticketd_mints_bucket[5m])",
        "bare histogram": "ticketd_mint_duration_seconds > 1",
        "not (yet) exposed": 'sum(rate(ticketd_never_exposed_total{kind="ticket"}[5m]))',
        "fine": "sum(rate(ticketd_mints_total[5m])) and up",
    }
    assert unknown_metrics(exprs, live_metrics.series) == {
        "wrong suffix": {"ticketd_mints_bucket"},
        "bare histogram": {"ticketd_mint_duration_seconds"},
        "not (yet) exposed": {"ticketd_never_exposed_total"},
    }


# --------------------------------------------------------------------------- promtool


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [prometheus_tool("promtool"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.prometheus
def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(RULES.read_text(encoding="utf-8").replace("== 0", "== ", 1), encoding="utf-8")
    result = promtool("check", "rules", str(broken))
    assert result.returncode != 0, result.stdout


@pytest.mark.prometheus
def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    result = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout
    # Negative control: the same tests against a rule whose threshold drifted.
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    text = RULES.read_text(encoding="utf-8")
    drifted = text.replace(") > 0.25\n          and", ") > 0.5\n          and")
    assert drifted.count(") > 0.5\n") == 1
    (tmp_path / RULES.name).write_text(drifted, encoding="utf-8")
    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert "TicketdMintRefusalSpike" in result.stdout + result.stderr


# --------------------------------------------------------------------------- live Prometheus


@dataclass
class Prometheus:
    base: str
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.base}/api/v1/{path}", params=params, timeout=5)
        body = response.json()
        assert body["status"] == "success", (path, params, body)
        return body["data"]

    def alerts(self) -> dict[str, str]:
        """alertname -> state (pending/firing) of the ticketd alerts."""
        return {
            alert["labels"]["alertname"]: alert["state"] for alert in self.api("alerts")["alerts"]
        }

    def wait(self, what: str, condition: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(f"prometheus exited:\n{self.log.read_text(errors='replace')[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; alerts: {self.alerts()}")
            time.sleep(0.25)


@contextmanager
def prometheus_server(target_port: int, tmp_path: Path) -> Iterator[Prometheus]:
    """Debian's prometheus on loopback, scraping ``target_port`` every second as job ticketd.

    The shipped rules are loaded with every ``for:`` shortened to 2 s, so the test
    does not wait minutes; the durations themselves are covered by promtool's unit tests.
    """
    binary = prometheus_tool("prometheus")
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(tmp_path / "rules.yaml")],
        "scrape_configs": [
            {"job_name": "ticketd", "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}
        ],
    }
    (tmp_path / "prometheus.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yaml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{server.base}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"prometheus did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class Traffic(threading.Thread):
    """What a cluster does to a pod: a readiness probe and some mints, every 200 ms."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.stopped = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=1) as http:
            while not self.stopped.wait(0.2):
                try:
                    http.get("/readyz")
                    mint(http, "alice")
                except httpx.TransportError:
                    pass

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


@pytest.mark.redis
@pytest.mark.prometheus
@pytest.mark.timeout(90)
def test_prometheus_fires_the_store_alerts_when_redis_stops(tmp_path: Path) -> None:
    server = RedisServer().start()
    try:
        with (
            ticketd_serve(
                server.url,
                rate_limit_per_subject="100000/minute",
                rate_limit_per_ip="100000/minute",
            ) as service,
            prometheus_server(service.port, tmp_path) as prometheus,
        ):
            traffic = Traffic(service.base)
            traffic.start()
            try:
                ready = 'ticketd_ready{job="ticketd"} == 1'
                prometheus.wait(
                    "the first scrapes", lambda: prometheus.api("query", query=ready)["result"], 30
                )
                time.sleep(3)  # a few evaluations with a healthy service: nothing pending
                assert prometheus.alerts() == {}

                server.stop()
                store_alerts = {"TicketdNotReady", "TicketdStoreUnavailable"}
                prometheus.wait(
                    "the store alerts to fire",
                    lambda: all(prometheus.alerts().get(name) == "firing" for name in store_alerts),
                    30,
                )
                firing = prometheus.api("alerts")["alerts"]
                labels = {alert["labels"]["alertname"]: alert["labels"] for alert in firing}
                assert labels["TicketdStoreUnavailable"]["operation"] == "mint"
                assert labels["TicketdStoreUnavailable"]["severity"] == "critical"
                assert labels["TicketdNotReady"]["instance"] == f"127.0.0.1:{service.port}"

                # Every dashboard query is valid PromQL for this Prometheus.
                for where, expr in dashboard_exprs().items():
                    query = expr.replace("$__rate_interval", "1m")
                    query = query.replace("$job", ".*").replace("$instance", ".*")
                    assert "$" not in query, where
                    prometheus.api("query", query=query)

                server.start()  # Redis is back: readiness recovers, its alert resolves.
                prometheus.wait(
                    "TicketdNotReady to resolve",
                    lambda: "TicketdNotReady" not in prometheus.alerts(),
                    30,
                )
            finally:
                traffic.stop()
    finally:
        server.close()
