"""Edge tier: a caching reverse proxy (RFC 9111 shared cache) with surrogate-key purges.

Imports are lazy: `import madbwpu_r.edge` loads neither the app nor uvicorn's protocols.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from madbwpu_r.edge.app import EdgeApp, create_app
    from madbwpu_r.edge.config import EdgeConfig

__all__ = ["EdgeApp", "EdgeConfig", "create_app"]

_WHERE = {"EdgeApp": "app", "create_app": "app", "EdgeConfig": "config"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
