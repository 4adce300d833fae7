"""Cache tags invalidated from model signals, after the transaction commits."""

from __future__ import annotations


def connect() -> None:
    """Connect the model-signal receivers (called by the app's ``ready()``)."""
