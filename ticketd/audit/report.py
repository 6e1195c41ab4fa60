"""Results of a run and the four ways to write them: text, JSON, SARIF 2.1.0, JUnit XML.

The JSON document follows ``schema/report-v1.json`` (``"schema": "ticketd-audit/1"``);
a field may be added within a version, never removed or renamed. Evidence has
already been redacted by the run; the writers add nothing secret (URLs and the
origin are what the operator typed).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree as ET

from .. import __version__
from .catalog import CATALOG, CONTROLS, Severity, Status, check

__all__ = [
    "EXIT_FAIL",
    "EXIT_INCONCLUSIVE",
    "EXIT_OK",
    "EXIT_USAGE",
    "SCHEMA_ID",
    "Report",
    "Result",
    "render",
    "to_dict",
    "to_json",
    "to_junit",
    "to_sarif",
    "to_text",
]

SCHEMA_ID = "ticketd-audit/1"
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
_SECURITY_SEVERITY = {
    "critical": "9.5",
    "high": "8.0",
    "medium": "5.5",
    "low": "3.0",
    "info": "0.0",
}
_SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


@dataclass(frozen=True)
class Result:
    id: str
    status: Status
    evidence: str
    target: str

    @property
    def severity(self) -> Severity:
        return check(self.id).severity


@dataclass
class Report:
    mint_url: str
    socket_urls: list[str]
    origin: str
    started_at: str
    results: list[Result] = field(default_factory=list)
    duration: float = 0.0
    requests: int = 0

    def counts(self) -> dict[str, int]:
        found = Counter(r.status.value for r in self.results)
        return {s.value: found.get(s.value, 0) for s in Status}

    def exit_code(self, fail_on: Severity = Severity.LOW) -> int:
        """1 for a failure at or above ``fail_on`` (a warning counts as low), 3 if inconclusive."""
        for r in self.results:
            if r.status is Status.FAIL and r.severity.rank >= fail_on.rank:
                return EXIT_FAIL
            if r.status is Status.WARN and fail_on.rank <= Severity.LOW.rank:
                return EXIT_FAIL
        if any(r.status is Status.INCONCLUSIVE for r in self.results):
            return EXIT_INCONCLUSIVE
        return EXIT_OK

    def flagged(self) -> set[str]:
        """Ids of the checks that failed or warned."""
        return {r.id for r in self.results if r.status in (Status.FAIL, Status.WARN)}

    def status_of(self, check_id: str) -> set[Status]:
        return {r.status for r in self.results if r.id == check_id}


def render(report: Report, fmt: str, fail_on: Severity = Severity.LOW) -> str:
    writer = {"text": to_text, "json": to_json, "sarif": to_sarif, "junit": to_junit}[fmt]
    return writer(report, fail_on)


def to_text(report: Report, fail_on: Severity = Severity.LOW) -> str:
    mark = {
        "pass": "PASS",
        "fail": "FAIL",
        "warn": "WARN",
        "inconclusive": "INCO",
        "skipped": "SKIP",
    }
    lines = [
        f"ticketd audit {__version__}: mint {report.mint_url}",
        *(f"  socket {u}" for u in report.socket_urls),
        f"  origin {report.origin}",
        "",
    ]
    for r in report.results:
        where = f" [{r.target}]" if r.target and r.target != report.mint_url else ""
        lines.append(f"{mark[r.status.value]} {r.id:<26} {r.severity.value:<8} {r.evidence}{where}")
        if r.status in (Status.FAIL, Status.WARN):
            lines.append(f"     fix: {check(r.id).remediation}")
    counts = report.counts()
    lines += [
        "",
        "  ".join(f"{k} {v}" for k, v in counts.items())
        + f"  requests {report.requests}  {report.duration:.1f}s"
        + f"  exit {report.exit_code(fail_on)}",
    ]
    return "\n".join(lines) + "\n"


def to_dict(report: Report, fail_on: Severity = Severity.LOW) -> dict[str, Any]:
    return {
        "schema": SCHEMA_ID,
        "tool": {"name": "ticketd audit", "version": __version__},
        "target": {
            "mint_url": report.mint_url,
            "socket_urls": report.socket_urls,
            "origin": report.origin,
        },
        "started_at": report.started_at,
        "duration_seconds": round(report.duration, 3),
        "requests": report.requests,
        "fail_on": fail_on.value,
        "exit_code": report.exit_code(fail_on),
        "summary": report.counts(),
        "results": [
            {
                "id": r.id,
                "title": check(r.id).title,
                "severity": r.severity.value,
                "status": r.status.value,
                "control": r.id in CONTROLS,
                "target": r.target,
                "evidence": r.evidence,
                "remediation": check(r.id).remediation,
                "depends_on": list(check(r.id).needs),
            }
            for r in report.results
        ],
    }


def to_json(report: Report, fail_on: Severity = Severity.LOW) -> str:
    return json.dumps(to_dict(report, fail_on), indent=2) + "\n"


def to_sarif(report: Report, fail_on: Severity = Severity.LOW) -> str:
    index = {c.id: i for i, c in enumerate(CATALOG)}
    rules = [
        {
            "id": c.id,
            "name": c.id.replace(".", "_"),
            "shortDescription": {"text": c.title},
            "help": {"text": c.remediation},
            "defaultConfiguration": {"level": _level(c.severity)},
            "properties": {
                "tags": ["security", "websocket"],
                "security-severity": _SECURITY_SEVERITY[c.severity.value],
            },
        }
        for c in CATALOG
    ]
    kinds = {"pass": "pass", "inconclusive": "open", "skipped": "notApplicable"}
    results = []
    for r in report.results:
        failed = r.status in (Status.FAIL, Status.WARN)
        results.append(
            {
                "ruleId": r.id,
                "ruleIndex": index[r.id],
                "kind": "fail" if failed else kinds[r.status.value],
                "level": ("warning" if r.status is Status.WARN else _level(r.severity))
                if failed
                else "none",
                "message": {"text": r.evidence},
                "locations": [
                    {"physicalLocation": {"artifactLocation": {"uri": r.target or report.mint_url}}}
                ],
            }
        )
    log = {
        "$schema": _SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "ticketd-audit",
                        "version": __version__,
                        "informationUri": "https://example.invalid/ticketd",
                        "rules": rules,
                    }
                },
                "invocations": [
                    {
                        "executionSuccessful": report.exit_code(fail_on) != EXIT_INCONCLUSIVE,
                        "startTimeUtc": report.started_at,
                    }
                ],
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"


def _level(severity: Severity) -> str:
    if severity in (Severity.CRITICAL, Severity.HIGH):
        return "error"
    return "warning" if severity is Severity.MEDIUM else "note"


def to_junit(report: Report, fail_on: Severity = Severity.LOW) -> str:
    counts = report.counts()
    suite = ET.Element(
        "testsuite",
        name="ticketd audit",
        tests=str(len(report.results)),
        failures=str(counts["fail"] + counts["warn"]),
        errors=str(counts["inconclusive"]),
        skipped=str(counts["skipped"]),
        time=f"{report.duration:.3f}",
        timestamp=report.started_at,
    )
    for r in report.results:
        case = ET.SubElement(
            suite, "testcase", classname=f"ticketd.audit.{r.id.split('.')[0]}", name=r.id
        )
        if r.target:
            ET.SubElement(
                ET.SubElement(case, "properties"), "property", name="target", value=r.target
            )
        if r.status in (Status.FAIL, Status.WARN):
            node = ET.SubElement(case, "failure", message=r.evidence, type=r.severity.value)
            node.text = f"{r.evidence}\nfix: {check(r.id).remediation}"
        elif r.status is Status.INCONCLUSIVE:
            ET.SubElement(case, "error", message=r.evidence, type="inconclusive").text = r.evidence
        elif r.status is Status.SKIPPED:
            ET.SubElement(case, "skipped", message=r.evidence)
        ET.SubElement(case, "system-out").text = r.evidence
    root = ET.Element("testsuites", name="ticketd audit")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
