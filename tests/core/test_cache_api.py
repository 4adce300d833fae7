"""kit.cache's lower-level calls (using, set nx/xx, incr create, ttl, expire, keys,
delete_matching) through the public API, on real Redis, the cluster and memory://, sync and
async; patterns are hostile where they can be."""

from __future__ import annotations

import math
from typing import Any

import pytest

from redkit import SerializationError
from redkit.serializers import JsonSerializer, PickleSerializer
from tests.conftest import Kits, call


async def listed(kit: Any, pattern: str = "*") -> list[Any]:
    found = kit.cache.keys(pattern)
    if hasattr(found, "__aiter__"):
        return sorted([k async for k in found], key=repr)
    return sorted(found, key=repr)


async def test_using_writes_and_reads_with_another_serializer(kit: Any) -> None:
    pickled = kit.cache.using(PickleSerializer("a-secret"))
    when = {1, 2, 3}  # a set: JSON cannot hold it, pickle can
    assert await call(pickled.set("p", when)) is True
    assert await call(pickled.get("p")) == when
    # the same keys, counters and client: the JSON cache sees the entry and cannot read it
    assert await call(kit.cache.get("p", "unreadable")) == "unreadable"
    assert kit.stats.get("cache_unreadable") == 1
    other_secret = kit.cache.using(PickleSerializer("another-secret"))
    assert await call(other_secret.get("p", "refused")) == "refused"  # never unpickled
    assert await call(kit.cache.using(JsonSerializer()).delete("p")) is True


async def test_using_refuses_what_its_serializer_cannot_write(kit: Any) -> None:
    with pytest.raises(SerializationError):
        await call(kit.cache.using(JsonSerializer()).set("s", {1, 2}))
    assert await call(kit.cache.get("s")) is None  # nothing was written


async def test_set_nx_and_xx(kit: Any) -> None:
    cache = kit.cache
    assert await call(cache.set("k", "first", xx=True)) is False  # no entry to replace
    assert await call(cache.get("k")) is None
    assert await call(cache.set("k", "first", nx=True)) is True
    assert await call(cache.set("k", "second", nx=True)) is False
    assert await call(cache.get("k")) == "first"
    assert await call(cache.set("k", "third", xx=True)) is True
    assert await call(cache.get("k")) == "third"
    with pytest.raises(ValueError, match="nx and xx"):
        await call(cache.set("k", "x", nx=True, xx=True))
    assert await call(cache.get("k")) == "third"


async def test_incr_creates_or_refuses_and_adds_up_to_100_digits(kit: Any) -> None:
    cache = kit.cache
    with pytest.raises(KeyError):
        await call(cache.incr("n", create=False))
    assert await call(cache.get("n")) is None  # not created
    assert await call(cache.incr("n", 5)) == 5
    assert 0 < (await call(cache.ttl("n"))) <= 330  # a created counter has a lifetime
    big = 10**99  # past 64 bits: added in decimal, exactly
    assert await call(cache.incr("n", big, create=False)) == big + 5
    assert await call(cache.incr("n", -big)) == 5
    assert await call(cache.incr("n", -(2**63 + 10))) == 5 - (2**63 + 10)
    assert await call(cache.get("n")) == 5 - (2**63 + 10)
    for bad in (10**100, -(10**100)):
        with pytest.raises(ValueError, match="100 digits"):
            await call(cache.incr("n", bad))
    with pytest.raises(TypeError):
        await call(cache.incr("n", True))
    assert await call(cache.get("n")) == 5 - (2**63 + 10)


async def test_ttl_and_expire(kit: Any) -> None:
    cache = kit.cache
    assert await call(cache.ttl("absent")) is None
    assert await call(cache.expire("absent", 10)) is False
    assert await call(cache.set("k", 1, ttl=100)) is True
    assert 90 < (await call(cache.ttl("k"))) <= 110  # with up to 10% jitter
    assert await call(cache.expire("k", 5)) is True
    assert 4 < (await call(cache.ttl("k"))) <= 5  # exactly what was asked: no jitter
    await call(kit.client.persist(kit.cache._core.entry_key("k")))  # written by someone else
    assert await call(cache.ttl("k")) == math.inf
    for bad in (0, -1, float("nan"), "10"):
        with pytest.raises((ValueError, TypeError)):
            await call(cache.expire("k", bad))


async def test_keys_lists_entries_only_within_the_prefix(make_kit: Kits) -> None:
    kit, neighbour = make_kit(), make_kit()
    await call(kit.cache.set_many({"user:1": 1, "user:2": 2, "order:1": 3}))
    await call(kit.cache.set("tagged", 4, tags=["t"]))  # its tag version key is not an entry
    await call(neighbour.cache.set("user:3", 5))  # another prefix, same database
    assert await listed(kit) == ["order:1", "tagged", "user:1", "user:2"]
    assert await listed(kit, "user:*") == ["user:1", "user:2"]
    assert await listed(kit, "user:?") == ["user:1", "user:2"]
    assert await listed(kit, "user:[^1]") == ["user:2"]
    assert await listed(neighbour) == ["user:3"]


@pytest.mark.parametrize(
    "pattern",
    ["}*", "*}*{*", "*:lock", "*cache:*", "..*", "\\", "[", "*\x00*", "*%2A*", "*~*"],
)
async def test_a_hostile_pattern_stays_inside_the_entries_of_the_prefix(
    make_kit: Kits, pattern: str
) -> None:
    kit, neighbour = make_kit(), make_kit()
    await call(kit.cache.set("plain", 1))
    await call(neighbour.cache.set("}x{", 1))
    found = await listed(kit, pattern)
    assert all(k == "plain" for k in found)  # never a lock, a tag, or another prefix's key
    assert await call(kit.cache.delete_matching(pattern)) == len(found)
    assert await call(neighbour.cache.get("}x{")) == 1


async def test_glob_characters_in_keys_are_literal(kit: Any) -> None:
    await call(kit.cache.set_many({"a*b": 1, "axb": 2, "a?": 3, "[x]": 4, "a\\b": 5}))
    assert await listed(kit, "a\\*b") == ["a*b"]  # the escaped star matches a star only
    assert await listed(kit, "a*b") == ["a*b", "a\\b", "axb"]
    assert await listed(kit, "a\\?") == ["a?"]
    assert await listed(kit, "\\[x\\]") == ["[x]"]
    assert await listed(kit, "a\\\\b") == ["a\\b"]


async def test_delete_matching_deletes_only_the_matches(kit: Any) -> None:
    await call(kit.cache.set_many({f"user:{i}": i for i in range(30)} | {"order:1": 1}))
    assert await call(kit.cache.delete_matching("user:*")) == 30
    assert await listed(kit) == ["order:1"]
    assert await call(kit.cache.delete_matching("user:*")) == 0
    with pytest.raises(ValueError):
        await call(kit.cache.delete_matching(""))
    with pytest.raises(TypeError):
        await call(kit.cache.delete_matching(b"*"))  # type: ignore[arg-type]
    assert await call(kit.cache.get("order:1")) == 1


def test_listing_and_deleting_use_scan_never_keys(make_kit: Kits) -> None:
    if make_kit.mode != "sync":
        pytest.skip("the sync client's commands are watched; the async one shares the logic")
    kit = make_kit()
    kit.cache.set_many({"a": 1, "b": 2})
    sent: list[str] = []
    execute = kit.client.execute_command

    def watch(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]).upper())
        return execute(*args, **options)

    kit.client.execute_command = watch
    try:
        assert sorted(kit.cache.keys("*")) == ["a", "b"]
        assert kit.cache.delete_matching("*") == 2
    finally:
        del kit.client.execute_command
    assert "KEYS" not in sent
    assert "SCAN" in sent or not sent  # a cluster client scans through its nodes
