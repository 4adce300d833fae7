"""Durations: every duration parameter takes seconds or a timedelta, rounds up to whole
milliseconds, and refuses NaN, infinities, negatives and bools with an error naming it."""

from __future__ import annotations

import math
import warnings
from datetime import timedelta
from typing import Any

import pytest

from redkit import ConfigurationError, Settings
from redkit.ratelimit import Limit
from tests.conftest import Kits, call


async def pttl(kit: Any, key: str) -> int:
    return int(await call(kit.client.pttl(key)))


# -- timedelta where a number of seconds is taken (these raised TypeError before) -----------------


async def test_cache_lifetimes_take_a_timedelta(make_kit: Kits) -> None:
    kit = make_kit(cache_jitter=0)
    assert await call(kit.cache.set("k", 1, ttl=timedelta(minutes=2))) is True
    assert 119_000 < await pttl(kit, kit.cache._core.entry_key("k")) <= 120_000
    assert await call(kit.cache.set_many({"a": 1}, ttl=timedelta(seconds=30))) is True
    assert 29_000 < await pttl(kit, kit.cache._core.entry_key("a")) <= 30_000
    assert await call(kit.cache.touch("k", timedelta(hours=1))) is True
    assert 3_599_000 < await pttl(kit, kit.cache._core.entry_key("k")) <= 3_600_000
    assert await call(kit.cache.incr("n", 2, timedelta(seconds=9))) == 2
    assert 8_000 < await pttl(kit, kit.cache._core.entry_key("n")) <= 9_000
    loaded = await call(
        kit.cache.get_or_set(
            "g", lambda: "v", timedelta(seconds=20), stale_ttl=timedelta(seconds=5)
        )
    )
    assert loaded == "v"
    # the entry lives its ttl plus the stale window
    assert 24_000 < await pttl(kit, kit.cache._core.entry_key("g")) <= 25_000

    if kit.__class__.__module__ == "redkit.asyncio":

        @kit.cache.cached(ttl=timedelta(seconds=40))
        async def asquare(x: int) -> int:
            return x * x

        assert await asquare(3) == 9
        key = asquare.key_for(3)
    else:

        @kit.cache.cached(ttl=timedelta(seconds=40))
        def square(x: int) -> int:
            return x * x

        assert square(3) == 9
        key = square.key_for(3)
    assert 39_000 < await pttl(kit, kit.cache._core.entry_key(key)) <= 40_000


async def test_lock_durations_take_a_timedelta(kit: Any) -> None:
    lock = kit.lock("td", ttl=timedelta(seconds=20), timeout=timedelta(milliseconds=50))
    assert (lock.ttl, lock.timeout) == (20.0, 0.05)
    assert await call(lock.acquire(timeout=timedelta(0))) is True
    assert 19_000 < await pttl(kit, lock.key) <= 20_000
    await call(lock.extend(timedelta(minutes=1)))
    assert 59_000 < await pttl(kit, lock.key) <= 60_000
    other = kit.lock("td", timeout=timedelta(milliseconds=20))
    assert await call(other.acquire()) is False
    await call(lock.release())


def test_settings_take_a_timedelta_and_hold_seconds() -> None:
    s = Settings(
        cache_ttl=timedelta(minutes=5),
        session_ttl=timedelta(days=1),
        cache_negative_ttl=timedelta(seconds=3),
        socket_timeout=timedelta(milliseconds=1500),
    )
    assert (s.cache_ttl, s.session_ttl, s.cache_negative_ttl, s.socket_timeout) == (
        300.0,
        86_400.0,
        3.0,
        1.5,
    )
    assert isinstance(s.cache_ttl, float)
    m = Settings.from_mapping({"CACHE_TTL": timedelta(seconds=7), "STREAM_TTL": "60"})
    assert (m.cache_ttl, m.stream_ttl) == (7.0, 60.0)
    assert Settings.from_config({"REDKIT_SESSION_TTL": timedelta(hours=2)}).session_ttl == 7200.0


def test_rate_limit_periods_take_a_timedelta() -> None:
    limit = Limit(10, timedelta(minutes=1))
    assert limit.period == 60.0
    assert str(limit) == "10/minute"
    assert Limit(5, timedelta(milliseconds=1)).period_ms == 1


# -- one rounding rule: up to the next whole millisecond ------------------------------------------


async def test_seconds_round_up_to_whole_milliseconds(make_kit: Kits) -> None:
    kit = make_kit(cache_jitter=0)
    # a tenth of a millisecond is 1 ms, never 0 (which Redis refuses or reads as "no expiry")
    lock = kit.lock("tiny", ttl=0.0001)
    assert lock._core.ttl_ms == 1
    assert kit.lock("l", ttl=1.0005)._core.ttl_ms == 1001
    assert kit.lock("l", ttl=0.3)._core.ttl_ms == 300  # float noise is not rounded up
    assert kit.lock("l", ttl=timedelta(microseconds=1))._core.ttl_ms == 1
    await call(kit.cache.set("k", 1, ttl=timedelta(microseconds=10)))  # 1 ms: stored, then gone
    assert Limit(1, 0.0015).period_ms == 2


# -- refused values ------------------------------------------------------------------------------


def _id(value: Any) -> str:
    return "10**5000" if value == 10**5000 else repr(value)


BAD = [math.nan, math.inf, -math.inf, -1, -0.5, True, False, timedelta(seconds=-1), 10**5000]


@pytest.mark.parametrize("bad", BAD, ids=_id)
async def test_bad_durations_raise_value_error_naming_the_parameter(kit: Any, bad: Any) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await call(kit.cache.set("k", 1, ttl=bad))
    with pytest.raises(ValueError, match="ttl"):
        kit.lock("n", ttl=bad)
    with pytest.raises(ValueError, match="timeout"):
        kit.lock("n", timeout=bad)
    with pytest.raises(ValueError, match="stale_ttl"):
        await call(kit.cache.get_or_set("k", lambda: 1, stale_ttl=bad))
    assert await call(kit.cache.get("k")) is None


@pytest.mark.parametrize("bad", ["5", b"5", [5], None, object()], ids=repr)
async def test_other_types_raise_type_error_naming_the_parameter(kit: Any, bad: Any) -> None:
    with pytest.raises(TypeError, match="ttl"):
        kit.lock("n", ttl=bad)
    if bad is not None:  # None is the default: "use cache_ttl"
        with pytest.raises(TypeError, match="ttl"):
            await call(kit.cache.set("k", 1, ttl=bad))


def test_zero_is_refused_where_it_means_nothing_and_taken_where_it_means_at_once() -> None:
    with pytest.raises(ConfigurationError, match="cache_ttl"):
        Settings(cache_ttl=0)
    assert Settings(cache_stale_ttl=0, health_check_interval=timedelta(0)).cache_stale_ttl == 0.0


@pytest.mark.parametrize("bad", [*BAD[:-2], timedelta(days=-1), "soon", [1]], ids=repr)
def test_settings_refuse_bad_durations_with_configuration_error(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="session_ttl"):
        Settings(session_ttl=bad)
    with pytest.raises(ConfigurationError, match="session_ttl"):
        Settings.from_mapping({"session_ttl": bad})


def test_durations_longer_than_a_century_are_refused() -> None:
    with pytest.raises(ValueError, match="at most"):
        Limit(1, timedelta(days=365 * 101))
    with pytest.raises(ConfigurationError, match=r"cache_ttl.*at most"):
        Settings(cache_ttl=1e300)


# -- the lock's blocking_timeout is now timeout --------------------------------------------------


async def test_lock_timeout_old_name_still_works_and_warns(kit: Any) -> None:
    with pytest.warns(DeprecationWarning, match="timeout="):
        lock = kit.lock("old", blocking_timeout=0.05)
    assert lock.timeout == 0.05
    with pytest.warns(DeprecationWarning, match="Lock.timeout"):
        assert lock.blocking_timeout == 0.05
    with pytest.raises(TypeError, match="both"):
        kit.lock("old", timeout=1, blocking_timeout=2)
    cls = type(lock)
    with pytest.warns(DeprecationWarning, match="timeout="):
        direct = cls(kit, "old", 10, blocking_timeout=0)
    assert direct.timeout == 0.0
    with pytest.raises(TypeError, match="both"):
        cls(kit, "old", 10, 1, blocking_timeout=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kit.lock("new", timeout=3).timeout == 3.0  # the new name does not warn


# -- the other renames: stream read, idempotency, settings, worker --------------------------------


async def test_stream_read_timeout_old_name_block_still_works_and_warns(kit: Any) -> None:
    stream = kit.stream("s")
    await call(stream.add({"n": 1}))
    with pytest.warns(DeprecationWarning, match="timeout="):
        got = await call(stream.read("g", "c", block=timedelta(seconds=1)))
    assert [m.data for m in got] == [{"n": 1}]
    with pytest.warns(DeprecationWarning, match="timeout="):
        assert await call(stream.read("g", "c", block=None)) == []  # None: do not wait, as before
    with pytest.raises(TypeError, match="both"):
        await call(stream.read("g", "c", timeout=1, block=1))
    # the new name: a timedelta, and 0 answers at once
    assert await call(stream.read("g", "c", timeout=timedelta(milliseconds=30))) == []
    assert await call(stream.read("g", "c", timeout=0)) == []


async def test_stream_durations_take_a_timedelta(kit: Any) -> None:
    stream = kit.stream("td")
    await call(stream.add({"n": 1}, ttl=timedelta(minutes=1)))
    assert 59_000 < await pttl(kit, stream.key) <= 60_000
    await call(stream.read("g", "c"))
    claimed = await call(stream.claim_stale("g", "other", timedelta(0)))
    assert [m.data for m in claimed] == [{"n": 1}]


async def test_idempotency_timeout_old_name_wait_still_works_and_warns(kit: Any) -> None:
    idem = kit.idempotency
    first = await call(idem.begin("k", "fp"))
    assert first.started
    with pytest.warns(DeprecationWarning, match="timeout="):
        again = await call(idem.begin("k", "fp", wait=0.02))
    assert again.outcome.name == "IN_PROGRESS"
    with pytest.raises(TypeError, match="both"):
        await call(idem.begin("k", "fp", timeout=1, wait=1))
    with pytest.raises(TypeError, match="both"):
        idem.guard("k", "fp", timeout=1, wait=1)
    done = await call(idem.begin("k", "fp", timeout=timedelta(milliseconds=20)))
    assert done.outcome.name == "IN_PROGRESS"


@pytest.mark.parametrize(
    ("old", "new"),
    [("idempotency_wait", "idempotency_timeout"), ("cache_lock_wait", "cache_lock_timeout")],
)
def test_settings_old_names_still_work_and_warn(old: str, new: str) -> None:
    with pytest.warns(DeprecationWarning, match=new):
        assert getattr(Settings(**{old: 2.5}), new) == 2.5
    with pytest.warns(DeprecationWarning, match=new):
        assert getattr(Settings.from_mapping({old.upper(): "3"}), new) == 3.0
    with pytest.warns(DeprecationWarning, match=f"REDKIT_{new.upper()}"):
        assert getattr(Settings.from_env({f"REDKIT_{old.upper()}": "4"}), new) == 4.0
    with pytest.warns(DeprecationWarning, match=new):
        assert getattr(Settings.from_url(f"memory://?{old}=5"), new) == 5.0
    with pytest.warns(DeprecationWarning, match=new):
        assert getattr(Settings.from_config({f"REDKIT_{old.upper()}": 6}), new) == 6.0
    with pytest.warns(DeprecationWarning, match=new):
        assert getattr(Settings().replace(**{old: 7}), new) == 7.0
    with pytest.warns(DeprecationWarning, match=new):
        assert getattr(Settings(**{new: 8}), old) == 8.0  # reading the old attribute
    with pytest.raises(TypeError, match="both"):
        Settings(**{old: 1, new: 2})
    with pytest.raises(ConfigurationError, match="both"):
        Settings.from_mapping({old: 1, new: 2})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert getattr(Settings(**{new: 9}), new) == 9.0


async def test_worker_shutdown_timeout_old_names_still_work_and_warn(kit: Any) -> None:
    q = kit.queue("rename")
    with pytest.warns(DeprecationWarning, match="shutdown_timeout="):
        worker = q.worker(shutdown_grace=3)
    assert worker.shutdown_timeout == 3.0
    with pytest.warns(DeprecationWarning, match="shutdown_timeout"):
        assert worker.shutdown_grace == 3.0
    with pytest.raises(TypeError, match="both"):
        q.worker(shutdown_timeout=1, shutdown_grace=2)
    assert q.worker(shutdown_timeout=timedelta(seconds=12)).shutdown_timeout == 12.0
    with pytest.raises(ValueError, match="shutdown_timeout"):
        q.worker(shutdown_timeout=math.nan)
    with pytest.warns(DeprecationWarning, match="timeout="):
        worker.stop(grace=1, wait=False)  # never started: it only records the stop
    assert worker.shutdown_timeout == 1.0
    with pytest.raises(TypeError, match="both"):
        worker.stop(1, grace=2, wait=False)
    fresh = q.worker()
    fresh.stop(timedelta(seconds=4), wait=False)
    assert fresh.shutdown_timeout == 4.0


def test_a_deprecation_warning_points_at_the_callers_line() -> None:
    # the default filters show DeprecationWarning only when it is attributed to the caller's code
    import redkit as _redkit

    kit = _redkit.Redkit.from_url("memory://")
    with pytest.warns(DeprecationWarning, match="blocking_timeout") as record:
        kit.lock("x", blocking_timeout=1)
    assert record[0].filename == __file__
    kit.close()


def test_stream_read_takes_its_wait_by_keyword_only() -> None:
    # the fourth positional argument used to be ``block`` (None: do not wait); taking it as
    # ``timeout`` (None: for ever) would turn such a call into a silent hang
    import redkit as _redkit

    kit = _redkit.Redkit.from_url("memory://")
    stream = kit.stream("s")
    with pytest.raises(TypeError):
        stream.read("g", "c", 10, None)  # type: ignore[misc]
    assert stream.read("g", "c", 10, timeout=0) == []
    kit.close()
