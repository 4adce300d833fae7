"""redkit for Django: ``pip install "redkit[django]"``.

The adapter is thin: it reads Django's own settings and registers hooks; all logic lives in
``redkit``. Its features arrive with the Django adapter work (see the project's ``docs/``).
"""

from __future__ import annotations

try:
    import django as _framework  # noqa: F401
except ImportError:  # pragma: no cover - exercised by tests/test_adapters.py
    from redkit.errors import MissingDependencyError

    raise MissingDependencyError("django", "django") from None

__all__: list[str] = []
