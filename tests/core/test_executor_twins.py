"""The sync and the asyncio executor keep their send and pipeline paths as twins of one shape:
with ``async``/``await`` taken away (and ``asyncio.sleep`` read as ``time.sleep``), each
method below is the same code in both. A fix made to one twin only fails here."""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest

from redkit import _executor

TWINS = ["run", "call", "_send", "_one", "_load", "_pipeline", "_direct", "_exchange"]
RENAMED = {"asyncio.sleep": "time.sleep"}


class _Sync(ast.NodeTransformer):
    """An async function's tree as the sync code it mirrors."""

    def visit_Await(self, node: ast.Await) -> ast.AST:
        return self.visit(node.value)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        self.generic_visit(node)
        fields = {f: getattr(node, f) for f in node._fields if hasattr(node, f)}
        return ast.copy_location(ast.FunctionDef(**fields), node)

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        name = ast.unparse(node)
        if name in RENAMED:
            return ast.parse(RENAMED[name], mode="eval").body
        return node


def _code(cls: type, name: str) -> str:
    tree = ast.parse(textwrap.dedent(inspect.getsource(getattr(cls, name))))
    fn = tree.body[0]
    assert isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
    fn.body = [s for s in fn.body if not _is_docstring(s)]
    return ast.unparse(_Sync().visit(tree))


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)


@pytest.mark.parametrize("name", TWINS)
def test_the_async_twin_is_the_sync_code_awaited(name: str) -> None:
    sync, asyncio_ = _code(_executor.SyncExecutor, name), _code(_executor.AsyncExecutor, name)
    assert asyncio_ == sync
    assert inspect.iscoroutinefunction(getattr(_executor.AsyncExecutor, name))
    assert not inspect.iscoroutinefunction(getattr(_executor.SyncExecutor, name))


def test_the_check_sees_a_drift() -> None:
    """The comparison is not vacuous: two methods of different logic do not compare equal."""
    assert _code(_executor.SyncExecutor, "_one") != _code(_executor.AsyncExecutor, "_load")
    drifted = ast.parse(textwrap.dedent(inspect.getsource(_executor.AsyncExecutor._pipeline)))
    drifted.body[0].body.pop()  # type: ignore[attr-defined]
    assert ast.unparse(_Sync().visit(drifted)) != _code(_executor.SyncExecutor, "_pipeline")
