"""ticketd: short-lived, single-use, origin-bound connection tickets for WebSockets.

The verifier side is importable without FastAPI, pydantic or any WebSocket
framework::

    from ticketd import TicketVerifier, TicketRejected

    verifier = TicketVerifier.from_url("redis://localhost:6379/0", audience="chat", deadline=1.0)
    claims = await verifier.redeem(ticket, origin=request_origin)

The HTTP service lives in :mod:`ticketd.service` (``pip install 'ticketd[server]'``);
framework adapters in :mod:`ticketd.integrations`.
"""

from __future__ import annotations

from .connection import RedisOptions
from .exceptions import (
    REJECTION_STATUS,
    Detail,
    InvalidOrigin,
    InvalidSubject,
    Reason,
    StoreOperation,
    StoreUnavailable,
    TicketError,
    TicketRejected,
)
from .handshake import PresentedTicket, extract_ticket, is_websocket_upgrade, request_origin
from .issuer import IssuedTicket, TicketIssuer
from .origins import OriginAllowlist, canonical_origin
from .store import BlockingTicketStore, TicketStore
from .tickets import Claims
from .verifier import BlockingTicketVerifier, TicketVerifier

__version__ = "0.1.0"

__all__ = [
    "REJECTION_STATUS",
    "BlockingTicketStore",
    "BlockingTicketVerifier",
    "Claims",
    "Detail",
    "InvalidOrigin",
    "InvalidSubject",
    "IssuedTicket",
    "OriginAllowlist",
    "PresentedTicket",
    "Reason",
    "RedisOptions",
    "StoreOperation",
    "StoreUnavailable",
    "TicketError",
    "TicketIssuer",
    "TicketRejected",
    "TicketStore",
    "TicketVerifier",
    "__version__",
    "canonical_origin",
    "extract_ticket",
    "is_websocket_upgrade",
    "request_origin",
]
