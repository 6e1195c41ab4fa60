"""The ticketd HTTP service (needs the ``server`` extra).

``create_app(settings)`` builds the FastAPI application; ``ticketd serve`` runs it.
Nothing here reads the environment at import time.

Without the extra this package still imports (the ``ticketd`` command lives in
:mod:`ticketd.service.cli`, and ``ticketd audit`` needs no server); using any of its
names then raises ``ImportError`` with the ``pip install`` line.
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import prometheus_client  # noqa: F401
    import pydantic_settings  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    _MISSING: ImportError | None = ImportError(
        f"ticketd.service needs the server extra ({exc.name} is missing): "
        "pip install 'ticketd[server]'"
    )
else:
    _MISSING = None

if _MISSING is None:
    from .app import create_app
    from .settings import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Settings", "create_app", "load_settings"]


def __getattr__(name: str) -> object:  # pragma: no cover - only without the server extra
    if name in __all__ and _MISSING is not None:
        raise _MISSING
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
