"""Framework adapters: each returns its framework's own hook, all with one rejection mapping.

===========================================  ==========================================
module                                       hook
===========================================  ==========================================
:mod:`ticketd.integrations.websockets`       ``process_request`` for ``websockets.asyncio``
:mod:`ticketd.integrations.websockets_sync`  ``process_request`` for ``websockets.sync``
:mod:`ticketd.integrations.asgi`             ASGI middleware (Starlette, FastAPI, any server)
:mod:`ticketd.integrations.starlette`        per-route FastAPI/Starlette dependency
:mod:`ticketd.integrations.aiohttp`          ``check_ticket(request, verifier)``
:mod:`ticketd.integrations.channels`         Django Channels middleware stack
===========================================  ==========================================

Every adapter refuses non-upgrade requests (400) and missing, duplicate or
malformed tickets (401/400) without touching the store, redeems with the single
Origin header, answers :data:`~ticketd.REJECTION_STATUS` or 503 with
``Retry-After: 1``, and sends the browser only ``ticket rejected``. Reasons are
logged on ``ticketd.integrations`` with a short hash of the ticket.

Nothing here is imported by ``import ticketd``; each module needs its framework
(``pip install 'ticketd[websockets]'``, ``[aiohttp]``, ``[channels]``, ``[server]``).
Pair them with :func:`ticketd.redaction.install_redaction` so servers' own access
logs do not keep tickets.
"""

__all__: list[str] = []
