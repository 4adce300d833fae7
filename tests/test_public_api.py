"""The public surface: which modules are public, what each exports, and who may import what.

Public modules have no leading underscore in their dotted path; each declares a sorted
``__all__`` whose every name exists. The adapters (``packages/*_ext``) and redkit's own public
entry points used by them import public names only, so an internal module can be reshaped
without breaking an adapter.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import redkit

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = [
    "redkit",
    "redkit.asyncio",
    "redkit.cache",
    "redkit.dashboard",
    "redkit.errors",
    "redkit.idempotency",
    "redkit.lock",
    "redkit.messaging",
    "redkit.metrics",
    "redkit.queue",
    "redkit.queue.outbox",
    "redkit.ratelimit",
    "redkit.serializers",
    "redkit.sessions",
    "redkit.settings",
    "redkit.web",
]


def _sort_key(name: str) -> tuple[int, str]:
    # the order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions
    if name.isupper() or re.fullmatch(r"[A-Z0-9_]+", name):
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def _is_private(dotted: str) -> bool:
    return any(part.startswith("_") and part != "__init__" for part in dotted.split("."))


def test_every_module_is_either_listed_public_or_private() -> None:
    # a new module must choose: a public name (and a place in PUBLIC) or a leading underscore
    found = []
    for info in pkgutil.walk_packages(redkit.__path__, "redkit."):
        name = info.name
        if _is_private(name) or name.startswith(("redkit.demo", "redkit.scripts")):
            continue
        if name.startswith("redkit.messaging.") or name.startswith("redkit.idempotency."):
            raise AssertionError(f"{name}: a module inside a public package must be private")
        found.append(name)
    extra = sorted(
        set(found) - set(PUBLIC) - {"redkit.cli", "redkit.sqlalchemy", "redkit.__main__"}
    )
    assert extra == [], f"public modules without a decision: {extra}"


@pytest.mark.parametrize("module", PUBLIC)
def test_all_is_sorted_and_resolves(module: str) -> None:
    mod = importlib.import_module(module)
    names = list(mod.__all__)
    assert names == sorted(names, key=_sort_key), f"{module}.__all__ is not sorted"
    assert len(names) == len(set(names)), f"{module}.__all__ repeats a name"
    missing = [n for n in names if not hasattr(mod, n)]
    assert missing == [], f"{module}.__all__ names what it does not define: {missing}"
    private = [n for n in names if n.startswith("_") and n != "__version__"]
    assert private == [], f"{module}.__all__ exports private names: {private}"


def test_top_level_exports_the_main_classes_and_their_async_twins() -> None:
    import redkit.asyncio

    assert redkit.AsyncRedkit is redkit.asyncio.Redkit
    for name in ("Cache", "Queue", "Job", "Task", "Lock", "Limiter", "PubSub", "Stream"):
        assert name in redkit.__all__
        assert f"Async{name}" in redkit.__all__
        assert getattr(redkit.asyncio, f"Async{name}") is getattr(redkit, f"Async{name}")
    assert "Worker" in redkit.__all__
    # every error class is reachable from the top level
    import redkit.errors as errors

    for name in errors.__all__:
        assert getattr(redkit, name) is getattr(errors, name)


def test_clients_call_themselves_by_their_public_names() -> None:
    import redkit.asyncio

    sync = redkit.Redkit.from_url("memory://", prefix="p")
    try:
        assert repr(sync) == "<redkit.Redkit url='memory://' prefix='p'>"
    finally:
        sync.close()
    assert redkit.asyncio.Redkit._public_name == "redkit.AsyncRedkit"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def test_adapters_import_only_public_names() -> None:
    files = sorted((ROOT / "packages").glob("*_ext/**/*.py"))
    assert files, "no adapter modules found"
    bad = []
    for path in files:
        for lineno, dotted in _imports(path):
            if dotted.split(".")[0] == "redkit" and _is_private(dotted):
                bad.append(f"{path.relative_to(ROOT)}:{lineno} imports {dotted}")
    assert bad == [], "\n".join(bad)


def test_the_checker_sees_a_private_import(tmp_path: Path) -> None:
    # the guard above is only worth something if it can fail
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from redkit._ops import Batch\nfrom redkit.cache import _core\nimport redkit.web\n"
    )
    flagged = [d for _, d in _imports(sample) if _is_private(d)]
    assert flagged == ["redkit._ops", "redkit._ops.Batch", "redkit.cache._core"]
