"""``ticketd audit``: check a deployment from outside for CSWSH and ticket misuse.

Operators point it at their mint endpoint and WebSocket URLs; it runs the checks
of :mod:`ticketd.audit.catalog` one request at a time (a budget, a delay, no load
tests) and reports each with its evidence and a remediation line, as text, JSON
(``schema/report-v1.json``), SARIF 2.1.0 or JUnit XML. Tickets and cookies are
never printed, only hash prefixes. Standard library and the ticketd core only;
``--self-test`` also needs the service and websockets (the ``audit`` extra)::

    from ticketd.audit import AuditConfig, run_audit

    report = run_audit(AuditConfig(mint_url=..., socket_urls=[...], origin=..., cookie=...))
    print(report.exit_code(), sorted(report.flagged()))
"""

from __future__ import annotations

from .catalog import CATALOG, Check, Severity, Status
from .report import SCHEMA_ID, Report, Result, render
from .runner import run_audit
from .session import AuditConfig

__all__ = [
    "CATALOG",
    "SCHEMA_ID",
    "AuditConfig",
    "Check",
    "Report",
    "Result",
    "Severity",
    "Status",
    "render",
    "run_audit",
]
