"""Building Redis clients with timeouts that fail fast.

redis-py's defaults wait on a dead server for many seconds (no socket timeout,
retries with backoff). A ticket check sits on the path of a WebSocket handshake,
so ticketd sets explicit connect/read timeouts and, by default, **no command
retries**; :class:`~ticketd.store.TicketStore` adds an overall deadline on top.

Why no retries: redis-py retries a command by sending it again after a connection
error, without knowing whether the first copy ran. For ``GETDEL`` that is wrong in
a quiet way: if the reply was lost after Redis deleted the ticket, the second
``GETDEL`` finds nothing and a store failure (503) turns into "invalid ticket"
(401). Stale pooled connections (Redis restarted) do not need a retry: the pool
checks a connection before handing it out and reconnects it then.

One :class:`RedisOptions` describes standalone (``redis://``, ``rediss://``,
``unix://``), Sentinel and Cluster deployments; the verifier and the service
take the same options.

With hiredis installed (the ``server`` extra), the asyncio clients (standalone and
Sentinel) pack commands with its C packer, as redis-py's blocking client already
does: redis-py's asyncio connections pack each argument in Python, which was the
largest single cost of a mint's four commands (``python -m bench.instructions``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:
    import hiredis

    _HIREDIS = True
except ImportError:  # pragma: no cover - the core does not need it
    _HIREDIS = False

__all__ = [
    "RedisOptions",
    "async_client",
    "client_address",
    "client_kwargs",
    "client_socket_timeout",
    "sync_client",
]


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """Where Redis is and how long to wait for it."""

    url: str = "redis://127.0.0.1:6379/0"
    cluster: bool = False
    """Connect with the Cluster protocol (``url`` names any one node)."""
    sentinels: Sequence[tuple[str, int]] = ()
    """Sentinel addresses; when set, ``sentinel_service`` names the master to follow."""
    sentinel_service: str = "mymaster"
    connect_timeout: float = 0.5
    socket_timeout: float = 0.5
    retries: int = 0
    """Command retries after a connection error (see the module docstring before raising it).

    They apply to what goes through redis-py itself; what ticketd batches (the store's
    batched take, put and settle, the mint's round trip with its limits, revocation
    checks) goes out on :func:`ticketd.batching.exchange` for these clients, which never
    resends a batch."""
    ssl_ca_file: str | None = None
    ssl_cert_file: str | None = None
    ssl_key_file: str | None = None
    ssl_check_hostname: bool = True
    max_connections: int = 256
    extra: dict[str, Any] = field(default_factory=dict)
    """Further keyword arguments for the redis-py client (advanced)."""

    def client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": self.socket_timeout,
            "retry_on_error": [RedisConnectionError, RedisTimeoutError, ConnectionResetError],
        }
        if self.url.startswith("rediss://"):
            kwargs["ssl_check_hostname"] = self.ssl_check_hostname
            if self.ssl_ca_file:
                kwargs["ssl_ca_certs"] = self.ssl_ca_file
            if self.ssl_cert_file:
                kwargs["ssl_certfile"] = self.ssl_cert_file
            if self.ssl_key_file:
                kwargs["ssl_keyfile"] = self.ssl_key_file
        kwargs.update(self.extra)
        return kwargs


class _AsyncSentinelMaster(redis.asyncio.Redis):
    """A Sentinel-managed master client that also closes its sentinel connections.

    redis-py's ``Sentinel`` keeps one client per sentinel for master discovery, and
    the client ``master_for`` returns does not own them: closing it left those
    connections open (a ResourceWarning and a file descriptor per sentinel, for
    every verifier or service instance closed).
    """

    sentinel_clients: Sequence[Any] = ()

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            for client in self.sentinel_clients:
                await client.aclose()


class _HiredisPacking:
    """Mixed in before a ``redis.asyncio`` connection class: commands packed by hiredis.

    The same rules as redis-py's ``HiredisRespSerializer`` (its blocking client's
    packer): a command name with spaces (``"SCRIPT LOAD"``) is split, memoryviews
    and bytearrays become bytes, anything hiredis cannot pack is a ``DataError``.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        name = args[0]
        if isinstance(name, str):
            if " " in name:
                args = (*name.encode().split(), *args[1:])
        elif b" " in name:
            args = (*name.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            if not any(isinstance(arg, bytearray | memoryview) for arg in args):
                raise DataError(str(exc)) from exc
        # hiredis refuses buffers: only then is every argument looked at (not per command)
        args = tuple(bytes(a) if isinstance(a, bytearray | memoryview) else a for a in args)
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(str(exc)) from exc

    def pack_commands(self, commands: Any) -> list[bytes]:
        return [b"".join(self.pack_command(*command)[0] for command in commands)]


_PACKED: dict[type, type] = {}


def _with_hiredis_packing(client: Any) -> Any:
    """Make the client's pool build connections that pack commands with hiredis."""
    pool: Any = getattr(client, "connection_pool", None)
    base = getattr(pool, "connection_class", None)
    if not _HIREDIS or not isinstance(base, type) or issubclass(base, _HiredisPacking):
        return client
    packed = _PACKED.get(base)
    if packed is None:
        packed = _PACKED[base] = type(base.__name__, (_HiredisPacking, base), {})
    pool.connection_class = packed
    return client


class _SentinelMaster(redis.Redis):
    """The blocking counterpart of :class:`_AsyncSentinelMaster`."""

    sentinel_clients: Sequence[Any] = ()

    def close(self) -> None:
        try:
            super().close()
        finally:
            for client in self.sentinel_clients:
                client.close()


def _sentinel_tls(options: RedisOptions, kwargs: dict[str, Any]) -> None:
    """``rediss://`` with Sentinel: TLS to the master (the URL itself is never parsed).

    ``Redis.from_url`` turns ``rediss://`` into SSL connections, but Sentinel clients
    are built from keyword arguments: without ``ssl=True`` the ``ssl_*`` options went
    to a plain connection class, which refuses them (``TypeError`` on connect).
    The sentinels themselves are still reached without TLS.
    """
    if options.url.startswith("rediss://"):
        kwargs["ssl"] = True


def _backoff() -> ExponentialBackoff:
    return ExponentialBackoff(cap=0.05, base=0.01)


def async_client(options: RedisOptions) -> Any:
    """A ``redis.asyncio`` client (standalone, Sentinel master or Cluster)."""
    from redis.asyncio.retry import Retry

    kwargs = options.client_kwargs()
    if options.cluster:
        kwargs.pop("retry_on_error")
        return redis.asyncio.cluster.RedisCluster.from_url(
            options.url, retry=Retry(_backoff(), options.retries), **kwargs
        )
    kwargs["retry"] = Retry(_backoff(), options.retries)
    if options.sentinels:
        _sentinel_tls(options, kwargs)
        sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(options.sentinels),
            sentinel_kwargs={
                "socket_connect_timeout": options.connect_timeout,
                "socket_timeout": options.socket_timeout,
            },
            **_credentials(options.url),
            **kwargs,
        )
        master = sentinel.master_for(options.sentinel_service, redis_class=_AsyncSentinelMaster)
        master.sentinel_clients = list(sentinel.sentinels)
        return _with_hiredis_packing(master)
    return _with_hiredis_packing(
        redis.asyncio.Redis.from_url(options.url, max_connections=options.max_connections, **kwargs)
    )


def sync_client(options: RedisOptions) -> Any:
    """A blocking ``redis`` client with the same options, for sync servers."""
    from redis.retry import Retry

    kwargs = options.client_kwargs()
    if options.cluster:
        kwargs.pop("retry_on_error")
        return redis.cluster.RedisCluster.from_url(
            options.url, retry=Retry(_backoff(), options.retries), **kwargs
        )
    kwargs["retry"] = Retry(_backoff(), options.retries)
    if options.sentinels:
        _sentinel_tls(options, kwargs)
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(options.sentinels),
            sentinel_kwargs={
                "socket_connect_timeout": options.connect_timeout,
                "socket_timeout": options.socket_timeout,
            },
            **_credentials(options.url),
            **kwargs,
        )
        master = sentinel.master_for(  # type: ignore[no-untyped-call]
            options.sentinel_service, redis_class=_SentinelMaster
        )
        master.sentinel_clients = list(sentinel.sentinels)
        return master
    return redis.Redis.from_url(options.url, max_connections=options.max_connections, **kwargs)


def _credentials(url: str) -> dict[str, Any]:
    """Username, password and db from a URL, for Sentinel-managed masters."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    out: dict[str, Any] = {}
    if parts.username:
        out["username"] = unquote(parts.username)
    if parts.password:
        out["password"] = unquote(parts.password)
    db = parts.path.lstrip("/")
    if db.isdigit():
        out["db"] = int(db)
    return out


def client_kwargs(client: object) -> dict[str, Any] | None:
    """A redis-py client's connection keyword arguments (``None`` for fakeredis and doubles)."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None) or getattr(client, "connection_kwargs", None)
    if kwargs is None and callable(getattr(client, "get_connection_kwargs", None)):
        kwargs = client.getclient_kwargs()  # type: ignore[attr-defined]  # sync RedisCluster
    if type(client).__module__.startswith("fakeredis"):
        return None
    return kwargs if isinstance(kwargs, dict) else None


def client_address(client: object) -> str | None:
    """``host:port`` (or the socket path) the client talks to, for error messages."""
    kwargs = client_kwargs(client)
    if kwargs is None:
        return None
    if kwargs.get("path"):
        return str(kwargs["path"])
    if "host" in kwargs:
        return f"{kwargs['host']}:{kwargs.get('port', 6379)}"
    return None


def client_socket_timeout(client: object) -> float:
    """The client's socket (read) timeout in seconds, or infinity if it has none we can see.

    ``redis.asyncio.Redis`` (standalone and Sentinel) keeps it in its connection
    pool's ``connection_kwargs``; ``RedisCluster`` in its own ``connection_kwargs``.
    """
    kwargs = client_kwargs(client)
    timeout = kwargs.get("socket_timeout") if kwargs is not None else None
    return float(timeout) if isinstance(timeout, int | float) and timeout > 0 else float("inf")
