"""The test project's URLs: each test module that needs views includes its own."""

from __future__ import annotations

from typing import Any

urlpatterns: list[Any] = []
