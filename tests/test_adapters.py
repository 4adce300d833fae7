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


def test_memory_backend_and_msgpack_name_their_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    import redkit

    monkeypatch.setitem(sys.modules, "fakeredis", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "redkit\[memory\]"'):
        redkit.Redkit.from_url(f"memory://{uuid.uuid4().hex}")
    monkeypatch.setitem(sys.modules, "msgpack", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "redkit\[msgpack\]"'):
        redkit.Redkit.from_url("redis://127.0.0.1:1", serializer="msgpack")
