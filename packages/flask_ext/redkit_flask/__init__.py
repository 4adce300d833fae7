"""redkit for Flask: ``pip install "redkit[flask]"``.

The adapter is thin: it reads Flask's own settings and registers hooks; all logic lives in
``redkit``. Its features arrive with the Flask adapter work (see the project's ``docs/``).
"""

from __future__ import annotations

from redkit.optional import require

require("flask", "flask")

__all__: list[str] = []
