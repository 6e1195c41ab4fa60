"""What one mint is, as data: :class:`MintPlan` (sans-I/O).

A mint, once its checks passed, is one round trip: the limit counters (one script
call per counter key, IP first) and the ticket's ``SET``. The plan lists those
commands, reads their replies into a verdict, and knows its undo: on a refusal the
record is deleted again and the attempt taken back from the subject counters that
counted it. The handler sends what the plan lists and nothing else; no reply index
exists outside this class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..batching import Command
from ..exceptions import StoreOperation, StoreUnavailable
from ..issuer import PreparedTicket
from .ratelimit import Counter, Limited

__all__ = ["MintPlan"]


@dataclass(slots=True)
class MintPlan:
    """The counters of one mint attempt and, with a verified subject, its ticket.

    ``ticket`` is ``None`` when the cookie did not verify: only the IP counter is
    sent, and a pass means "unauthenticated", not a ticket.
    """

    counters: tuple[Counter, ...]
    ticket: PreparedTicket | None
    _counted: list[Counter] = field(default_factory=list)
    _refused: bool = False

    @property
    def commands(self) -> list[Command]:
        """Every command of the round trip: the counters in order, then the ``SET``."""
        commands = [counter.command() for counter in self.counters]
        if self.ticket is not None:
            t = self.ticket
            commands.append(("SET", t.key, t.record, "PX", t.ttl_ms, "NX"))
        return commands

    def read(self, replies: Sequence[Any]) -> Limited | None:
        """The first limit that refuses (``None``: the ticket is stored and may be handed out).

        Raises :class:`StoreUnavailable` for an error reply (the undo still applies)
        or a ``SET`` that stored nothing.
        """
        self._counted = []
        refusal: Limited | None = None
        error: BaseException | None = None
        for counter, reply in zip(self.counters, replies, strict=False):
            if isinstance(reply, Exception):
                error = error or reply
                continue
            verdict = counter.verdict(reply)
            if verdict is None:
                self._counted.append(counter)
            elif refusal is None:
                refusal = verdict
        if self.ticket is not None:
            stored = replies[len(self.counters)]
            if isinstance(stored, Exception):
                error = error or stored
            elif not stored:
                error = error or StoreUnavailable(
                    "mint failed: key already exists", operation=StoreOperation.MINT
                )
        self._refused = refusal is not None or error is not None
        if error is not None:
            if isinstance(error, StoreUnavailable):
                raise error
            raise StoreUnavailable.from_error(StoreOperation.MINT, error) from error
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
