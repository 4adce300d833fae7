"""redkit for Starlette: ``pip install "redkit[starlette]"``.

The adapter is thin: it reads Starlette's own settings and registers hooks; all logic lives in
``redkit``. Its features arrive with the Starlette adapter work (see the project's ``docs/``).
"""

from __future__ import annotations

try:
    import starlette as _framework  # noqa: F401
except ImportError:  # pragma: no cover - exercised by tests/test_adapters.py
    from redkit.errors import MissingDependencyError

    raise MissingDependencyError("starlette", "starlette") from None

__all__: list[str] = []
