"""``redkit_django.sessions.SessionStore`` keeps Django's SessionBase contract on real Redis and
the cluster, sync and async: ids made by redkit only, UpdateError/CreateError where Django's
backends raise them, atomic cycle_key, per-key saves, Django's expiry on top of redkit's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.test import override_settings
from django.utils import timezone

import redkit_django
from redkit.errors import SessionTooLarge
from redkit.sessions import valid_sid
from redkit_django.sessions import DEADLINE, SessionStore
from tests.django.conftest import redkit_settings

pytestmark = pytest.mark.usefixtures("redkit_on")


def stored(sid: str | None) -> dict[str, Any] | None:
    """What Redis holds for ``sid``, read through redkit directly (the deadline left out)."""
    data = redkit_django.get_kit().sessions.load(sid)
    if data is not None:
        data.pop(DEADLINE, None)
    return data


def saved(**data: Any) -> SessionStore:
    session = SessionStore()
    session.update(data)
    session.save()
    return session


# -- hostile keys first ---------------------------------------------------------------------------
OTHER_SHAPES = [
    "",
    "1",
    "x" * 8,
    "a" * 44 + "B",  # right length, not canonical
    "é" * 45,
    "\x00" * 45,
    "A" * 100_000,
    "../" * 15,
    "{ab}" * 11 + "A",
    12345,
    b"A" * 45,
]


@pytest.mark.parametrize("key", OTHER_SHAPES, ids=repr)
def test_a_malformed_key_is_no_session_and_is_never_used_to_build_one(key: Any) -> None:
    session = SessionStore(key)
    assert session.session_key is None
    assert session.get("cat") is None
    session["cat"] = "dog"
    session.save()
    assert session.session_key != key
    assert valid_sid(session.session_key) is not None
    assert stored(session.session_key) == {"cat": "dog"}


def test_a_well_formed_key_the_server_never_issued_is_not_adopted() -> None:
    invented = "AA" + "b" * 42 + "A"
    assert valid_sid(invented) == invented
    session = SessionStore(invented)
    assert session.get("cat") is None
    assert session.session_key is None  # the load found nothing: the key is dropped
    session["cat"] = "dog"
    session.save()
    assert session.session_key != invented
    assert stored(invented) is None
    assert stored(session.session_key) == {"cat": "dog"}


def test_must_create_never_creates_under_a_key_chosen_outside_redkit() -> None:
    invented = "AA" + "c" * 42 + "A"
    session = SessionStore(invented)
    session["a"] = 1
    session.save(must_create=True)
    assert session.session_key != invented
    assert stored(invented) is None
    assert stored(session.session_key) == {"a": 1}


def test_a_session_of_another_prefix_is_not_found(redis_url: str) -> None:
    other = redkit_settings(redis_url)
    with override_settings(REDKIT=other):
        theirs = saved(user="them").session_key
    mine = SessionStore(theirs)
    assert mine.get("user") is None
    assert mine.session_key is None
    with override_settings(REDKIT=other):
        assert stored(theirs) == {"user": "them"}  # still there, under its own prefix
        redkit_django.get_kit().clear()


# -- the SessionBase contract ---------------------------------------------------------------------
def test_a_new_session_is_neither_modified_nor_accessed() -> None:
    session = SessionStore()
    assert not session.modified
    assert not session.accessed
    assert session.get("cat") is None
    assert session.accessed
    assert not session.modified
    assert session.is_empty()


def test_the_mapping_methods_mark_the_session_as_django_does() -> None:
    session = SessionStore()
    session["cat"] = "dog"
    assert session.modified
    assert session.pop("cat") == "dog"
    session.modified = False
    assert session.pop("some key", "default") == "default"
    assert not session.modified
    assert session.setdefault("foo", "bar") == "bar"
    assert session.setdefault("foo", "baz") == "bar"
    session.update({"n": 1})
    assert dict(session.items()) == {"foo": "bar", "n": 1}
    assert session.has_key("n")
    assert "n" in session
    assert sorted(session.keys()) == ["foo", "n"]


def test_save_creates_a_session_with_an_id_made_by_redkit() -> None:
    session = saved(a=1, nested={"b": [1, 2]})
    key = session.session_key
    assert valid_sid(key) == key
    assert session.exists(key)
    again = SessionStore(key)
    assert again["nested"] == {"b": [1, 2]}
    assert DEADLINE not in again
    assert again.session_key == key


def test_an_empty_new_session_is_created_when_django_saves_it() -> None:
    session = SessionStore()
    session.save()
    assert session.exists(session.session_key)
    assert stored(session.session_key) == {}


def test_save_writes_only_the_keys_this_request_changed() -> None:
    key = saved(a=1, b=2, c=3).session_key
    first, second = SessionStore(key), SessionStore(key)
    assert first["a"] == 1
    assert second["b"] == 2
    first["a"] = 10
    del first["c"]
    second["b"] = 20
    second["d"] = 4
    first.save()
    second.save()
    assert stored(key) == {"a": 10, "b": 20, "d": 4}


def test_a_value_changed_in_place_is_saved() -> None:
    key = saved(cart=[1]).session_key
    session = SessionStore(key)
    session["cart"].append(2)
    session.save()
    assert stored(key) == {"cart": [1, 2]}


def test_saving_a_session_deleted_meanwhile_raises_update_error_and_creates_nothing() -> None:
    key = saved(a=1).session_key
    session = SessionStore(key)
    session["a"] = 2
    SessionStore(key).delete()  # a logout in another request
    with pytest.raises(UpdateError):
        session.save()
    assert stored(key) is None
    unread = SessionStore(saved(b=1).session_key)
    unread.delete()
    with pytest.raises(UpdateError):
        unread.save()


def test_must_create_on_a_live_session_raises_create_error() -> None:
    session = saved(a=1)
    with pytest.raises(CreateError):
        session.save(must_create=True)


def test_delete_and_exists() -> None:
    session = saved(a=1)
    key = session.session_key
    session.delete(key)
    assert not session.exists(key)
    session.delete()  # already gone: no error
    assert not SessionStore().exists(None)


def test_flush_deletes_the_session_and_starts_a_new_one() -> None:
    session = saved(foo="bar")
    old = session.session_key
    session.flush()
    assert not session.exists(old)
    assert session.session_key is None
    assert session.modified
    assert session.accessed
    assert dict(session.items()) == {}


def test_clear_removes_every_stored_key_without_reading_first() -> None:
    key = saved(a=1, b=2).session_key
    session = SessionStore(key)
    session.clear()
    assert session.modified
    session["c"] = 3
    session.save()
    assert stored(key) == {"c": 3}


def test_cycle_key_moves_the_data_to_a_new_id_and_the_old_id_is_dead() -> None:
    session = saved(a="c", b="d")
    old = session.session_key
    session["pending"] = True
    session.cycle_key()
    new = session.session_key
    assert new != old
    assert valid_sid(new) == new
    assert stored(old) is None
    assert stored(new) == {"a": "c", "b": "d"}
    session.save()  # the change made before the cycle is written under the new id
    assert stored(new) == {"a": "c", "b": "d", "pending": True}


def test_cycle_key_of_a_new_or_vanished_session_creates_one() -> None:
    fresh = SessionStore()
    fresh["x"] = 1
    fresh.cycle_key()
    assert stored(fresh.session_key) == {"x": 1}
    key = saved(secret="old").session_key
    session = SessionStore(key)
    assert session["secret"] == "old"
    SessionStore(key).delete()
    session.cycle_key()
    assert session.session_key not in (None, key)
    assert stored(session.session_key) == {}  # a vanished session's data never comes back


def test_clear_expired_is_harmless() -> None:
    key = saved(a=1).session_key
    SessionStore.clear_expired()
    assert stored(key) == {"a": 1}


def test_a_session_too_large_is_refused_and_nothing_is_written() -> None:
    limit = redkit_django.get_kit().settings.session_max_bytes
    session = SessionStore()
    session["big"] = "x" * limit
    with pytest.raises(SessionTooLarge):
        session.save()
    assert session.session_key is None


# -- expiry ---------------------------------------------------------------------------------------
def test_expiry_age_follows_session_cookie_age_and_set_expiry() -> None:
    session = SessionStore()
    with override_settings(SESSION_COOKIE_AGE=1234):
        assert session.get_expiry_age() == 1234
        session.set_expiry(0)
        assert session.get_expiry_age() == 1234
        assert session.get_expire_at_browser_close()
    now = timezone.now()
    session.set_expiry(10)
    assert session.get_expiry_age(modification=now) == 10
    session.set_expiry(now + timedelta(seconds=30))
    assert session.get_expiry_age(modification=now) == 30


@pytest.mark.parametrize(
    "expiry", [-10, timedelta(seconds=-10), "past"], ids=["seconds", "timedelta", "datetime"]
)
def test_a_session_past_django_expiry_is_gone_and_deleted(expiry: Any) -> None:
    if expiry == "past":
        expiry = timezone.now() - timedelta(seconds=5)
    session = SessionStore()
    session["foo"] = "bar"
    session.set_expiry(expiry)
    session.save()
    key = session.session_key
    again = SessionStore(key)
    assert "foo" not in again
    assert again.session_key is None
    assert redkit_django.get_kit().sessions.load(key) is None  # deleted, not only hidden


def test_session_cookie_age_in_the_past_expires_the_session_at_once() -> None:
    with override_settings(SESSION_COOKIE_AGE=-1):
        key = saved(foo="bar").session_key
    assert not SessionStore().exists(key)


def test_a_future_expiry_keeps_the_session_and_each_save_moves_the_deadline() -> None:
    session = SessionStore()
    session["a"] = 1
    session.set_expiry(3600)
    session.save()
    raw = redkit_django.get_kit().sessions.load(session.session_key)
    assert raw is not None
    assert 3590 <= raw[DEADLINE] - timezone.now().timestamp() <= 3600
    again = SessionStore(session.session_key)
    again.set_expiry(7200)
    again.save()
    raw = redkit_django.get_kit().sessions.load(session.session_key)
    assert raw is not None
    assert raw[DEADLINE] - timezone.now().timestamp() > 7000


# -- async twins ----------------------------------------------------------------------------------
async def test_the_async_methods_keep_the_same_contract() -> None:
    session = SessionStore()
    await session.aset("a", 1)
    await session.asave()
    key = session.session_key
    assert valid_sid(key) == key
    assert await session.aexists(key)
    other = SessionStore(key)
    assert await other.aget("a") == 1
    await other.aset("b", 2)
    await other.acycle_key()
    assert other.session_key != key
    assert not await session.aexists(key)
    await other.asave()
    assert await SessionStore(other.session_key).aload() == {"a": 1, "b": 2}
    with pytest.raises(CreateError):
        await other.asave(must_create=True)
    gone = SessionStore(other.session_key)
    await gone.aset("c", 3)
    await other.aflush()
    assert other.session_key is None
    with pytest.raises(UpdateError):
        await gone.asave()
    fresh = SessionStore()
    await fresh.acreate()
    assert await fresh.aexists(fresh.session_key)
    await fresh.adelete()
    assert not await fresh.aexists(fresh.session_key)
    await SessionStore.aclear_expired()


async def test_async_loads_reject_what_sync_loads_reject() -> None:
    for key in OTHER_SHAPES:
        session = SessionStore(key)
        assert await session.aget("x") is None
        assert session.session_key is None
    invented = "AA" + "d" * 42 + "A"
    session = SessionStore(invented)
    assert await session.aload() == {}
    assert session.session_key is None


async def test_async_saves_keep_concurrent_changes_to_other_keys() -> None:
    first = SessionStore()
    await first.aupdate({"a": 1, "b": 2})
    await first.asave()
    key = first.session_key
    one, two = SessionStore(key), SessionStore(key)
    await one.aset("a", 10)
    await two.aset("b", 20)
    steps: list[Callable[[], Awaitable[None]]] = [one.asave, two.asave]
    for step in steps:
        await step()
    assert await SessionStore(key).aload() == {"a": 10, "b": 20}
