"""Print the service's OpenAPI document (``make openapi`` writes ``openapi/openapi.json``)."""

from __future__ import annotations

import json
from typing import Any

from .app import create_app
from .settings import build_settings

__all__ = ["render", "spec"]

# Values only to build the app; the spec does not depend on them.
_SPEC_SETTINGS = {
    "allowed_origins": "https://app.invalid",
    "session_secret": "spec-generation-only-0123456789abcdefghijklmnop",
}


def spec() -> dict[str, Any]:
    return create_app(build_settings(_SPEC_SETTINGS)).openapi()


def render() -> str:
    return json.dumps(spec(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(render(), end="")
