"""Real Redis topologies for integration tests: Cluster, Sentinel, TLS.

Each helper is a context manager that starts processes on free loopback ports in
temporary directories and always kills them and removes the directories, even
when start-up fails half-way. Missing binaries skip the test with an install
hint, or fail it when ``TICKETD_TEST_REQUIRE_REDIS=1`` (CI), through
:func:`tests.support.redisproc.redis_binary`.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.support.redisproc import RedisServer, free_port, redis_binary

__all__ = [
    "Certificates",
    "ClusterTopology",
    "SentinelTopology",
    "TlsRedisServer",
    "address",
    "make_certificates",
    "redis_cluster",
    "redis_replicated",
    "redis_sentinel",
    "redis_tls",
    "tls_certificates",
    "wait_for",
]

LOCALHOST = "127.0.0.1"
SERVICE = "mymaster"


def wait_for(
    condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05
) -> float:
    """Poll ``condition`` until it is true; return the seconds it took, or raise."""
    started = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - started
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def _client(port: int) -> redis.Redis:
    return redis.Redis(host=LOCALHOST, port=port, socket_timeout=1, socket_connect_timeout=1)


# -- Cluster -------------------------------------------------------------------------


@dataclass
class ClusterTopology:
    """Three masters, no replicas, all 16384 slots assigned."""

    nodes: list[RedisServer]

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        """Any one node; the cluster client discovers the others."""
        return f"redis://{LOCALHOST}:{self.nodes[0].port}"


def _cluster_ok(port: int, masters: int) -> bool:
    with _client(port) as client:
        raw = client.execute_command("CLUSTER", "INFO")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    fields = dict(line.split(":", 1) for line in text.split() if ":" in line)
    return (
        fields.get("cluster_state") == "ok"
        and fields.get("cluster_slots_assigned") == "16384"
        and fields.get("cluster_known_nodes") == str(masters)
    )


@contextmanager
def redis_cluster(masters: int = 3, timeout: float = 20.0) -> Iterator[ClusterTopology]:
    """``redis-cli --cluster create`` over ``masters`` fresh cluster-enabled servers."""
    cli = redis_binary("redis-cli")
    with ExitStack() as stack:
        nodes = []
        for _ in range(masters):
            node = RedisServer(
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000",
                # The default bus port is port + 10000, past 65535 for high free ports.
                "--cluster-port", str(free_port()),
            )  # fmt: skip
            stack.callback(node.close)
            nodes.append(node.start())
        subprocess.run(
            [
                cli, "--cluster", "create",
                *(f"{LOCALHOST}:{node.port}" for node in nodes),
                "--cluster-replicas", "0", "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )  # fmt: skip
        for node in nodes:
            wait_for(
                lambda port=node.port: _cluster_ok(port, masters),  # type: ignore[misc]
                timeout=timeout,
                what=f"cluster_state:ok on node {node.port}",
            )
        yield ClusterTopology(nodes)


# -- Sentinel ------------------------------------------------------------------------


@dataclass
class SentinelTopology:
    """A master, one replica and three sentinels (quorum 2) watching ``mymaster``."""

    master: RedisServer
    replica: RedisServer
    sentinel_ports: list[int]
    sentinel_processes: list[subprocess.Popen[bytes]]
    service: str = SERVICE

    @property
    def sentinels(self) -> tuple[tuple[str, int], ...]:
        return tuple((LOCALHOST, port) for port in self.sentinel_ports)

    @property
    def sentinel_setting(self) -> str:
        """The ``TICKETD_REDIS_SENTINELS`` value."""
        return ",".join(f"{host}:{port}" for host, port in self.sentinels)

    def master_address(self) -> tuple[str, int] | None:
        """The master as the first answering sentinel sees it right now."""
        for port in self.sentinel_ports:
            try:
                with _client(port) as client:
                    reply = client.execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
                    )
            except redis.RedisError:
                continue
            if reply:
                host, master_port = reply
                text = host.decode() if isinstance(host, bytes) else str(host)
                return text, int(master_port)
        return None


def _replica_linked(master: RedisServer, replica: RedisServer) -> bool:
    """The link is up on the replica and the master counts the replica as online.

    After a diskless sync the master marks the replica online only on its first
    ``REPLCONF ACK``; until then ``WAIT`` does not count it.
    """
    with master.client() as on_master, replica.client() as on_replica:
        first = on_master.info("replication").get("slave0")
        return bool(
            on_replica.info("replication").get("master_link_status") == "up"
            and isinstance(first, dict)
            and first.get("state") == "online"
        )


def address(server: RedisServer) -> int:
    """The port a server accepts clients on (its TLS port for :class:`TlsRedisServer`)."""
    return getattr(server, "tls_port", server.port)


def _sentinel_sees_all(port: int, master_port: int, sentinels: int) -> bool:
    with _client(port) as client:
        reply = client.execute_command("SENTINEL", "MASTER", SERVICE)
    # A dict from redis-py's callback, or a flat [name, value, ...] list without one.
    flat = [x for pair in reply.items() for x in pair] if isinstance(reply, dict) else list(reply)
    text = [x.decode() if isinstance(x, bytes) else str(x) for x in flat]
    items = dict(zip(text[::2], text[1::2], strict=True))
    return (
        items.get("port") == str(master_port)
        and items.get("flags") == "master"
        and items.get("num-slaves") == "1"
        and items.get("num-other-sentinels") == str(sentinels - 1)
    )


def _sentinel_conf(
    directory: Path,
    port: int,
    master_port: int,
    replica_port: int,
    peers: dict[int, str],
    tls: Certificates | None,
) -> Path:
    """A sentinel config that already knows its peers and the replica.

    Sentinels would find each other through hello messages (every 2 s) and the
    replica through the master's INFO (every 10 s); declaring them with fixed
    ``myid`` values makes the topology ready in well under a second.
    """
    known = "".join(
        f"sentinel known-sentinel {SERVICE} {LOCALHOST} {peer} {myid}\n"
        for peer, myid in peers.items()
        if peer != port
    )
    if tls is not None:
        known += (
            "tls-replication yes\n"
            f'tls-cert-file "{tls.client_cert}"\n'
            f'tls-key-file "{tls.client_key}"\n'
            f'tls-ca-cert-file "{tls.ca}"\n'
        )
    conf = directory / f"sentinel-{port}.conf"
    conf.write_text(
        f"port {port}\n"
        f"bind {LOCALHOST}\n"
        f'dir "{directory}"\n'
        f"sentinel myid {peers[port]}\n"
        "sentinel resolve-hostnames no\n"
        f"sentinel monitor {SERVICE} {LOCALHOST} {master_port} 2\n"
        f"sentinel down-after-milliseconds {SERVICE} 1000\n"
        f"sentinel failover-timeout {SERVICE} 3000\n"
        f"sentinel parallel-syncs {SERVICE} 1\n"
        f"sentinel known-replica {SERVICE} {LOCALHOST} {replica_port}\n" + known,
        encoding="utf-8",
    )
    return conf


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


@contextmanager
def redis_replicated(
    timeout: float = 20.0, *, tls: Certificates | None = None
) -> Iterator[tuple[RedisServer, RedisServer]]:
    """A master and one replica (TLS-only with ``tls``), ready when the link is up."""

    def server(*args: str) -> RedisServer:
        return TlsRedisServer(tls, *args) if tls is not None else RedisServer(*args)

    with ExitStack() as stack:
        # Diskless sync waits 5 s by default for more replicas to join; there is one.
        master = server("--repl-diskless-sync-delay", "0")
        stack.callback(master.close)
        master.start()
        replica = server("--replicaof", LOCALHOST, str(address(master)))
        stack.callback(replica.close)
        replica.start()
        wait_for(
            lambda: _replica_linked(master, replica),
            timeout=timeout,
            what="the replica to sync",
        )
        yield master, replica


@contextmanager
def redis_sentinel(
    sentinels: int = 3, timeout: float = 20.0, *, tls: Certificates | None = None
) -> Iterator[SentinelTopology]:
    """Master + replica + sentinels, ready when every sentinel sees both and its peers.

    With ``tls``, master and replica accept TLS only and the sentinels reach them over
    TLS (``tls-replication yes``) while serving their own clients in plain text.
    """
    sentinel_binary = redis_binary("redis-sentinel")
    with ExitStack() as stack:
        master, replica = stack.enter_context(redis_replicated(timeout, tls=tls))
        directory = Path(tempfile.mkdtemp(prefix="ticketd-sentinel-"))
        stack.callback(shutil.rmtree, directory, ignore_errors=True)
        peers = {free_port(): secrets.token_hex(20) for _ in range(sentinels)}
        ports: list[int] = []
        processes: list[subprocess.Popen[bytes]] = []
        for port in peers:
            conf = _sentinel_conf(directory, port, address(master), address(replica), peers, tls)
            process = subprocess.Popen(
                [sentinel_binary, str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            stack.callback(_stop, process)
            ports.append(port)
            processes.append(process)
        for port in ports:
            wait_for(
                lambda port=port: _sentinel_sees_all(port, address(master), sentinels),  # type: ignore[misc]
                timeout=timeout,
                what=f"sentinel {port} to see the master, the replica and its peers",
            )
        yield SentinelTopology(master, replica, ports, processes)


# -- TLS -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    """PEM files: a CA, a server cert for 127.0.0.1/localhost, a wrong-name cert, a client cert."""

    directory: Path

    def path(self, name: str) -> str:
        return str(self.directory / name)

    @property
    def ca(self) -> str:
        return self.path("ca.crt")

    @property
    def server_cert(self) -> str:
        return self.path("server.crt")

    @property
    def server_key(self) -> str:
        return self.path("server.key")

    @property
    def wrong_name_cert(self) -> str:
        return self.path("wrong.crt")

    @property
    def wrong_name_key(self) -> str:
        return self.path("wrong.key")

    @property
    def client_cert(self) -> str:
        return self.path("client.crt")

    @property
    def client_key(self) -> str:
        return self.path("client.key")


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        pytest.skip("openssl not found; install it (Debian: apt-get install openssl)")
    subprocess.run(
        [binary, *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _leaf(directory: Path, name: str, common_name: str, san: str, usage: str) -> None:
    ext = directory / f"{name}.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage={usage}\n"
        f"subjectAltName={san}\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n",
        encoding="utf-8",
    )
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={common_name}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-sha256", "-extfile", ext.name, "-out", f"{name}.crt",
        cwd=directory,
    )  # fmt: skip


def make_certificates(directory: Path) -> Certificates:
    """Generate the test PKI with the ``openssl`` CLI (``cryptography`` is not a dependency)."""
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-sha256",
        "-subj", "/CN=ticketd test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    # clientAuth too: a TLS replica presents the server certificate to its master.
    _leaf(directory, "server", "localhost", "IP:127.0.0.1,DNS:localhost", "serverAuth,clientAuth")
    _leaf(directory, "wrong", "redis.other.invalid", "DNS:redis.other.invalid", "serverAuth")
    _leaf(directory, "client", "ticketd-client", "DNS:ticketd-client", "clientAuth")
    return Certificates(directory)


class TlsRedisServer(RedisServer):
    """``redis-server`` listening on a TLS port only (the plain port is disabled)."""

    def __init__(
        self,
        certs: Certificates,
        *args: str,
        cert: str | None = None,
        key: str | None = None,
        auth_clients: str = "optional",
    ) -> None:
        self.certs = certs
        self.tls_port = free_port()
        super().__init__(
            "--port", "0",  # overrides RedisServer's --port: TLS only
            "--tls-port", str(self.tls_port),
            "--tls-cert-file", cert or certs.server_cert,
            "--tls-key-file", key or certs.server_key,
            "--tls-ca-cert-file", certs.ca,
            "--tls-auth-clients", auth_clients,
            "--tls-replication", "yes",  # a replica reaches its master over TLS
            *args,
        )  # fmt: skip

    @property
    def address(self) -> int:
        return self.tls_port

    @property
    def url(self) -> str:
        return f"rediss://{LOCALHOST}:{self.tls_port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(
            host=LOCALHOST,
            port=self.tls_port,
            ssl=True,
            ssl_ca_certs=self.certs.ca,
            ssl_certfile=self.certs.client_cert,
            ssl_keyfile=self.certs.client_key,
            ssl_check_hostname=False,  # readiness only; the tests check hostnames
            socket_timeout=1,
        )

    def wait_ready(self, timeout: float = 10.0) -> None:
        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"redis-server (TLS) exited with {code}")
            with self.client() as client:
                return bool(client.ping())

        wait_for(ready, timeout=timeout, what="redis-server to accept TLS connections")


def _tls_supported(binary: str) -> bool:
    """Debian's redis-server is built with TLS; a build without it exits on ``tls-port``."""
    process = subprocess.Popen(
        [binary, "--port", str(free_port()), "--tls-port", "0", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        process.wait(timeout=1)
    except subprocess.TimeoutExpired:
        return True  # still running: the option was accepted
    finally:
        _stop(process)
    return process.returncode == 0


@contextmanager
def tls_certificates() -> Iterator[Certificates]:
    """Fresh certificates in a temporary directory, removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="ticketd-tls-"))
    try:
        yield make_certificates(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def redis_tls(
    *, auth_clients: str = "optional", wrong_name: bool = False
) -> Iterator[TlsRedisServer]:
    """A TLS-only redis-server with fresh certificates in a temporary directory."""
    binary = redis_binary("redis-server")
    with ExitStack() as stack:
        certs = stack.enter_context(tls_certificates())
        server = TlsRedisServer(
            certs,
            cert=certs.wrong_name_cert if wrong_name else None,
            key=certs.wrong_name_key if wrong_name else None,
            auth_clients=auth_clients,
        )
        stack.callback(server.close)
        try:
            server.start()
        except RuntimeError:
            if not _tls_supported(binary):
                pytest.skip("this redis-server was built without TLS (BUILD_TLS=yes)")
            raise
        yield server
