"""The docs run as written: every Python, shell and JS block a user would copy is executed.

Blocks are the fenced ``python``, ``sh`` and ``js`` blocks of README.md and
deploy/README.md. An HTML comment on the line before a block says what it is:

- ``<!-- include: examples/x -->``: the block is that file, byte for byte; the files run
  together as the end-to-end path (``examples/serve.sh`` starts a real redis-server and
  ``ticketd serve --dev`` on it, then the WebSocket server, the client and the curl round
  trip run against them);
- ``<!-- fragment: why -->``: not runnable on its own (a server that never returns, Docker,
  kubectl). Fragments are few, and counted;
- ``<!-- needs: Class.attribute ... -->``: runs, and must fail on exactly those names
  while they do not exist (then pass once they do): an API another change adds;
- nothing: runs here against the same stack, Python and shell blocks as scripts, JS
  blocks as module scripts in headless Chromium, on an allowed origin, logged in.

The docs use ports 8080 (ticketd), 8001 (the WebSocket server) and 6390 (Redis); the
test replaces exactly those numbers with free ports, nothing else.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import ticketd
from tests.support.browser import (
    launched_chromium,
    require_curl,
)
from tests.support.redisproc import free_port, redis_binary
from ticketd.sessions import issue_session_cookie

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "deploy/README.md")
RUNNABLE = {"python": "python", "py": "python", "sh": "sh", "shell": "sh", "bash": "sh"}
RUNNABLE |= {"js": "js", "javascript": "js"}
MAX_FRAGMENTS = 6
DOC_PORTS = {"8080": "ticketd", "8001": "ws", "6390": "redis"}
SECRET = "dev-only-not-a-secret-shared-with-the-app"  # examples/serve.sh
TICKET_IN_LOG = re.compile(r"ticket[.=][A-Za-z0-9_-]{43}")
_FENCE = re.compile(r"^```([A-Za-z0-9_-]*)\s*$")
_MARKER = re.compile(r"^<!--\s*([a-z]+)(?::\s*(.*?))?\s*-->$")


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    text: str
    marker: str | None = None
    argument: str = ""

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def kind(self) -> str:
        return RUNNABLE.get(self.lang, "")


def parse_blocks(doc: str, text: str) -> list[Block]:
    """The fenced blocks of ``text`` with the marker comment just before each."""
    blocks: list[Block] = []
    lines = text.splitlines(keepends=True)
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and not lines[index].startswith("```"):
            body.append(lines[index])
            index += 1
        previous = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
        marker = _MARKER.match(previous)
        blocks.append(
            Block(
                doc,
                start + 1,
                fence.group(1),
                "".join(body),
                marker.group(1) if marker else None,
                (marker.group(2) or "") if marker else "",
            )
        )
        index += 1
    return blocks


def all_blocks() -> list[Block]:
    found: list[Block] = []
    for doc in DOCS:
        found += parse_blocks(doc, (ROOT / doc).read_text(encoding="utf-8"))
    return found


BLOCKS = all_blocks()
RUN = [b for b in BLOCKS if b.kind and b.marker in (None, "needs")]


def blocks_of(kind: str) -> list[Any]:
    return [pytest.param(b, id=b.id) for b in RUN if b.kind == kind]


def with_ports(text: str, ports: dict[str, int]) -> str:
    return re.sub(r"\b(8080|8001|6390)\b", lambda m: str(ports[DOC_PORTS[m.group(1)]]), text)


def missing_names(block: Block) -> list[str]:
    """The ``needs:`` names (``Class.attribute`` in ``ticketd``) that do not exist yet."""
    missing = []
    for name in block.argument.split():
        owner, _, attribute = name.partition(".")
        if not hasattr(getattr(ticketd, owner), attribute):
            missing.append(name)
    return missing


# -- what every block is ------------------------------------------------------------------


def test_every_block_is_run_or_marked() -> None:
    runnable = [b for b in BLOCKS if b.kind]
    assert len(runnable) >= 10, "the parser found too few blocks: it is broken"
    unknown = [b.id for b in runnable if b.marker not in (None, "include", "fragment", "needs")]
    assert not unknown, f"unknown markers at {unknown}"
    fragments = [b for b in runnable if b.marker == "fragment"]
    assert all(b.argument for b in fragments), "say why a fragment cannot run"
    assert len(fragments) <= MAX_FRAGMENTS, [b.id for b in fragments]


def test_included_blocks_are_the_example_files() -> None:
    included = {b.argument: b for b in BLOCKS if b.marker == "include"}
    examples = {f"examples/{p.name}" for p in (ROOT / "examples").iterdir() if p.is_file()}
    assert set(included) == examples, "README.md must show every file of examples/"
    for path, block in included.items():
        assert block.text == (ROOT / path).read_text(encoding="utf-8"), f"{block.id} != {path}"


def test_the_parser_sees_a_changed_block() -> None:
    # Negative control for the check above and for the runners below.
    text = "x\n<!-- include: examples/client.py -->\n```python\nprint(1)\n```\n"
    (block,) = parse_blocks("doc", text)
    assert (block.marker, block.argument) == ("include", "examples/client.py")
    assert block.text == "print(1)\n"
    assert block.text != (ROOT / "examples/client.py").read_text(encoding="utf-8")


# -- the stack the blocks run against -----------------------------------------------------


@dataclass
class Stack:
    ports: dict[str, int]
    workdir: Path
    env: dict[str, str]
    chat_log: Path

    @property
    def ticketd(self) -> str:
        return f"http://127.0.0.1:{self.ports['ticketd']}"

    def run(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def start(command: list[str], stack_dir: Path, env: dict[str, str], log: Path) -> Any:
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=stack_dir, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: serve.sh's redis-server too
        )  # fmt: skip


def stop(process: Any) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError):  # what is left of the group: redis-server
        os.killpg(process.pid, signal.SIGTERM)


def wait_for(condition: Any, what: str, process: Any, log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"{what}: exited with {process.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not up within {seconds} s:\n{log.read_text()}")
        time.sleep(0.1)


def ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    redis_binary()  # skip, or fail in CI, without it; serve.sh starts its own redis-server
    require_curl()
    ports = {name: free_port() for name in DOC_PORTS.values()}
    workdir = tmp_path_factory.mktemp("readme")
    for path in (ROOT / "examples").iterdir():
        (workdir / path.name).write_text(with_ports(path.read_text("utf-8"), ports), "utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETD_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    serve_log, chat_log = workdir / "serve.log", workdir / "chat.log"
    serve = start(["sh", "serve.sh"], workdir, env, serve_log)
    chat = None
    try:
        base = f"http://127.0.0.1:{ports['ticketd']}"
        wait_for(lambda: ready(f"{base}/readyz"), "serve.sh", serve, serve_log)
        chat = start([sys.executable, "chat_server.py"], workdir, env, chat_log)
        wait_for(lambda: "listening on" in chat_log.read_text(), "chat_server.py", chat, chat_log)
        yield Stack(ports, workdir, env, chat_log)
    finally:
        if chat is not None:
            stop(chat)
        stop(serve)


# -- the end-to-end path ------------------------------------------------------------------

pytestmark = pytest.mark.redis


def expected_client_output() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    after = readme[readme.index("<!-- include: examples/client.py -->") :]
    (output,) = [b for b in parse_blocks("README.md", after) if b.lang == "text"][:1]
    return output.text


@pytest.mark.slow
def test_end_to_end_path(stack: Stack) -> None:
    result = stack.run(sys.executable, "client.py")
    assert result.returncode == 0, result.stderr
    # Exactly what the README says it prints: the subject, then the replay refused.
    assert result.stdout == expected_client_output()
    assert "hello alice" in result.stdout
    assert "replay refused: 401" in result.stdout

    log = stack.chat_log.read_text()
    assert "ticket.[redacted]" in log, "the DEBUG handshake line was not logged at all"
    assert TICKET_IN_LOG.search(log) is None, "a ticket reached the WebSocket server's log"
    assert "websocket handshake refused reason=invalid" in log

    curl = stack.run("sh", "curl.sh")
    assert curl.returncode == 0, curl.stderr
    first, replay = curl.stdout.splitlines()
    assert '"subject":"alice"' in first
    assert first.endswith("<- first: HTTP 200")
    assert '"code":"invalid"' in replay
    assert replay.endswith("<- replay: HTTP 401")


# -- every other block ----------------------------------------------------------------------


def run_block(stack: Stack, block: Block) -> subprocess.CompletedProcess[str]:
    script = stack.workdir / f"block-{block.doc.replace('/', '-')}-{block.line}"
    script.write_text(with_ports(block.text, stack.ports), "utf-8")
    if block.kind == "python":
        return stack.run(sys.executable, str(script))
    return stack.run("sh", "-e", str(script))


def check_outcome(block: Block, result: subprocess.CompletedProcess[str]) -> None:
    missing = missing_names(block) if block.marker == "needs" else []
    if missing:  # documented ahead of the change that adds them: must fail on them only
        assert result.returncode != 0, f"{block.id} ran although {missing} do not exist"
        assert "AttributeError" in result.stderr, result.stderr
        assert any(name.partition(".")[2] in result.stderr for name in missing), result.stderr
        return
    assert result.returncode == 0, f"{block.id}:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("block", blocks_of("python"))
def test_python_block(stack: Stack, block: Block) -> None:
    check_outcome(block, run_block(stack, block))


@pytest.mark.parametrize("block", blocks_of("sh"))
def test_shell_block(stack: Stack, block: Block) -> None:
    check_outcome(block, run_block(stack, block))


def test_a_broken_example_fails(stack: Stack) -> None:
    # Negative control: the websockets server this README used to show (top-level async with).
    broken = Block("old-README.md", 1, "python", "async with open('x') as f:\n    pass\n")
    result = run_block(stack, broken)
    assert result.returncode != 0
    assert "SyntaxError" in result.stderr


@pytest.fixture(scope="module")
def chromium(stack: Stack) -> Iterator[Any]:
    with launched_chromium() as browser:
        yield browser


@pytest.mark.browser
@pytest.mark.parametrize("block", blocks_of("js"))
def test_js_block(stack: Stack, chromium: Any, block: Block) -> None:
    context = chromium.new_context()
    try:
        # A page on an allowed origin, logged in: the app's cookie reaches ticketd.
        cookie = issue_session_cookie({"user_id": "alice"}, secret=SECRET)
        context.add_cookies([{"name": "session", "value": cookie, "url": stack.ticketd}])
        page = context.new_page()
        console: list[str] = []
        errors: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{stack.ticketd}/livez")
        page.add_script_tag(content=with_ports(block.text, stack.ports), type="module")
        deadline = time.monotonic() + 15
        while "hello alice" not in console and not errors and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        assert errors == [], errors
        assert "hello alice" in console, console
    finally:
        context.close()
