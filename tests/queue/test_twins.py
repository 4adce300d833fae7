"""The sync and async twins of the queue (Queue/AsyncQueue, Job/AsyncJob, Task/AsyncTask) are
shells over one copy of the logic: a method of one twin is the other's with ``await`` and the
``Async`` names, and each is one statement. Logic added to one twin alone fails here; what moved
into the shared part is checked on Redis in both modes."""

from __future__ import annotations

import ast
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from redkit.queue import STATES, AsyncJob, AsyncQueue, AsyncTask, Job, Queue, Task
from tests.conftest import call
from tests.core.test_twin_shells import methods_of as _methods
from tests.queue.conftest import REDIS_AND_MEMORY, serving

TWINS = [(Queue, AsyncQueue), (Job, AsyncJob), (Task, AsyncTask)]
# differ on purpose: a sync stream of events asks Redis for its start, an async one starts by
# this host's clock and sends nothing before its first iteration (docs/queue.md); and an async
# generator has no ``yield from``
ON_PURPOSE = {"events", "_events"}


class _Plain(ast.NodeTransformer):
    """An async body as its sync twin would read: no ``await``, no ``Async`` in names."""

    def visit_Await(self, node: ast.Await) -> Any:
        return self.visit(node.value)

    def visit_Name(self, node: ast.Name) -> Any:
        return ast.copy_location(ast.Name(node.id.removeprefix("Async"), node.ctx), node)


def _bodies(cls: type) -> dict[str, list[ast.stmt]]:
    """Each method's statements, docstring left out (of overloads, the implementation)."""
    return {name: node.body for name, node in _methods(cls).items()}


@pytest.mark.parametrize(("sync_cls", "async_cls"), TWINS, ids=lambda c: c.__qualname__)
def test_a_twin_is_the_other_with_await(sync_cls: type, async_cls: type) -> None:
    def dump(statements: list[ast.stmt]) -> list[str]:
        return [ast.dump(_Plain().visit(statement)) for statement in statements]

    sync, asynchronous = _bodies(sync_cls), _bodies(async_cls)
    assert sorted(sync) == sorted(asynchronous)
    drifted = [n for n in sync if n not in ON_PURPOSE and dump(sync[n]) != dump(asynchronous[n])]
    assert drifted == [], f"{sync_cls.__name__} and {async_cls.__name__} differ in {drifted}"


@pytest.mark.parametrize("cls", [c for pair in TWINS for c in pair], ids=lambda c: c.__name__)
def test_every_public_method_is_one_statement(cls: type) -> None:
    # the logic lives in the shared bases and the queue's core, which the twins call
    long = [
        name
        for name, body in _bodies(cls).items()
        if not name.startswith("_") and name not in ON_PURPOSE and len(body) != 1
    ]
    assert long == [], f"{cls.__name__}: {long} hold logic of their own"


# -- what moved into the shared part, on Redis, sync and async -------------------------------------
def _send(to: str) -> str:
    return f"sent {to}"


@REDIS_AND_MEMORY
async def test_bad_calls_fail_before_anything_is_written(kit: Any) -> None:
    q = kit.queue("twins")
    send = q.task(name="send")(_send)

    with pytest.raises(TypeError, match="when must be a datetime"):
        await call(send.enqueue_at(60, "a"))
    with pytest.raises(ValueError, match="timezone-aware"):
        await call(send.enqueue_at(datetime.now() + timedelta(seconds=5), "a"))
    with pytest.raises(TypeError, match="unknown job option"):
        send.options(prority=3)
    with pytest.raises(TypeError, match="unknown job option"):
        await call(q.add("x", 1, prority=3))
    with pytest.raises(ValueError, match="job name must not be empty"):
        await call(q.add("", 1))
    with pytest.raises(RuntimeError, match="for the task running the job"):
        await call((await call(q.add("x", 1))).update_progress(50))
    assert await call(q.counts()) == {**dict.fromkeys(STATES, 0), "waiting": 1}


@REDIS_AND_MEMORY
async def test_the_shared_calls_do_what_they_say(kit: Any) -> None:
    q = kit.queue("twins-calls")
    send = q.task(name="send")(_send)

    at = await call(send.options(priority=3).enqueue_at(datetime.now(timezone.utc), "b"))
    later = await call(send.enqueue_in(60, "c"))
    assert (at.state, later.state) == ("prioritized", "delayed")
    assert await call(q.get_job("no-such-job")) is None
    got = await call(q.get_job(at.id))
    assert (got.name, got.data) == ("send", {"args": ["b"], "kwargs": {}})
    assert await call(got.retry()) is False  # not failed
    assert await call(later.remove()) is True
    assert await call(later.remove()) is False
    async with serving(q):
        assert await call(at.wait(10)) == "sent b"
    assert (await call(at.refresh())) is at
    assert (at.state, at.result) == ("completed", "sent b")
    assert await call(q.pause()) is True
    assert await call(q.pause()) is False
    assert await call(q.is_paused()) is True
    assert await call(q.resume()) is True
