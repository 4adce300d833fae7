"""The sync and async shells (the clients, the cache and its cached functions, sessions, the
limiter, locks, pub/sub, subscriptions, streams, idempotency records and guards) hold no logic of
their own: each method of one is the other's with ``async``/``await`` taken away
(the logic lives in the shared cores and flows). A method that drifts fails here, unless it is
one of the few whose I/O is really different (threads against tasks, locks, lazy starts)."""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any

import pytest

import redkit
from redkit import (
    AsyncCache,
    AsyncCachedFunction,
    AsyncLimiter,
    AsyncLock,
    AsyncPubSub,
    AsyncRedkit,
    AsyncSessions,
    AsyncStream,
    Cache,
    CachedFunction,
    Limiter,
    Lock,
    PubSub,
    Sessions,
    Stream,
)
from redkit.idempotency import AsyncGuard, AsyncIdempotency, Guard, Idempotency
from redkit.messaging import AsyncSubscription, Subscription

# async name -> sync name, for methods, classes and exceptions
RENAMES = {
    "aclose": "close",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "StopAsyncIteration": "StopIteration",
    "AsyncExecutor": "SyncExecutor",
    "AsyncCache": "Cache",
    "AsyncCachedFunction": "CachedFunction",
    "AsyncLimiter": "Limiter",
    "AsyncLock": "Lock",
    "AsyncQueue": "Queue",
    "AsyncIterator": "Iterator",
    "AsyncSessions": "Sessions",
    "AsyncGuard": "Guard",
    "AsyncIdempotency": "Idempotency",
    "AsyncPubSub": "PubSub",
    "AsyncStream": "Stream",
    "AsyncSubscription": "Subscription",
}

# (sync class, async class, methods whose I/O differs and that are written twice on purpose)
PAIRS: list[tuple[type, type, set[str]]] = [
    (redkit.Redkit, AsyncRedkit, {"__init__"}),  # each builds its own kind of client
    # each refuses the other's kind of function and makes its own kind of writer
    (Cache, AsyncCache, {"cached", "write_behind", "write_through"}),
    (CachedFunction, AsyncCachedFunction, {"__call__"}),  # its loader is a function of its kind
    (Sessions, AsyncSessions, set()),
    (Limiter, AsyncLimiter, set()),
    (Lock, AsyncLock, {"acquire", "release"}),  # a renewal thread against a renewal task
    (PubSub, AsyncPubSub, {"__init__", "subscribe"}),  # a thread lock; a lazy start
    # the two drivers; the async one also starts lazily (when entered, awaited or first read)
    (
        Subscription,
        AsyncSubscription,
        {"__init__", "_drive", "_do", "_started", "_await", "__await__"},
    ),
    (Stream, AsyncStream, set()),
    (Idempotency, AsyncIdempotency, {"guard"}),  # a guard begun at once; one begun lazily
    # a thread against a task; the async guard begins lazily
    (
        Guard,
        AsyncGuard,
        {
            "__init__",
            "__enter__",
            "_stop_renewing",
            "_keep_alive",
            "_start",
            "__await__",
            "__getattr__",
        },
    ),
]


class _Strip(ast.NodeTransformer):
    """An async method as its sync twin would be written."""

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> Any:
        self.generic_visit(node)
        node.name = RENAMES.get(node.name, node.name)
        return ast.FunctionDef(**{f: getattr(node, f) for f in node._fields})

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        self.generic_visit(node)
        node.name = RENAMES.get(node.name, node.name)
        return node

    def visit_Await(self, node: ast.Await) -> Any:
        return self.visit(node.value)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> Any:
        self.generic_visit(node)
        return ast.For(**{f: getattr(node, f) for f in node._fields})

    def visit_AsyncWith(self, node: ast.AsyncWith) -> Any:
        self.generic_visit(node)
        return ast.With(**{f: getattr(node, f) for f in node._fields})

    def visit_Expr(self, node: ast.Expr) -> Any:
        # the async shells start lazily: ``await self._started()`` has no sync counterpart
        value = node.value
        if isinstance(value, ast.Await) and ast.unparse(value.value) == "self._started()":
            return None
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> Any:
        node.id = RENAMES.get(node.id, node.id)
        return node

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        self.generic_visit(node)
        node.attr = RENAMES.get(node.attr, node.attr)
        return node

    def visit_Constant(self, node: ast.Constant) -> Any:
        if isinstance(node.value, str):  # string annotations (from __future__ import annotations)
            node.value = RENAMES.get(node.value, node.value)
        return node


def methods_of(
    cls: type, renames: dict[str, str] = RENAMES
) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """The methods ``cls`` defines, by name (``renames`` applied), without their docstrings."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0]
    assert isinstance(body, ast.ClassDef)
    out = {}
    for node in body.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if ast.get_docstring(node) is not None:
                node.body = node.body[1:] or [ast.Pass()]  # the words may differ, not the code
            out[renames.get(node.name, node.name)] = node
    return out


def _normal(node: ast.AST) -> str:
    return ast.dump(_Strip().visit(node), include_attributes=False)


@pytest.mark.parametrize(("sync", "async_", "own_io"), PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_each_shell_method_is_its_twin_without_await(
    sync: type, async_: type, own_io: set[str]
) -> None:
    plain, awaited = methods_of(sync), methods_of(async_)
    assert own_io <= set(plain) | set(awaited), "a listed exception names no method"
    drifted = []
    for name in sorted(set(plain) & set(awaited) - own_io):
        left, right = _normal(plain[name]), _normal(awaited[name])
        if left != right:
            drifted.append(
                f"{sync.__name__}.{name} and {async_.__name__}.{name} differ beyond async/await:"
                f"\n  {ast.unparse(plain[name])}\n  {ast.unparse(awaited[name])}"
            )
    assert drifted == [], "\n".join(drifted)
    alone = (set(plain) ^ set(awaited)) - own_io
    assert alone == set(), f"methods without a twin: {sorted(alone)}"


def test_the_check_sees_a_drifted_method() -> None:
    # the guard above is only worth something if it can fail
    sync_src = "class A:\n    def m(self, x):\n        return self._x.run(self._core.m(x))\n"
    async_src = (
        "class B:\n    async def m(self, x):\n"
        "        return await self._x.run(self._core.m(x, 1))\n"
    )
    same_src = (
        "class C:\n    async def m(self, x):\n        return await self._x.run(self._core.m(x))\n"
    )
    a, b, c = (ast.parse(s).body[0] for s in (sync_src, async_src, same_src))
    assert isinstance(a, ast.ClassDef)
    assert isinstance(b, ast.ClassDef)
    assert isinstance(c, ast.ClassDef)
    assert _normal(a.body[0]) != _normal(b.body[0])
    assert _normal(a.body[0]) == _normal(c.body[0])
