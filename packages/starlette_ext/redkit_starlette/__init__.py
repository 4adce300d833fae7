"""redkit for Starlette: ``pip install "redkit[starlette]"``.

The adapter is thin: it reads Starlette's own settings and registers hooks; all logic lives in
``redkit``. Its features arrive with the Starlette adapter work (see the project's ``docs/``).
"""

from __future__ import annotations

from redkit.web import require

require("starlette", "starlette")

__all__: list[str] = []
