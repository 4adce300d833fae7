"""Invalidating a tag costs a constant number of round trips, whatever the number of entries."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import call


async def _tag_many(kit: Any, count: int, tag: str) -> None:
    batch = 1000
    for start in range(0, count, batch):
        await call(
            kit.cache.set_many(
                {f"e{i}": i for i in range(start, min(count, start + batch))}, tags=[tag]
            )
        )


@pytest.mark.parametrize("count", [10, 10_000])
async def test_invalidate_round_trips_do_not_grow_with_entries(kit: Any, count: int) -> None:
    await _tag_many(kit, count, "big")
    await call(kit.cache.set("untagged", "stays"))
    assert await call(kit.cache.get(f"e{count - 1}")) == count - 1

    before = kit.stats.snapshot()
    assert await call(kit.cache.invalidate(["big"])) == 1
    after = kit.stats.snapshot()
    assert after["round_trips"] - before["round_trips"] == 1
    assert after["commands"] - before["commands"] == 1

    # every one of the entries misses now, the untagged one is untouched
    keys = [f"e{i}" for i in range(count)]
    for start in range(0, count, 2000):
        assert await call(kit.cache.get_many(keys[start : start + 2000])) == {}
    assert await call(kit.cache.get("untagged")) == "stays"


async def test_invalidating_several_tags_is_one_round_trip(kit: Any) -> None:
    await call(kit.cache.set("a", 1, tags=["t1"]))
    await call(kit.cache.set("b", 2, tags=["t2"]))
    await call(kit.cache.set("c", 3, tags=["t3"]))
    before = kit.stats.get("round_trips")
    assert await call(kit.cache.invalidate(["t1", "t2"])) == 2
    assert kit.stats.get("round_trips") - before == 1
    assert await call(kit.cache.get_many(["a", "b", "c"])) == {"c": 3}


async def test_round_trips_of_the_hot_paths(kit: Any) -> None:
    async def trips(thunk: Any) -> int:
        before = kit.stats.get("round_trips")
        await call(thunk())
        return kit.stats.get("round_trips") - before

    c = kit.cache
    assert await trips(lambda: c.set("k", {"v": 1})) == 1
    assert await trips(lambda: c.get("k")) == 1  # untagged hit: one GET
    assert await trips(lambda: c.get_or_set("k", lambda: 0)) == 1
    assert await trips(lambda: c.get_or_set("miss", lambda: 1)) == 2  # fetch+lock, store
    assert await trips(lambda: c.get_or_set("tagged", lambda: 1, tags=["a", "b"])) == 2
    assert await trips(lambda: c.get_or_set("tagged", lambda: 1, tags=["a", "b"])) == 1
    assert await trips(lambda: c.get("tagged")) == 2  # GET, then the tag versions
