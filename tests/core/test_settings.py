"""Settings: constructors, coercion, validation, URL forms and secret redaction."""

from __future__ import annotations

import math
from typing import Any

import pytest

import redkit
import redkit.asyncio
from redkit import ConfigurationError, Settings
from redkit.settings import redact_url


def test_defaults_are_documented_values() -> None:
    s = Settings()
    assert s.url == "memory://"
    assert s.prefix == "redkit"
    assert s.serializer == "json"
    assert s.cache_ttl == 300
    assert s.cache_fail_open is True
    assert s.ssl_cert_reqs == "required"


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Settings().prefix = "x"  # type: ignore[misc]


def test_from_url_applies_query_settings_and_keyword_options_win() -> None:
    s = Settings.from_url("redis://h:6380/2?prefix=shop&cache_ttl=60&socket_timeout=1.5")
    assert (s.prefix, s.cache_ttl, s.socket_timeout) == ("shop", 60.0, 1.5)
    assert s.url == "redis://h:6380/2"
    s = Settings.from_url("redis://h/0?prefix=shop", prefix="other")
    assert s.prefix == "other"


def test_from_mapping_is_case_insensitive_and_coerces_strings() -> None:
    s = Settings.from_mapping(
        {
            "URL": "redis://x",
            "PREFIX": "app",
            "CACHE_FAIL_OPEN": "false",
            "MAX_CONNECTIONS": "8",
            "cache_negative_ttl": "none",
        }
    )
    assert s.url == "redis://x"
    assert s.prefix == "app"
    assert s.cache_fail_open is False
    assert s.max_connections == 8
    assert s.cache_negative_ttl is None


def test_from_env_prefers_redkit_url_then_redis_url() -> None:
    assert (
        Settings.from_env({"REDIS_URL": "redis://a", "REDKIT_URL": "redis://b"}).url == "redis://b"
    )
    assert Settings.from_env({"REDIS_URL": "redis://a"}).url == "redis://a"
    assert Settings.from_env({}).url == "memory://"
    s = Settings.from_env({"REDIS_URL": "redis://a", "REDKIT_PREFIX": "p", "REDKIT_CACHE_TTL": "9"})
    assert (s.prefix, s.cache_ttl) == ("p", 9.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "http://x"}, "unsupported URL scheme"),
        ({"prefix": "a*b"}, "prefix"),
        ({"prefix": "{x}"}, "prefix"),
        ({"prefix": ""}, "prefix"),
        ({"cache_ttl": 0}, "cache_ttl"),
        ({"cache_ttl": math.nan}, "NaN"),
        ({"socket_timeout": -1}, "socket_timeout"),
        ({"cache_jitter": 2}, "cache_jitter"),
        ({"serializer": "yaml"}, "unknown serializer"),
        ({"serializer": "pickle"}, "secret_key"),
        ({"max_connections": 0}, "max_connections"),
        ({"cache_fail_open": "maybe"}, "expects bool"),
        ({"max_connections": "many"}, "expects int"),
        ({"max_connections": 2.5}, "expects int"),
        ({"no_such_setting": 1}, "unknown redkit setting"),
        ({"ssl_cert_reqs": "sometimes"}, "ssl_cert_reqs"),
    ],
)
def test_invalid_settings_raise_configuration_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_mapping(options)


def test_replace_validates() -> None:
    s = Settings(prefix="a")
    assert s.replace(prefix="b").prefix == "b"
    with pytest.raises(ConfigurationError):
        s.replace(cache_ttl=-5)


SECRET = "s3cr3t-P4ss"


@pytest.mark.parametrize(
    "url",
    [
        f"redis://user:{SECRET}@127.0.0.1:1/0",
        f"redis://:{SECRET}@127.0.0.1:1/0",
        f"rediss://default:{SECRET}@127.0.0.1:1",
        f"redis+sentinel://:{SECRET}@127.0.0.1:1/mymaster",
    ],
)
def test_passwords_never_appear_in_repr_or_errors(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert SECRET not in redact_url(url)
    s = Settings.from_url(
        url, secret_key="hmac-key-for-tests-only", socket_connect_timeout=0.2, retry_attempts=0
    )
    assert SECRET not in repr(s)
    assert "hmac-key-for-tests-only" not in repr(s)
    if url.startswith(("redis://", "rediss://")):
        kit = redkit.Redkit(s)
        assert SECRET not in repr(kit)
        with pytest.raises(redkit.RedkitConnectionError) as info:
            kit.ping()
        text = f"{info.value} {info.value.__cause__} {info.value!r}"
        assert SECRET not in text
        assert SECRET not in caplog.text
        kit.close()


def test_password_setting_is_hidden_too() -> None:
    s = Settings(url="redis://h", password=SECRET, username="app")
    assert SECRET not in repr(s)
    assert "app" in repr(s)


def test_tls_verifies_certificates_by_default() -> None:
    kit = redkit.Redkit.from_url("rediss://127.0.0.1:1/0")
    kwargs = kit.client.connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] == "required"
    assert kwargs["ssl_check_hostname"] is True
    kit.close()


def test_url_forms_build_the_matching_clients() -> None:
    from redis.sentinel import SentinelManagedConnection

    kit = redkit.Redkit.from_url("redis+sentinel://127.0.0.1:26379,127.0.0.2:26380/mymaster/3")
    pool = kit.client.connection_pool
    assert pool.service_name == "mymaster"
    assert issubclass(pool.connection_class, SentinelManagedConnection)
    assert pool.connection_kwargs["db"] == 3
    hosts = [
        (c.connection_pool.connection_kwargs["host"], c.connection_pool.connection_kwargs["port"])
        for c in pool.sentinel_manager.sentinels
    ]
    assert hosts == [("127.0.0.1", 26379), ("127.0.0.2", 26380)]
    kit.close()

    kit = redkit.Redkit.from_url("unix:///tmp/redis.sock?db=2")
    assert kit.client.connection_pool.connection_kwargs["path"] == "/tmp/redis.sock"
    kit.close()

    with pytest.raises(ConfigurationError, match="service name"):
        redkit.Redkit.from_url("redis+sentinel://127.0.0.1:26379")
    # redis+cluster:// clients connect at once: the whole suite runs on a real cluster


async def test_async_twin_accepts_the_same_constructors() -> None:
    kit = redkit.asyncio.Redkit.from_settings({"url": "memory://parity", "prefix": "p"})
    assert kit.settings.prefix == "p"
    assert await kit.ping() is True
    await kit.aclose()
    await kit.aclose()  # idempotent


def test_sync_context_manager_closes() -> None:
    with redkit.Redkit.from_url("memory://cm") as kit:
        assert kit.ping()
    assert kit._closed


@pytest.mark.parametrize("param", ["decode_responses=true", "protocol=3", "encoding=latin-1"])
def test_url_parameters_that_would_break_decoding_are_refused(param: str) -> None:
    with pytest.raises(ConfigurationError, match="not supported"):
        Settings.from_url(f"redis://h/0?{param}")
    with pytest.raises(ConfigurationError, match="not supported"):
        Settings(url=f"redis://h/0?{param}")
    with pytest.raises(ConfigurationError, match="not supported"):
        Settings.from_mapping({"url": f"redis://h/0?{param}"})


def test_credential_settings_win_over_the_url() -> None:
    kit = redkit.Redkit.from_url(
        "redis://urluser:urlpass@127.0.0.1:1/3", password="p2", username="u2"
    )
    kwargs = kit.client.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("u2", "p2", 3)
    kit.close()
    kit = redkit.Redkit.from_url("redis://urluser:urlpass@127.0.0.1:1/3")
    kwargs = kit.client.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("urluser", "urlpass")
    kit.close()


def test_credentials_merge_field_by_field() -> None:
    kit = redkit.Redkit.from_url("redis://:urlpass@127.0.0.1:1/3", username="app")
    kwargs = kit.client.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("app", "urlpass")
    kit.close()


@pytest.mark.parametrize(
    "url",
    [
        f"redis://127.0.0.1:1/0?password={SECRET}",
        f"redis://user:Xy7/{SECRET}+Q@127.0.0.1:1/0",
        f"redis://user:a?b#{SECRET}@127.0.0.1:1/0",
        f"redis://user:{SECRET}@127.0.0.1:1/0?client_name=x&sentinel_password={SECRET}",
    ],
)
def test_redaction_of_awkward_urls(url: str) -> None:
    assert SECRET not in redact_url(url)
    s = Settings.from_url(url)
    assert SECRET not in repr(s)


@pytest.mark.parametrize("prefix", ["app:prod", "a:b"])
def test_prefixes_with_colons_are_refused(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="without ':'"):
        Settings(prefix=prefix)


def test_query_values_keep_their_encoding() -> None:
    s = Settings.from_url("redis://h/0?client_name=a%26b%3Dc&prefix=p")
    assert s.url == "redis://h/0?client_name=a%26b%3Dc"


def test_asyncio_connections_pack_commands_as_redis_py_does() -> None:
    # the asyncio pool's connection class packs in one pass; the bytes must be redis-py's own
    from redis.asyncio.connection import Connection

    kit = redkit.asyncio.Redkit.from_url("redis://127.0.0.1:6379/15")
    pool = kit.client.connection_pool
    fast = pool.connection_class(**pool.connection_kwargs)
    plain = Connection(**pool.connection_kwargs)
    assert type(fast) is not Connection
    assert isinstance(fast, Connection)
    big = b"x" * 70_000
    cases: list[tuple[Any, ...]] = [
        ("PING",),
        ("CONFIG GET", "maxmemory-policy"),
        (b"CLIENT LIST",),
        ("EVALSHA", "ab" * 20, 2, "k1", "{q}:k2", 3, 2.5, -7, "é", b"\x00\r\n", big),
        ("SET", "k", memoryview(b"view")),
        ("HSET", "k", *[f"f{i}" for i in range(400)]),
    ]
    for args in cases:
        assert b"".join(fast.pack_command(*args)) == b"".join(plain.pack_command(*args))
    from redis.exceptions import DataError

    with pytest.raises(DataError, match="Invalid input"):  # the same encoder rejects the same
        fast.pack_command("SET", "k", None)


def test_from_config_reads_prefixed_keys_and_refuses_unknown_ones() -> None:
    config = {"REDKIT_PREFIX": "shop", "REDKIT_CACHE_TTL": "30", "SECRET_KEY": "x", 1: "y"}
    s = Settings.from_config(config, cache_ttl=5)
    assert (s.prefix, s.cache_ttl) == ("shop", 5.0)
    assert Settings.from_config({"APP_PREFIX": "a"}, prefix="APP_").prefix == "a"
    with pytest.raises(ConfigurationError, match="REDKIT_PREFIXX"):
        Settings.from_config({"REDKIT_PREFIXX": "shop"})
    with pytest.raises(ConfigurationError, match="cache_tll"):
        Settings.from_config({}, cache_tll=1)


# -- secrets are never echoed in errors ----------------------------------------------------------

SECRET_TEXT = "Zq7-secret-9Xw"
BAD_SECRETS: list[Any] = [
    SECRET_TEXT.encode(),  # bytes
    987_654_321_123,  # an int
    [SECRET_TEXT],  # a list
    SECRET_TEXT[:10],  # too short (for secret_key)
]


def _assert_hidden(err: BaseException, *secrets: str) -> None:
    shown = [str(err), repr(err), *(str(a) for a in err.args), *(repr(a) for a in err.args)]
    for secret in secrets:
        for text in shown:
            assert secret not in text, text


def _texts(value: Any) -> list[str]:
    if isinstance(value, bytes):
        return [value.decode(), repr(value)]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param(name, value, id=f"{name}-{type(value).__name__}")
        for name in ("password", "sentinel_password", "secret_key", "username")
        for value in BAD_SECRETS
        # a short password is the server's business; only the HMAC key has a minimum length
        if name == "secret_key" or not isinstance(value, str)
    ],
)
def test_bad_secret_values_are_never_echoed(name: str, value: Any) -> None:
    secrets = _texts(value)
    with pytest.raises(ConfigurationError, match=name) as direct:
        Settings(**{name: value})
    _assert_hidden(direct.value, *secrets)
    with pytest.raises(ConfigurationError, match=name) as mapped:
        Settings.from_mapping({name.upper(): value})
    _assert_hidden(mapped.value, *secrets)
    with pytest.raises(ConfigurationError, match=name) as from_url:
        Settings.from_url(f"redis://app:{SECRET_TEXT}@h:6379/0", **{name: value})
    _assert_hidden(from_url.value, *secrets, SECRET_TEXT)
    with pytest.raises(ConfigurationError, match=name) as configured:
        Settings.from_config({f"REDKIT_{name.upper()}": value})
    _assert_hidden(configured.value, *secrets)


def test_a_short_secret_key_from_the_environment_is_not_echoed() -> None:
    with pytest.raises(ConfigurationError, match=r"secret_key.*too short") as info:
        Settings.from_env({"REDKIT_SECRET_KEY": "hunter2", "REDKIT_SERIALIZER": "pickle"})
    _assert_hidden(info.value, "hunter2")
    env = {"REDKIT_URL": f"redis://:{SECRET_TEXT}@h/0", "REDKIT_SOCKET_TIMEOUT": "soon"}
    with pytest.raises(ConfigurationError, match="socket_timeout") as bad_other:
        Settings.from_env(env)
    _assert_hidden(bad_other.value, SECRET_TEXT)


@pytest.mark.parametrize(
    "url",
    [
        f"http://user:{SECRET_TEXT}@h/0",  # unsupported scheme: the URL is shown, redacted
        f"redis://:{SECRET_TEXT}@h/0?decode_responses=1",
        f"redis://:{SECRET_TEXT}@h/0?cache_ttl=-1",
        f"redis://h/0?password={SECRET_TEXT}&cache_ttl=nan",
    ],
)
def test_the_url_password_is_never_echoed(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_url(url)
    _assert_hidden(info.value, SECRET_TEXT)
    with pytest.raises(ConfigurationError) as mapped:
        Settings.from_mapping({"url": url.encode()})  # not a str: only its type is told
    _assert_hidden(mapped.value, SECRET_TEXT)


def test_a_long_enough_secret_key_is_taken() -> None:
    key = "k" * 16
    assert Settings(serializer="pickle", secret_key=key).secret_key == key
