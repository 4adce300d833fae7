"""The example shop, for ``flask --app shop run`` and ``flask --app shop redkit worker`` in this
directory. Its code, Flask and Flask-SQLAlchemy with every feature of redkit's Flask extension,
is ``packages/core/redkit/demo/shop.py`` (``redkit.demo.shop``); see README.md here.
"""

from redkit.demo.shop import (
    Order,
    User,
    bp,
    build_report,
    create_app,
    db,
    kit,
    receipts,
    send_receipt,
)

__all__ = [
    "Order",
    "User",
    "bp",
    "build_report",
    "create_app",
    "db",
    "kit",
    "receipts",
    "send_receipt",
]
