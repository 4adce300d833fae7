"""Every ```python block of README.md, CHANGELOG.md and docs/*.md runs, page by page, against
the test Redis.

A page is one test (``test_page[docs/cache.md]``). Its blocks run in order in one namespace (a
module of its own), so a block may use the names an earlier block of the page defined. Top-level
``await`` works: blocks are compiled with ``ast.PyCF_ALLOW_TOP_LEVEL_AWAIT`` and awaited on one
event loop per page. A failure names the page, the block's number and the line of the Markdown
file; tracebacks point at the file's own lines.

Where the clients go: while a page runs, ``redkit.Redkit.__init__`` and
``redkit.asyncio.Redkit.__init__`` are patched (``from_url``, ``from_env``, ``from_settings`` and
the Flask extension all construct through them) to rewrite the settings a block asks for:

- the prefix ``p`` becomes ``rktest-<random>-p``, one random part per page: every key is one the
  CI's ACL user (``~rktest-*``) may touch, and two prefixes of a page stay apart;
- a ``memory://``, ``unix://`` or ``redis://`` URL on the default port becomes ``REDIS_URL``.
  Other URLs are kept as written: the docs use them for clients that never reach a server
  (``redis://127.0.0.1:1``, where nothing listens; TLS, Sentinel and Cluster clients that are only
  built).

So ``kit.settings.prefix`` is not what a block wrote: a page that shows a prefix asserts it on a
``Settings`` object. ``sqlalchemy.create_engine`` is patched the same way: a ``postgresql`` URL
becomes ``DATABASE_URL``, in a schema of the page's own, dropped afterwards.

After each page, its clients are closed, every prefix it used is cleared, and then a ``SCAN`` of
``rktest-<random>-*`` must find nothing, and no thread the page started may still run.

The application's own names that a page uses without defining them (``load_user``, the models of
a Flask app) come from ``SETUP``: small snippets, per page, run before the block of a given number.

A block that is not meant to run starts with the line ``# not run: <reason>``, which the reader
sees too; it is still compiled. Every other block must run without raising: there is no other way
to skip one.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import sys
import threading
import time
import traceback
import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

import redkit
import redkit.asyncio
from redkit import Settings
from tests.conftest import IN_CI, REAL_REDIS, REDIS_URL

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    "README.md",
    "CHANGELOG.md",
    *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")),
]
NOT_RUN = re.compile(r"#\s*not run:\s*(?P<reason>\S.*)")
DJANGO_PAGES = {"docs/django.md", "docs/dashboard.md"}
KEPT_SCHEMES = ("rediss", "redis+sentinel", "redis+cluster")

SETUP: dict[str, dict[int, str]] = {
    "README.md": {
        1: """
def load_user(user_id):
    return {"id": user_id, "name": "Ada"}
""",
    },
    "docs/messaging.md": {
        1: """
def send_email(message):
    assert message["to"]
""",
    },
}
"""Per page, snippets run before the block of that number (from 1)."""


@dataclass
class Block:
    page: str
    number: int  # 1-based, among the page's python blocks
    line: int  # line of the block's first code line in the page
    source: str

    @property
    def reason(self) -> str | None:
        first = self.source.lstrip("\n").split("\n", 1)[0]
        match = NOT_RUN.fullmatch(first.strip())
        return match["reason"] if match else None

    def compile(self) -> types.CodeType:
        padded = "\n" * (self.line - 1) + self.source  # line numbers of the Markdown file
        code: types.CodeType = compile(
            padded, str(ROOT / self.page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        return code


def blocks(page: str) -> list[Block]:
    found: list[Block] = []
    lines = (ROOT / page).read_text(encoding="utf-8").split("\n")
    start: int | None = None
    for i, line in enumerate(lines):
        if start is None and re.match(r"\s*```\s*py", line):
            assert line == "```python", f"{page}:{i + 1}: write python blocks as ```python"
            start = i + 1
        elif start is not None and line == "```":
            found.append(Block(page, len(found) + 1, start + 1, "\n".join(lines[start:i]) + "\n"))
            start = None
    assert start is None, f"{page}:{start}: a ```python block is not closed"
    return found


class Redirect:
    """Patches both client classes to build every client on the test Redis, under the page's
    ``rktest-`` prefix; remembers the clients made."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.prefix = f"rktest-{uuid.uuid4().hex[:10]}"
        self.kits: list[Any] = []
        for cls in (redkit.Redkit, redkit.asyncio.Redkit):
            monkeypatch.setattr(cls, "__init__", self._init(cls.__init__))

    def settings(self, settings: Settings | None, options: dict[str, Any]) -> Settings:
        if settings is None:
            settings = Settings.from_mapping(options) if options else Settings()
        elif options:
            settings = settings.replace(**options)
        if settings.prefix.startswith(f"{self.prefix}-"):
            return settings  # made from a redirected client's settings (a worker's own clients)
        changes: dict[str, Any] = {"prefix": f"{self.prefix}-{settings.prefix}"}
        if settings.scheme not in KEPT_SCHEMES and urlsplit(settings.url).port in (None, 6379):
            changes.update(url=REDIS_URL, username=None, password=None)
        return settings.replace(**changes)

    def _init(self, original: Any) -> Any:
        def __init__(kit: Any, settings: Settings | None = None, **options: Any) -> None:
            original(kit, self.settings(settings, options))
            self.kits.append(kit)

        return __init__


class Database:
    """Patches ``sqlalchemy.create_engine``: a ``postgresql`` URL becomes ``DATABASE_URL``, in a
    schema of the page's own (its ``search_path``), dropped with everything in it afterwards."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        import sqlalchemy

        self.schema = name.replace("-", "_")
        self.engines: list[Any] = []
        original = sqlalchemy.create_engine

        def create_engine(url: Any, **options: Any) -> Any:
            if not str(url).startswith("postgresql"):
                return original(url, **options)
            engine = original(
                DATABASE_URL, connect_args={"options": f"-csearch_path={self.schema}"}, **options
            )
            if not self.engines:
                try:
                    with engine.begin() as conn:
                        conn.execute(sqlalchemy.text(f"CREATE SCHEMA {self.schema}"))
                except sqlalchemy.exc.OperationalError as exc:
                    if IN_CI:
                        pytest.fail(f"PostgreSQL is not reachable at {DATABASE_URL}: {exc}")
                    pytest.skip(f"PostgreSQL is not reachable: {exc}")
            self.engines.append(engine)
            return engine

        self.sqlalchemy = sqlalchemy
        monkeypatch.setattr(sqlalchemy, "create_engine", create_engine)

    def drop(self) -> None:
        if self.engines:
            with self.engines[0].begin() as conn:
                conn.execute(self.sqlalchemy.text(f"DROP SCHEMA {self.schema} CASCADE"))
        for engine in self.engines:
            engine.dispose()


class DjangoSettings:
    """On a Django page, the settings a block assigns (``CACHES = {...}``, ``REDKIT = {...}``,
    ``MIDDLEWARE = [...]``) apply to the blocks after it, through ``override_settings`` over the
    test project's settings (tests/django/settings.py). ``INSTALLED_APPS`` and ``DATABASES`` stay
    the test project's."""

    KEPT = frozenset({"INSTALLED_APPS", "DATABASES"})

    def __init__(self) -> None:
        from django.conf import global_settings

        import tests.django.conftest  # noqa: F401 - configures and sets up Django

        self.names = {n for n in dir(global_settings) if n.isupper()} | {"REDKIT", "TASKS"}
        self.applied: dict[str, Any] = {}
        self.overrides: list[Any] = []

    def after(self, namespace: dict[str, Any]) -> None:
        from django.test.utils import override_settings

        given = {
            name: value
            for name, value in namespace.items()
            if name in self.names and name not in self.KEPT and self.applied.get(name) is not value
        }
        if given:
            override = override_settings(**given)
            override.enable()
            self.overrides.append(override)
            self.applied.update(given)

    def undo(self) -> None:
        from redkit_django import conf

        while self.overrides:
            self.overrides.pop().disable()
        conf.reset()


def run_blocks(
    page: str,
    namespace: dict[str, Any],
    loop: asyncio.AbstractEventLoop,
    django: DjangoSettings | None = None,
) -> None:
    """Run the page's blocks in order, with their setup snippets; fail at the first error."""
    for block in blocks(page):
        error: str | None = None
        setup = SETUP.get(page, {}).get(block.number)
        if setup is not None:
            exec(compile(setup, f"SETUP[{page!r}][{block.number}]", "exec"), namespace)
        try:
            code = block.compile()
            if block.reason is not None:
                continue
            if code.co_flags & inspect.CO_COROUTINE:
                loop.run_until_complete(eval(code, namespace))
            else:
                exec(code, namespace)
        except Exception as exc:
            error = failure(block, exc)
        if error is not None:
            pytest.fail(error, pytrace=False)
        if django is not None:
            django.after(namespace)


def failure(block: Block, exc: BaseException) -> str:
    path = str(ROOT / block.page)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
    line: int = (frames[-1].lineno if frames else None) or getattr(exc, "lineno", 0) or block.line
    text = (ROOT / block.page).read_text(encoding="utf-8").split("\n")[line - 1].strip()
    shown = "".join(traceback.format_exception(exc))
    return (
        f"{block.page}, block {block.number} (line {block.line}), failed at line {line}:\n"
        f"    {text}\n{type(exc).__name__}: {exc}\n\n{shown}"
    )


def close(kits: list[Any], loop: asyncio.AbstractEventLoop) -> None:
    for kit in kits:
        if isinstance(kit, redkit.asyncio.Redkit):
            if not kit._closed:
                loop.run_until_complete(kit.aclose())
        else:
            kit.close()
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.wait(pending))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def leftover_keys(pattern: str) -> Iterator[bytes]:
    with redis.Redis.from_url(REDIS_URL) as raw:
        yield from raw.scan_iter(match=pattern, count=500)


def new_threads(before: set[threading.Thread]) -> list[str]:
    deadline = time.monotonic() + 2.0
    for thread in set(threading.enumerate()) - before:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in set(threading.enumerate()) - before if t.is_alive()]


@pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")
@pytest.mark.parametrize("page", PAGES)
def test_page(page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    threads = set(threading.enumerate())
    module = types.ModuleType(f"doc_{Path(page).stem}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    redirect = Redirect(monkeypatch)
    database = Database(monkeypatch, redirect.prefix)
    loop = asyncio.new_event_loop()
    django = DjangoSettings() if page in DJANGO_PAGES else None
    try:
        run_blocks(page, module.__dict__, loop, django)
    finally:
        if django is not None:
            django.undo()
        close(redirect.kits, loop)
        database.drop()
        monkeypatch.undo()
        prefixes = {kit.settings.prefix for kit in redirect.kits}
        for prefix in prefixes:
            with redkit.Redkit.from_url(REDIS_URL, prefix=prefix) as cleaner:
                cleaner.clear()
        left = sorted(leftover_keys(f"{redirect.prefix}-*"))
        if left:
            with redis.Redis.from_url(REDIS_URL) as raw:
                raw.unlink(*left)
    assert not left, f"{page} left keys outside its clients' prefixes: {left[:10]}"
    assert not (alive := new_threads(threads)), f"{page} left threads running: {alive}"
