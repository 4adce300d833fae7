"""redkit for Starlette and FastAPI: ``pip install "redkit[starlette]"`` (FastAPI is Starlette
underneath: ``redkit[fastapi]`` pulls it too).

``rk = redkit_starlette.Redkit(url, **settings)`` wires everything: ``lifespan=rk.lifespan``
opens each application's :class:`redkit.asyncio.Redkit` (``app.state.redkit``, or
:func:`get_kit`), runs its in-process workers and closes its pools on shutdown. The adapter is
glue over :mod:`redkit.web`, where every rule lives; nothing in it blocks the event loop.
"""

from __future__ import annotations

from redkit.web import require

require("starlette", "starlette")

from ._depends import Refused  # noqa: E402
from ._kit import STATE_NAME, Redkit, get_kit  # noqa: E402
from ._middleware import (  # noqa: E402
    CacheMiddleware,
    IdempotencyMiddleware,
    RateLimitMiddleware,
)
from ._sessions import SessionMiddleware, regenerate_session  # noqa: E402

__all__ = [
    "STATE_NAME",
    "CacheMiddleware",
    "IdempotencyMiddleware",
    "RateLimitMiddleware",
    "Redkit",
    "Refused",
    "SessionMiddleware",
    "get_kit",
    "regenerate_session",
]
