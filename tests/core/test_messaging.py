"""kit.pubsub and kit.stream(name) through the public API: real Redis, memory:// and a real
cluster, sync and async."""

from __future__ import annotations

import asyncio
import datetime
import math
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import redkit
import redkit.asyncio
from redkit import InvalidKeyError, RedkitConnectionError, SerializationError
from redkit.messaging import (
    AsyncStream,
    AsyncSubscription,
    Message,
    PendingSummary,
    StreamMessage,
)
from tests.conftest import Kits, backend_url, call

HOSTILE: list[Any] = [
    "*",
    "a?b[c]",
    "{tag}",
    "with space",
    "new\nline\r\n",
    "tab\tnull\x00",
    "ümlaut-日本-🙂",
    "%41",
    "~x",
    "x" * 10_000,
    b"\xff\xfe\x00 not utf-8",
    12345,
]


# -- helpers --------------------------------------------------------------------------------------
async def close(sub: Any) -> None:
    if isinstance(sub, AsyncSubscription):
        await sub.aclose()
    else:
        sub.close()


async def receive(sub: Any, timeout: float = 5.0) -> Message:
    message = await call(sub.get(timeout))
    assert message is not None, "no message arrived"
    return message  # type: ignore[no-any-return]


async def expect(sub: Any, wanted: set[tuple[Any, Any, Any]]) -> None:
    """Receive until every ``(channel, pattern, data)`` of ``wanted`` arrived; fail on any other
    message (channels a pattern must not match are published first, so they would come first
    on one server; a cluster may reorder channels, which only weakens the check)."""
    seen: set[tuple[Any, Any, Any]] = set()
    while seen != wanted:
        message = await receive(sub)
        key = (message.channel, message.pattern, message.data)
        assert key in wanted, f"unexpected {message!r}"
        seen.add(key)
    assert await call(sub.get(0.05)) is None


async def drain(sub: Any) -> list[Message]:
    """Iterate (``for`` or ``async for``) until the subscription ends."""
    if isinstance(sub, AsyncSubscription):
        return [m async for m in sub]
    return list(sub)


async def subscribers(kit: Any, channel: object) -> int:
    """PUBSUB NUMSUB of ``channel`` (summed over the nodes of a cluster: each counts its own)."""
    name = kit.keyspace.key("pubsub", channel)
    if not kit.settings.is_cluster:
        return int(dict(await call(kit.client.pubsub_numsub(name))).get(name.encode(), 0))
    total = 0
    for node in kit.client.get_nodes():
        counts = dict(await call(kit.client.pubsub_numsub(name, target_nodes=node)))
        total += int(counts.get(name.encode(), 0))
    return total


async def stream_keys(kit: Any, match: str = "stream:*") -> list[str]:
    found = kit.scan(match)
    if hasattr(found, "__aiter__"):
        return [k async for k in found]
    return list(found)


async def later(kit: Any, delay: float, fn: Any) -> Any:
    """Run ``fn()`` after ``delay`` seconds, in a thread (sync kit) or a task (async kit)."""
    if kit.__class__.__module__ == "redkit.asyncio":

        async def run() -> None:
            await asyncio.sleep(delay)
            await fn()

        return asyncio.create_task(run())
    timer = threading.Timer(delay, fn)
    timer.start()
    return timer


async def finish(handle: Any) -> None:
    if isinstance(handle, asyncio.Task):
        await handle
    else:
        handle.join()


# -- pub/sub --------------------------------------------------------------------------------------
async def test_publish_subscribe_round_trip_with_json(kit: Any) -> None:
    sub = await call(kit.pubsub.subscribe("news"))
    value = {"title": "hello", "tags": ["a", "b"], "n": 1.5, "ok": True, "none": None}
    assert await call(kit.pubsub.publish("news", value)) == 1
    assert await call(kit.pubsub.publish("news", [1, "two"])) == 1
    first = await receive(sub)
    assert (first.channel, first.pattern, first.data, first.malformed) == (
        "news",
        None,
        value,
        False,
    )
    assert (await receive(sub)).data == [1, "two"]
    assert await call(sub.get(0)) is None
    await close(sub)
    assert await stream_keys(kit, "*") == []  # pub/sub stores nothing


async def test_nobody_listening_counts_zero(kit: Any) -> None:
    assert await call(kit.pubsub.publish("empty", {"x": 1})) == 0


async def test_iteration_yields_messages_and_ends_after_close(kit: Any) -> None:
    sub = await call(kit.pubsub.subscribe("a", "b"))
    assert set(sub.channels) == {"a", "b"}
    for i in range(3):
        await call(kit.pubsub.publish("a" if i % 2 else "b", i))
    got = []
    if isinstance(sub, AsyncSubscription):
        async for message in sub:
            got.append(message)
            if len(got) == 3:
                break
    else:
        for message in sub:
            got.append(message)
            if len(got) == 3:
                break
    assert sorted(m.data for m in got) == [0, 1, 2]
    await close(sub)
    assert sub.closed
    assert await drain(sub) == []
    assert await call(sub.get(0)) is None
    await close(sub)  # idempotent


async def test_close_unsubscribes(kit: Any) -> None:
    sub = await call(kit.pubsub.subscribe("room", patterns=["room.*"]))
    assert await subscribers(kit, "room") == 1
    await close(sub)
    assert await subscribers(kit, "room") == 0
    assert await call(kit.pubsub.publish("room", 1)) == 0


async def test_context_manager_closes(kit: Any) -> None:
    sub = await call(kit.pubsub.subscribe("ctx"))
    if isinstance(sub, AsyncSubscription):
        async with sub:
            await call(kit.pubsub.publish("ctx", "hi"))
            assert (await receive(sub)).data == "hi"
    else:
        with sub:
            kit.pubsub.publish("ctx", "hi")
            assert (await receive(sub)).data == "hi"
    assert sub.closed
    assert await subscribers(kit, "ctx") == 0


async def test_close_from_elsewhere_ends_a_blocked_iteration(kit: Any) -> None:
    sub = await call(kit.pubsub.subscribe("jobs"))
    got: list[Message] = []
    if isinstance(sub, AsyncSubscription):
        received = asyncio.Event()

        async def consume() -> None:
            async for message in sub:
                got.append(message)
                received.set()

        task = asyncio.create_task(consume())
        await kit.pubsub.publish("jobs", 1)
        await asyncio.wait_for(received.wait(), 5)
        await sub.aclose()  # while the task waits for the next message
        await asyncio.wait_for(task, 5)
    else:
        arrived = threading.Event()

        def consume_sync() -> None:
            for message in sub:
                got.append(message)
                arrived.set()

        thread = threading.Thread(target=consume_sync)
        thread.start()
        kit.pubsub.publish("jobs", 1)
        assert arrived.wait(5)
        sub.close()  # while the thread waits for the next message
        thread.join(5)
        assert not thread.is_alive()
    assert [m.data for m in got] == [1]
    assert await subscribers(kit, "jobs") == 0


async def test_subscribe_and_unsubscribe_on_a_live_subscription(kit: Any) -> None:
    sub = await call(kit.pubsub.subscribe("one"))
    await call(sub.subscribe("two", patterns=["p.*"]))
    assert set(sub.channels) == {"one", "two"}
    assert sub.patterns == ("p.*",)
    await call(kit.pubsub.publish("two", 2))
    assert (await receive(sub)).channel == "two"
    await call(sub.unsubscribe("one", patterns=["p.*"]))
    assert sub.channels == ("two",)
    await call(kit.pubsub.publish("one", "dropped"))
    await call(kit.pubsub.publish("p.x", "dropped"))
    await call(kit.pubsub.publish("two", "kept"))
    message = await receive(sub)
    assert (message.channel, message.data) == ("two", "kept")
    assert await subscribers(kit, "one") == 0
    await close(sub)
    with pytest.raises(RuntimeError, match="closed"):
        await call(sub.subscribe("three"))


async def test_patterns_match_only_their_channels_and_only_this_prefix(make_kit: Kits) -> None:
    kit, other = make_kit(), make_kit()
    sub = await call(kit.pubsub.subscribe(patterns=["news.*"]))
    everything = await call(kit.pubsub.subscribe(patterns=["*"]))
    await call(other.pubsub.publish("news.other-prefix", 0))
    await call(kit.pubsub.publish("sports.z", 1))
    await call(kit.pubsub.publish("news.y", 2))
    await call(kit.pubsub.publish("news.end", 3))
    await expect(sub, {("news.y", "news.*", 2), ("news.end", "news.*", 3)})
    await expect(everything, {("sports.z", "*", 1), ("news.y", "*", 2), ("news.end", "*", 3)})
    for s in (sub, everything):
        await close(s)


async def test_pattern_escaping(kit: Any) -> None:
    patterns = ["room:[0-9]", "star\\*", "a b?", "[^x]y", "caf\u00e9*"]
    sub = await call(kit.pubsub.subscribe(patterns=patterns))
    for channel in ("room:x", "starX", "a bcd", "xy", "cafe", "room:1", "star*", "a bc", "zy"):
        await call(kit.pubsub.publish(channel, 0))
    await call(kit.pubsub.publish("caf\u00e9 noir", 0))
    await expect(
        sub,
        {
            ("room:1", "room:[0-9]", 0),
            ("star*", "star\\*", 0),
            ("a bc", "a b?", 0),
            ("zy", "[^x]y", 0),
            ("caf\u00e9 noir", "caf\u00e9*", 0),
        },
    )
    await close(sub)


@pytest.mark.parametrize("bad", ["[", "a[b", "x\\", "[ ]", "[%]", "", b""])
async def test_invalid_patterns_raise(kit: Any, bad: Any) -> None:
    with pytest.raises(InvalidKeyError):
        await call(kit.pubsub.subscribe(patterns=[bad]))


async def test_subscribe_validates_its_arguments(kit: Any) -> None:
    with pytest.raises(ValueError, match="at least one"):
        await call(kit.pubsub.subscribe())
    with pytest.raises(TypeError, match="patterns"):
        await call(kit.pubsub.subscribe(patterns="news.*"))
    for bad in ("", None, 1.5, True):
        with pytest.raises(InvalidKeyError):
            await call(kit.pubsub.subscribe(bad))
        with pytest.raises(InvalidKeyError):
            await call(kit.pubsub.publish(bad, 1))
    sub = await call(kit.pubsub.subscribe("t"))
    for bad_timeout in (-1, math.nan):
        with pytest.raises(ValueError, match="timeout"):
            await call(sub.get(bad_timeout))
    with pytest.raises(TypeError, match="timeout"):
        await call(sub.get("1"))
    await close(sub)


async def test_non_json_values_are_refused_at_publish(kit: Any) -> None:
    sub = await call(kit.pubsub.subscribe("c"))
    with pytest.raises(SerializationError, match=r'message\["when"\] is a datetime'):
        await call(kit.pubsub.publish("c", {"when": datetime.datetime(2024, 1, 1)}))
    with pytest.raises(SerializationError, match=r"message\[1\] is a set"):
        await call(kit.pubsub.publish("c", [1, {2}]))
    with pytest.raises(SerializationError, match="nan"):
        await call(kit.pubsub.publish("c", math.nan))
    with pytest.raises(SerializationError, match="bytes"):
        await call(kit.pubsub.publish("c", b"raw"))
    await call(kit.pubsub.publish("c", "after"))
    assert (await receive(sub)).data == "after"  # nothing was sent by the failed calls
    await close(sub)


async def test_malformed_payload_is_delivered_as_raw_bytes(kit: Any) -> None:
    sub = await call(kit.pubsub.subscribe("raw"))
    await call(kit.client.publish(kit.keyspace.key("pubsub", "raw"), b"\xff not json"))
    await call(kit.pubsub.publish("raw", {"ok": 1}))
    bad, good = await receive(sub), await receive(sub)
    assert (bad.malformed, bad.data, bad.channel) == (True, b"\xff not json", "raw")
    assert (good.malformed, good.data) == (False, {"ok": 1})
    assert kit.stats.get("pubsub_malformed") == 1
    await close(sub)


async def test_hostile_channel_names_stay_inside_the_prefix(make_kit: Kits) -> None:
    kit, other = make_kit(), make_kit()
    exact = await call(kit.pubsub.subscribe(*HOSTILE))
    by_pattern = await call(kit.pubsub.subscribe(patterns=["*"]))
    outsider = await call(other.pubsub.subscribe(patterns=["*"]))
    for i, name in enumerate(HOSTILE):
        # on a cluster only the subscribers on the node owning the channel's slot are counted
        assert await call(kit.pubsub.publish(name, i)) >= (0 if kit.settings.is_cluster else 2)
    got: Counter[int] = Counter()
    for _ in HOSTILE:
        message = await receive(exact)
        assert message.channel == HOSTILE[message.data]
        got[message.data] += 1
    assert got == Counter(range(len(HOSTILE)))
    seen: dict[int, Any] = {}
    for _ in HOSTILE:
        message = await receive(by_pattern)
        seen[message.data] = message.channel
    for i, name in enumerate(HOSTILE):
        if isinstance(name, int):
            assert seen[i] == str(name)
        elif len(name) > 1000:
            assert isinstance(seen[i], str)
            assert "~" in seen[i]  # hashed: the original name cannot be recovered
        else:
            assert seen[i] == name
    await call(other.pubsub.publish("mine", "own"))
    assert (await receive(outsider)).channel == "mine"  # and nothing of the other prefix before
    for s in (exact, by_pattern, outsider):
        await close(s)


@pytest.fixture
def private_redis() -> Iterator[str]:
    """A redis-server of the test's own: CLIENT KILL needs admin rights the suite's user may
    not have."""
    from tests.servers import RedisProcess

    backend_url("redis")  # skips (or fails in CI) when Redis is not installed
    server = RedisProcess().start()
    yield server.url
    server.cleanup()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_dropped_connection_raises_then_resubscribes(private_redis: str, mode: str) -> None:
    kits = Kits(private_redis, mode)
    kit = kits()
    try:
        await _drop_and_resubscribe(kit)
    finally:
        await kits.close()


async def _drop_and_resubscribe(kit: Any) -> None:
    sub = await call(kit.pubsub.subscribe("drop"))
    connection = sub._ps.connection
    if isinstance(sub, AsyncSubscription):
        host, port = connection._writer.get_extra_info("sockname")[:2]
    else:
        host, port = connection._sock.getsockname()[:2]
    assert await call(kit.client.client_kill(f"{host}:{port}"))
    with pytest.raises(RedkitConnectionError):
        await call(sub.get(5))
    # the next read reconnects and subscribes again; messages sent meanwhile are lost
    for attempt in range(20):
        await call(kit.pubsub.publish("drop", attempt))
        message = await call(sub.get(0.5))
        if message is not None:
            break
    assert message is not None
    assert message.channel == "drop"
    await close(sub)


# -- streams --------------------------------------------------------------------------------------
async def test_stream_add_read_ack(kit: Any) -> None:
    stream = kit.stream("jobs")
    first = await call(stream.add({"n": 1, "tags": ["a"]}))
    second = await call(stream.add({"n": 2}))
    assert isinstance(first, str)
    assert first < second or len(first) < len(second)
    got = await call(stream.read("workers", "a"))
    assert [(m.id, m.data, m.deliveries, m.malformed) for m in got] == [
        (first, {"n": 1, "tags": ["a"]}, 1, False),
        (second, {"n": 2}, 1, False),
    ]
    assert await call(stream.read("workers", "b")) == []  # the group handed them out already
    summary = await call(stream.pending("workers"))
    assert summary == PendingSummary(2, first, second, {"a": 2})
    assert await call(stream.ack("workers", got[0], second)) == 2
    assert await call(stream.ack("workers", first)) == 0
    assert await call(stream.ack("workers")) == 0
    assert (await call(stream.pending("workers"))).count == 0
    assert await call(stream.length()) == 2


async def test_groups_are_created_when_missing_and_start_from_the_beginning(kit: Any) -> None:
    stream = kit.stream("events")
    await call(stream.add({"early": True}))
    assert (await call(stream.pending("billing"))).count == 0  # no group yet: nothing pending
    got = await call(stream.read("billing", "c1", count=5))
    assert [m.data for m in got] == [{"early": True}]
    # every group gets every message
    assert [m.data for m in await call(stream.read("audit", "c1"))] == [{"early": True}]
    assert await call(stream.create_group("late", start="$")) is True
    assert await call(stream.create_group("late", start="$")) is False
    assert await call(stream.read("late", "c1")) == []
    await call(stream.add({"new": 1}))
    assert [m.data for m in await call(stream.read("late", "c1"))] == [{"new": 1}]


async def test_claim_stale_recovers_unacked_messages_only(kit: Any) -> None:
    stream = kit.stream("tasks")
    for i in range(3):
        await call(stream.add({"i": i}))
    taken = await call(stream.read("g", "dead-worker"))
    assert await call(stream.ack("g", taken[0])) == 1
    await asyncio.sleep(0.1)
    recovered = await call(stream.claim_stale("g", "live-worker", min_idle=0.05))
    assert [(m.data, m.deliveries) for m in recovered] == [({"i": 1}, 2), ({"i": 2}, 2)]
    # just claimed: not idle long enough to be taken again
    assert await call(stream.claim_stale("g", "third", min_idle=60)) == []
    assert (await call(stream.pending("g"))).consumers == {"live-worker": 2}
    # with no minimum idle time only the unacknowledged ones come back, counted again
    again = await call(stream.claim_stale("g", "third", min_idle=0, count=1))
    assert [(m.data, m.deliveries) for m in again] == [({"i": 1}, 3)]
    assert await call(stream.ack("g", *recovered)) == 2
    assert await call(stream.claim_stale("g", "third", min_idle=0)) == []
    assert await call(stream.claim_stale("no-such-group", "x", min_idle=0)) == []


async def test_consumers_of_one_group_share_the_work(kit: Any) -> None:
    stream = kit.stream("shared")
    await call(stream.create_group("g"))
    for i in range(40):
        await call(stream.add({"i": i}))

    def work_sync(consumer: str) -> list[int]:
        done = []
        while batch := stream.read("g", consumer, count=3):
            done += [m.data["i"] for m in batch]
            stream.ack("g", *batch)
        return done

    async def work(consumer: str) -> list[int]:
        done = []
        while batch := await stream.read("g", consumer, count=3):
            done += [m.data["i"] for m in batch]
            await stream.ack("g", *batch)
        return done

    names = [f"c{n}" for n in range(4)]
    if isinstance(stream, AsyncStream):
        results = await asyncio.gather(*(work(name) for name in names))
    else:
        with ThreadPoolExecutor(len(names)) as pool:
            results = list(pool.map(work_sync, names))
    everything = [i for done in results for i in done]
    assert sorted(everything) == list(range(40))  # each message went to exactly one consumer
    assert (await call(stream.pending("g"))).count == 0


async def test_blocking_read_outlasts_socket_timeout_and_wakes_on_add(make_kit: Kits) -> None:
    kit = make_kit(socket_timeout=0.5)
    stream = kit.stream("wait")
    assert await call(stream.create_group("g")) is True
    # longer than socket_timeout: several shorter BLOCK calls, no timeout error
    assert await call(stream.read("g", "c", timeout=0.6)) == []
    handle = await later(kit, 0.3, lambda: stream.add({"woke": True}))
    got = await call(stream.read("g", "c", timeout=30))
    await finish(handle)
    assert [m.data for m in got] == [{"woke": True}]


async def test_maxlen_bounds_the_stream(kit: Any) -> None:
    stream = kit.stream("bounded")
    for i in range(300):
        await call(stream.add({"i": i}, maxlen=10))
    length = await call(stream.length())
    assert 10 <= length < 300  # approximate trimming removes whole blocks of entries
    removed = await call(stream.trim(5, approximate=False))
    assert removed == length - 5
    assert await call(stream.length()) == 5
    got = await call(stream.read("g", "c", count=100))
    assert [m.data["i"] for m in got] == [295, 296, 297, 298, 299]


async def test_every_stream_key_has_a_ttl(kit: Any) -> None:
    default = kit.stream("default")
    await call(default.add({"x": 1}))
    short = kit.stream("short")
    await call(short.add({"x": 1}, ttl=60))
    made_by_group = kit.stream("group-only")
    await call(made_by_group.create_group("g"))
    week = 7 * 24 * 3600 * 1000
    assert week - 60_000 < await call(kit.client.pttl(default.key)) <= week
    assert 0 < await call(kit.client.pttl(short.key)) <= 60_000
    assert week - 60_000 < await call(kit.client.pttl(made_by_group.key)) <= week
    # add refreshes the lifetime
    await call(short.add({"x": 2}))
    assert await call(kit.client.pttl(short.key)) > 60_000
    keys = await stream_keys(kit)
    assert len(keys) == 3
    for key in keys:
        assert await call(kit.client.pttl(f"{kit.settings.prefix}:{key}")) > 0


async def test_hostile_stream_names_stay_inside_the_prefix(kit: Any) -> None:
    prefix = f"{kit.settings.prefix}:stream:{{"
    for i, name in enumerate(HOSTILE):
        stream = kit.stream(name)
        assert stream.key.startswith(prefix)
        assert stream.key.endswith("}")
        assert not any(c in stream.key[len(prefix) : -1] for c in "*?[]{} \n\r\t\x00")
        await call(stream.add({"i": i}))
        assert [m.data for m in await call(stream.read("g", "c"))] == [{"i": i}]
    keys = await stream_keys(kit)
    assert len(keys) == len(HOSTILE)
    for key in keys:
        assert await call(kit.client.pttl(f"{kit.settings.prefix}:{key}")) > 0
    for name in HOSTILE:
        assert await call(kit.stream(name).delete()) is True
    assert await stream_keys(kit) == []


async def test_entries_written_by_other_programs_are_marked_malformed(kit: Any) -> None:
    stream = kit.stream("foreign")
    await call(kit.client.xadd(stream.key, {b"x": b"\xff"}))
    await call(kit.client.xadd(stream.key, {b"json": b"not json"}))
    await call(stream.add({"ok": True}))
    got = await call(stream.read("g", "c"))
    assert [(m.malformed, m.data) for m in got] == [
        (True, {b"x": b"\xff"}),
        (True, {b"json": b"not json"}),
        (False, {"ok": True}),
    ]
    assert got[2].fields == {b"json": b'{"ok":true}'}


async def test_reading_a_stream_that_does_not_exist_creates_it_with_a_ttl(kit: Any) -> None:
    stream = kit.stream("never-added")
    assert await call(stream.read("g", "c")) == []
    assert await call(kit.client.pttl(stream.key)) > 0
    await call(stream.add({"first": 1}))
    assert [m.data for m in await call(stream.read("g", "c"))] == [{"first": 1}]


async def test_read_recreates_a_group_after_the_stream_was_deleted(kit: Any) -> None:
    stream = kit.stream("volatile")
    await call(stream.add({"v": 1}))
    assert len(await call(stream.read("g", "c"))) == 1
    assert await call(stream.delete()) is True
    assert await call(stream.delete()) is False
    assert await call(stream.length()) == 0
    await call(stream.add({"v": 2}))
    assert [m.data for m in await call(stream.read("g", "c"))] == [{"v": 2}]


async def test_stream_arguments_are_validated(kit: Any) -> None:
    stream = kit.stream("checked")
    with pytest.raises(TypeError, match="mapping"):
        await call(stream.add(["not", "a", "mapping"]))
    with pytest.raises(SerializationError, match=r'message\["at"\] is a datetime'):
        await call(stream.add({"at": datetime.date(2024, 1, 1)}))
    with pytest.raises(SerializationError, match="keys must be str"):
        await call(stream.add({1: "int key"}))
    for bad_maxlen in (0, -1):
        with pytest.raises(ValueError, match="maxlen"):
            await call(stream.add({"x": 1}, maxlen=bad_maxlen))
    with pytest.raises(TypeError, match="maxlen"):
        await call(stream.add({"x": 1}, maxlen=1.5))
    for bad_ttl in (0, -1, math.nan, math.inf):
        with pytest.raises(ValueError, match="ttl"):
            await call(stream.add({"x": 1}, ttl=bad_ttl))
    with pytest.raises(ValueError, match="count"):
        await call(stream.read("g", "c", count=0))
    with pytest.raises(ValueError, match="timeout"):
        await call(stream.read("g", "c", timeout=-1))
    with pytest.raises(ValueError, match="group"):
        await call(stream.read("", "c"))
    with pytest.raises(TypeError, match="consumer"):
        await call(stream.read("g", None))
    with pytest.raises(ValueError, match="entry ids"):
        await call(stream.ack("g", "not-an-id"))
    with pytest.raises(ValueError, match="start"):
        await call(stream.create_group("g", start="yesterday"))
    with pytest.raises(ValueError, match="min_idle"):
        await call(stream.claim_stale("g", "c", min_idle=-1))
    with pytest.raises(InvalidKeyError):
        kit.stream("")
    assert await stream_keys(kit) == []  # nothing was written by the refused calls


async def test_redis_down_raises_connection_errors(make_kit: Kits, backend: str) -> None:
    if backend != "redis":
        pytest.skip("needs a TCP URL")
    cls = redkit.Redkit if make_kit.mode == "sync" else redkit.asyncio.Redkit
    kit: Any = cls.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2, retry_attempts=0)
    try:
        with pytest.raises(RedkitConnectionError):
            await call(kit.pubsub.publish("c", 1))
        with pytest.raises(RedkitConnectionError):
            await call(kit.pubsub.subscribe("c"))
        with pytest.raises(RedkitConnectionError):
            await call(kit.stream("s").add({"x": 1}))
        with pytest.raises(RedkitConnectionError):
            await call(kit.stream("s").read("g", "c", timeout=1))
    finally:
        await call(kit.close() if hasattr(kit, "close") else kit.aclose())


def test_stream_message_repr_hides_raw_fields() -> None:
    message = StreamMessage("1-0", {"a": 1}, 1, {b"json": b'{"a":1}'})
    assert "json" not in repr(message)


async def test_an_async_subscription_starts_when_entered_awaited_or_read(
    url: str, prefix: str
) -> None:
    async with redkit.asyncio.Redkit.from_url(url, prefix=prefix) as akit:
        pending = akit.pubsub.subscribe("lazy")
        assert await subscribers(akit, "lazy") == 0  # nothing sent yet
        async with pending as sub:
            assert await subscribers(akit, "lazy") == 1
            await akit.pubsub.publish("lazy", {"n": 1})
            message = await sub.get(timeout=5)
            assert message is not None
            assert message.data == {"n": 1}
        assert await subscribers(akit, "lazy") == 0
        reader = akit.pubsub.subscribe("lazy2")
        assert await reader.get(timeout=0) is None  # the first read subscribes
        assert await subscribers(akit, "lazy2") == 1
        await reader.aclose()
        never = akit.pubsub.subscribe("lazy3")
        await never.aclose()  # closing one that never started sends nothing and ends it
        assert await never.get(timeout=0) is None
        assert await subscribers(akit, "lazy3") == 0


async def test_concurrent_first_reads_of_a_lazy_subscription_share_its_start(
    url: str, prefix: str
) -> None:
    async with redkit.asyncio.Redkit.from_url(url, prefix=prefix) as akit:
        sub = akit.pubsub.subscribe("together")
        assert await asyncio.gather(sub.get(0.2), sub.get(0.2), sub.get(0.2)) == [None] * 3
        await akit.pubsub.publish("together", 1)
        message = await sub.get(5)
        assert message is not None
        assert message.data == 1
        await sub.aclose()
