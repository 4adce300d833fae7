"""System checks of ``manage.py check``."""

from __future__ import annotations


def register() -> None:
    """Register redkit's checks with Django's check framework."""
