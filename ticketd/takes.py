"""The redeem's commands, and how to read their replies. Redis code, no state.

The take is one single-key command (:func:`take_command`): ``SET key tombstone XX GET
KEEPTTL``, which returns the record and leaves the tombstone (:mod:`ticketd.tombstones`),
or ``GETDEL`` without a tombstone. With ``wait_replicas`` it travels with a ``WAIT`` in
one pipeline on one connection (:func:`replicated_take`). :mod:`ticketd.store` sends
them; this module only builds them and checks the replies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .connection import client_socket_timeout
from .exceptions import StoreOperation, StoreUnavailable

__all__ = ["acknowledged", "as_bytes", "replicated_take", "take_command", "take_options"]


def take_command(key: str, tombstone: bytes | None) -> tuple[Any, ...]:
    """``SET key tombstone XX GET KEEPTTL`` (Redis 6.2+), or ``GETDEL key`` without one."""
    if tombstone is None:
        return ("GETDEL", key)
    return ("SET", key, tombstone, "XX", "GET", "KEEPTTL")


def take_options(command: tuple[Any, ...]) -> dict[str, Any]:
    """redis-py turns a ``SET`` reply into a bool unless told the command has ``GET``
    (``set(..., get=True)`` does it; a bare ``execute_command`` would lose the record)."""
    return {"get": True} if command[0] == "SET" else {}


def replicated_take(
    client: Any, command: tuple[Any, ...], wait_replicas: int, deadline: float
) -> Any:
    """A pipeline: the take (``SET ... XX GET KEEPTTL`` or ``GETDEL``), then WAIT on the
    same connection (one round trip).

    If fewer replicas than asked acknowledge the write before the deadline, the
    redeem fails closed: a failover could otherwise resurrect the ticket.

    ``WAIT`` counts acknowledgements of the last write *of its own connection*, so
    it must travel with the take:

    - on Cluster, a keyless ``WAIT`` would be routed to other nodes (and other
      connections), where it waits for nothing; it is pinned to the key's node,
      which puts it in that node's pipeline, on the take's connection;
    - its server-side timeout stays well under the client's socket timeout: a
      ``WAIT`` that blocks as long as the socket timeout races it, and the
      client's retry would then re-send the whole pipeline (a second take
      finds nothing), turning "not acknowledged" into "invalid ticket".
    """
    timeout_ms = max(1, int(min(deadline, client_socket_timeout(client)) * 1000) // 2)
    key = command[1]
    pipe = client.pipeline(transaction=False)
    pipe.execute_command(*command, **take_options(command))
    node_from_key = getattr(client, "get_node_from_key", None)
    if node_from_key is not None:  # RedisCluster
        pipe.execute_command("WAIT", wait_replicas, timeout_ms, target_nodes=node_from_key(key))
    else:
        pipe.execute_command("WAIT", wait_replicas, timeout_ms)
    return pipe


def acknowledged(replies: Sequence[Any], wait_replicas: int) -> bytes | None:
    """The take's value if enough replicas acknowledged the write, else fail closed."""
    value, acknowledged = replies
    if int(acknowledged) < wait_replicas:
        raise StoreUnavailable(
            f"redeem not acknowledged by {wait_replicas} replica(s) (got {int(acknowledged)})",
            operation=StoreOperation.REDEEM,
        )
    return as_bytes(value)


def as_bytes(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):  # a client created with decode_responses=True
        return value.encode("utf-8")
    raise StoreUnavailable("redeem failed: unexpected reply type", operation=StoreOperation.REDEEM)
