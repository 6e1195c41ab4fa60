"""The core must import and work with web frameworks and pydantic unavailable."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = ("fastapi", "pydantic", "pydantic_settings", "starlette", "websockets", "aiohttp",
           "channels", "django", "uvicorn", "prometheus_client", "limits")  # fmt: skip

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    import importlib.abc

    BLOCKED = {blocked!r}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked import: {{name}}")
            return None

    sys.meta_path.insert(0, Blocker())

    import fakeredis
    import ticketd
    from ticketd import TicketIssuer, TicketVerifier, TicketStore, TicketRejected

    async def main():
        store = TicketStore(fakeredis.FakeAsyncRedis())
        issued = await TicketIssuer(store).mint("u1", origin="https://a.example", audience="chat")
        verifier = TicketVerifier(store, audience="chat")
        claims = await verifier.redeem(issued.ticket, origin="https://a.example")
        assert claims.subject == "u1"
        try:
            await verifier.redeem(issued.ticket, origin="https://a.example")
        except TicketRejected as exc:
            assert exc.reason == "invalid"
        else:
            raise AssertionError("second redeem succeeded")

    asyncio.run(main())
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("OK")
    """
)


def test_core_works_with_frameworks_blocked() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(blocked=BLOCKED)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK"


def test_blocker_really_blocks() -> None:
    """The same harness must fail when the blocked module is imported."""
    script = SCRIPT.format(blocked=BLOCKED).replace(
        "import ticketd\n", "import ticketd\nimport pydantic\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "blocked import: pydantic" in result.stderr
