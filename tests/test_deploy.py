"""Offline validation of ``deploy/``: linters, schemas, rendered manifests, Redis ACL.

Every tool runs from the same virtualenv as the tests (``pip install -e '.[test]'``),
with the configuration under ``deploy/`` passed explicitly, so a developer's own
config cannot relax it. Each validator also has a negative twin that feeds it a
known mistake: a check that silently stopped checking (wrong flag, missing schema,
empty file list) fails the suite instead of passing it.

Nothing here needs a network or a container engine. ``kubectl`` (for
``kubectl kustomize``) is optional: without it the Kubernetes tests skip.
"""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import redis
import yaml  # type: ignore[import-untyped]
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError
from redis.retry import Retry

from tests.support.redisproc import RedisServer
from ticketd.batching import CommandBatcher
from ticketd.connection import RedisOptions, async_client, sync_client
from ticketd.exceptions import Detail, StoreUnavailable, TicketRejected
from ticketd.issuer import TicketIssuer
from ticketd.liveness import RevocationWatch
from ticketd.revocation import SessionRef
from ticketd.revoker import Revoker
from ticketd.store import BlockingTicketStore, TicketStore
from ticketd.tombstones import connection_id
from ticketd.verifier import TicketVerifier

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
KUSTOMIZATIONS = {"base": K8S / "base", "production": K8S / "overlays" / "production"}
# Not resolved: a venv's python is a symlink, and its tools live next to the link.
VENV_BIN = Path(sys.executable).parent

# Kubernetes versions the rendered manifests must be valid for: the oldest we
# support and the newest schema kubernetes-validate ships (both offline).
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())

# The service's configuration contract (TICKETD_* names, each also as <NAME>_FILE).
# A misspelt variable is silently ignored at run time: the manifests may use only these.
SETTINGS = frozenset(
    f"TICKETD_{name}"
    for name in (
        "REDIS_URL",
        "REDIS_SENTINELS",
        "REDIS_SENTINEL_SERVICE",
        "REDIS_CLUSTER",
        "REDIS_CA_FILE",
        "REDIS_CERT_FILE",
        "REDIS_KEY_FILE",
        "KEY_PREFIX",
        "TICKET_TTL",
        "AUDIENCES",
        "ALLOWED_ORIGINS",
        "SESSION_FORMAT",
        "SESSION_COOKIE",
        "SESSION_SECRET",
        "SESSION_SECRET_FALLBACKS",
        "SESSION_MAX_AGE",
        "SESSION_SUBJECT_KEY",
        "SERVICE_KEYS",
        "TRUSTED_PROXIES",
        "RATE_LIMIT_PER_SUBJECT",
        "RATE_LIMIT_PER_IP",
        "MAX_OUTSTANDING_PER_SUBJECT",
        "REDEEM_WAIT_REPLICAS",
        "LOG_LEVEL",
        "LOG_FORMAT",
    )
)
# Any setting may be read from a file named by <NAME>_FILE.
KNOWN_NAMES = SETTINGS | {f"{name}_FILE" for name in SETTINGS}
# In Kubernetes these come only as files; never in a ConfigMap or an env value.
SECRET_SETTINGS = frozenset(
    {
        "TICKETD_SESSION_SECRET",
        "TICKETD_SESSION_SECRET_FALLBACKS",
        "TICKETD_SERVICE_KEYS",
        "TICKETD_REDIS_URL",  # carries the Redis password
    }
)
FAKE_SECRET_PREFIX = "dev-only-not-a-secret-"

Doc = dict[str, Any]


# --------------------------------------------------------------------------- helpers


def service_settings() -> Any:
    """``ticketd.service.settings``, or skip when the server extra is not installed."""
    return pytest.importorskip(
        "ticketd.service.settings", reason="needs the server extra: pip install -e '.[server]'"
    )


def venv_tool(name: str) -> str:
    path = VENV_BIN / name
    if not path.exists():
        pytest.fail(
            f"{name} not found in {VENV_BIN}; install the test extras: pip install '.[test]'"
        )
    return str(path)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return run(
        venv_tool("hadolint"),
        "--no-color",
        "--config",
        str(DEPLOY / "hadolint.yaml"),
        str(dockerfile),
    )


def yamllint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return run(
        venv_tool("yamllint"),
        "--strict",
        "--format",
        "parsable",
        "--config-file",
        str(DEPLOY / ".yamllint"),
        *map(str, paths),
    )


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return run(
        venv_tool("check-jsonschema"),
        "--schemafile",
        str(DEPLOY / "schemas" / "compose-spec.json"),
        str(path),
    )


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def from_images(path: Path) -> list[str]:
    """The image of every FROM, with ``${ARG}`` replaced by the ARG's default.

    Only ARGs declared before the first FROM are in scope for FROM lines.
    """
    defaults: dict[str, str] = {}
    images: list[str] = []
    for keyword, args in dockerfile_instructions(path):
        if keyword == "ARG" and not images:
            name, _, default = args.partition("=")
            defaults[name] = default
        elif keyword == "FROM":
            image = args.split()[0]
            for name, default in defaults.items():
                image = image.replace(f"${{{name}}}", default)
            assert "$" not in image, f"FROM uses an ARG without a default: {args}"
            images.append(image)
    return images


def test_from_images_resolves_the_base_argument(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "ARG BASE_IMAGE=python:3.12.8-slim-bookworm\nFROM ${BASE_IMAGE} AS a\nFROM ${OTHER}\n",
        encoding="utf-8",
    )
    with pytest.raises(AssertionError, match="without a default"):
        from_images(dockerfile)


def test_dockerfile_passes_hadolint() -> None:
    result = hadolint(DEPLOY / "Dockerfile")
    assert result.returncode == 0, output(result)


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\n"
        "RUN apt-get update && apt-get install curl\n"
        "ADD . /app\n"
        "RUN cd /app && pip install .\n",
        encoding="utf-8",
    )
    result = hadolint(bad)
    assert result.returncode != 0, output(result)
    for rule in ("DL3007", "DL3008", "DL3020", "DL3003"):
        assert rule in result.stdout, output(result)


def test_dockerfile_contract() -> None:
    instructions = dockerfile_instructions(DEPLOY / "Dockerfile")
    froms = from_images(DEPLOY / "Dockerfile")
    assert len(froms) >= 2, "expected a multi-stage build"
    # The base is a build argument (the container test swaps in a stand-in);
    # its default is the official image.
    assert ("ARG", "BASE_IMAGE=python:3.12.8-slim-bookworm") in instructions
    for image in froms:
        name, _, tag = image.partition(":")
        assert name == "python", image
        # A patch-level tag (3.12.8-slim-...), not a moving one like 3.12-slim or latest.
        assert tag.count(".") >= 2, f"base image tag not pinned to a patch release: {image}"
        assert "-slim" in tag, image

    # Everything after the last FROM is the runtime stage.
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    runtime = instructions[last_from:]
    by_keyword: dict[str, list[str]] = {}
    for keyword, args in runtime:
        by_keyword.setdefault(keyword, []).append(args)

    user = by_keyword["USER"][-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), f"USER must be a numeric UID: {user}"
    assert int(uid) != 0, f"USER must not be root: {user}"
    if gid:
        assert gid.isdigit(), user
        assert int(gid) != 0, user
    assert by_keyword["EXPOSE"] == ["8080"]
    assert by_keyword["ENTRYPOINT"] == ['["ticketd"]']
    assert by_keyword["CMD"] == ['["serve", "--host", "0.0.0.0", "--port", "8080"]']
    (healthcheck,) = by_keyword["HEALTHCHECK"]
    assert '"python"' in healthcheck, healthcheck
    assert "/livez" in healthcheck, healthcheck
    env = " ".join(by_keyword["ENV"])
    assert "PYTHONDONTWRITEBYTECODE=1" in env, env
    assert "PYTHONUNBUFFERED=1" in env, env
    # No secrets baked in: no ARG/ENV that looks like one, in any stage.
    for keyword, args in instructions:
        if keyword in {"ARG", "ENV"}:
            upper = args.upper()
            for word in ("SECRET", "PASSWORD", "TOKEN", "SERVICE_KEYS"):
                assert word not in upper, f"{keyword} {args}"
        if keyword in {"COPY", "ADD"}:
            assert "dev-secrets" not in args, f"{keyword} {args}"


def test_dockerfile_matches_the_package() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "server" in project["optional-dependencies"]
    assert "ticketd" in project["scripts"]
    runs = [
        args for keyword, args in dockerfile_instructions(DEPLOY / "Dockerfile") if keyword == "RUN"
    ]
    assert any("'.[server]'" in args for args in runs), runs
    minimum = project["requires-python"].removeprefix(">=")
    for image in from_images(DEPLOY / "Dockerfile"):
        version = image.partition(":")[2].partition("-")[0]
        as_tuple = tuple(int(part) for part in version.split("."))
        assert as_tuple >= tuple(int(part) for part in minimum.split(".")), image


def test_dockerignore_is_an_allowlist() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert patterns[0] == "*", "start by excluding everything, then re-include"
    included = {p[1:] for p in patterns if p.startswith("!")}
    assert included == {"pyproject.toml", "README.md", "ticketd/"}, included
    # Every COPY from the build context names something the allowlist lets through.
    for keyword, args in dockerfile_instructions(DEPLOY / "Dockerfile"):
        if keyword == "COPY" and not args.startswith("--from"):
            *sources, _ = args.split()
            for source in sources:
                assert source in included or f"{source}/" in included, source


# --------------------------------------------------------------------------- YAML lint


def deploy_yaml_files() -> list[Path]:
    files = sorted(
        path for pattern in ("*.yaml", "*.yml") for path in DEPLOY.rglob(pattern) if path.is_file()
    )
    return [*files, DEPLOY / ".yamllint"]


def test_deploy_yaml_passes_yamllint() -> None:
    files = deploy_yaml_files()
    names = {path.relative_to(DEPLOY).as_posix() for path in files}
    assert {
        "compose.yaml",
        "k8s/base/deployment.yaml",
        "hadolint.yaml",
        "prometheus/alerts.yaml",
        "prometheus/alerts.test.yaml",
    } <= names, names
    result = yamllint(*files)
    assert result.returncode == 0, output(result)


def test_yamllint_catches_mistakes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\na: 2\nenabled: on\nb: [1,2]   \n", encoding="utf-8")
    result = yamllint(bad)
    assert result.returncode != 0, output(result)
    for rule in ("key-duplicates", "truthy", "trailing-spaces"):
        assert rule in result.stdout, output(result)


# --------------------------------------------------------------------------- dashboards


def test_grafana_dashboards_are_valid_json() -> None:
    dashboards = sorted((DEPLOY / "grafana").glob("*.json"))
    assert dashboards, "deploy/grafana/ has no dashboard"
    for path in dashboards:
        try:
            dashboard = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            pytest.fail(f"{path.name}: {exc}")
        assert isinstance(dashboard.get("panels"), list), path.name
        assert dashboard.get("uid"), path.name


# --------------------------------------------------------------------------- compose


def test_compose_matches_the_compose_spec() -> None:
    result = check_compose(DEPLOY / "compose.yaml")
    assert result.returncode == 0, output(result)


def test_compose_schema_catches_mistakes(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yaml"
    bad.write_text(
        "services:\n  app:\n    image: x\n    restart: sometimes\n    helthcheck: {}\n",
        encoding="utf-8",
    )
    result = check_compose(bad)
    assert result.returncode != 0, output(result)
    assert "helthcheck" in result.stdout + result.stderr, output(result)


def test_compose_contract() -> None:
    compose = load_yaml(DEPLOY / "compose.yaml")
    services = compose["services"]

    redis_command = services["redis"]["command"]
    policy = redis_command.index("--maxmemory-policy")
    assert redis_command[policy + 1] == "noeviction"
    assert "--maxmemory" in redis_command

    ticketd = services["ticketd"]
    assert (REPO / ticketd["build"]["context"].replace("..", ".")).is_dir()
    assert (DEPLOY / ticketd["build"]["context"] / ticketd["build"]["dockerfile"]).is_file()
    for name in ("redis", "ticketd"):
        assert "healthcheck" in services[name], name
    assert services["ticketd"]["depends_on"]["redis"]["condition"] == "service_healthy"

    declared = compose["secrets"]
    for name, service in services.items():
        env = service.get("environment", {})
        unknown = set(env) - KNOWN_NAMES
        assert not unknown, f"{name}: unknown settings {unknown}"
        for secret_setting in SECRET_SETTINGS - {"TICKETD_REDIS_URL"}:
            assert secret_setting not in env, f"{name}: {secret_setting} must come from a file"
        mounted = set(service.get("secrets", []))
        for key, value in env.items():
            if key.endswith("_FILE") and value.startswith("/run/secrets/"):
                secret = value.removeprefix("/run/secrets/")
                assert secret in mounted, f"{name}: {key} names unmounted secret {secret}"
        assert mounted <= set(declared), name

    for name, secret in declared.items():
        path = DEPLOY / secret["file"]
        assert path.resolve().parent == (DEPLOY / "dev-secrets").resolve(), name
        assert path.read_text(encoding="utf-8").startswith(FAKE_SECRET_PREFIX), path


def test_compose_configuration_is_accepted_by_the_service() -> None:
    settings = service_settings()
    compose = load_yaml(DEPLOY / "compose.yaml")
    files = {name: DEPLOY / secret["file"] for name, secret in compose["secrets"].items()}
    for name, service in compose["services"].items():
        environ = {
            key: str(files[value.removeprefix("/run/secrets/")])
            if value.startswith("/run/secrets/")
            else value
            for key, value in service.get("environment", {}).items()
        }
        if environ:
            try:
                settings.load_settings(environ)
            except settings.ConfigError as exc:
                pytest.fail(f"{name}: {exc}")


def test_contract_settings_exist_in_the_service() -> None:
    fields = {f"TICKETD_{name.upper()}" for name in service_settings().Settings.model_fields}
    assert not SETTINGS - fields, f"documented but unknown to the service: {SETTINGS - fields}"


def test_dev_secrets_are_obviously_fake() -> None:
    for path in sorted((DEPLOY / "dev-secrets").iterdir()):
        if path.name != "README.md":
            assert path.read_text(encoding="utf-8").startswith(FAKE_SECRET_PREFIX), path


# --------------------------------------------------------------------------- Kubernetes


@dataclass(frozen=True)
class Rendered:
    name: str
    docs: list[Doc]

    def one(self, kind: str) -> Doc:
        found = [doc for doc in self.docs if doc["kind"] == kind]
        assert len(found) == 1, f"{self.name}: expected one {kind}, found {len(found)}"
        return found[0]


@pytest.fixture(scope="module")
def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip(
            "kubectl not found on PATH; install it to render the kustomize manifests "
            "(https://kubernetes.io/docs/tasks/tools/, e.g. apt-get install kubectl "
            "from pkgs.k8s.io, or brew install kubectl)"
        )
    return path


def kustomize(kubectl: str, directory: Path) -> list[Doc]:
    result = run(kubectl, "kustomize", str(directory))
    assert result.returncode == 0, output(result)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=sorted(KUSTOMIZATIONS))
def rendered(request: pytest.FixtureRequest, kubectl: str) -> Rendered:
    name: str = request.param
    return Rendered(name, kustomize(kubectl, KUSTOMIZATIONS[name]))


def kubernetes_errors(doc: Doc, version: str) -> list[str]:
    where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')} @ {version}"
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(part) for part in exc.path)
        return [f"{where}: {path}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        # The CLI only warns about this (exit 0); an unknown kind is an error here.
        return [f"{where}: {exc.message}"]
    return []


@pytest.mark.parametrize("directory", sorted(KUSTOMIZATIONS.values()), ids=sorted(KUSTOMIZATIONS))
def test_every_manifest_is_in_its_kustomization(directory: Path) -> None:
    text = (directory / "kustomization.yaml").read_text(encoding="utf-8")
    for path in directory.glob("*.yaml"):
        if path.name != "kustomization.yaml":
            assert path.name in text, f"{path.name} is not referenced by {directory}"


def test_manifests_render(rendered: Rendered) -> None:
    kinds = {doc["kind"] for doc in rendered.docs}
    expected = {
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    assert expected <= kinds, expected - kinds
    # Secrets are created out of band, never rendered from the repository.
    assert "Secret" not in kinds


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_kubernetes_schemas(rendered: Rendered, version: str) -> None:
    errors = [error for doc in rendered.docs for error in kubernetes_errors(doc, version)]
    assert not errors, "\n".join(errors)


def test_kubernetes_validation_catches_mistakes(kubectl: str) -> None:
    deployment = next(
        doc for doc in kustomize(kubectl, KUSTOMIZATIONS["base"]) if doc["kind"] == "Deployment"
    )
    assert not kubernetes_errors(deployment, K8S_VERSIONS[0])

    misspelt = copy.deepcopy(deployment)
    container = misspelt["spec"]["template"]["spec"]["containers"][0]
    container["livenessProbes"] = container.pop("livenessProbe")
    assert kubernetes_errors(misspelt, K8S_VERSIONS[0])

    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    assert kubernetes_errors(wrong_type, K8S_VERSIONS[0])

    removed_api = copy.deepcopy(deployment)
    removed_api["apiVersion"] = "extensions/v1beta1"
    assert kubernetes_errors(removed_api, K8S_VERSIONS[0])


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    match: dict[str, str] = selector.get("matchLabels", {})
    return bool(match) and match.items() <= labels.items()


def test_deployment_security_context(rendered: Rendered) -> None:
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    pod_context = pod["securityContext"]
    assert pod_context["runAsNonRoot"] is True
    assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod_context.get("runAsUser", 1) != 0
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True, container["name"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
        assert "add" not in context["capabilities"], container["name"]
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, container["name"]
        assert context.get("privileged", False) is False, container["name"]

    service_account = rendered.one("ServiceAccount")
    assert service_account["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == service_account["metadata"]["name"]


def test_deployment_probes_lifecycle_and_resources(rendered: Rendered) -> None:
    deployment = rendered.one("Deployment")
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    image = container["image"]
    assert ":" in image.rsplit("/", 1)[-1] or "@sha256:" in image, image
    assert not image.endswith(":latest"), image
    assert container["args"][0] == "serve"

    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8080}
    for probe, path in (
        ("startupProbe", "/livez"),
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
    ):
        http = container[probe]["httpGet"]
        assert http["path"] == path, probe
        assert ports.get(http["port"], http["port"]) == 8080, probe

    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", command
    drain = int(command[1])
    assert drain >= 3
    # preStop plus a graceful drain must fit before SIGKILL.
    assert pod["terminationGracePeriodSeconds"] >= drain + 15

    resources = container["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert "memory" in resources["limits"]

    # A read-only root filesystem needs a writable /tmp.
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_deployment_secrets_are_mounted_files(rendered: Rendered) -> None:
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    secret_files: set[str] = set()
    for mount in container["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if secret is not None:
            assert mount["readOnly"] is True
            assert secret["defaultMode"] == 0o440, "secret files: owner and fsGroup read only"
            assert secret["secretName"] == "ticketd-secrets"
            for item in secret["items"]:
                assert item["key"] == item["path"], item
                secret_files.add(f"{mount['mountPath']}/{item['path']}")
    # The keys the operator guide tells people to put in the Secret.
    keys = {Path(path).name for path in secret_files}
    assert keys == {"session-secret", "session-secret-fallbacks", "service-keys", "redis-url"}
    guide = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for key in keys:
        assert f"--from-file={key}=" in guide or f"--from-literal={key}=" in guide, key

    env = {var["name"]: var for var in container["env"]}
    assert not env.keys() - KNOWN_NAMES, f"unknown settings: {env.keys() - KNOWN_NAMES}"
    for name in SECRET_SETTINGS:
        assert name not in env, f"{name}: use {name}_FILE"
        assert f"{name}_FILE" in env, f"{name}_FILE is not set"
    for name, var in env.items():
        assert "valueFrom" not in var, f"{name}: secrets are files, not environment values"
        if name.endswith("_FILE"):
            assert var["value"] in secret_files, f"{name} names no mounted secret file"


def deployment_environment(rendered: Rendered, secret_dir: Path) -> dict[str, str]:
    """TICKETD_* as the container sees them, secret files materialised in secret_dir."""
    (container,) = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"]
    environ = dict(rendered.one("ConfigMap")["data"])
    contents = {
        "session-secret": secrets.token_urlsafe(48),
        "session-secret-fallbacks": "",
        "service-keys": f"{secrets.token_urlsafe(48)},{secrets.token_urlsafe(48)}",
        "redis-url": "redis://ticketd:correct-horse@redis.redis.svc:6379/0",
    }
    for var in container["env"]:
        value = var["value"]
        if var["name"].endswith("_FILE"):
            local = secret_dir / Path(value).name
            local.write_text(contents[local.name] + "\n", encoding="utf-8")
            value = str(local)
        environ[var["name"]] = value
    return environ


def test_kubernetes_configuration_is_accepted_by_the_service(
    rendered: Rendered, tmp_path: Path
) -> None:
    settings = service_settings()
    try:
        loaded = settings.load_settings(deployment_environment(rendered, tmp_path))
    except settings.ConfigError as exc:
        pytest.fail(f"{rendered.name}: {exc}")
    assert not loaded.embedded
    assert loaded.key_prefix == "ticketd:"


def test_configmap_holds_only_known_non_secret_settings(rendered: Rendered) -> None:
    config = rendered.one("ConfigMap")
    keys = set(config["data"])
    assert not keys - SETTINGS, f"unknown settings: {keys - SETTINGS}"
    assert not {key.removesuffix("_FILE") for key in keys} & SECRET_SETTINGS, keys
    assert not keys & SECRET_SETTINGS, f"secrets in a ConfigMap: {keys & SECRET_SETTINGS}"
    assert config["data"]["TICKETD_KEY_PREFIX"] == "ticketd:", "the Redis ACL assumes ticketd:*"
    (container,) = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"]
    sources = [source["configMapRef"]["name"] for source in container["envFrom"]]
    assert config["metadata"]["name"] in sources


def test_service_hpa_pdb_and_networkpolicy_target_the_pods(rendered: Rendered) -> None:
    deployment = rendered.one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"], labels)

    service = rendered.one("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]

    hpa = rendered.one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"]

    pdb = rendered.one("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert selects(pdb["spec"]["selector"], labels)

    policy = rendered.one("NetworkPolicy")["spec"]
    assert selects(policy["podSelector"], labels)
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    ingress_ports = {port["port"] for rule in policy["ingress"] for port in rule["ports"]}
    assert ingress_ports == {8080}
    egress = {
        (port["port"], port.get("protocol", "TCP"))
        for rule in policy["egress"]
        for port in rule["ports"]
    }
    assert egress == {(53, "UDP"), (53, "TCP"), (6379, "TCP"), (26379, "TCP")}
    for rule in policy["egress"]:
        assert rule["ports"], "an egress rule without ports opens every port"


def test_production_overlay_changes(kubectl: str) -> None:
    production = Rendered("production", kustomize(kubectl, KUSTOMIZATIONS["production"]))
    namespace = production.one("Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in production.docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace["metadata"]["name"], doc["kind"]
    data = production.one("ConfigMap")["data"]
    assert data["TICKETD_REDIS_SENTINELS"].count(":26379") >= 3
    assert data["TICKETD_REDIS_SENTINEL_SERVICE"]
    # The Redis egress rule is narrowed to a namespace.
    redis_rules = [
        rule
        for rule in production.one("NetworkPolicy")["spec"]["egress"]
        if any(port["port"] == 6379 for port in rule["ports"])
    ]
    assert all(rule.get("to") for rule in redis_rules), redis_rules


# --------------------------------------------------------------------------- Redis

ACL_FILES = ("users.acl", "users.cluster.acl")
TEST_PASSWORD = "test-only-password"  # given to ticketd on the test server only


def acl_lines(name: str) -> dict[str, str]:
    """user name -> rules, for a shipped ACL file."""
    lines: dict[str, str] = {}
    for line in (DEPLOY / "redis" / name).read_text(encoding="utf-8").splitlines():
        # Redis 7.0 rejects comments and anything but `user` lines in ACL files.
        keyword, user, rules = line.split(" ", 2)
        assert keyword == "user", line
        lines[user] = rules
    return lines


def test_acl_files_ship_no_credentials() -> None:
    for name in ACL_FILES:
        users = acl_lines(name)
        assert set(users) == {"default", "ticketd"}, name
        assert users["default"].split()[0] == "off", "the default user must be disabled"
        for rules in users.values():
            tokens = rules.split()
            assert "nopass" not in tokens, name
            passwords = [t for t in tokens if t[0] in "<>#!"]
            assert not passwords, f"{name}: passwords are added at deploy time"
            assert "resetpass" in tokens, name
    base = acl_lines("users.acl")["ticketd"].split()
    cluster = acl_lines("users.cluster.acl")["ticketd"].split()
    assert cluster[: len(base)] == base
    assert cluster[len(base) :] == ["+cluster|slots", "+command"]


@pytest.fixture(params=ACL_FILES)
def acl_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server loaded with a shipped ACL file.

    Two changes for the harness only: the ticketd user gets a password (the
    shipped file has none), and the default user stays enabled as an admin so
    the harness can probe readiness; the shipped default rules are tested below.
    """
    users = acl_lines(request.param)
    acl = tmp_path / "users.acl"
    acl.write_text(
        f"user default on nopass ~* &* +@all\nuser ticketd {users['ticketd']} >{TEST_PASSWORD}\n",
        encoding="utf-8",
    )
    server = RedisServer("--aclfile", str(acl)).start()
    try:
        yield server
    finally:
        server.close()


def ticketd_client(server: RedisServer) -> redis.Redis:
    return redis.Redis(
        port=server.port, username="ticketd", password=TEST_PASSWORD, socket_timeout=2
    )


@pytest.mark.redis
def test_acl_allows_what_ticketd_uses(acl_server: RedisServer) -> None:
    with ticketd_client(acl_server) as client:
        assert client.ping()
        assert client.set("ticketd:x", b"record", px=30_000, nx=True)
        assert client.getdel("ticketd:x") == b"record"
        assert client.wait(0, 10) == 0
        # Rate limiter and outstanding-ticket caps (sliding-window counters).
        assert client.execute_command("INCR", "ticketd:rl:a") == 1
        assert client.pexpire("ticketd:rl:a", 60_000)
        assert client.get("ticketd:rl:a") == b"1"
        assert client.execute_command("DECR", "ticketd:rl:a") == 0
        assert client.delete("ticketd:rl:a") == 1
        # The mint limits: one single-key script per counter, loaded on NOSCRIPT.
        sha = client.script_load("return redis.call('GET', KEYS[1])")
        assert client.evalsha(sha, 1, "ticketd:rl:b") is None

    # The real store code, redis-py's connection handshake included.
    options = RedisOptions(url=f"redis://ticketd:{TEST_PASSWORD}@127.0.0.1:{acl_server.port}/0")
    store = BlockingTicketStore(sync_client(options))
    try:
        store.ping()
        store.put("ticketd:t", b"record", 30_000)
        assert store.take("ticketd:t") == b"record"
        assert store.take("ticketd:t") is None
        with pytest.raises(StoreUnavailable):
            store.put("other:t", b"record", 30_000)
    finally:
        store.close()


@pytest.mark.redis
async def test_acl_allows_the_rate_limiter(acl_server: RedisServer) -> None:
    settings = service_settings()
    ratelimit = pytest.importorskip("ticketd.service.ratelimit")
    config = settings.build_settings(
        {
            "redis_url": f"redis://ticketd:{TEST_PASSWORD}@127.0.0.1:{acl_server.port}/0",
            "session_secret": secrets.token_urlsafe(48),
            "allowed_origins": "https://app.example.com",
            "rate_limit_per_ip": "2/minute",
            "rate_limit_per_subject": "2/minute",
            "max_outstanding_per_subject": 1,
        }
    )
    client = async_client(RedisOptions(url=config.redis_url or ""))
    limits = ratelimit.MintLimits(config, CommandBatcher(client))
    try:
        # Every limit, including the take-back of refused attempts, under the ACL.
        assert await limits.check("192.0.2.1", None) is None
        assert await limits.check("192.0.2.1", None) is None
        assert (await limits.check("192.0.2.1", None)).limit == "ip"
        assert await limits.check("192.0.2.2", "alice") is None
        assert (await limits.check("192.0.2.3", "alice")).limit == "outstanding"
    finally:
        await client.aclose()
    with acl_server.client() as admin:
        keys = admin.keys("*")
    assert keys
    assert all(key.startswith(b"ticketd:") for key in keys), keys


@pytest.mark.redis
async def test_acl_allows_revocations_replays_and_the_watch(acl_server: RedisServer) -> None:
    """The real code of a WebSocket process and of ``POST /v1/revocations`` under the ACL:
    a mint from a login, a redeem (tombstone and settle), a replay whose ``close_first``
    policy writes a revocation (SET, XADD), and the watch that reads it (XREVRANGE,
    XREAD, MGET) and closes the first connection."""
    url = f"redis://ticketd:{TEST_PASSWORD}@127.0.0.1:{acl_server.port}/0"
    client = async_client(RedisOptions(url=url, socket_timeout=2))
    issuer = TicketIssuer(TicketStore(client))
    verifier = TicketVerifier(TicketStore(client), audience="chat", on_replay="close_first")
    origin = "https://app.example.com"
    login = SessionRef(session="s-1", auth_at=time.time() - 5, expires_at=time.time() + 600)
    closed = asyncio.Event()
    try:
        async with RevocationWatch(client, sweep_interval=60) as watch:
            issued = await issuer.mint("alice", origin=origin, audience="chat", session=login)
            claims = await verifier.redeem(issued.ticket, origin=origin, client_ip="192.0.2.1")
            entry = await watch.admit(claims, connection_id(issued.ticket))
            entry.attach(lambda code, reason: closed.set())
            await asyncio.sleep(0.1)  # the feed has its tail id
            with pytest.raises(TicketRejected) as replayed:
                await verifier.redeem(issued.ticket, origin=origin, client_ip="198.51.100.9")
            assert replayed.value.detail is Detail.REPLAYED
            await asyncio.wait_for(closed.wait(), 5)
            assert watch.stats.closed == {"push": 1}
            assert watch.stats.feed_errors == 0
            await Revoker(client, ttl=60).revoke("alice")  # what POST /v1/revocations does
            with pytest.raises(TicketRejected):
                await watch.admit(claims)
    finally:
        await client.aclose()


DENIED_COMMANDS = (
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("KEYS", "*"),
    ("SCAN", "0"),
    ("RANDOMKEY",),
    ("CONFIG", "GET", "*"),
    ("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"),
    ("INFO",),
    ("CLIENT", "LIST"),
    ("CLIENT", "KILL", "ID", "1"),
    ("ACL", "LIST"),
    ("SELECT", "1"),
    ("SCRIPT", "FLUSH"),
    ("EVAL", "return 1", "0"),
    ("FUNCTION", "FLUSH"),
    ("SUBSCRIBE", "ticketd:channel"),
    ("SET", "other:x", "1"),
    ("GETDEL", "other:x"),
    ("GET", "other:x"),
    ("DEL", "other:x"),
    ("RENAME", "ticketd:x", "other:x"),
    ("HSET", "ticketd:h", "f", "v"),
)


@pytest.mark.redis
def test_acl_denies_everything_else(acl_server: RedisServer) -> None:
    with acl_server.client() as admin:
        admin.set("other:x", b"untouched")
        admin.set("ticketd:x", b"1")
    with ticketd_client(acl_server) as client:
        for command in DENIED_COMMANDS:
            with pytest.raises(NoPermissionError):
                client.execute_command(*command)
        # No scripting at all: ticketd sends only plain commands.
        with pytest.raises(NoPermissionError):
            client.eval("return redis.call('FLUSHALL')", 0)
    with acl_server.client() as admin:
        assert admin.get("other:x") == b"untouched"
        assert admin.dbsize() == 2


@pytest.mark.redis
def test_shipped_default_user_is_locked_out(acl_server: RedisServer) -> None:
    default_rules = acl_lines("users.acl")["default"]
    with acl_server.client() as admin:
        admin.execute_command("ACL", "SETUSER", "default", *default_rules.split())
    no_retry = Retry(NoBackoff(), 0)  # AuthenticationError is a (retried) ConnectionError
    with (
        redis.Redis(port=acl_server.port, socket_timeout=2, retry=no_retry) as anonymous,
        pytest.raises(AuthenticationError),
    ):
        anonymous.ping()


def redis_conf_args() -> list[str]:
    """The directives of deploy/redis/redis.conf as redis-server command-line flags."""
    args: list[str] = []
    for line in (DEPLOY / "redis" / "redis.conf").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            directive, *values = shlex.split(line)
            args += [f"--{directive}", *values]
    return args


@pytest.mark.redis
def test_redis_conf_loads_and_fails_closed_when_full() -> None:
    args = redis_conf_args()
    assert "--maxmemory-policy" in args
    server = RedisServer(*args).start()
    try:
        with server.client() as admin:
            assert admin.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
            assert int(admin.config_get("maxmemory")["maxmemory"]) > 0
            assert admin.config_get("save") == {"save": ""}

            store = BlockingTicketStore(sync_client(RedisOptions(url=server.url)))
            try:
                store.put("ticketd:outstanding", b"record", 30_000)
                admin.config_set("maxmemory", 1)  # "full"
                with pytest.raises(StoreUnavailable):
                    store.put("ticketd:new", b"record", 30_000)
                # Nothing was evicted: the outstanding ticket still redeems once.
                assert store.take("ticketd:outstanding") == b"record"
            finally:
                store.close()
    finally:
        server.close()


# --------------------------------------------------------------------------- operator guide


def test_operator_guide_covers_the_essentials() -> None:
    guide = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for phrase in (
        "noeviction",
        "rediss://",
        "TICKETD_REDIS_CA_FILE",
        "TICKETD_SESSION_SECRET_FALLBACKS",
        "TICKETD_SERVICE_KEYS",
        "TICKETD_REDEEM_WAIT_REPLICAS",
        "make bench",
        "users.acl",
        "preStop",
        "--workers",
    ):
        assert phrase in guide, phrase
