"""``python -m ticketd.audit ARGS`` is ``ticketd audit ARGS``."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
