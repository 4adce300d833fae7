"""The example shop on FastAPI, for ``uvicorn app:app`` in this directory. Its code, FastAPI
and async SQLAlchemy with every feature of redkit's Starlette/FastAPI adapter, is
``packages/core/redkit/demo/fastapi_shop.py`` (``redkit.demo.fastapi_shop``); see README.md here.
"""

from redkit.demo.fastapi_shop import Order, Sessions, User, app, create_app, receipts, rk

__all__ = ["Order", "Sessions", "User", "app", "create_app", "receipts", "rk"]
