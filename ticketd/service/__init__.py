"""The ticketd HTTP service (needs the ``server`` extra).

``create_app(settings)`` builds the FastAPI application; ``ticketd serve`` runs it.
Nothing here reads the environment at import time.
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import prometheus_client  # noqa: F401
    import pydantic_settings  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        f"ticketd.service needs the server extra ({exc.name} is missing): "
        "pip install 'ticketd[server]'"
    ) from exc

from .app import create_app
from .settings import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Settings", "create_app", "load_settings"]
