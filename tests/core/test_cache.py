"""kit.cache through the public API, on real Redis and memory://, sync and async."""

from __future__ import annotations

import asyncio
import datetime
import math
import uuid
from typing import Any

import pytest

import redkit.cache._fill
from redkit import InvalidKeyError, RedkitError, SerializationError
from tests.conftest import Kits, call


async def test_set_get_delete_roundtrip(kit: Any) -> None:
    cache = kit.cache
    value = {"name": "Ada", "tags": ["x", "y"], "n": 1.5, "ok": True, "none": None}
    assert await call(cache.get("user:1")) is None
    assert await call(cache.get("user:1", "dflt")) == "dflt"
    assert await call(cache.set("user:1", value)) is True
    assert await call(cache.get("user:1")) == value
    assert await call(cache.delete("user:1")) is True
    assert await call(cache.delete("user:1")) is False
    assert await call(cache.get("user:1")) is None


async def test_every_entry_has_a_ttl_with_jitter(kit: Any) -> None:
    await call(kit.cache.set("a", 1))
    await call(kit.cache.set("b", "x", ttl=10))
    ttls = []
    for key in ("a", "b"):
        raw_key = kit.cache._core.entry_key(key)
        ttls.append(await call(kit.client.pttl(raw_key)))
    # default 300 s plus up to 10% jitter; explicit 10 s plus up to 10%
    assert 299_000 <= ttls[0] <= 330_000
    assert 9_000 <= ttls[1] <= 11_000


async def test_jitter_spreads_expiry_of_keys_written_together(kit: Any) -> None:
    await call(kit.cache.set_many({f"k{i}": i for i in range(50)}, ttl=100))
    ttls = [await call(kit.client.pttl(kit.cache._core.entry_key(f"k{i}"))) for i in range(50)]
    assert all(99_000 <= t <= 110_000 for t in ttls)
    assert max(ttls) - min(ttls) > 2_000  # 50 draws of up to +10 s: spread over seconds


async def test_set_many_get_many_keep_order_and_skip_misses(kit: Any) -> None:
    await call(kit.cache.set_many({"a": 1, "b": [2], "c": {"3": 3}}))
    got = await call(kit.cache.get_many(["c", "missing", "a", "b"]))
    assert got == {"c": {"3": 3}, "a": 1, "b": [2]}
    assert list(got) == ["c", "a", "b"]
    assert await call(kit.cache.get_many([])) == {}


async def test_delete_many(kit: Any) -> None:
    await call(kit.cache.set_many({"a": 1, "b": 2}))
    assert await call(kit.cache.delete_many(["a", "b", "zz"])) == 2
    assert await call(kit.cache.get_many(["a", "b"])) == {}


async def test_touch_renews_lifetime(kit: Any) -> None:
    await call(kit.cache.set("a", 1, ttl=5))
    assert await call(kit.cache.touch("a", ttl=1000)) is True
    assert await call(kit.client.pttl(kit.cache._core.entry_key("a"))) > 900_000
    assert await call(kit.cache.touch("nope")) is False


async def test_incr_counts_atomically_and_keeps_a_ttl(kit: Any) -> None:
    assert await call(kit.cache.incr("hits")) == 1
    assert await call(kit.cache.incr("hits", 5)) == 6
    assert await call(kit.cache.incr("hits", -2)) == 4
    assert await call(kit.cache.get("hits")) == 4
    assert await call(kit.client.pttl(kit.cache._core.entry_key("hits"))) > 0
    await call(kit.cache.set("n", 10))  # ints written by set can be incremented
    assert await call(kit.cache.incr("n")) == 11
    await call(kit.cache.set("s", "text"))
    with pytest.raises(RedkitError, match="not an integer"):
        await call(kit.cache.incr("s"))
    with pytest.raises(TypeError):
        await call(kit.cache.incr("hits", 1.5))


async def test_entries_expire(kit: Any) -> None:
    await call(kit.cache.set("short", "v", ttl=0.05))
    await asyncio.sleep(0.2)
    assert await call(kit.cache.get("short")) is None


async def test_get_or_set_loads_once_then_hits(kit: Any) -> None:
    calls: list[int] = []

    def loader() -> dict[str, int]:
        calls.append(1)
        return {"v": len(calls)}

    assert await call(kit.cache.get_or_set("k", loader, ttl=60)) == {"v": 1}
    assert await call(kit.cache.get_or_set("k", loader, ttl=60)) == {"v": 1}
    assert calls == [1]
    assert await call(kit.cache.get("k")) == {"v": 1}


async def test_get_or_set_with_async_loader(make_kit: Kits) -> None:
    if make_kit.mode == "sync":
        kit = make_kit()

        async def aloader() -> int:
            return 1

        with pytest.raises(TypeError, match=r"redkit\.asyncio"):
            kit.cache.get_or_set("k", aloader)
        assert kit.cache.get("k") is None
        return
    kit = make_kit()

    async def loader() -> str:
        await asyncio.sleep(0)
        return "async value"

    assert await kit.cache.get_or_set("k", loader) == "async value"
    assert await kit.cache.get("k") == "async value"


async def test_loader_error_propagates_and_releases_the_lock(kit: Any) -> None:
    def boom() -> Any:
        raise LookupError("db down")

    with pytest.raises(LookupError, match="db down"):
        await call(kit.cache.get_or_set("k", boom))
    # the next caller is not blocked by a leftover lock: it loads at once
    assert await call(kit.cache.get_or_set("k", lambda: 7)) == 7


async def test_none_is_not_cached_unless_negative_caching_is_on(make_kit: Kits) -> None:
    kit = make_kit()
    calls: list[int] = []

    def missing() -> None:
        calls.append(1)

    assert await call(kit.cache.get_or_set("k", missing)) is None
    assert await call(kit.cache.get_or_set("k", missing)) is None
    assert calls == [1, 1]

    neg = make_kit(cache_negative_ttl=30)
    calls.clear()
    assert await call(neg.cache.get_or_set("k", missing, ttl=600)) is None
    assert await call(neg.cache.get_or_set("k", missing, ttl=600)) is None
    assert calls == [1]
    ttl = await call(neg.client.pttl(neg.cache._core.entry_key("k")))
    assert 0 < ttl <= 33_000  # the negative TTL, not the 600 s one


async def test_tag_invalidation(kit: Any) -> None:
    await call(kit.cache.set("u1", "ada", tags=["users", "user:1"]))
    await call(kit.cache.set("u2", "bob", tags=["users", "user:2"]))
    await call(kit.cache.set("other", "x"))
    assert await call(kit.cache.invalidate(["user:1"])) == 1
    assert await call(kit.cache.get("u1")) is None
    assert await call(kit.cache.get("u2")) == "bob"
    await call(kit.cache.invalidate(["users"]))
    assert await call(kit.cache.get_many(["u1", "u2", "other"])) == {"other": "x"}


async def test_get_or_set_with_tags_reloads_after_invalidation(kit: Any) -> None:
    n = iter(range(100))
    first = await call(kit.cache.get_or_set("report", lambda: next(n), tags=["orders"]))
    again = await call(kit.cache.get_or_set("report", lambda: next(n), tags=["orders"]))
    assert first == again == 0
    await call(kit.cache.invalidate(["orders"]))
    assert await call(kit.cache.get("report")) is None
    assert await call(kit.cache.get_or_set("report", lambda: next(n), tags=["orders"])) == 1
    assert await call(kit.cache.get("report")) == 1


async def test_invalidation_during_load_is_not_lost(kit: Any) -> None:
    # the tag changes while the loader runs: the stored value must not be served as valid
    async def invalidate_now() -> None:
        await call(kit.cache.invalidate(["t"]))

    if kit.__module__ == "redkit._client":

        def loader() -> str:
            kit.cache.invalidate(["t"])
            return "old data"
    else:

        async def loader() -> str:
            await invalidate_now()
            return "old data"

    assert await call(kit.cache.get_or_set("k", loader, tags=["t"])) == "old data"
    assert await call(kit.cache.get("k")) is None
    assert await call(kit.cache.get_or_set("k", lambda: "new data", tags=["t"])) == "new data"


async def test_tag_keys_outlive_long_entries(make_kit: Kits) -> None:
    kit = make_kit(cache_tag_ttl=100)
    await call(kit.cache.set("k", 1, ttl=10_000, tags=["t"]))
    tag_ttl = await call(kit.client.pttl(kit.cache._core.tag_key("t")))
    assert tag_ttl >= 10_000_000
    assert await call(kit.cache.get("k")) == 1


async def test_missing_tag_key_makes_entry_miss(kit: Any) -> None:
    await call(kit.cache.set("k", 1, tags=["t"]))
    await call(kit.client.delete(kit.cache._core.tag_key("t")))
    assert await call(kit.cache.get("k")) is None


async def test_cached_decorator_default_key(make_kit: Kits) -> None:
    kit = make_kit()
    calls: list[tuple[int, int]] = []
    if make_kit.mode == "sync":

        @kit.cache.cached(ttl=60)
        def add(a: int, b: int = 2) -> int:
            calls.append((a, b))
            return a + b
    else:

        @kit.cache.cached(ttl=60)
        async def add(a: int, b: int = 2) -> int:
            calls.append((a, b))
            return a + b

    assert await call(add(1)) == 3
    assert await call(add(1, 2)) == 3
    assert await call(add(a=1, b=2)) == 3
    assert await call(add(2)) == 4
    assert calls == [(1, 2), (2, 2)]
    assert add.key_for(1) == add.key_for(a=1, b=2) != add.key_for(2)
    assert add.__name__ == "add"
    assert await call(add.invalidate(1)) is True
    assert await call(add(1)) == 3
    assert calls == [(1, 2), (2, 2), (1, 2)]


async def test_cached_decorator_key_template_and_tags(make_kit: Kits) -> None:
    kit = make_kit()
    loads: list[int] = []
    if make_kit.mode == "sync":

        @kit.cache.cached(key="user:{user_id}", tags=["users", "user:{user_id}"])
        def load_user(user_id: int) -> dict[str, int]:
            loads.append(user_id)
            return {"id": user_id}
    else:

        @kit.cache.cached(key="user:{user_id}", tags=["users", "user:{user_id}"])
        async def load_user(user_id: int) -> dict[str, int]:
            loads.append(user_id)
            return {"id": user_id}

    assert await call(load_user(7)) == {"id": 7}
    assert await call(kit.cache.get("user:7")) == {"id": 7}
    assert await call(load_user(7)) == {"id": 7}
    await call(kit.cache.invalidate(["user:7"]))
    assert await call(load_user(7)) == {"id": 7}
    assert loads == [7, 7]


def test_cached_decorator_on_methods_skips_self(sync_kit: Any) -> None:
    kit = sync_kit
    seen: list[int] = []

    class Repo:
        @kit.cache.cached(ttl=60)
        def find(self, x: int) -> int:
            seen.append(x)
            return x * 10

    assert Repo().find(3) == 30
    assert Repo().find(3) == 30
    assert seen == [3]


def test_cached_decorator_rejects_the_wrong_kind_of_function() -> None:
    import redkit
    import redkit.asyncio

    kit = redkit.Redkit.from_url(f"memory://{uuid.uuid4().hex}")
    akit = redkit.asyncio.Redkit.from_url(f"memory://{uuid.uuid4().hex}")

    async def coro() -> int:
        return 1

    def plain() -> int:
        return 1

    with pytest.raises(TypeError, match=r"redkit\.asyncio"):
        kit.cache.cached()(coro)
    with pytest.raises(TypeError, match=r"redkit\.Redkit"):
        akit.cache.cached()(plain)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError, match="usr_id"):

        @kit.cache.cached(key="user:{usr_id}")
        def f(user_id: int) -> int:
            return user_id


def test_cached_default_key_needs_json_arguments(sync_kit: Any) -> None:
    kit = sync_kit

    @kit.cache.cached()
    def f(when: Any) -> int:
        return 1

    with pytest.raises(InvalidKeyError, match=r'arguments\["when"\] is a datetime.datetime'):
        f(datetime.datetime.now())


async def test_unserializable_values_raise_clear_errors_and_write_nothing(kit: Any) -> None:
    with pytest.raises(SerializationError, match=r'value\["when"\] is a datetime\.datetime'):
        await call(kit.cache.set("k", {"when": datetime.datetime.now()}))
    with pytest.raises(SerializationError, match=r"value\[1\] is a set"):
        await call(kit.cache.set_many({"a": 1, "b": [1, {2}]}))
    with pytest.raises(SerializationError, match="nan"):
        await call(kit.cache.set("k", math.nan))
    with pytest.raises(SerializationError, match="is a object"):
        await call(kit.cache.get_or_set("k", object))
    assert await call(kit.cache.get_many(["k", "a", "b"])) == {}
    # the failed get_or_set released its lock: the next one loads immediately
    assert await call(kit.cache.get_or_set("k", lambda: 5)) == 5


HOSTILE_KEYS = [
    "*",
    "user:*",
    "a?b[c]",
    "{tag}",
    "}{",
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


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=lambda k: repr(k)[:20])
async def test_hostile_keys_are_stored_safely(kit: Any, key: object) -> None:
    await call(kit.cache.set(key, {"k": repr(key)[:30]}))
    assert await call(kit.cache.get(key)) == {"k": repr(key)[:30]}
    raw = kit.cache._core.entry_key(key)
    assert raw.startswith(f"{kit.settings.prefix}:cache:{{")
    assert len(raw) < 400
    body = raw[len(kit.settings.prefix) + len(":cache:") :]
    assert not any(c in body[1:-1] for c in "*?[]{} \n\r\t\x00")
    # the pattern-like key did not touch or match any other entry
    await call(kit.cache.set("user:1", "safe"))
    assert await call(kit.cache.delete(key)) is True
    assert await call(kit.cache.get("user:1")) == "safe"


async def test_similar_keys_never_collide(kit: Any) -> None:
    keys: list[object] = ["a b", "a%20b", "a_b", "a~b", "A b", b"a b", "x" * 300, "x" * 301]
    for i, key in enumerate(keys):
        await call(kit.cache.set(key, i))
    # bytes and str of the same text address the same entry, by design
    assert await call(kit.cache.get("a b")) == 5
    for i, key in enumerate(keys[1:], start=1):
        assert await call(kit.cache.get(key)) == i


@pytest.mark.parametrize("bad", ["", b"", None, 1.5, True, ("a",)])
async def test_invalid_keys_raise_typed_errors(kit: Any, bad: object) -> None:
    with pytest.raises(InvalidKeyError):
        await call(kit.cache.set(bad, 1))
    with pytest.raises(InvalidKeyError):
        await call(kit.cache.get(bad))


@pytest.mark.parametrize("ttl", [0, -1, math.nan, math.inf])
async def test_invalid_ttls_raise(kit: Any, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await call(kit.cache.set("k", 1, ttl=ttl))
    assert await call(kit.cache.get("k")) is None


async def test_bad_tags_raise(kit: Any) -> None:
    with pytest.raises(TypeError, match="single string"):
        await call(kit.cache.set("k", 1, tags="users"))
    with pytest.raises(InvalidKeyError):
        await call(kit.cache.set("k", 1, tags=[""]))


async def test_clear_removes_only_this_prefix(make_kit: Kits) -> None:
    a, b = make_kit(), make_kit()
    await call(a.cache.set_many({f"k{i}": i for i in range(20)}, tags=["t"]))
    await call(b.cache.set("k1", "b's"))
    assert await call(a.cache.clear()) == 21  # 20 entries and the tag key
    assert await call(a.cache.get_many([f"k{i}" for i in range(20)])) == {}
    assert await call(b.cache.get("k1")) == "b's"


async def test_stale_while_revalidate_serves_stale_while_one_refreshes(make_kit: Kits) -> None:
    kit = make_kit(cache_jitter=0)
    loads: list[int] = []

    def loader() -> int:
        loads.append(1)
        return len(loads)

    assert await call(kit.cache.get_or_set("k", loader, ttl=0.1, stale_ttl=30)) == 1
    await asyncio.sleep(0.2)
    # logically expired, within the stale window: a plain get misses...
    assert await call(kit.cache.get("k")) is None
    # ...while another caller holds the refresh lock, get_or_set serves the stale value at once
    core = kit.cache._core
    await call(kit.client.set(core.lock_key("k"), "someone-else", px=5000))
    assert await call(kit.cache.get_or_set("k", loader, ttl=0.1, stale_ttl=30)) == 1
    assert loads == [1]
    await call(kit.client.delete(core.lock_key("k")))
    # with the lock free, the caller refreshes
    assert await call(kit.cache.get_or_set("k", loader, ttl=60, stale_ttl=30)) == 2
    assert await call(kit.cache.get("k")) == 2


async def test_early_refresh_reloads_before_expiry(make_kit: Kits) -> None:
    kit = make_kit(cache_jitter=0)
    loads: list[int] = []

    def slow_loader() -> int:
        import time

        time.sleep(0.05)
        loads.append(1)
        return len(loads)

    await call(kit.cache.get_or_set("k", slow_loader, ttl=0.4, early_refresh=50))
    # with a huge beta every read close to expiry refreshes early; without it, none would
    for _ in range(5):
        await call(kit.cache.get_or_set("k", slow_loader, ttl=0.4, early_refresh=50))
    assert len(loads) >= 2
    # every load after the first was an early refresh, and each was counted once
    assert kit.stats.get("cache_early_refreshes") == len(loads) - 1
    assert await call(kit.cache.get("k")) == len(loads)


async def test_stats_count_hits_and_misses(kit: Any) -> None:
    await call(kit.cache.get("nope"))
    await call(kit.cache.set("k", 1))
    await call(kit.cache.get("k"))
    snap = kit.stats.snapshot()
    assert snap["cache_misses"] == 1
    assert snap["cache_hits"] == 1


async def test_tag_keys_are_extended_by_every_write(kit: Any) -> None:
    # a tag key near the end of its life must not expire before a new entry carrying it
    tag_key = kit.cache._core.tag_key("t")
    await call(kit.client.set(tag_key, "v1", px=500))
    await call(kit.cache.set("k", 1, ttl=60, tags=["t"]))
    assert await call(kit.client.pttl(tag_key)) > 59_000
    await asyncio.sleep(0.6)
    assert await call(kit.cache.get("k")) == 1


async def test_fresh_value_is_served_while_another_caller_refreshes_early(
    make_kit: Kits, monkeypatch: pytest.MonkeyPatch
) -> None:
    kit = make_kit(cache_jitter=0)
    core = kit.cache._core
    await call(kit.cache.get_or_set("k", lambda: "v1", ttl=60))
    # force every read to choose an early refresh, while another caller already holds the lock
    monkeypatch.setattr(redkit.cache._fill, "_refresh_early", lambda entry, pttl, beta: True)
    await call(kit.client.set(core.lock_key("k"), "someone-else", px=5000))
    assert await call(kit.cache.get_or_set("k", lambda: "v2", ttl=60, early_refresh=1)) == "v1"
    snap = kit.stats.snapshot()
    assert snap.get("cache_stale_hits", 0) == 0
    assert snap.get("cache_early_refreshes", 0) == 0  # counted only when this caller reloads
    await call(kit.client.delete(core.lock_key("k")))
    assert await call(kit.cache.get_or_set("k", lambda: "v2", ttl=60, early_refresh=1)) == "v2"
    assert kit.stats.get("cache_early_refreshes") == 1
    assert kit.stats.get("cache_refreshes") == 1


async def test_a_stale_hit_costs_one_round_trip(make_kit: Kits) -> None:
    kit = make_kit(cache_jitter=0)
    core = kit.cache._core
    await call(kit.cache.get_or_set("k", lambda: 1, ttl=0.05, stale_ttl=30))
    await asyncio.sleep(0.1)
    await call(kit.client.set(core.lock_key("k"), "someone-else", px=5000))
    before = kit.stats.get("round_trips")
    assert await call(kit.cache.get_or_set("k", lambda: 2, ttl=0.05, stale_ttl=30)) == 1
    assert kit.stats.get("round_trips") - before == 1


def test_cached_methods_keep_invalidate_and_key_for(sync_kit: Any) -> None:
    calls: list[int] = []

    class Repo:
        def __init__(self, name: str) -> None:
            self.name = name

        @sync_kit.cache.cached(key="repo:{self.name}:{x}")
        def find(self, x: int) -> int:
            calls.append(x)
            return x

    repo = Repo("a")
    assert repo.find(1) == 1
    assert repo.find(1) == 1
    assert repo.find.key_for(1) == "repo:a:1"
    assert repo.find.invalidate(1) is True
    assert repo.find(1) == 1
    assert calls == [1, 1]
    assert Repo("b").find.key_for(1) == "repo:b:1"


async def test_delete_during_a_load_is_not_overwritten_by_it(make_kit: Kits) -> None:
    kit = make_kit()
    if make_kit.mode == "sync":

        def loader() -> str:
            kit.cache.delete("user:1")  # the row changed while it was being read
            return "old row"
    else:

        async def loader() -> str:
            await kit.cache.delete("user:1")
            return "old row"

    assert await call(kit.cache.get_or_set("user:1", loader)) == "old row"
    assert await call(kit.cache.get("user:1")) is None
    assert kit.stats.get("cache_stores_skipped") == 1
    assert kit.stats.get("cache_loads") == 0


async def test_set_during_a_load_wins_over_it(make_kit: Kits) -> None:
    kit = make_kit()
    if make_kit.mode == "sync":

        def loader() -> str:
            kit.cache.set("user:1", "new row")
            return "old row"
    else:

        async def loader() -> str:
            await kit.cache.set("user:1", "new row")
            return "old row"

    assert await call(kit.cache.get_or_set("user:1", loader)) == "old row"
    assert await call(kit.cache.get("user:1")) == "new row"


async def test_scan_survives_foreign_keys_that_are_not_utf8(kit: Any) -> None:
    raw = kit.settings.prefix.encode() + b":other:\xff\xfe"
    await call(kit.client.set(raw, b"x", px=60_000))
    found = kit.scan("other:*")
    keys = [k async for k in found] if hasattr(found, "__aiter__") else list(found)
    assert keys == ["other:\\xff\\xfe"]


def test_a_call_repr_shows_no_arguments() -> None:
    from redkit._ops import command

    assert repr(command("GET", "app:session:{ab}:secret")) == "Call(GET, 1 args)"


async def _refresh_with(kit: Any, mode: str, during: Any) -> Any:
    """get_or_set over an entry that is there but invalid (its tag changed), with ``during``
    (given the client) run inside the loader; returns what get_or_set answered."""
    await call(kit.cache.set("user:1", "stale row", tags=["users"]))
    await call(kit.cache.invalidate(["users"]))
    if mode == "sync":

        def loader() -> str:
            during(kit)
            return "old row"
    else:

        async def loader() -> str:
            await during(kit)
            return "old row"

    return await call(kit.cache.get_or_set("user:1", loader, tags=["users"]))


async def test_set_during_a_refresh_wins_over_it(make_kit: Kits) -> None:
    kit = make_kit()
    assert await _refresh_with(kit, make_kit.mode, lambda k: k.cache.set("user:1", "new")) == (
        "old row"
    )
    assert await call(kit.cache.get("user:1")) == "new"
    assert kit.stats.get("cache_stores_skipped") == 1


async def test_incr_during_a_load_is_not_overwritten_by_it(make_kit: Kits) -> None:
    kit = make_kit()
    if make_kit.mode == "sync":

        def loader() -> int:
            kit.cache.incr("hits")  # a counter started while its value was being computed
            return 100
    else:

        async def loader() -> int:
            await kit.cache.incr("hits")
            return 100

    assert await call(kit.cache.get_or_set("hits", loader)) == 100
    assert await call(kit.cache.get("hits")) == 1
    assert kit.stats.get("cache_stores_skipped") == 1


async def test_an_entry_gone_by_expiry_during_a_refresh_is_replaced(make_kit: Kits) -> None:
    kit = make_kit()

    def expire(k: Any) -> Any:  # what an expiry does: the entry goes, the lock stays
        return k.client.unlink(k.cache._core.entry_key("user:1"))

    assert await _refresh_with(kit, make_kit.mode, expire) == "old row"
    assert await call(kit.cache.get_or_set("user:1", lambda: "not called", tags=["users"])) == (
        "old row"
    )
    assert kit.stats.get("cache_loads") == 1
