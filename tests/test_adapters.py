"""Adapters import with their framework installed, and fail with the extra to install without it."""

from __future__ import annotations

import importlib
import sys

import pytest

from redkit import MissingDependencyError

ADAPTERS = [
    ("redkit_flask", "flask"),
    ("redkit_django", "django"),
    ("redkit_starlette", "starlette"),
]


@pytest.mark.parametrize(("module", "framework"), ADAPTERS)
def test_adapter_imports(module: str, framework: str) -> None:
    assert importlib.import_module(module).__doc__


@pytest.mark.parametrize(("module", "framework"), ADAPTERS)
def test_missing_framework_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, framework: str
) -> None:
    monkeypatch.setitem(sys.modules, framework, None)  # makes "import framework" fail
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(MissingDependencyError, match=rf'pip install "redkit\[{framework}\]"'):
        importlib.import_module(module)
