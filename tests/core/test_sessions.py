"""kit.sessions through the public API, on real Redis, memory:// and a cluster, sync and async."""

from __future__ import annotations

import asyncio
import datetime
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest

import redkit
import redkit.asyncio
from redkit import (
    InvalidKeyError,
    RedkitConnectionError,
    SerializationError,
    SessionTooLarge,
)
from redkit.sessions import SID_LENGTH, SessionData, valid_sid
from tests.conftest import Kits, call, new_prefix, proxied_url
from tests.servers import ReplyDroppingProxy, free_port

USER = {"user_id": 42, "name": "Ada", "roles": ["admin"], "prefs": {"dark": True}, "x": None}


def unknown_sid() -> str:
    """Well-formed, never created."""
    return "AA" + secrets.token_urlsafe(32)


async def keys_of(kit: Any) -> list[str]:
    found = kit.scan()
    if hasattr(found, "__aiter__"):
        return [k async for k in found]
    return list(found)


async def pttl(kit: Any, sid: str) -> int:
    return int(await call(kit.client.pttl(kit.sessions._core.key(sid))))


async def concurrently(make_kit: Kits, jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run ``jobs`` at once: threads released by a barrier (sync), or tasks (async)."""
    if make_kit.mode == "sync":
        barrier = threading.Barrier(len(jobs))

        def run(job: Callable[[], Any]) -> Any:
            barrier.wait()
            return job()

        with ThreadPoolExecutor(len(jobs)) as pool:
            return list(pool.map(run, jobs))
    return list(await asyncio.gather(*(job() for job in jobs)))


# -- round trips --------------------------------------------------------------------------------
async def test_create_load_roundtrip(kit: Any) -> None:
    sid = await call(kit.sessions.create(USER))
    assert valid_sid(sid) == sid
    assert len(sid) == SID_LENGTH
    assert await call(kit.sessions.load(sid)) == USER
    empty = await call(kit.sessions.create())
    assert empty != sid
    assert await call(kit.sessions.load(empty)) == {}  # exists, holds nothing
    assert await call(kit.sessions.touch(empty)) is True
    assert kit.stats.get("session_creates") == 2
    assert kit.stats.get("session_hits") == 2


async def test_save_writes_changes_and_deletes_removed_keys(kit: Any) -> None:
    sid = await call(kit.sessions.create({"a": 1, "b": 2, "c": 3}))
    assert await call(kit.sessions.save(sid, {"b": [2, 2], "d": "new"}, ["c", "missing"])) is True
    assert await call(kit.sessions.load(sid)) == {"a": 1, "b": [2, 2], "d": "new"}
    assert await call(kit.sessions.save(sid, removed=["a", "b", "d"])) is True
    assert await call(kit.sessions.load(sid)) == {}
    assert await call(kit.sessions.save(sid)) is True  # nothing to write: still alive
    assert await call(kit.sessions.destroy(sid)) is True
    assert await call(kit.sessions.destroy(sid)) is False
    assert await call(kit.sessions.load(sid)) is None
    assert await keys_of(kit) == []


async def test_bad_arguments_raise_typed_errors_and_write_nothing(kit: Any) -> None:
    sid = await call(kit.sessions.create({"a": 1}))
    with pytest.raises(InvalidKeyError, match="must be str"):
        await call(kit.sessions.create({1: "x"}))
    with pytest.raises(InvalidKeyError, match="must be str"):
        await call(kit.sessions.save(sid, {("t",): 1}))
    with pytest.raises(InvalidKeyError, match="Unicode"):
        await call(kit.sessions.save(sid, {"\ud800": 1}))
    with pytest.raises(TypeError, match="single string"):
        await call(kit.sessions.save(sid, {}, "a"))
    with pytest.raises(ValueError, match="both changed and removed"):
        await call(kit.sessions.save(sid, {"a": 2}, ["a"]))
    with pytest.raises(TypeError, match="mapping"):
        await call(kit.sessions.create([("a", 1)]))
    with pytest.raises(TypeError, match="SessionData"):
        await call(kit.sessions.commit({"a": 1}))
    assert await call(kit.sessions.load(sid)) == {"a": 1}
    assert len(await keys_of(kit)) == 1


async def test_many_keys_in_one_write(kit: Any) -> None:
    # more fields than one HSET/HDEL in the scripts takes at once
    data = {f"k{i}": i for i in range(700)}
    sid = await call(kit.sessions.create(data))
    assert await call(kit.sessions.load(sid)) == data
    changes = {f"k{i}": -i for i in range(0, 700, 2)}
    removed = [f"k{i}" for i in range(1, 700, 2)]
    assert await call(kit.sessions.save(sid, changes, removed)) is True
    assert await call(kit.sessions.load(sid)) == changes


# -- concurrency --------------------------------------------------------------------------------
async def test_concurrent_saves_of_different_keys_all_survive(make_kit: Kits) -> None:
    kit = make_kit()
    sid = await call(kit.sessions.create({"base": 0}))
    writers = 16

    def job(i: int) -> Callable[[], Any]:
        return lambda: kit.sessions.save(sid, {f"k{i}": i})

    assert await concurrently(make_kit, [job(i) for i in range(writers)]) == [True] * writers
    expected = {"base": 0, **{f"k{i}": i for i in range(writers)}}
    assert await call(kit.sessions.load(sid)) == expected


async def test_concurrent_requests_open_change_commit_all_survive(make_kit: Kits) -> None:
    kit = make_kit()
    sid = await call(kit.sessions.create({"base": 0}))
    requests = 12
    if make_kit.mode == "sync":

        def job(i: int) -> Callable[[], Any]:
            def request() -> Any:
                session = kit.sessions.open(sid)
                session[f"k{i}"] = i
                return kit.sessions.commit(session)

            return request
    else:

        def job(i: int) -> Callable[[], Any]:
            async def request() -> Any:
                session = await kit.sessions.open(sid)
                session[f"k{i}"] = i
                return await kit.sessions.commit(session)

            return request

    assert await concurrently(make_kit, [job(i) for i in range(requests)]) == [sid] * requests
    expected = {"base": 0, **{f"k{i}": i for i in range(requests)}}
    assert await call(kit.sessions.load(sid)) == expected


async def test_interleaved_requests_on_one_session_keep_both_changes(kit: Any) -> None:
    sid = await call(kit.sessions.create({"cart": [1], "theme": "light", "flash": "hi"}))
    first = await call(kit.sessions.open(sid))  # request 1 loads
    second = await call(kit.sessions.open(sid))  # request 2 loads the same state
    first["cart"].append(2)  # changed in place: found by comparing with what was loaded
    second["theme"] = "dark"
    del second["flash"]
    assert await call(kit.sessions.commit(first)) == sid
    assert await call(kit.sessions.commit(second)) == sid
    # request 2 did not write back the cart it loaded before request 1's change
    assert await call(kit.sessions.load(sid)) == {"cart": [1, 2], "theme": "dark"}


# -- regenerate ---------------------------------------------------------------------------------
async def test_regenerate_keeps_data_and_the_old_id_is_gone(kit: Any) -> None:
    sid = await call(kit.sessions.create(USER))
    new = await call(kit.sessions.regenerate(sid))
    assert valid_sid(new) == new
    assert new != sid
    assert new[:2] == sid[:2]
    assert new[2:] != sid[2:]
    assert await call(kit.sessions.load(sid)) is None
    assert await call(kit.sessions.load(new)) == USER
    assert await call(kit.sessions.save(sid, {"stolen": 1})) is False
    assert await call(kit.sessions.regenerate(sid)) is None
    assert await pttl(kit, new) > 0
    assert len(await keys_of(kit)) == 1
    assert kit.stats.get("session_regenerations") == 1


async def test_commit_after_regenerate_moves_and_writes_in_one_step(kit: Any) -> None:
    sid = await call(kit.sessions.create({"cart": [1]}))
    session = await call(kit.sessions.open(sid))
    assert session.modified is False
    session["user_id"] = 7  # logging in: new privileges, new id
    session.regenerate()
    new = await call(kit.sessions.commit(session))
    assert new != sid
    assert session.sid == new
    assert session.modified is False
    assert await call(kit.sessions.load(sid)) is None
    assert await call(kit.sessions.load(new)) == {"cart": [1], "user_id": 7}
    session.regenerate()  # nothing else changed: the id still moves
    newer = await call(kit.sessions.commit(session))
    assert newer not in (sid, new)
    assert await call(kit.sessions.load(newer)) == {"cart": [1], "user_id": 7}
    assert len(await keys_of(kit)) == 1


# -- unknown, destroyed and hostile ids ---------------------------------------------------------
async def test_unknown_id_is_never_adopted(kit: Any) -> None:
    sid = unknown_sid()
    assert await call(kit.sessions.load(sid)) is None
    assert await call(kit.sessions.save(sid, {"user_id": 1})) is False
    assert await call(kit.sessions.touch(sid)) is False
    assert await call(kit.sessions.regenerate(sid)) is None
    assert await call(kit.sessions.destroy(sid)) is False
    session = await call(kit.sessions.open(sid))
    assert session.new
    assert session.sid is None
    assert dict(session) == {}
    session["user_id"] = 1
    created = await call(kit.sessions.commit(session))
    assert created != sid  # a new id, never the one the client sent
    assert await call(kit.sessions.load(sid)) is None
    assert await keys_of(kit) == [kit.sessions._core.key(created)[len(kit.settings.prefix) + 1 :]]


async def test_a_destroyed_session_is_not_resurrected(kit: Any) -> None:
    sid = await call(kit.sessions.create({"user_id": 1}))
    session = await call(kit.sessions.open(sid))
    assert await call(kit.sessions.destroy(sid)) is True  # logout in another tab
    session["cart"] = [3]
    assert await call(kit.sessions.commit(session)) is None
    assert session.new
    assert dict(session) == {}
    assert await call(kit.sessions.commit(session)) is None
    assert await call(kit.sessions.save(sid, {"user_id": 1})) is False
    assert await keys_of(kit) == []
    assert kit.stats.get("session_write_misses") == 2


HOSTILE: list[Any] = [
    "",
    "*",
    "?",
    "[a-z]*",
    "{x}",
    "a\nb",
    "x" * 10_000,
    "A" * 44,
    "A" * 46,
    "A" * 44 + "B",  # right length and alphabet, but not a canonical 256-bit encoding
    "A" * 44 + "\n",
    "A" * 43 + "*A",
    "A" * 43 + " A",
    "٣" * 45,  # Unicode digits
    "é" * 45,
    b"\xff" * 45,
    b"A" * 44 + b"\x80",
    bytearray(b"*" * 45),
    None,
    42,
    4.5,
    ["A" * 45],
    object(),
]


async def test_hostile_ids_are_refused_without_touching_redis(kit: Any) -> None:
    real = await call(kit.sessions.create({"a": 1}))
    for bad in [*HOSTILE, real + "\n", real[:-1], real + "A", real[:-1] + "B", "*" + real[1:]]:
        assert valid_sid(bad) is None, bad
        assert await call(kit.sessions.load(bad)) is None
        assert await call(kit.sessions.save(bad, {"a": 2})) is False
        assert await call(kit.sessions.touch(bad)) is False
        assert await call(kit.sessions.regenerate(bad)) is None
        assert await call(kit.sessions.destroy(bad)) is False
        assert (await call(kit.sessions.open(bad))).new
    assert await call(kit.sessions.load(real)) == {"a": 1}
    assert await call(kit.sessions.load(real.encode())) == {"a": 1}  # ASCII bytes are fine
    keys = await keys_of(kit)
    assert len(keys) == 1
    assert keys[0].startswith("session:{")
    assert kit.stats.get("session_invalid_ids") > len(HOSTILE)


# -- expiry -------------------------------------------------------------------------------------
async def test_load_save_touch_and_open_slide_the_expiry(make_kit: Kits) -> None:
    kit = make_kit(session_ttl=100, session_max_age=1000)
    sid = await call(kit.sessions.create({"a": 1}))
    assert 99_000 < await pttl(kit, sid) <= 100_000
    key = kit.sessions._core.key(sid)
    ops: list[Callable[[], Any]] = [
        lambda: kit.sessions.load(sid),
        lambda: kit.sessions.save(sid, {"b": 2}),
        lambda: kit.sessions.touch(sid),
        lambda: kit.sessions.open(sid),
    ]
    for op in ops:
        await call(kit.client.pexpire(key, 5000))
        assert await call(op())
        assert await pttl(kit, sid) > 90_000


async def test_an_idle_session_expires(make_kit: Kits) -> None:
    kit = make_kit(session_ttl=0.2)
    sid = await call(kit.sessions.create({"a": 1}))
    await asyncio.sleep(0.35)
    assert await call(kit.sessions.load(sid)) is None
    assert await call(kit.sessions.save(sid, {"a": 2})) is False
    assert await keys_of(kit) == []


async def test_absolute_lifetime_caps_the_expiry_and_ends_the_session(make_kit: Kits) -> None:
    kit = make_kit(session_ttl=60, session_max_age=5)
    sids = [await call(kit.sessions.create({"a": i})) for i in range(4)]
    created = time.monotonic()  # every session was stamped by Redis before this instant
    assert 0 < await pttl(kit, sids[0]) <= 5000  # the idle timeout is capped by the lifetime left
    # a second client of the same prefix with a shorter lifetime: the sessions are still in Redis
    # when they are past that lifetime, so the scripts themselves must refuse and delete them
    # (1 s: long enough for a slow machine to reach the first touch within it)
    short = make_kit(prefix=kit.settings.prefix, session_ttl=60, session_max_age=1)
    assert await call(short.sessions.touch(sids[0])) is True
    assert 0 < await pttl(kit, sids[0]) <= 1000
    assert await call(kit.sessions.touch(sids[0])) is True  # back to the long client's cap
    await asyncio.sleep(max(0.0, created + 1.1 - time.monotonic()))
    assert await call(short.sessions.load(sids[0])) is None
    assert await call(short.sessions.save(sids[1], {"a": 9})) is False
    assert await call(short.sessions.regenerate(sids[2])) is None
    assert await call(short.sessions.touch(sids[3])) is False
    assert await keys_of(kit) == []  # deleted, not merely reported as unknown
    assert await call(kit.sessions.load(sids[1])) is None


async def test_regenerate_keeps_the_creation_time(make_kit: Kits) -> None:
    kit = make_kit(session_ttl=60, session_max_age=1)
    sid = await call(kit.sessions.create({"a": 1}))
    await asyncio.sleep(0.3)
    new = await call(kit.sessions.regenerate(sid))
    assert new is not None
    assert 0 < await pttl(kit, new) <= 700  # not a fresh 1 s: the lifetime is the session's


# -- size limit and values ----------------------------------------------------------------------
async def test_too_large_raises_and_writes_nothing(make_kit: Kits) -> None:
    kit = make_kit(session_max_bytes=1024)
    with pytest.raises(SessionTooLarge, match="session_max_bytes"):
        await call(kit.sessions.create({"blob": "x" * 2000}))
    assert await keys_of(kit) == []
    sid = await call(kit.sessions.create({"a": "x" * 600}))
    with pytest.raises(SessionTooLarge):  # too large on its own: refused before any I/O
        await call(kit.sessions.save(sid, {"b": "y" * 1100}))
    with pytest.raises(SessionTooLarge):  # fits alone, not with what is stored: the script
        await call(kit.sessions.save(sid, {"b": "y" * 500, "c": 1}, ["zz"]))
    assert await call(kit.sessions.load(sid)) == {"a": "x" * 600}
    # a replaced or removed field's old size is given back
    assert await call(kit.sessions.save(sid, {"a": "z" * 900})) is True
    assert await call(kit.sessions.save(sid, {"b": "y" * 500}, ["a"])) is True
    assert await call(kit.sessions.load(sid)) == {"b": "y" * 500}
    session = await call(kit.sessions.open(sid))
    session["c"] = "w" * 600
    with pytest.raises(SessionTooLarge):
        await call(kit.sessions.commit(session))
    assert session.modified  # still holds the change; nothing was written
    assert await call(kit.sessions.load(sid)) == {"b": "y" * 500}
    assert kit.stats.get("session_too_large") == 4


async def test_non_json_values_raise_and_write_nothing(kit: Any) -> None:
    sid = await call(kit.sessions.create({"a": 1}))
    when = datetime.datetime(2024, 1, 1)
    with pytest.raises(SerializationError, match=r"session\['when'\] is a datetime"):
        await call(kit.sessions.save(sid, {"ok": 2, "when": when}))
    with pytest.raises(SerializationError, match=r"session\['cart'\]\[1\] is a set"):
        await call(kit.sessions.save(sid, {"cart": [1, {2}]}))
    with pytest.raises(SerializationError, match=r"nan|NaN"):
        await call(kit.sessions.create({"n": float("nan")}))
    with pytest.raises(SerializationError):
        await call(kit.sessions.create({"d": {1: "int key"}}))
    session = await call(kit.sessions.open(sid))
    session["obj"] = object()
    assert session.modified
    with pytest.raises(SerializationError, match=r"session\['obj'\]"):
        await call(kit.sessions.commit(session))
    assert await call(kit.sessions.load(sid)) == {"a": 1}
    assert len(await keys_of(kit)) == 1


async def test_values_are_stored_as_json_whatever_the_serializer(make_kit: Kits) -> None:
    kit = make_kit(serializer="pickle", secret_key="not-for-sessions")
    sid = await call(kit.sessions.create({"user": {"id": 1}, "tags": ("a", "b")}))
    stored = await call(kit.client.hgetall(kit.sessions._core.key(sid)))
    assert stored[b"u:user"] == b'{"id":1}'
    assert stored[b"u:tags"] == b'["a","b"]'
    assert {b"m:c", b"m:s"} <= set(stored)  # reserved fields, apart from the user's "u:" ones
    assert await call(kit.sessions.load(sid)) == {"user": {"id": 1}, "tags": ["a", "b"]}


async def test_user_keys_cannot_reach_the_reserved_fields(kit: Any) -> None:
    sid = await call(kit.sessions.create({"m:c": "not a time", "m:s": -1, "": "empty key"}))
    assert await call(kit.sessions.save(sid, {"m:s": 10**6}, [])) is True
    assert await call(kit.sessions.load(sid)) == {
        "m:c": "not a time",
        "m:s": 10**6,
        "": "empty key",
    }
    assert await call(kit.sessions.touch(sid)) is True


async def test_every_key_has_a_ttl_and_lives_under_the_session_prefix(kit: Any) -> None:
    a = await call(kit.sessions.create({"a": 1}))
    b = await call(kit.sessions.create())
    await call(kit.sessions.save(b, {"x": 1}))
    c = await call(kit.sessions.regenerate(a))
    session = await call(kit.sessions.open(None))
    session["k"] = "v"
    d = await call(kit.sessions.commit(session))
    keys = await keys_of(kit)
    assert len(keys) == 3
    for sid in (b, c, d):
        assert await pttl(kit, sid) > 0
    for key in keys:
        assert key.startswith("session:{")
        assert int(await call(kit.client.pttl(f"{kit.settings.prefix}:{key}"))) > 0


# -- SessionData and commit ---------------------------------------------------------------------
def accessed(session: SessionData) -> bool:
    return session.accessed


def test_session_data_tracks_changes() -> None:
    session = SessionData({"a": 1})
    assert session.new
    assert session.sid is None
    assert session.modified
    assert not accessed(session)
    assert session.diff() == ({"a": 1}, set())
    assert session["a"] == 1
    assert accessed(session)
    with pytest.raises(InvalidKeyError):
        session[cast(str, 3)] = "x"
    session.setdefault("b", []).append(1)
    del session["a"]
    assert dict(session) == {"b": [1]}
    assert len(session) == 1
    assert "b" in session
    assert session == {"b": [1]}
    session.clear()
    assert session.diff() == ({}, set())  # new and empty: nothing to create
    assert "SessionData new" in repr(session)


async def test_commit_creates_only_sessions_that_hold_data(kit: Any) -> None:
    session = await call(kit.sessions.open(None))
    assert session.new
    assert not session.modified
    assert await call(kit.sessions.commit(session)) is None  # no data: no session, no cookie
    assert await keys_of(kit) == []
    session["cart"] = [1]
    sid = await call(kit.sessions.commit(session))
    assert session.sid == sid
    assert not session.new
    assert not session.modified
    assert session.expires_in == pytest.approx(kit.settings.session_ttl, rel=0.01)
    assert repr(session).startswith(f"<SessionData sid={sid[:2]}...")
    assert sid not in repr(session)
    round_trips = kit.stats.get("round_trips")
    assert await call(kit.sessions.commit(session)) == sid  # unchanged: nothing sent
    assert kit.stats.get("round_trips") == round_trips
    session["cart"] = [1]  # the same value: still nothing to write
    assert not session.modified
    session["cart"].append(2)
    assert session.diff() == ({"cart": [1, 2]}, set())
    assert await call(kit.sessions.commit(session)) == sid
    reopened = await call(kit.sessions.open(sid))
    assert dict(reopened) == {"cart": [1, 2]}
    assert not reopened.modified
    reopened.clear()
    assert reopened.diff() == ({}, {"cart"})
    assert await call(kit.sessions.commit(reopened)) == sid  # emptied, but the session stays
    assert await call(kit.sessions.load(sid)) == {}


# -- failures -----------------------------------------------------------------------------------
async def test_fails_closed_when_redis_is_unreachable(mode: str) -> None:
    cls = redkit.Redkit if mode == "sync" else redkit.asyncio.Redkit
    kit: Any = cls.from_url(
        f"redis://127.0.0.1:{free_port()}/0",
        prefix=new_prefix(),
        socket_connect_timeout=0.5,
        retry_attempts=0,
    )
    sid = unknown_sid()
    ops: list[Callable[[], Any]] = [
        lambda: kit.sessions.create({"a": 1}),
        lambda: kit.sessions.load(sid),
        lambda: kit.sessions.open(sid),
        lambda: kit.sessions.save(sid, {"a": 1}),
        lambda: kit.sessions.touch(sid),
        lambda: kit.sessions.regenerate(sid),
        lambda: kit.sessions.destroy(sid),
    ]
    try:
        for op in ops:
            with pytest.raises(RedkitConnectionError):
                await call(op())
        # a malformed id is answered without Redis
        assert await call(kit.sessions.load("*")) is None
    finally:
        await call(kit.close() if mode == "sync" else kit.aclose())


async def test_writes_whose_reply_is_lost_are_resent_safely(
    proxy: ReplyDroppingProxy, mode: str
) -> None:
    cls = redkit.Redkit if mode == "sync" else redkit.asyncio.Redkit
    kit: Any = cls.from_url(proxied_url(proxy.port), prefix=new_prefix(), max_connections=4)
    try:
        warm = await call(kit.sessions.create({"a": 1}))  # scripts loaded, connection open
        await call(kit.sessions.destroy(warm))
        proxy.drop_next_reply()
        sid = await call(kit.sessions.create({"a": 1}))  # ran, reply lost, re-sent
        assert await call(kit.sessions.load(sid)) == {"a": 1}
        proxy.drop_next_reply()
        assert await call(kit.sessions.save(sid, {"b": 2}, ["a"])) is True
        proxy.drop_next_reply()
        new = await call(kit.sessions.regenerate(sid))  # the re-send finds the moved session
        assert new is not None
        assert await call(kit.sessions.load(new)) == {"b": 2}
        assert await call(kit.sessions.load(sid)) is None
        assert proxy.dropped == 3
        assert kit.stats.get("retries") == 3
        assert len(await keys_of(kit)) == 1
    finally:
        await call(kit.clear())
        await call(kit.close() if mode == "sync" else kit.aclose())


async def test_scripts_refuse_bad_arguments_before_writing(kit: Any) -> None:
    from redkit._ops import Batch, script
    from redkit.errors import ResponseError
    from redkit.sessions import CREATE, SAVE

    key = kit.keyspace.tagged("session", "ab", "x" * 43)
    for source, argv in (
        (CREATE, ["oops", 1000, 1000, "u:a", "1"]),
        (SAVE, [1000, 1000, 1000, "7", "u:a", "1"]),
    ):
        with pytest.raises(ResponseError, match="bad arguments"):
            await call(kit._executor.run(Batch.one(script(source, [key], argv))))
        assert await call(kit.client.exists(key)) == 0
