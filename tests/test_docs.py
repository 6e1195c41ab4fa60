"""The documentation names what the code has: every TICKETD_ variable, every problem code."""

from __future__ import annotations

import re
from pathlib import Path

from ticketd.service.problems import PROBLEMS
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
    mint_codes = {
        "origin_not_allowed",
        "cross_site",
        "unauthenticated",
        "unsupported_media_type",
        "body_too_large",
        "invalid_body",
        "unknown_audience",
        "rate_limited",
        "too_many_outstanding",
        "store_unavailable",
    }
    assert mint_codes <= set(PROBLEMS)
    missing = {code for code in mint_codes if code not in README}
    assert not missing, f"README lacks problem codes {sorted(missing)}"
