"""``ticketd audit`` itself: outputs and their schemas, secrets, exit codes, safety rails,
import isolation, and ``--self-test``.

The targets here are :class:`~ticketd.audit.weak.WeakServer` instances (stdlib, in this
process); the audit against real deployments is in test_audit_targets.py.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from xml.etree import ElementTree as ET

import jsonschema  # type: ignore[import-untyped]
import pytest

from tests.support.redis_topologies import tls_certificates
from tests.support.redisproc import free_port
from ticketd.audit import CATALOG, SCHEMA_ID
from ticketd.audit.selftest import EXPECTED, self_test
from ticketd.audit.session import Redactor
from ticketd.audit.weak import ALLOWED_ORIGIN, WEAKNESSES, WeakServer
from ticketd.service.cli import main
from ticketd.tickets import log_id

ROOT = Path(__file__).parent.parent
REPORT_SCHEMA = ROOT / "ticketd" / "audit" / "schema" / "report-v1.json"
SARIF_SCHEMA = Path(__file__).parent / "fixtures" / "sarif" / "sarif-2.1.0-rtm.5.json"
FORMATS = ("text", "json", "sarif", "junit")


def target(server: WeakServer, *extra: str) -> list[str]:
    return [
        "--mint-url",
        f"{server.base}/v1/tickets",
        "--socket-url",
        f"{server.socket_base}/ws",
        "--socket-url",
        f"{server.socket_base}/ws2",
        "--audience",
        "chat",
        "--audience",
        "news",
        "--origin",
        ALLOWED_ORIGIN,
        "--cookie",
        server.cookie,
        "--delay",
        "0",
        *extra,
    ]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["audit", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- outputs ------------------------------------------------------------------------------------


def render_all(server: WeakServer, tmp_path: Path) -> dict[str, str]:
    texts = {}
    for fmt in FORMATS:
        path = tmp_path / f"report.{fmt}"
        code = main(["audit", *target(server, "--format", fmt, "--output", str(path))])
        assert code == 1  # the echo and the reflection are failures
        texts[fmt] = path.read_text("utf-8")
    return texts


def test_no_ticket_or_cookie_in_any_output_format(tmp_path: Path) -> None:
    with WeakServer({"subprotocol_echo", "reflect_cors"}) as server:
        texts = render_all(server, tmp_path)
        issued, cookie = list(server.issued), server.session
    assert len(issued) > 40  # four runs' worth of fresh tickets
    for fmt, text in texts.items():
        for ticket in issued:
            assert ticket not in text, f"a ticket leaked into {fmt}"
        assert cookie not in text, f"the cookie leaked into {fmt}"
    # Hash prefixes are shown instead: the operator can match them against ticketd's logs.
    assert any(f"[ticket #{log_id(t)}]" in texts["text"] for t in issued)
    assert "echoed in Sec-WebSocket-Protocol" in texts["text"]


def test_the_secrets_check_can_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: with redaction switched off, the same grep finds the tickets."""
    monkeypatch.setattr(Redactor, "__call__", lambda self, text: text)
    with WeakServer({"subprotocol_echo", "reflect_cors"}) as server:
        texts = render_all(server, tmp_path)
        issued = list(server.issued)
    assert all(any(t in text for t in issued) for text in texts.values())


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """JSON, SARIF and JUnit of a run with every status: pass, fail, warn, inconclusive, skip."""
    tmp = tmp_path_factory.mktemp("reports")
    found = {}
    with WeakServer({"accept_then_close", "missing_no_store"}) as server:
        for fmt in ("json", "sarif", "junit"):
            path = tmp / f"report.{fmt}"
            args = target(server, "--format", fmt, "--output", str(path))
            assert main(["audit", *args, "--metrics-url", f"{server.base}/nothing"]) == 1
            found[fmt] = path.read_text("utf-8")
    return found


def test_json_report_follows_its_committed_schema(reports: dict[str, str]) -> None:
    document = json.loads(reports["json"])
    schema = json.loads(REPORT_SCHEMA.read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(document)
    assert document["schema"] == SCHEMA_ID == "ticketd-audit/1"
    assert {r["status"] for r in document["results"]} == {
        "pass",
        "fail",
        "warn",
        "inconclusive",
        "skipped",
    }
    assert document["summary"]["fail"] == sum(r["status"] == "fail" for r in document["results"])
    # The schema is not a rubber stamp: a wrong status is refused.
    document["results"][0]["status"] = "ok"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(document)


def test_sarif_is_valid_sarif_2_1_0(reports: dict[str, str]) -> None:
    log = json.loads(reports["sarif"])
    schema = json.loads(SARIF_SCHEMA.read_text("utf-8"))
    jsonschema.Draft4Validator(schema).validate(log)
    assert log["version"] == "2.1.0"
    run = log["runs"][0]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert rules == [c.id for c in CATALOG]
    for result in run["results"]:
        assert rules[result["ruleIndex"]] == result["ruleId"]
        # SARIF: a level other than "none" only for kind "fail".
        assert (result["kind"] == "fail") == (result["level"] != "none")
    failed = {r["ruleId"] for r in run["results"] if r["kind"] == "fail"}
    assert {"mint.response_headers", "upgrade.no_ticket"} <= failed
    broken = json.loads(reports["sarif"])
    broken["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(broken)


def test_junit_counts_match_the_cases(reports: dict[str, str]) -> None:
    suite = ET.fromstring(reports["junit"]).find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert int(suite.get("tests", "-1")) == len(cases) > 30
    for kind, attribute in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
        assert int(suite.get(attribute, "-1")) == sum(c.find(kind) is not None for c in cases) > 0
    names = {c.get("name") for c in cases if c.find("failure") is not None}
    assert {"mint.response_headers", "upgrade.no_ticket"} <= names


def test_tls_target_gets_the_transport_checks(capsys: pytest.CaptureFixture[str]) -> None:
    """https/wss on loopback: plaintext and HSTS are checked (no --production needed)."""
    with tls_certificates() as certs:
        tls = (certs.server_cert, certs.server_key)
        with WeakServer(tls=tls) as server:
            code, out, _ = run(capsys, *target(server, "--ca-file", certs.ca, "--format", "json"))
            found = {r["id"]: r for r in json.loads(out)["results"]}
            assert code == 0, out
            assert found["transport.plaintext"]["status"] == "pass"
            assert found["transport.hsts"]["evidence"] == (
                "Strict-Transport-Security: max-age=31536000"
            )
            # Without the CA, nothing verifies: inconclusive, not a pass.
            assert run(capsys, *target(server))[0] == 3
        with WeakServer(tls=tls, hsts=False) as server:
            code, out, _ = run(capsys, *target(server, "--ca-file", certs.ca))
    assert code == 1
    assert "FAIL transport.hsts" in out


# -- exit codes and rails -------------------------------------------------------------------


def test_fail_on_sets_the_threshold(capsys: pytest.CaptureFixture[str]) -> None:
    with WeakServer({"missing_no_store"}) as server:  # one medium failure
        assert run(capsys, *target(server))[0] == 1
        assert run(capsys, *target(server, "--fail-on", "medium"))[0] == 1
        code, out, _ = run(capsys, *target(server, "--fail-on", "high"))
    assert code == 0
    assert "FAIL mint.response_headers" in out


def test_warnings_are_101_then_close(capsys: pytest.CaptureFixture[str]) -> None:
    with WeakServer({"accept_then_close"}) as server:
        code, out, _ = run(capsys, *target(server))
    assert code == 1
    assert "WARN upgrade.cswsh" in out
    assert "101 then close (code 1008)" in out


def test_unreachable_target_is_inconclusive_never_pass(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    args = ["--mint-url", f"http://127.0.0.1:{port}/v1/tickets"]
    args += ["--socket-url", f"ws://127.0.0.1:{port}/ws", "--origin", ALLOWED_ORIGIN]
    code, out, _ = run(capsys, *args, "--cookie", "session=x", "--format", "json", "--delay", "0")
    results = json.loads(out)["results"]
    assert code == 3
    assert not [r for r in results if r["status"] in ("pass", "fail", "warn")]


def test_failed_control_makes_dependents_inconclusive(capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong cookie: the mint control fails, so no mint or upgrade check may pass."""
    with WeakServer({"mint_any_origin"}) as server:  # would fail mint.origin.* if tested
        args = target(server, "--format", "json")
        args[args.index("--cookie") + 1] = "session=wrong-session-value"
        code, out, _ = run(capsys, *args)
    results = json.loads(out)["results"]
    assert code == 3
    dependent = [r for r in results if "control.mint" in r["depends_on"]]
    assert len(dependent) > 20
    assert {r["status"] for r in dependent} <= {"inconclusive", "skipped"}


def test_budget_exhaustion_is_inconclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with WeakServer() as server:
        code, out, _ = run(capsys, *target(server, "--max-requests", "12", "--format", "json"))
    document = json.loads(out)
    assert (code, document["requests"]) == (3, 12)
    assert any("budget of 12 exhausted" in r["evidence"] for r in document["results"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--socket-url", "ws://127.0.0.1:1/"], "missing --mint-url, --origin"),
        (
            ["--mint-url", "http://127.0.0.1:1/", "--origin", "https://a.example"],
            "missing --socket-url",
        ),
        (
            ["--mint-url", "ftp://127.0.0.1:1/", "--socket-url", "ws://127.0.0.1:1/"],
            "--mint-url must be",
        ),
        (
            ["--mint-url", "https://tickets.example.com/v1/tickets"],
            "tickets.example.com is outside loopback: pass --i-am-authorized-to-test-this-target",
        ),
        (["--origin", "https://a.example/path"], "--origin must be scheme://host[:port]"),
        (["--cookie", "no-equals-sign"], "--cookie must be NAME=VALUE"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    base = {
        "--mint-url": "http://127.0.0.1:1/v1/tickets",
        "--socket-url": "ws://127.0.0.1:1/",
        "--origin": "https://a.example",
        "--cookie": "session=x",
    }
    given = dict(zip(args[::2], args[1::2], strict=True))
    if "missing" not in message:
        given = {**base, **given}
    code, out, err = run(capsys, *[x for pair in given.items() for x in pair])
    assert (code, out) == (2, "")
    assert message in err


def test_remote_target_needs_acknowledgement_before_any_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with WeakServer() as server:
        code, _, err = run(capsys, *target(server), "--socket-url", "ws://rt.example.com/ws")
        assert code == 2
        assert "rt.example.com is outside loopback" in err
        assert server.issued == []  # refused before the first request


# -- isolation and self-test ------------------------------------------------------------------

BLOCKED = ("fastapi", "pydantic", "pydantic_settings", "starlette", "websockets", "uvicorn",
           "prometheus_client", "aiohttp", "channels", "django", "fakeredis")  # fmt: skip

ISOLATED = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {blocked!r}:
                raise ImportError(f"blocked import: {{name}}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    from ticketd.service.cli import main
    code = main(["audit", *json.loads(sys.argv[1])])
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {blocked!r})
    assert not loaded, loaded
    sys.exit(code)
    """
)


def isolated(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", ISOLATED.format(blocked=BLOCKED), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_audit_runs_without_the_server_extra() -> None:
    with WeakServer() as server:
        result = isolated(*target(server))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS upgrade.cswsh" in result.stdout


def test_self_test_without_the_extra_names_the_install_line() -> None:
    result = isolated("--self-test")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pip install 'ticketd[audit]'" in result.stdout


def test_every_weakness_has_expected_flags() -> None:
    assert set(EXPECTED) == set(WEAKNESSES)
    non_controls = {c.id for c in CATALOG if not c.id.startswith("control.")}
    assert set().union(*EXPECTED.values()) == non_controls


@pytest.mark.slow
def test_self_test_proves_every_check_can_fail_and_ticketd_passes() -> None:
    out = io.StringIO()
    code = self_test(out)
    text = out.getvalue()
    print(text)
    assert code == 0, text
    assert text.count("\nok ") == len(WEAKNESSES)
    assert text.startswith("weak server, no weakness: exit 0")
    assert "ticketd (service + websockets adapter): exit 0" in text
    assert "self-test passed" in text


def test_self_test_fails_when_a_check_is_blind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: a weakness the audit cannot see makes the self-test fail."""
    monkeypatch.setattr(
        "ticketd.audit.selftest.WeakServer",
        lambda weak=(): WeakServer(set(weak) - {"distinguishable"}),
    )
    out = io.StringIO()
    assert self_test(out, weaknesses=["distinguishable"], ticketd=False) == 1
    assert "MISSED distinguishable" in out.getvalue()
    assert "distinguishable: exit 0, not flagged ['upgrade.indistinguishable']" in out.getvalue()
    lines = out.getvalue().splitlines()
    uncovered = next(line for line in lines if "checks no weakness made fail" in line)
    assert "'upgrade.indistinguishable'" in uncovered


def test_python_dash_m_is_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ticketd.audit", "--socket-url", "ws://127.0.0.1:1/"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert "ticketd audit: missing --mint-url, --origin" in result.stderr
