"""``cache.get_or_set``: a hit is one round trip; on a miss exactly one caller (cluster-wide)
takes the entry's lock, runs the loader and stores its value, while the others poll briefly for
it, or get the stale value during stale-while-revalidate; a fresh entry may be refreshed early
(XFetch). Flows only, like :mod:`redkit.cache._core`: nothing here does I/O."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import random
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._durations import Duration, to_ms
from .._ops import Batch, Flow, Load, Script, Sleep, script
from .._ops import first as _first
from ..errors import RedkitConnectionError
from ._codec import MISSING, Entry, encode
from ._inputs import seconds as _seconds
from ._inputs import strength as _strength
from ._inputs import tags as _tags
from ._uncommitted import uncommitted

if TYPE_CHECKING:
    from ._core import CacheCore

__all__ = ["get_or_set"]

log = logging.getLogger("redkit.cache")

FETCH = Script.load("cache_fetch")
STORE = Script.load("cache_store")
RELEASE = Script.load("cache_release")


class _Tokens:
    """Lock tokens unique across processes: a random per-process prefix plus a counter (cheaper
    than asking the OS for random bytes on every call). A forked child draws a new prefix."""

    def __init__(self) -> None:
        self.reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.counter = itertools.count()

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter):x}"


_token = _Tokens()
_FIRST_WAIT = 0.002  # first poll of a waiter; doubles up to _MAX_WAIT
_MAX_WAIT = 0.05
_FRESH, _STALE, _INVALID = 0, 1, 2


def get_or_set(
    core: CacheCore,
    key: object,
    loader: Callable[[], Any],
    ttl: Duration | None,
    tags: Iterable[str] | None,
    stale_ttl: Duration | None = None,
    early_refresh: float | None = None,
) -> Flow[Any]:
    """Flow of ``cache.get_or_set``: a hit is one round trip; on a miss exactly one caller
    (cluster-wide) runs ``loader`` and stores its value in a second round trip, while the
    others poll briefly for it (or get the stale value during stale-while-revalidate)."""
    s = core.settings
    if not callable(loader):
        raise TypeError(f"loader must be a callable, not {type(loader).__name__}")
    tag_list = _tags(tags)
    lifetime = _seconds("ttl", ttl, s.cache_ttl)
    stale_ms = to_ms(_seconds("stale_ttl", stale_ttl, s.cache_stale_ttl, allow_zero=True))
    beta = _strength(early_refresh, s.cache_early_refresh)
    scope = uncommitted.get()
    if scope is not None and scope.active():
        # inside a transaction that wrote: never fill the cache with what may roll back
        if tag_list and scope.touches(tag_list):
            return (yield Load(loader))  # its own writes: read past the cache
        value = yield from core.get(key, MISSING)
        return (yield Load(loader)) if value is MISSING else value
    ek = core.entry_key(key)
    lk = ek + ":lock"  # same as lock_key(key), without escaping the key twice
    token = _token()
    # PTTL is read only when the answer matters: stale windows and early refresh need it
    need_pttl = "1" if stale_ms or beta or s.cache_stale_ttl else "0"
    fetch_args = [token, to_ms(s.cache_lock_ttl), stale_ms, need_pttl]
    force = False  # take the lock even if the entry looks fresh
    refresh = False  # this caller has decided the entry needs reloading
    early = False  # ...because of a probabilistic early refresh
    stale: Any = MISSING  # a value that may be served while someone else reloads
    deadline: float | None = None
    delay = _FIRST_WAIT
    while True:
        argv = [*fetch_args, "1" if force else "0"]
        calls = (script(FETCH, [ek, lk], argv, bounded=True),)  # ms of checked durations
        try:
            if tag_list:
                reply, versions = yield Batch(
                    (*calls, *core._tag_versions(tag_list, token).calls),
                    lambda r: (r[0], [token if v is None else v.decode() for v in r[1:]]),
                )
            else:
                reply, versions = (yield Batch(calls, _first)), []
        except RedkitConnectionError as exc:
            core.failed_open(exc)
            return (yield Load(loader))
        raw, pttl, acquired = reply[0], int(reply[1]), int(reply[2]) == 1
        # the script tried to take the lock when it found no entry, a stale one, or was forced
        attempted = force or raw is None or 0 <= pttl <= stale_ms
        current = dict(zip(tag_list, versions))
        if raw is not None:
            entry = core._decode(ek, raw)
            if entry is not None and pttl == -3 and entry.stale_ms:
                # written with a stale window this call did not expect: read its PTTL
                fetch_args[3] = "1"
                continue
            state = _INVALID if entry is None else _judge(entry, pttl, current)
            if entry is not None and state == _FRESH and not refresh:
                early = _refresh_early(entry, pttl, beta)
            if entry is not None and state == _FRESH and not early:
                if acquired:  # forced, but someone refreshed meanwhile: use theirs
                    yield from _release(lk, token)
                core.stats.incr("cache_hits")
                return entry.value
            stale = MISSING if entry is None or state == _INVALID else entry.value
            refresh = True
            if not acquired and not attempted:
                force = True  # ask again, this time taking the lock if it is free
                continue
        if acquired:
            core.stats.incr("cache_misses" if raw is None else "cache_refreshes")
            if early:
                core.stats.incr("cache_early_refreshes")
            return (
                yield from _load_and_store(
                    core, ek, lk, token, loader, lifetime, stale_ms, current, bool(beta), raw
                )
            )
        if stale is not MISSING:
            # someone else is reloading: serve what we have (fresh when refreshing early)
            core.stats.incr("cache_hits" if early else "cache_stale_hits")
            return stale
        # someone else is loading: wait for their value, bounded by cache_lock_timeout
        now = time.monotonic()
        if deadline is None:
            deadline = now + s.cache_lock_timeout
        elif now >= deadline:
            core.stats.incr("cache_lock_timeouts")
            log.warning(
                "redkit: waited %.1fs for another caller's loader; loading",
                s.cache_lock_timeout,
            )
            return (yield Load(loader))
        yield Sleep(min(delay, max(deadline - now, 0.0)))
        delay = min(delay * 2, _MAX_WAIT)
        force = refresh = early = False


def _judge(entry: Entry, pttl: int, current: Mapping[str, str]) -> int:
    for tag, version in entry.tags.items():
        # a tag this call did not name was not read: the entry cannot be trusted
        if current.get(tag) != version:
            return _INVALID
    if entry.stale_ms and 0 <= pttl <= entry.stale_ms:
        return _STALE
    return _FRESH


def _refresh_early(entry: Entry, pttl: int, beta: float) -> bool:
    if not beta or not entry.duration_ms or pttl < 0:
        return False
    remaining = pttl - entry.stale_ms
    # XFetch (Vattani et al., 2015): refresh with a probability that grows as expiry nears
    gap = -entry.duration_ms * beta * math.log(1.0 - random.random())
    return gap >= remaining


def _release(lock_key: str, token: str) -> Flow[None]:
    with contextlib.suppress(RedkitConnectionError):  # else the lock expires by itself
        yield Batch.one(script(RELEASE, [lock_key], [token]))


def _load_and_store(
    core: CacheCore,
    ek: str,
    lk: str,
    token: str,
    loader: Callable[[], Any],
    lifetime: float,
    stale_ms: int,
    versions: dict[str, str],
    keep_duration: bool,
    found: bytes | None,
) -> Flow[Any]:
    started = time.monotonic()
    try:
        value = yield Load(loader)
    except Exception:  # not GeneratorExit/cancellation: then the lock expires by its TTL
        yield from _release(lk, token)
        raise
    if value is None and core.settings.cache_negative_ttl is None:
        yield from _release(lk, token)
        return None
    # the loader's duration is stored only for early refresh, the one reader that needs it
    duration_ms = int((time.monotonic() - started) * 1000) if keep_duration else 0
    if value is None:
        lifetime = core.settings.cache_negative_ttl or lifetime
    try:
        payload = encode(core.serializer, value, versions, duration_ms, stale_ms)
    except Exception:  # not GeneratorExit/cancellation: then the lock expires by its TTL
        yield from _release(lk, token)
        raise
    ms = core.lifetime_ms(lifetime) + stale_ms
    # the entry as the fetch found it: stored over only if no one has changed it since
    seen = ("0", b"") if found is None else ("1", found)
    calls = [script(STORE, [ek, lk], [token, payload, ms, *seen], bounded=True)]
    calls += core._extend_tags(list(versions), ms)
    try:
        replies = yield Batch(tuple(calls), list)
    except RedkitConnectionError as exc:
        core.failed_open(exc)
        return value
    # 0: the entry was deleted, set, incremented or cleared while the loader ran; what it
    # read is older
    core.stats.incr("cache_loads" if replies[0] == 1 else "cache_stores_skipped")
    return value
