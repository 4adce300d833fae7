"""redkit for Django: ``pip install "redkit[django]"``.

The adapter is thin: it reads Django's own settings and registers hooks; all logic lives in
``redkit``. Its features arrive with the Django adapter work (see the project's ``docs/``).
"""

from __future__ import annotations

from redkit.web import require

require("django", "django")

__all__: list[str] = []
