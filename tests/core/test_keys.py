"""The keyspace helper: escaping, hashing, hash tags (pure)."""

from __future__ import annotations

import pytest

from redkit import InvalidKeyError
from redkit._keys import Keyspace, escape_part


def test_safe_parts_stay_readable() -> None:
    assert escape_part("user:42", 200) == "user:42"
    assert escape_part(42, 200) == "42"


def test_unsafe_characters_are_percent_escaped() -> None:
    assert escape_part("a b*?[]{}", 200) == "a%20b%2A%3F%5B%5D%7B%7D"
    assert escape_part("100%", 200) == "100%25"
    assert escape_part("~", 200) == "%7E"
    assert escape_part("é", 200) == "%C3%A9"
    assert escape_part(b"\xff", 200) == "%FF"


def test_long_parts_are_hashed_and_distinct() -> None:
    a = escape_part("x" * 1000, 200)
    b = escape_part("x" * 1001, 200)
    assert len(a) <= 200
    assert len(b) <= 200
    assert a != b
    assert "~" in a


@pytest.mark.parametrize("bad", ["", b"", None, 1.0, True, object()])
def test_bad_parts_are_rejected(bad: object) -> None:
    with pytest.raises(InvalidKeyError):
        escape_part(bad, 200)


def test_hash_tags_group_related_keys() -> None:
    ks = Keyspace("app")
    assert ks.tagged("cache", "user:1") == "app:cache:{user:1}"
    assert ks.tagged("cache", "user:1", "lock") == "app:cache:{user:1}:lock"
    assert ks.key("lock", "a b") == "app:lock:a%20b"
    assert ks.pattern("cache") == "app:cache:*"
    assert ks.pattern() == "app:*"
