"""Models of the adapter's tests."""

from __future__ import annotations
