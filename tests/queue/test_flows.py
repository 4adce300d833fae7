"""Flows: a job waits for its children (on any queues of the kit) and then runs with their
outcomes; ``chain``, ``chord`` and ``group`` on top; the failure policy of each child towards its
parent; cancel, remove, drain and retry of a flow's jobs; notices sent twice recorded once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from redkit.errors import RedkitConnectionError
from redkit.queue import ChildResult, JobFailed, chain, chord, current_job, group
from redkit.queue._dead import _DeadLetters
from tests.conftest import call
from tests.queue.conftest import eventually, serving


async def _state(q: Any, job_id: str) -> str:
    job = await call(q.get_job(job_id))
    return "gone" if job is None else job.state


async def test_a_chain_passes_each_result_to_the_next_step(kit: Any) -> None:
    q = kit.queue("flow-chain")

    @q.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    root = await call(q.add_flow(chain(add.s(1, 2), add.s(10), add.s(100))))
    assert root.state == "waiting_children"
    counts = await call(q.counts())
    assert (counts["waiting"], counts["waiting_children"]) == (1, 2)
    assert await call(q.jobs("waiting_children")) != []
    async with serving(q):
        assert await call(root.wait(10)) == 113
    record = (await call(q.get_job(root.id))).record
    assert record.parent is None
    [child] = record.children
    assert (child.queue, child.state, child.result, child.attempt) == (
        "flow-chain",
        "completed",
        13,
        1,
    )
    middle = await call(q.get_job(child.id))
    assert middle.parent == ("flow-chain", root.id)
    assert middle.data == {"args": [10], "kwargs": {}}  # as added: the result goes in at run time
    assert (await call(q.counts()))["completed"] == 3


async def test_a_chord_across_queues_gets_its_header_results_in_order(kit: Any) -> None:
    work, sums = kit.queue("flow-work"), kit.queue("flow:3:sums")  # a name that looks like a ref

    @work.task(name="square")
    async def square(x: int) -> int:
        await asyncio.sleep(0.01 * (5 - x))  # the last ones end first
        return x * x

    @sums.task(name="total")
    def total(values: list[int], label: str) -> str:
        return f"{label}={values}"

    root = await call(sums.add_flow(chord([square.s(i) for i in range(5)], total.s("sq"))))
    assert (await call(work.counts()))["waiting"] == 5
    async with serving(work), serving(sums):
        assert await call(root.wait(10)) == "sq=[0, 1, 4, 9, 16]"
    children = (await call(sums.get_job(root.id))).children
    assert [c.queue for c in children] == ["flow-work"] * 5
    assert [c.result for c in children] == [0, 1, 4, 9, 16]


async def test_a_group_adds_jobs_side_by_side_and_a_parent_reads_its_children(kit: Any) -> None:
    q = kit.queue("flow-group")
    seen: list[Any] = []

    @q.task(name="echo")
    def echo(x: Any) -> Any:
        return x

    @q.task(name="report")
    def report(tag: str) -> str:
        job = current_job()
        seen.append(job.children)
        return tag

    jobs = await call(q.add_flow(group(echo.s(1), echo.s("two"), [echo.s(None)])))
    assert [j.state for j in jobs] == ["waiting"] * 3
    parent = await call(q.add_flow(report.s("done").after(group(echo.s({"a": 1}), echo.si(2)))))
    async with serving(q):
        assert [await call(j.wait(10)) for j in jobs] == [1, "two", None]
        assert await call(parent.wait(10)) == "done"  # after(): no result in its arguments
    [children] = seen
    assert all(isinstance(c, ChildResult) for c in children)
    assert [(c.state, c.result) for c in children] == [("completed", {"a": 1}), ("completed", 2)]


async def test_a_handler_of_raw_jobs_sees_the_children_of_its_job(kit: Any) -> None:
    q = kit.queue("flow-raw")
    seen: list[Any] = []

    async def handler(job: Any) -> Any:
        seen.append((job.name, [c.result for c in job.children]))
        return job.data["n"] * 2

    root = await call(
        q.add_flow(
            q.node("sum", {"n": 1}).after(q.node("leaf", {"n": 2}), q.node("leaf", {"n": 3}))
        )
    )
    async with serving(q, processor=handler):
        assert await call(root.wait(10)) == 2
    assert sorted(seen, key=lambda s: s[0]) == [("leaf", []), ("leaf", []), ("sum", [4, 6])]


async def test_a_failed_child_fails_its_parent_which_fails_its_own_parent(kit: Any) -> None:
    q, other = kit.queue("flow-fail"), kit.queue("flow-fail-2")
    ran: list[str] = []

    @q.task(name="step")
    def step(tag: str) -> str:
        ran.append(tag)
        return tag

    @other.task(name="boom")
    def boom() -> None:
        raise ValueError("broken <b>input</b>")

    middle = step.s("middle").after(boom.s(), step.s("sibling"))
    root = await call(q.add_flow(step.s("root").after(middle)))
    async with serving(q), serving(other):
        with pytest.raises(JobFailed) as failed:
            await call(root.wait(10))
    mid_id = (await call(q.get_job(root.id))).children[0].id
    assert f"failed: child {mid_id} failed: child flow-fail-2/" in str(failed.value)
    mid = await call(q.get_job(mid_id))
    assert mid.state == "failed"
    assert mid.failed_reason.startswith("child flow-fail-2/")
    assert mid.failed_reason.endswith("failed: ValueError: broken <b>input</b>")
    assert ran == ["sibling"]  # neither parent ran
    assert mid.attempts_made == 0
    assert (await call(q.get_job(root.id))).attempts_made == 0
    assert mid.children[0].state == "failed"
    assert mid.children[0].error == "ValueError: broken <b>input</b>"


async def test_an_ignored_failure_lets_the_parent_run_and_continue_starts_it_at_once(
    kit: Any,
) -> None:
    q = kit.queue("flow-policy")
    gate = asyncio.Event()
    order: list[str] = []

    @q.task(name="boom")
    def boom() -> None:
        raise RuntimeError("no")

    @q.task(name="slow")
    async def slow() -> str:
        await gate.wait()
        order.append("slow")
        return "late"

    @q.task(name="parent")
    def parent(tag: str) -> list[Any]:
        order.append(tag)
        return [(c.state, c.result, c.error) for c in current_job().children]

    ignoring = await call(
        q.add_flow(parent.s("ignoring").after(boom.s().on_failure("ignore"), parent.si("x")))
    )
    continuing = await call(
        q.add_flow(parent.s("continuing").after(boom.s().on_failure("continue"), slow.s()))
    )
    async with serving(q, concurrency=4):
        outcome = await call(ignoring.wait(10))
        assert outcome[0] == ["failed", None, "RuntimeError: no"]
        assert outcome[1][0] == "completed"
        early = await call(continuing.wait(10))  # while slow() still waits for the gate
        assert early == [["failed", None, "RuntimeError: no"], [None, None, None]]
        gate.set()
        await eventually(lambda: "slow" in order)
    assert order.index("continuing") < order.index("slow")
    with pytest.raises(ValueError, match="policy must be one of"):
        boom.s().on_failure("retry")


async def test_cancel_remove_and_drain_of_children_reach_their_parents(kit: Any) -> None:
    q, kids = kit.queue("flow-admin"), kit.queue("flow-admin-kids")

    @q.task(name="parent")
    def parent() -> list[Any]:
        return [(c.state, c.error) for c in current_job().children]

    @kids.task(name="leaf")
    def leaf() -> str:
        return "ok"

    cancelled = await call(
        q.add_flow(parent.s().after(leaf.options(delay=60).s().on_failure("ignore")))
    )
    removed = await call(
        q.add_flow(parent.s().after(leaf.options(delay=60).s().on_failure("ignore")))
    )
    drained = await call(q.add_flow(parent.s().after(leaf.s().on_failure("ignore"))))
    failing = await call(q.add_flow(parent.s().after(leaf.options(delay=60).s())))
    ids = {}
    for name, root in (("c", cancelled), ("r", removed), ("d", drained), ("f", failing)):
        ids[name] = (await call(q.get_job(root.id))).children[0].id
    assert await call((await call(kids.get_job(ids["c"]))).cancel("not needed")) is True
    assert await call((await call(kids.get_job(ids["r"]))).remove()) is True
    assert await call(kids.drain()) == 1
    assert await call((await call(kids.get_job(ids["f"]))).cancel()) is True
    async with serving(kids), serving(q):
        assert await call(cancelled.wait(10)) == [["cancelled", "not needed"]]
        assert await call(removed.wait(10)) == [["cancelled", "removed"]]
        assert await call(drained.wait(10)) == [["cancelled", "drained"]]
        with pytest.raises(JobFailed, match="was cancelled: cancelled"):
            await call(failing.wait(10))


async def test_a_cancelled_parent_stays_cancelled_while_its_children_go_on(kit: Any) -> None:
    q = kit.queue("flow-cancel-parent")
    ran: list[str] = []

    @q.task(name="step")
    def step(tag: str) -> str:
        ran.append(tag)
        return tag

    root = await call(q.add_flow(step.s("root").after(step.s("a"), step.s("b"))))
    assert await call(root.cancel("changed my mind")) is True
    assert (await call(q.counts()))["waiting_children"] == 0
    async with serving(q):
        await eventually(lambda: len(ran) == 2)
        await asyncio.sleep(0.2)
    assert sorted(ran) == ["a", "b"]
    job = await call(q.get_job(root.id))
    assert job.state == "cancelled"
    assert [c.state for c in job.children] == ["completed", "completed"]  # recorded all the same


async def test_a_retried_child_and_parent_complete_the_flow(kit: Any) -> None:
    q = kit.queue("flow-retry")
    broken = [True]

    @q.task(name="flaky")
    def flaky() -> str:
        if broken[0]:
            raise RuntimeError("down")
        return "up"

    @q.task(name="parent")
    def parent() -> list[Any]:
        return [(c.state, c.result, c.attempt) for c in current_job().children]

    root = await call(q.add_flow(parent.s().after(flaky.s())))
    async with serving(q):
        with pytest.raises(JobFailed):
            await call(root.wait(10))
        child_id = (await call(q.get_job(root.id))).children[0].id
        broken[0] = False
        assert await call((await call(q.get_job(child_id))).retry()) is True
        await eventually(
            lambda: _child_completed(q, root.id), what="the parent holds the child's new outcome"
        )
        assert await call(root.retry()) is True
        assert await call(root.wait(10)) == [["completed", "up", 2]]


async def _child_completed(q: Any, root_id: str) -> bool:
    job = await call(q.get_job(root_id))
    return job.children[0].state == "completed"


async def test_a_notice_sent_twice_is_recorded_once(
    kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    q, kids = kit.queue("flow-twice"), kit.queue("flow-twice-kids")  # notices cross queues
    release = asyncio.Event()

    @kids.task(name="quick")
    def quick() -> int:
        return 1

    @kids.task(name="held")
    async def held() -> int:
        await release.wait()
        return 2

    @q.task(name="parent")
    def parent() -> list[Any]:
        return [c.result for c in current_job().children]

    original = _DeadLetters._send_notices

    async def twice(self: Any, core: Any, notices: Any) -> None:
        await original(self, core, notices)
        await original(self, core, notices)  # a lost reply re-sent, or a second worker

    monkeypatch.setattr(_DeadLetters, "_send_notices", twice)
    root = await call(q.add_flow(parent.s().after(quick.s(), held.s())))
    async with serving(q), serving(kids, concurrency=3):
        await eventually(lambda: _first_recorded(q, root.id), what="the quick child recorded")
        await asyncio.sleep(0.2)
        job = await call(q.get_job(root.id))
        assert (
            job.state == "waiting_children"
        )  # the second sending did not count as the other child
        assert job.record.unresolved == 1
        release.set()
        assert await call(root.wait(10)) == [1, 2]


async def _first_recorded(q: Any, root_id: str) -> bool:
    job = await call(q.get_job(root_id))
    return job.children[0].state == "completed"


async def test_a_notice_left_by_a_worker_that_died_is_sent_by_the_next(
    kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    q, kids = kit.queue("flow-left"), kit.queue("flow-left-kids")

    @kids.task(name="leaf")
    def leaf() -> str:
        return "leaf"

    @q.task(name="parent")
    def parent() -> list[Any]:
        return [c.result for c in current_job().children]

    async def lost(self: Any, core: Any, notices: Any) -> None:
        raise RedkitConnectionError("cut")  # the worker never gets to send the notice on

    root = await call(q.add_flow(parent.s().after(leaf.s())))
    with monkeypatch.context() as patch:
        patch.setattr(_DeadLetters, "_send_notices", lost)
        async with serving(q), serving(kids):
            await eventually(lambda: _leaf_done(q, kids, root.id), what="the leaf completed")
    assert await _state(q, root.id) == "waiting_children"
    async with serving(q), serving(kids):
        assert await call(root.wait(10)) == ["leaf"]


async def _leaf_done(q: Any, kids: Any, root_id: str) -> bool:
    child = (await call(q.get_job(root_id))).children[0].id
    return await _state(kids, child) == "completed"


async def test_a_flow_with_given_ids_added_twice_is_added_once(kit: Any) -> None:
    q = kit.queue("flow-again")

    @q.task(name="step")
    def step(n: int) -> int:
        return n

    def tree() -> Any:
        return (
            step.options(job_id="root", priority=3)
            .s(0)
            .after(step.options(job_id="a").s(1), step.options(job_id="b").s(2))
        )

    first = await call(q.add_flow(tree()))
    again = await call(q.add_flow(tree()))
    assert (first.id, again.id) == ("root", "root")
    assert again.state == "waiting_children"
    assert (await call(q.counts()))["waiting"] == 2
    async with serving(q):
        assert await call(first.wait(10)) == 0
    assert (await call(q.get_job("root"))).record.priority == 3


async def test_bad_flows_are_refused_before_anything_is_written(kit: Any, make_kit: Any) -> None:
    q = kit.queue("flow-bad")
    elsewhere = make_kit().queue("flow-bad")

    @q.task(name="step")
    def step() -> None:
        return None

    @elsewhere.task(name="step")
    def step_elsewhere() -> None:
        return None

    cases: list[tuple[Any, type[Exception], str]] = [
        (lambda: step.s().after(step.options(dedup="x").s()), ValueError, "dedup"),
        (lambda: step.options(delay=5).s().after(step.s()), ValueError, "cannot be delayed"),
        (
            lambda: step.s().after(
                step.options(job_id="same").s(), step.options(job_id="same").s()
            ),
            ValueError,
            "used twice",
        ),
        (lambda: step.s().after(step_elsewhere.s()), ValueError, "another kit"),
        (lambda: "step", TypeError, "Node or a Group"),
    ]
    for make, error, message in cases:
        with pytest.raises(error, match=message):
            await call(q.add_flow(make()))
    with pytest.raises(TypeError, match="end with a group"):
        chain(step.s(), group(step.s(), step.s()))
    with pytest.raises(TypeError, match="only start a chain"):
        chain(step.s(), group(step.s()), step.s())
    with pytest.raises(TypeError, match="already has children"):
        chain(step.s(), step.s().after(step.s()))
    with pytest.raises(TypeError, match="nodes"):
        step.s().after("x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        group()
    assert await call(q.counts()) == dict.fromkeys(await call(q.counts()), 0)
