"""What one mint is, as data: :class:`MintPlan` (sans-I/O).

A mint, once its local checks passed, is one round trip: the revocation state read
of the login (one ``MGET``, all keys under the hash tag ``{S}``), the limit counters
(one script call for the IP's and the subject's, one per key on Cluster; IP first)
and the ticket's ``SET``. The plan lists those commands, reads their replies into a
verdict in the order of the checks (a revoked login first, then the limits), and
knows its undo: on a refusal the record is deleted again and the attempt taken back
from the subject counters that counted it. The handler sends what the plan lists
and nothing else; no reply index exists outside this class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..batching import Command
from ..exceptions import StoreOperation, StoreUnavailable
from ..issuer import PreparedTicket
from ..revoker import StateRead
from .ratelimit import Counter, CounterPair, Limited

__all__ = ["MintPlan", "Revoked"]


@dataclass(frozen=True, slots=True)
class Revoked:
    """The plan's verdict when the login the ticket is minted from was revoked."""


@dataclass(slots=True)
class MintPlan:
    """The counters of one mint attempt and, with a verified subject, its ticket.

    ``ticket`` is ``None`` when the cookie did not verify: only the IP counter is
    sent, and a pass means "unauthenticated", not a ticket. ``revocation`` is the
    state read of the ticket's login (``None``: nothing to check).
    """

    counters: tuple[Counter | CounterPair, ...]
    ticket: PreparedTicket | None
    revocation: StateRead | None = None
    _counted: list[Counter | CounterPair] = field(default_factory=list)
    _refused: bool = False

    @property
    def commands(self) -> list[Command]:
        """Every command of the round trip: the state read, the counters in order, the ``SET``."""
        commands = [self.revocation.command] if self.revocation is not None else []
        commands += [counter.command() for counter in self.counters]
        if self.ticket is not None:
            t = self.ticket
            commands.append(("SET", t.key, t.record, "PX", t.ttl_ms, "NX"))
        return commands

    def read(self, replies: Sequence[Any]) -> Limited | Revoked | None:
        """The refusal, in the order of the checks: :class:`Revoked`, then the first limit
        that refuses (``None``: the ticket is stored and may be handed out).

        Raises :class:`StoreUnavailable` for an error reply (the undo still applies)
        or a ``SET`` that stored nothing.
        """
        replies = list(replies)
        revoked = False
        errors: list[BaseException] = []
        if self.revocation is not None:
            state = replies.pop(0)
            if isinstance(state, Exception):
                errors.append(state)
            else:
                revoked = self.revocation.revoked(state)
        refusal = self._read_counters(replies, errors)
        if self.ticket is not None:
            stored = replies[len(self.counters)]
            if isinstance(stored, Exception):
                errors.append(stored)
            elif not stored:
                errors.append(
                    StoreUnavailable(
                        "mint failed: key already exists", operation=StoreOperation.MINT
                    )
                )
        self._refused = revoked or refusal is not None or bool(errors)
        if errors:
            if isinstance(errors[0], StoreUnavailable):
                raise errors[0]
            raise StoreUnavailable.from_error(StoreOperation.MINT, errors[0]) from errors[0]
        return Revoked() if revoked else refusal

    def _read_counters(self, replies: Sequence[Any], errors: list[BaseException]) -> Limited | None:
        self._counted = []
        refusal: Limited | None = None
        for counter, reply in zip(self.counters, replies, strict=False):
            if isinstance(reply, Exception):
                errors.append(reply)
                continue
            verdict = counter.verdict(reply)
            if verdict is None:
                self._counted.append(counter)
            elif refusal is None:
                refusal = verdict
        return refusal

    def undo(self) -> list[Command]:
        """After a refusal (or an error reply): what takes the attempt back. Empty otherwise.

        The record is deleted; subject counters that counted the attempt count it
        off again; the IP counter keeps it (every attempt counts against the IP).
        """
        if not self._refused:
            return []
        commands = [c.take_back() for c in self._counted if c.undoable]
        if self.ticket is not None:
            commands.append(("DEL", self.ticket.key))
        return commands
