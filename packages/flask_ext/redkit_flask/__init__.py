"""redkit for Flask: ``pip install "redkit[flask]"``.

The adapter is thin: it reads Flask's own settings and registers hooks; all logic lives in
``redkit``. Its features arrive with the Flask adapter work (see the project's ``docs/``).
"""

from __future__ import annotations

try:
    import flask as _framework  # noqa: F401
except ImportError:  # pragma: no cover - exercised by tests/test_adapters.py
    from redkit.errors import MissingDependencyError

    raise MissingDependencyError("flask", "flask") from None

__all__: list[str] = []
