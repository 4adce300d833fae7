"""``RedkitCache``'s async methods (``aget``, ``aset``, ...) are its sync methods awaited: with
``async``/``await`` taken away and the running loop's client read as the sync one, each is the
same code as its twin, so a fix made to one only fails here. The few written differently on
purpose are listed with the reason."""

from __future__ import annotations

import ast
from typing import Any

from redkit_django.cache import RedkitCache
from tests.core.test_twin_shells import methods_of

# async name -> sync name, beyond the leading "a"
RENAMES = {"_acache": "_cache", "_adrop": "_drop", "AsyncIterator": "Iterator"}
OWN_IO = {
    "get_or_set": "the async loader may be a coroutine function, awaited when it is",
    "lock": "the asyncio lock is the running loop's kit's",
    "iter_keys": "an async generator; django-redis' itersize has no meaning here",
    "delete_pattern": "django-redis' itersize and extra arguments are only on the sync one",
    "close": "nothing to close either way; the words differ",
}


def _sync_name(name: str) -> str:
    if name in RENAMES:
        return RENAMES[name]
    return name[1:] if name.startswith("a") and hasattr(RedkitCache, name[1:]) else name


class _Strip(ast.NodeTransformer):
    """An async method as its sync twin is written."""

    def visit_Await(self, node: ast.Await) -> Any:
        return self.visit(node.value)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> Any:
        self.generic_visit(node)
        fields = {f: getattr(node, f) for f in node._fields if hasattr(node, f)}
        fields["name"] = _sync_name(node.name)
        return ast.copy_location(ast.FunctionDef(**fields), node)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> Any:
        self.generic_visit(node)
        fields = {f: getattr(node, f) for f in node._fields if hasattr(node, f)}
        return ast.copy_location(ast.For(**fields), node)

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        self.generic_visit(node)
        if isinstance(node.value, ast.Name) and node.value.id == "self":
            node.attr = _sync_name(node.attr)
        return node

    def visit_Constant(self, node: ast.Constant) -> Any:
        if isinstance(node.value, str):  # string annotations
            node.value = RENAMES.get(node.value, node.value)
        return node


def _methods() -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    return methods_of(RedkitCache, {})


def _normal(node: ast.AST) -> str:
    return ast.dump(_Strip().visit(node), include_attributes=False)


def _pairs() -> list[tuple[str, str]]:
    methods = _methods()
    return [
        (name[1:], name)
        for name, node in methods.items()
        if name.startswith("a") and name[1:] in methods and name[1:] not in OWN_IO
    ]


def test_each_async_method_is_its_sync_twin_awaited() -> None:
    methods = _methods()
    pairs = _pairs()
    assert len(pairs) >= 19  # the check covers the API, not a handful
    drifted = [
        f"{sync} and {awaited} differ beyond async/await:\n  {ast.unparse(methods[sync])}\n  "
        f"{ast.unparse(methods[awaited])}"
        for sync, awaited in pairs
        if _normal(methods[sync]) != _normal(methods[awaited])
    ]
    assert drifted == [], "\n".join(drifted)


def test_every_sync_method_of_the_django_api_has_an_async_twin() -> None:
    methods = _methods()
    public = {n for n in methods if not n.startswith("_") and not n.startswith("a")}
    public |= {"add"}  # starts with "a" but is sync
    missing = sorted(n for n in public if "a" + n not in methods)
    # pexpire, expire_at, pexpire_at, keys: django-redis has no async forms of these either
    assert missing == ["expire_at", "keys", "pexpire", "pexpire_at"]
    assert set(OWN_IO) <= set(methods)


def test_the_check_sees_a_drift() -> None:
    """Not vacuous: an async method whose code differs from its twin is seen."""
    sync = ast.parse("def get(self, key):\n    return self._cache().get(self.key(key))\n")
    same = ast.parse(
        "async def aget(self, key):\n    return await self._acache().get(self.key(key))\n"
    )
    other = ast.parse("async def aget(self, key):\n    return await self._acache().get(key)\n")
    assert _normal(sync.body[0]) == _normal(same.body[0])
    assert _normal(sync.body[0]) != _normal(other.body[0])
