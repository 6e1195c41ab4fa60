"""The documentation names what the code has: every TICKETD_ variable, every problem code."""

from __future__ import annotations

import re
from pathlib import Path

from ticketd.service.mint import PROBLEM_CODES as MINT_PROBLEMS
from ticketd.service.probes import READYZ_PROBLEM_CODES
from ticketd.service.problems import PROBLEMS
from ticketd.service.redeem import PROBLEM_CODES as REDEEM_PROBLEMS
from ticketd.service.revocations import PROBLEM_CODES as REVOCATION_PROBLEMS
from ticketd.service.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def documented_variables() -> set[str]:
    return set(re.findall(r"`(TICKETD_[A-Z_]+)`", README))


def test_every_setting_is_documented_in_the_readme() -> None:
    variables = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    table = "\n".join(line for line in README.splitlines() if line.startswith("| `TICKETD_"))
    missing = {v for v in variables if f"`{v}`" not in table}
    assert not missing, f"README configuration table lacks {sorted(missing)}"


def test_readme_names_no_variable_the_code_does_not_have() -> None:
    variables = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    test_switches = {"TICKETD_TEST_REQUIRE_REDIS", "TICKETD_TEST_REQUIRE_BROWSER"}
    unknown = documented_variables() - variables - test_switches
    unknown = {v for v in unknown if not v.endswith("_FILE")}
    assert not unknown, f"README mentions unknown variables {sorted(unknown)}"


def test_every_variable_is_in_the_changelog() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    missing = [
        f"{ENV_PREFIX}{name.upper()}"
        for name in Settings.model_fields
        if f"`{ENV_PREFIX}{name.upper()}`" not in changelog
    ]
    assert not missing, f"CHANGELOG lacks {missing}"


def test_mint_refusal_codes_are_documented() -> None:
    missing = {code for code in MINT_PROBLEMS if code not in README}
    assert not missing, f"README lacks problem codes {sorted(missing)}"


def problem_table() -> dict[str, tuple[int, str]]:
    """code -> (status, endpoints) from the README's problem-code table."""
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \| [^|]+ \| ([^|]+) \|$", README, re.MULTILINE)
    return {code: (int(status), where.strip()) for code, status, where in rows}


def test_problem_table_is_what_the_handlers_declare() -> None:
    """Every code a handler declares is in the README table with its status and endpoint."""
    declared = {
        "`POST /v1/tickets`": MINT_PROBLEMS,
        "`POST /v1/tickets/redeem`": REDEEM_PROBLEMS,
        "`POST /v1/revocations`": REVOCATION_PROBLEMS,
        "`GET /readyz`": READYZ_PROBLEM_CODES,
    }
    expected: dict[str, tuple[int, str]] = {}
    for endpoint, codes in declared.items():
        for code in codes:
            status, where = expected.get(code, (PROBLEMS[code].status, ""))
            expected[code] = (status, f"{where}, {endpoint}" if where else endpoint)
    assert problem_table() == expected
