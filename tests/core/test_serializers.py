"""Serializers: strict JSON with clear errors, msgpack, signed pickle (pure)."""

from __future__ import annotations

import datetime
import decimal
import math
import uuid
from typing import Any

import pytest

import redkit
from redkit import SerializationError, SignatureError
from redkit.serializers import (
    JsonSerializer,
    MsgpackSerializer,
    PickleSerializer,
    find_unserializable,
)

VALUES: list[Any] = [
    None,
    True,
    0,
    -5,
    2**40,
    1.25,
    "",
    "ümlaut 🙂",
    [],
    {},
    {"a": [1, {"b": None}]},
]


@pytest.mark.parametrize("value", VALUES)
def test_json_roundtrip(value: Any) -> None:
    s = JsonSerializer()
    assert s.loads(s.dumps(value)) == value


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (datetime.date(2020, 1, 1), "value is a datetime.date"),
        ([1, decimal.Decimal("1")], "value[1] is a decimal.Decimal"),
        ({"a": {1: "x"}}, 'value["a"] has a key 1 of type int'),
        ({"f": math.inf}, 'value["f"] is inf'),
        ({"s": {1}}, 'value["s"] is a set'),
        (b"raw", "value is a bytes"),
    ],
)
def test_json_errors_name_type_and_path(value: Any, where: str) -> None:
    with pytest.raises(SerializationError) as info:
        JsonSerializer().dumps(value)
    assert where in str(info.value)
    assert isinstance(info.value, TypeError)  # also catchable as TypeError


def test_uuids_are_written_as_strings_with_or_without_orjson(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import redkit.serializers as mod

    u = uuid.uuid4()
    assert JsonSerializer().loads(JsonSerializer().dumps({"u": u})) == {"u": str(u)}
    monkeypatch.setattr(mod, "_orjson", None)
    assert JsonSerializer().loads(JsonSerializer().dumps({"u": u})) == {"u": str(u)}
    with pytest.raises(SerializationError, match=r"datetime\.date"):
        JsonSerializer().dumps([datetime.date(2020, 1, 1)])
    with pytest.raises(SerializationError, match="nan"):
        JsonSerializer().dumps(math.nan)


def test_circular_reference_is_reported() -> None:
    a: list[Any] = []
    a.append(a)
    assert "circular" in (find_unserializable(a) or "")
    with pytest.raises(SerializationError):
        JsonSerializer().dumps(a)


def test_corrupt_json_payload_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError):
        JsonSerializer().loads(b"{nope")


@pytest.mark.parametrize("value", [*VALUES, b"bytes ok"])
def test_msgpack_roundtrip(value: Any) -> None:
    s = MsgpackSerializer()
    assert s.loads(s.dumps(value)) == value


def test_msgpack_error_names_type() -> None:
    with pytest.raises(SerializationError, match="datetime"):
        MsgpackSerializer().dumps({"t": datetime.datetime.now()})


@pytest.mark.parametrize("secret", ["k", "s" * 64, "long-" * 40, b"\xff" * 65])
def test_pickle_signature_is_hmac_sha256_of_the_payload(secret: str | bytes) -> None:
    # the format stays HMAC-SHA256: entries written before the signing was sped up still read
    import hashlib
    import hmac
    import pickle

    key = secret.encode() if isinstance(secret, str) else secret
    data = PickleSerializer(secret).dumps([1, "x"])
    payload = data[32:]
    assert data[:32] == hmac.new(key, payload, hashlib.sha256).digest()
    assert pickle.loads(payload) == [1, "x"]


def test_pickle_is_signed_and_tampering_is_refused() -> None:
    s = PickleSerializer("key-1")
    data = s.dumps({"when": datetime.date(2020, 1, 2)})
    assert s.loads(data) == {"when": datetime.date(2020, 1, 2)}
    with pytest.raises(SignatureError):
        PickleSerializer("key-2").loads(data)
    forged = data[:32] + data[32:].replace(b"when", b"what")
    with pytest.raises(SignatureError):
        s.loads(forged)
    with pytest.raises(SignatureError):
        s.loads(b"short")


def test_pickle_requires_a_secret_and_explicit_opt_in() -> None:
    with pytest.raises(redkit.ConfigurationError, match="secret_key"):
        redkit.Redkit.from_url("memory://", serializer="pickle")
    kit = redkit.Redkit.from_url("memory://pickle", serializer="pickle", secret_key="k" * 32)
    kit.cache.set("d", {"when": datetime.date(2020, 1, 2)})
    assert kit.cache.get("d") == {"when": datetime.date(2020, 1, 2)}
    kit.close()


def test_msgpack_kit_roundtrips_bytes(url: str, prefix: str) -> None:
    kit = redkit.Redkit.from_url(url, prefix=prefix, serializer="msgpack")
    try:
        kit.cache.set("b", {"blob": b"\x00\xff"})
        assert kit.cache.get("b") == {"blob": b"\x00\xff"}
    finally:
        kit.clear()
        kit.close()


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({1: "a"}, "has a key 1 of type int"),
        (2**70, "wider than 64 bits"),
        ([type("S", (str,), {})("x")], "str subclass"),
        ({type("K", (str,), {})("k"): 1}, "keys must be str"),
    ],
)
@pytest.mark.parametrize("orjson", [True, False], ids=["orjson", "stdlib"])
def test_both_json_backends_refuse_the_same_values(
    monkeypatch: pytest.MonkeyPatch, orjson: bool, value: Any, where: str
) -> None:
    import redkit.serializers as mod

    if not orjson:
        monkeypatch.setattr(mod, "_orjson", None)
    with pytest.raises(SerializationError, match=where):
        JsonSerializer().dumps(value)


@pytest.mark.parametrize("orjson", [True, False], ids=["orjson", "stdlib"])
def test_enums_are_written_as_their_values_by_both_backends(
    monkeypatch: pytest.MonkeyPatch, orjson: bool
) -> None:
    import enum

    import redkit.serializers as mod

    class Color(enum.Enum):
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    if not orjson:
        monkeypatch.setattr(mod, "_orjson", None)
    s = JsonSerializer()
    assert s.loads(s.dumps({"c": Color.RED, "l": Level.HIGH})) == {"c": "red", "l": 3}
