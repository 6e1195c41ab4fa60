"""The ``Host`` check every adapter runs before looking for a ticket (``allowed_hosts=``).

A refused host never reaches the ticket code: nothing is extracted, nothing burned.
The browser gets a fixed body; the reason goes to the ``ticketd.integrations`` _logger.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from ..handshake import HeaderPairs, header_values
from ..hosts import DUPLICATE_HOST, HostAllowlist, check_host
from ._common import Denied

__all__ = ["HOST_DENIAL_BODY", "HOST_STATUS", "HostDenied", "allowlist_of", "refuse_host"]

_logger = logging.getLogger("ticketd.integrations")

HOST_DENIAL_BODY = "host not allowed\n"
HOST_STATUS = {"host_not_allowed": 421, DUPLICATE_HOST: 400}
"""421 Misdirected Request: this server does not answer for that name."""


@dataclass(frozen=True, slots=True)
class HostDenied(Denied):
    """A handshake refused for its ``Host`` header (before any ticket was looked at)."""

    @property
    def close_code(self) -> int:
        return 1008  # policy violation


def allowlist_of(allowed_hosts: Iterable[str] | HostAllowlist | None) -> HostAllowlist | None:
    """An adapter's ``allowed_hosts=`` argument as an allowlist (parsed once, at set-up)."""
    if allowed_hosts is None or isinstance(allowed_hosts, HostAllowlist):
        return allowed_hosts
    if isinstance(allowed_hosts, str):
        allowed_hosts = [allowed_hosts]
    return HostAllowlist(allowed_hosts)


def refuse_host(headers: HeaderPairs, allowlist: HostAllowlist | None) -> HostDenied | None:
    """The refusal for a handshake's ``Host`` headers, or ``None`` to go on."""
    refusal = check_host(header_values(headers, "host"), allowlist)
    if refusal is None:
        return None
    _logger.info("websocket handshake refused code=%s", refusal)
    return HostDenied(status=HOST_STATUS[refusal], reason=None, body=HOST_DENIAL_BODY)
