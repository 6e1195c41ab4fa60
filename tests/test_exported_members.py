"""The public API of ``ticketd`` is exactly what ``__all__`` says."""

from __future__ import annotations

import types

import ticketd


def test_all_names_exist() -> None:
    for name in ticketd.__all__:
        assert hasattr(ticketd, name), name


def test_public_names_are_pinned() -> None:
    public = {
        name
        for name in dir(ticketd)
        if not name.startswith("_") and not isinstance(getattr(ticketd, name), types.ModuleType)
    }
    assert public - {"annotations"} == set(ticketd.__all__) - {"__version__"}
    assert set(ticketd.__all__) == {
        "REJECTION_STATUS", "BlockingTicketStore", "BlockingTicketVerifier", "Claims",
        "InvalidOrigin", "IssuedTicket", "OriginAllowlist", "PresentedTicket", "Reason",
        "RedisOptions", "StoreUnavailable", "TicketError", "TicketIssuer", "TicketRejected",
        "TicketStore", "TicketVerifier", "__version__", "canonical_origin", "extract_ticket",
        "is_websocket_upgrade", "request_origin",
    }  # fmt: skip
