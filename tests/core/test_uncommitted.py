"""Uncommitted writes are tracked per thread and per asyncio task: a task sees what the code
that started it has pending, never what a sibling task has, and a scope left behind in a
context (by a transaction that ended) is not shared by the tasks that inherit it."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import redkit
import redkit.asyncio
from redkit.cache import uncommitted_scope, writes_pending


def _written(owner: str, *tags: str) -> None:
    uncommitted_scope().record(owner, tags)


def _ended(owner: str) -> None:
    uncommitted_scope().settle(owner)


async def test_sibling_tasks_do_not_see_each_others_writes() -> None:
    _written("before", "a")
    _ended("before")  # this task's scope is left behind, empty: the tasks below inherit it
    wrote = asyncio.Event()
    seen: dict[str, bool] = {}

    async def writer() -> None:
        _written("tx", "users")
        seen["writer"] = writes_pending()
        wrote.set()
        await asyncio.sleep(0.01)
        seen["writer later"] = writes_pending()

    async def sibling() -> None:
        await wrote.wait()
        seen["sibling"] = writes_pending()

    async with asyncio.TaskGroup() as group:
        group.create_task(writer())
        group.create_task(sibling())
    assert seen == {"writer": True, "sibling": False, "writer later": True}
    assert writes_pending() is False  # nor does the task that started them


async def test_a_child_task_sees_what_its_creator_has_pending() -> None:
    _written("outer", "users")
    seen: dict[str, Any] = {}

    async def child() -> None:
        seen["child"] = writes_pending()
        seen["touches"] = uncommitted_scope().touches(["users"])
        _written("inner", "orders")
        seen["child wrote"] = writes_pending()

    await asyncio.create_task(child())
    assert seen == {"child": True, "touches": True, "child wrote": True}
    _ended("outer")
    assert writes_pending() is False  # the child's own writes stayed in the child's scope


def test_a_thread_run_in_a_copied_context_keeps_its_writes_to_itself() -> None:
    _written("request", "users")
    seen: dict[str, bool] = {}
    context = contextvars.copy_context()

    def work() -> None:
        seen["inherited"] = writes_pending()
        _written("thread", "orders")
        _ended("request")  # a settle in the wrong scope does nothing to the caller's
        seen["own"] = writes_pending()

    thread = threading.Thread(target=context.run, args=(work,))
    thread.start()
    thread.join()
    assert seen == {"inherited": True, "own": True}
    assert writes_pending() is True  # the caller's transaction is still running
    _ended("request")
    assert writes_pending() is False


async def test_a_sibling_fills_the_cache_while_a_writer_may_not(
    async_kit: redkit.asyncio.Redkit,
) -> None:
    _written("before", "a")
    _ended("before")
    wrote = asyncio.Event()
    done = asyncio.Event()

    async def load() -> str:
        return "fresh"

    async def writer() -> None:
        _written("tx", "users")
        wrote.set()
        assert await async_kit.cache.get_or_set("w", load, ttl=60) == "fresh"
        await done.wait()
        _ended("tx")

    async def sibling() -> None:
        await wrote.wait()
        assert await async_kit.cache.get_or_set("s", load, ttl=60) == "fresh"
        done.set()

    async with asyncio.TaskGroup() as group:
        group.create_task(writer())
        group.create_task(sibling())
    assert await async_kit.cache.get("s") == "fresh"  # stored: the sibling wrote nothing
    assert await async_kit.cache.get("w") is None  # not stored: its transaction was open


def test_threads_of_a_sync_app_keep_their_writes_apart(sync_kit: redkit.Redkit) -> None:
    wrote, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def guarded(fn: Any) -> Any:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)
                wrote.set()
                done.set()

        return run

    @guarded
    def writer() -> None:
        _written("tx", "users")
        wrote.set()
        assert sync_kit.cache.get_or_set("w", lambda: "fresh", ttl=60) == "fresh"
        done.wait(10)
        _ended("tx")

    @guarded
    def other() -> None:
        wrote.wait(10)
        assert sync_kit.cache.get_or_set("s", lambda: "fresh", ttl=60) == "fresh"
        done.set()

    threads = [threading.Thread(target=writer), threading.Thread(target=other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    assert sync_kit.cache.get("s") == "fresh"
    assert sync_kit.cache.get("w") is None
