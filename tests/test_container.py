"""``deploy/Dockerfile`` built and run for real with podman, as Kubernetes runs it.

No image registry is reachable from CI, so the official Python base is replaced
by a stand-in built from Debian packages only (``debootstrap`` bookworm minbase
with ``python3``, ``python3-venv`` and ``python-is-python3``, ``podman import``),
passed through the Dockerfile's ``BASE_IMAGE`` argument. The stand-in is cached
under :data:`BASE_IMAGE` and reused when it already exists locally.

The image is built from ``git archive HEAD`` (a clean checkout: only what is
committed, and only what ``.dockerignore`` lets through), then run with the args
and security context of ``deploy/k8s/base/deployment.yaml`` (UID 10001, read-only
root filesystem, every capability dropped, no new privileges) in its own network
namespace, against a real ``redis-server`` on the host's loopback.

Needs ``podman``, ``runc``, ``slirp4netns``, ``debootstrap`` and ``git`` (Debian:
``apt-get install podman runc slirp4netns debootstrap``); skipped without them unless
``TICKETD_TEST_REQUIRE_CONTAINER=1`` (as in CI), which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]

from tests.support.redisproc import RedisServer, free_port
from tests.support.service_support import APP_ORIGIN
from ticketd import TicketVerifier
from ticketd.sessions import issue_session_cookie

# The first run builds the base (debootstrap: about 1 min on an idle machine, several
# under load) and the image (pip from PyPI): generous limits, the figures are printed.
pytestmark = [
    pytest.mark.container,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.timeout(900),
]

REPO = Path(__file__).resolve().parents[1]
REQUIRE_ENV = "TICKETD_TEST_REQUIRE_CONTAINER"
BASE_IMAGE = "localhost/ticketd-test-base:bookworm"
IMAGE = "localhost/ticketd:container-test"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
GRACE_SECONDS = 30  # terminationGracePeriodSeconds in deploy/k8s/base/deployment.yaml
DRAIN_SECONDS = 5.0  # long enough to observe under load, well inside the grace period
UID = "10001:10001"
SBIN = "/usr/sbin:/sbin"  # runc and debootstrap live here; a non-login PATH may lack it
HOST_LOOPBACK = "10.0.2.2"  # the host's 127.0.0.1 seen from slirp4netns


# --------------------------------------------------------------------------- tools


def require_tools() -> dict[str, str]:
    """podman, runc, debootstrap, git; skip (fail in CI) with the install hint."""
    tools = ("podman", "runc", "slirp4netns", "debootstrap", "git")
    found = {name: shutil.which(name) or shutil.which(name, path=SBIN) for name in tools}
    missing = sorted(name for name, path in found.items() if path is None)
    if missing:
        message = (
            f"{', '.join(missing)} not found; install them (Debian: apt-get install "
            "podman runc slirp4netns debootstrap) to build and run the container image"
        )
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {message}", pytrace=False)
        pytest.skip(message)
    return {name: path for name, path in found.items() if path is not None}


@dataclass(frozen=True)
class Podman:
    """Debian's podman with the flags these hosts need (runc, cgroupfs, fixed ulimits)."""

    binary: str
    runc: str

    def command(self, *args: str) -> list[str]:
        return [self.binary, "--runtime", self.runc, "--cgroup-manager=cgroupfs", *args]

    def run(
        self, *args: str, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"podman {' '.join(args[:2])} exited {result.returncode}\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}",
                pytrace=False,
            )
        return result

    def exists(self, image: str) -> bool:
        return self.run("image", "exists", image, check=False).returncode == 0

    def dangling(self) -> set[str]:
        listed = self.run("images", "--quiet", "--no-trunc", "--filter", "dangling=true")
        return set(listed.stdout.split())

    def inspect(self, target: str, *, kind: str = "image") -> Any:
        return json.loads(self.run(kind, "inspect", target).stdout)[0]


ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


# --------------------------------------------------------------------------- base image


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror the host's apt sources use (deb822 or one-line format)."""
    candidates: list[str] = []
    for path in sorted((sources / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text(encoding="utf-8").split("\n\n"):
            fields = {
                key.strip().lower(): value.strip()
                for key, sep, value in (line.partition(":") for line in stanza.splitlines())
                if sep and not key.startswith("#")
            }
            if "bookworm" in fields.get("suites", "").split():
                candidates += fields.get("uris", "").split()
    for path in [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*.list"))]:
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                words = re.sub(r"\[[^]]*\]", "", line).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == "bookworm":
                    candidates.append(words[1])
    for uri in candidates:
        if uri.rstrip("/").endswith("/debian"):
            return uri
    return DEFAULT_MIRROR


def test_debian_mirror_reads_both_source_formats(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n",
        encoding="utf-8",
    )
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64] http://other.example/debian bookworm main\n", encoding="utf-8"
    )
    assert debian_mirror(tmp_path) == "http://other.example/debian"
    (tmp_path / "sources.list").unlink()
    assert debian_mirror(tmp_path) == DEFAULT_MIRROR


def build_base(podman: Podman, debootstrap: str) -> None:
    """debootstrap a bookworm minbase with Python and import it as :data:`BASE_IMAGE`."""
    root = Path(tempfile.mkdtemp(prefix="ticketd-base-"))
    try:
        subprocess.run(
            [
                debootstrap,
                "--variant=minbase",
                "--include=python3,python3-venv,python-is-python3",
                "bookworm",
                str(root),
                debian_mirror(),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
            env={**os.environ, "PATH": f"{os.environ.get('PATH', '')}:{SBIN}"},
        )
        for directory in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (root / directory).glob("*"):
                if entry.is_file():
                    entry.unlink()
        archive = root.parent / f"{root.name}.tar"
        subprocess.run(
            ["tar", "-C", str(root), "--numeric-owner", "-cf", str(archive), "."],
            check=True,
            timeout=120,
        )
        try:
            podman.run(
                "import",
                "--change",
                "ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change",
                "ENV=LANG=C.UTF-8",
                "--change",
                'CMD=["python3"]',
                str(archive),
                BASE_IMAGE,
                timeout=180,
            )
        finally:
            archive.unlink(missing_ok=True)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"debootstrap failed ({exc.returncode}):\n{exc.stdout[-3000:]}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- the image


@dataclass(frozen=True)
class Built:
    podman: Podman
    image: str
    base_seconds: float  # 0 when the cached base was reused
    build_seconds: float


def healthcheck_command() -> list[str]:
    """The exec-form command of the Dockerfile's HEALTHCHECK."""
    text = (REPO / "deploy" / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("HEALTHCHECK ")]
    command = json.loads(line.partition(" CMD ")[2])
    assert isinstance(command, list), line
    return [str(word) for word in command]


@pytest.fixture(scope="module")
def built() -> Iterator[Built]:
    """The image, built on the (cached) stand-in base from a clean checkout of HEAD.

    Afterwards the untagged images this build left behind (its builder stage, the
    previous build of :data:`IMAGE`) are removed, so repeated runs do not pile up
    layers; the base and :data:`IMAGE` stay.
    """
    tools = require_tools()
    podman = Podman(tools["podman"], tools["runc"])
    dangling_before = podman.dangling()
    base_seconds = 0.0  # stays 0 when the cached base is reused
    if not podman.exists(BASE_IMAGE):
        started = time.monotonic()
        build_base(podman, tools["debootstrap"])
        base_seconds = time.monotonic() - started

    context = Path(tempfile.mkdtemp(prefix="ticketd-context-"))
    try:
        # A clean checkout: what HEAD holds, not the working tree (.venv, caches, secrets).
        archive = subprocess.run(
            [tools["git"], "-C", str(REPO), "archive", "--format=tar", "HEAD"],
            capture_output=True,
            timeout=60,
            check=True,
        )
        subprocess.run(
            ["tar", "-x", "-C", str(context)], input=archive.stdout, timeout=60, check=True
        )
        started = time.monotonic()
        podman.run(
            "build",
            "--network",
            "host",
            # Keep HEALTHCHECK in the image (the OCI format drops it), as `make image` does.
            "--format",
            "docker",
            *ULIMITS,
            # pip inside the build trusts the same certificates as the host.
            "-v",
            f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
            "--build-arg",
            f"BASE_IMAGE={BASE_IMAGE}",
            "-f",
            "deploy/Dockerfile",
            "-t",
            IMAGE,
            str(context),
            timeout=600,
        )
        build_seconds = time.monotonic() - started
    finally:
        shutil.rmtree(context, ignore_errors=True)
    try:
        yield Built(podman, IMAGE, base_seconds, build_seconds)
    finally:
        left = podman.dangling() - dangling_before
        if left:
            podman.run("rmi", "--force", *sorted(left), check=False)


@dataclass
class Running:
    podman: Podman
    name: str
    base: str
    redis: RedisServer
    secret: str


def deployment_container() -> dict[str, Any]:
    """The ticketd container of deploy/k8s/base/deployment.yaml."""
    manifest = REPO / "deploy" / "k8s" / "base" / "deployment.yaml"
    deployment = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    pod = deployment["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "ticketd"]
    return {"pod": pod, **container}


def run_flags(container: dict[str, Any]) -> list[str]:
    """podman flags for the Deployment's securityContext (pod and container level)."""
    context = {**container["pod"].get("securityContext", {}), **container["securityContext"]}
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["runAsNonRoot"] is True
    return [
        f"--user={context['runAsUser']}:{context['runAsGroup']}",
        "--read-only",
        # The pod's in-memory /tmp (emptyDir, medium Memory).
        "--tmpfs=/tmp:rw,size=16m,mode=1777",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
    ]


@pytest.fixture
def running(built: Built, tmp_path: Path) -> Iterator[Running]:
    """The image as the Deployment runs it, against a real redis-server on host loopback.

    The container has its own network namespace (slirp4netns) so it listens on
    0.0.0.0:8080 as in the pod, published on a free host loopback port only; it
    reaches the host's loopback, where Redis listens, as 10.0.2.2.
    """
    redis_server = RedisServer().start()
    secret = f"test-only-{secrets.token_urlsafe(32)}"
    secret_file = tmp_path / "session-secret"
    secret_file.write_text(secret, encoding="utf-8")
    secret_file.chmod(0o444)
    port = free_port()
    name = f"ticketd-test-{uuid.uuid4().hex[:8]}"
    podman = built.podman
    container = deployment_container()
    args = container["args"]
    assert args == ["serve", "--host", "0.0.0.0", "--port", "8080"], args
    podman.run(
        "run",
        "--detach",
        f"--name={name}",
        "--network=slirp4netns:allow_host_loopback=true",
        f"--publish=127.0.0.1:{port}:8080",
        *run_flags(container),
        *ULIMITS,
        f"--volume={secret_file}:/run/secrets/session-secret:ro",
        f"--env=TICKETD_REDIS_URL=redis://{HOST_LOOPBACK}:{redis_server.port}/0",
        "--env=TICKETD_SESSION_SECRET_FILE=/run/secrets/session-secret",
        f"--env=TICKETD_ALLOWED_ORIGINS={APP_ORIGIN}",
        "--env=TICKETD_AUDIENCES=chat",
        built.image,
        # The Deployment's args; the drain phase stands in for its preStop sleep.
        *args,
        f"--drain-seconds={DRAIN_SECONDS}",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/livez", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            state = podman.inspect(name, kind="container")["State"]
            if not state["Running"] or time.monotonic() > deadline:
                logs = podman.run("logs", name, check=False)
                pytest.fail(f"container did not start: {state}\n{logs.stdout}\n{logs.stderr}")
            time.sleep(0.2)
        yield Running(podman, name, base, redis_server, secret)
    finally:
        podman.run("rm", "--force", "--time", "0", name, check=False)
        redis_server.close()


# --------------------------------------------------------------------------- tests


def test_image_serves_as_the_deployment_runs_it(
    running: Running, built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    podman = running.podman
    config = podman.inspect(running.name, kind="container")
    assert config["Config"]["User"] == UID
    host = config["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert "no-new-privileges" in " ".join(host["SecurityOpt"] or []), host["SecurityOpt"]
    # The process really runs unprivileged, with no capabilities and a read-only root.
    status = podman.run("exec", running.name, "cat", "/proc/1/status").stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["Uid"].split()[0] == "10001", fields["Uid"]
    assert fields["Gid"].split()[0] == "10001", fields["Gid"]
    assert int(fields["CapEff"], 16) == 0, fields["CapEff"]
    assert int(fields["CapBnd"], 16) == 0, fields["CapBnd"]  # --cap-drop=ALL
    assert fields["NoNewPrivs"].strip() == "1"
    touched = podman.run("exec", running.name, "touch", "/opt/ticketd/x", check=False)
    assert touched.returncode != 0
    assert "Read-only file system" in touched.stderr, touched.stderr

    with httpx.Client(base_url=running.base, timeout=5) as http:
        assert http.get("/livez").json() == {"status": "ok"}
        ready = http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "store": "redis"}

        cookie = issue_session_cookie({"user_id": "alice"}, secret=running.secret)
        minted = http.post(
            "/v1/tickets",
            headers={"Origin": APP_ORIGIN, "Cookie": f"session={cookie}"},
            json={"audience": "chat"},
        )
        assert minted.status_code == 201, minted.text
        ticket = minted.json()["ticket"]
        # A cookie signed with another key is refused by the same container.
        forged = issue_session_cookie({"user_id": "alice"}, secret="test-only-" + "x" * 40)
        refused = http.post(
            "/v1/tickets", headers={"Origin": APP_ORIGIN, "Cookie": f"session={forged}"}
        )
        assert refused.status_code == 401, refused.text

    async def redeem() -> tuple[Any, str]:
        verifier = TicketVerifier.from_url(running.redis.url, audience="chat")
        try:
            claims = await verifier.redeem(ticket, origin=APP_ORIGIN)
            return claims.subject, claims.origin
        finally:
            await verifier.aclose()

    # The ticket the container minted is in the real Redis and redeems on the host.
    assert asyncio.run(redeem()) == ("alice", APP_ORIGIN)

    # The Dockerfile's HEALTHCHECK, as built into the image (--format docker keeps it),
    # run by podman and as a plain command; and a negative control on a closed port.
    command = healthcheck_command()
    assert podman.inspect(built.image)["Healthcheck"]["Test"] == ["CMD", *command]
    checked = podman.run("healthcheck", "run", running.name, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    health = podman.inspect(running.name, kind="container")["State"]["Health"]
    assert health["Status"] == "healthy", health
    assert podman.run("exec", running.name, *command, check=False).returncode == 0
    assert " ".join(command).count("127.0.0.1:8080") == 1, command
    closed = [word.replace("127.0.0.1:8080", "127.0.0.1:8081") for word in command]
    assert podman.run("exec", running.name, *closed, check=False).returncode != 0

    size = int(podman.inspect(built.image)["Size"])
    with capsys.disabled():
        print(
            f"\n[container] image {built.image}: {size / 1e6:.0f} MB; "
            f"base build {built.base_seconds:.0f} s "
            f"({'reused' if not built.base_seconds else 'debootstrap'}), "
            f"image build {built.build_seconds:.0f} s"
        )
    assert 0 < size < 600e6, size


def test_sigterm_drains_then_exits_zero(running: Running) -> None:
    podman = running.podman
    with httpx.Client(base_url=running.base, timeout=2) as http:
        assert http.get("/readyz").status_code == 200
        sent = time.monotonic()
        podman.run("kill", "--signal", "TERM", running.name)
        # Draining: not ready any more, still alive and serving.
        deadline = time.monotonic() + DRAIN_SECONDS
        statuses = []
        while time.monotonic() < deadline:
            try:
                statuses.append(http.get("/readyz").status_code)
                if statuses[-1] == 503:
                    assert http.get("/livez").status_code == 200
                    break
            except httpx.TransportError:
                break
            time.sleep(0.05)
        assert 503 in statuses, statuses
    waited = podman.run("wait", running.name, timeout=GRACE_SECONDS + 10)
    elapsed = time.monotonic() - sent
    assert waited.stdout.strip() == "0", waited.stdout
    assert elapsed < GRACE_SECONDS, elapsed
    assert elapsed >= DRAIN_SECONDS * 0.9, elapsed
    logs = podman.run("logs", running.name)
    assert "draining" in logs.stdout + logs.stderr, logs


def secrets_in_image(podman: Podman, image: str, known: list[str]) -> list[str]:
    """Where an image's env, labels or history carry a secret-looking name or a known value."""
    config = podman.inspect(image)
    places: dict[str, str] = {}
    for entry in config["Config"].get("Env") or []:
        places[f"env {entry.partition('=')[0]}"] = entry
    for key, value in (config["Config"].get("Labels") or {}).items():
        places[f"label {key}"] = f"{key}={value}"
    history = json.loads(podman.run("history", "--no-trunc", "--format", "json", image).stdout)
    for index, layer in enumerate(history):
        places[f"history {index}"] = str(layer.get("CreatedBy", "")) + str(layer.get("Comment"))
    found = []
    pattern = re.compile(r"SECRET|PASSWORD|TOKEN|SERVICE_KEYS|dev-only-not-a-secret", re.I)
    for where, text in places.items():
        if pattern.search(text) or any(value in text for value in known if value):
            found.append(where)
    return found


def test_no_secret_in_the_image(built: Built, tmp_path: Path) -> None:
    podman = built.podman
    dev_secrets = [
        path.read_text(encoding="utf-8").strip()
        for path in (REPO / "deploy" / "dev-secrets").iterdir()
        if path.name != "README.md"
    ]
    assert dev_secrets
    assert secrets_in_image(podman, built.image, dev_secrets) == []
    # The files themselves are not in the image either (.dockerignore keeps them out).
    listing = podman.run(
        "run", "--rm", "--network", "none", *ULIMITS, "--entrypoint", "python", built.image,
        "-c", "import os; print([d for d, _, f in os.walk('/') if 'dev-secrets' in d])",
    )  # fmt: skip
    assert listing.stdout.strip() == "[]", listing.stdout

    # Negative control: an image that bakes a secret in is caught, by name and by value.
    fake = "dev-only-not-a-secret-baked-into-an-image"
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        f"FROM {built.image}\nENV TICKETD_SESSION_SECRET={fake}\nLABEL key={fake}\n",
        encoding="utf-8",
    )
    leaky = f"{built.image}-leaky"
    podman.run("build", "--network", "none", "-f", str(dockerfile), "-t", leaky, str(tmp_path))
    try:
        found = secrets_in_image(podman, leaky, [fake])
    finally:
        podman.run("rmi", "--force", leaky, check=False)
    assert "env TICKETD_SESSION_SECRET" in found, found
    assert "label key" in found, found
    assert any(where.startswith("history") for where in found), found
