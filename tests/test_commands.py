"""The commands the repository tells people and containers to run exist: every Compose
``command:`` of a ticketd service and the image's ``CMD`` parse with ticketd's own CLI, and
``make run`` / ``make demo`` install only what serving needs."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from ticketd.service.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def ticketd_services() -> dict[str, dict[str, Any]]:
    """The Compose services that run the ticketd image (entrypoint ``ticketd``)."""
    compose = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text(encoding="utf-8"))
    return {
        name: service
        for name, service in compose["services"].items()
        if "build" in service or str(service.get("image", "")).startswith("ticketd:")
    }


def image_cmd() -> list[str]:
    dockerfile = (ROOT / "deploy/Dockerfile").read_text(encoding="utf-8")
    (entrypoint,) = re.findall(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.MULTILINE)
    assert json.loads(entrypoint) == ["ticketd"]
    (cmd,) = re.findall(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    command: list[str] = json.loads(cmd)
    return command


def parses(argv: list[str]) -> bool:
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        return False
    return True


def test_compose_runs_the_ticketd_image_with_valid_commands() -> None:
    services = ticketd_services()
    assert {"ticketd", "demo"} <= set(services)
    for name, service in services.items():
        command = service.get("command", image_cmd())
        assert isinstance(command, list), f"{name}: use the exec form (a list)"
        assert parses([str(part) for part in command]), f"{name}: ticketd {command}"


def test_the_demo_service_mints_at_the_compose_ticketd() -> None:
    demo, ticketd = ticketd_services()["demo"], ticketd_services()["ticketd"]
    args = build_parser().parse_args([str(part) for part in demo["command"]])
    assert args.command == "demo"
    assert args.mint_url == "http://localhost:8080/v1/tickets"
    port = ticketd["ports"][0].rsplit(":", 2)
    assert port[-2:] == ["8080", "8080"]
    # The same Redis, audience and session secret as the ticketd service, and its origin
    # is the one that ticketd allows.
    for variable in ("TICKETD_REDIS_URL", "TICKETD_AUDIENCES", "TICKETD_SESSION_FORMAT"):
        assert demo["environment"][variable] == ticketd["environment"][variable]
    assert demo["secrets"] == ["session_secret"]
    assert ticketd["environment"]["TICKETD_ALLOWED_ORIGINS"] == f"http://localhost:{args.port}"


def test_the_check_catches_an_unknown_command() -> None:
    # Negative controls: what Compose used to run before `ticketd demo` existed, in spirit.
    assert not parses(["demo-server", "--port", "8081"])
    assert not parses(["demo", "--no-such-option"])
    assert parses(image_cmd())


def make_dry_run(target: str, tmp_path: Path) -> str:
    result = subprocess.run(
        ["make", "-n", f"VENV={tmp_path / 'venv'}", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def extras_installed(target: str, tmp_path: Path) -> list[set[str]]:
    """The extras of every ``pip install -e '.[...]'`` that ``make <target>`` would run."""
    found = re.findall(r"pip install .*-e '\.\[([a-z,]*)\]'", make_dry_run(target, tmp_path))
    return [set(extras.split(",")) for extras in found]


@pytest.mark.parametrize("target", ["run", "demo"])
def test_serving_targets_install_only_the_server_extra(target: str, tmp_path: Path) -> None:
    assert extras_installed(target, tmp_path) == [{"server"}]


def test_make_test_installs_the_test_tools(tmp_path: Path) -> None:
    # Also the negative control for the check above: the same parse sees test and dev here.
    assert extras_installed("test", tmp_path) == [{"server"}, {"server", "test", "dev"}]
