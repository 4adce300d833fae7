"""Settings facing hostile input: deprecated names from several sources, replace(), secrets in
``repr``, unencodable text, malformed URLs and huge integers. Every wrong input is a
``ConfigurationError`` that never echoes a secret; nothing else escapes."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import typing
from datetime import timedelta
from fractions import Fraction
from typing import Any
from urllib.parse import quote

import pytest

import redkit
from redkit import ConfigurationError, Settings

RENAMES = [("cache_lock_wait", "cache_lock_timeout"), ("idempotency_wait", "idempotency_timeout")]
SECRET = "Qx9-hidden-77"
SECRET_FIELDS = ("password", "sentinel_password", "secret_key", "username")
INT_FIELDS = [
    f.name for f in dataclasses.fields(Settings) if typing.get_type_hints(Settings)[f.name] is int
]


def _never_shows(err: BaseException, *secrets: str) -> None:
    texts = [str(err), repr(err), *(repr(a) for a in err.args)]
    for secret in secrets:
        assert all(secret not in text for text in texts), texts


# -- a deprecated name and the new keyword, from different sources ------------------------------


@pytest.mark.parametrize(("old", "new"), RENAMES)
def test_the_keyword_wins_over_a_deprecated_name_from_env_config_or_url(old: str, new: str) -> None:
    # the keyword used to meet the old name in one mapping: "got both"
    with pytest.warns(DeprecationWarning, match=new):
        assert getattr(Settings.from_env({f"REDKIT_{old.upper()}": "3"}, **{new: 5}), new) == 5.0
    with pytest.warns(DeprecationWarning, match=new):
        assert getattr(Settings.from_url(f"memory://?{old}=3", **{new: 5}), new) == 5.0
    with pytest.warns(DeprecationWarning, match=new):
        assert getattr(Settings.from_config({f"REDKIT_{old.upper()}": 3}, **{new: 5}), new) == 5.0
    env_url = {"REDKIT_URL": f"memory://?{old}=1", f"REDKIT_{new.upper()}": "2"}
    with pytest.warns(DeprecationWarning, match=new):
        assert getattr(Settings.from_env(env_url), new) == 2.0  # the environment beats the URL
    # the old name as the keyword wins over the new name from a lower source just the same
    with pytest.warns(DeprecationWarning, match=new):
        assert getattr(Settings.from_env({f"REDKIT_{new.upper()}": "3"}, **{old: 6}), new) == 6.0
    with pytest.warns(DeprecationWarning, match=new):
        assert getattr(Settings.from_url(f"memory://?{new}=3", **{old: 6}), new) == 6.0


@pytest.mark.parametrize(("old", "new"), RENAMES)
def test_both_names_in_one_source_stay_an_error(old: str, new: str) -> None:
    with pytest.raises(ConfigurationError, match="both"):
        Settings.from_env({f"REDKIT_{old.upper()}": "1", f"REDKIT_{new.upper()}": "2"})
    with pytest.raises(ConfigurationError, match="both"):
        Settings.from_url(f"memory://?{old}=1&{new}=2")
    with pytest.raises(ConfigurationError, match="both"):
        Settings.from_config({f"REDKIT_{old.upper()}": 1, f"REDKIT_{new.upper()}": 2})
    with pytest.raises(ConfigurationError, match="both"):
        Settings.from_url("memory://", **{old: 1, new: 2})
    with pytest.raises(ConfigurationError, match="both"):
        Settings.from_env({}, **{old: 1, new: 2})
    with pytest.raises(TypeError, match="both"):
        Settings().replace(**{old: 1, new: 2})


# -- replace -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), RENAMES)
def test_replace_takes_the_deprecated_names_and_warns_at_the_callers_line(
    old: str, new: str
) -> None:
    base = Settings(prefix="p", **{new: 1})
    with pytest.warns(DeprecationWarning, match=new) as record:
        changed = dataclasses.replace(base, **{old: 4})  # it used to raise TypeError
    assert (getattr(changed, new), changed.prefix) == (4.0, "p")
    assert record[0].filename == __file__
    with pytest.warns(DeprecationWarning, match=new) as record:
        changed = base.replace(**{old: timedelta(seconds=7)})
    assert getattr(changed, new) == 7.0
    assert record[0].filename == __file__
    with pytest.warns(DeprecationWarning, match=new) as record:
        Settings(**{old: 2})
    assert record[0].filename == __file__
    with pytest.warns(DeprecationWarning, match=new) as record:
        Settings.from_env({f"REDKIT_{old.upper()}": "2"})
    assert record[0].filename == __file__
    assert getattr(dataclasses.replace(base, **{new: 3}), new) == 3.0
    with pytest.raises(ConfigurationError, match=new):
        dataclasses.replace(base, **{new: -1})
    with pytest.raises(ConfigurationError, match=new), pytest.warns(DeprecationWarning, match=new):
        dataclasses.replace(base, **{old: math.nan})


# -- secrets in repr -----------------------------------------------------------------------------


def test_repr_shows_no_secret_setting_and_no_url_password() -> None:
    s = Settings(
        url=f"redis://{SECRET}u:{SECRET}p@h:6379/0",
        username=f"{SECRET}-user",
        password=f"{SECRET}-pw",
        sentinel_password=f"{SECRET}-sentinel",
        secret_key=f"{SECRET}-hmac-key-long-enough",
        serializer="pickle",
    )
    text = repr(s)
    assert f"{SECRET}p" not in text
    for name in SECRET_FIELDS:
        assert f"{name}=" not in text
    assert text.count(SECRET) == 1  # the URL's user name only, as documented
    assert "url='redis://" in text
    assert "***@h:6379/0" in text


@pytest.mark.parametrize(
    "url",
    [
        f"redis://u:{SECRET}@h/0",
        f"redis://:{SECRET}@h/0",
        f"rediss://u:{SECRET}@h:6380",
        f"unix://u:{SECRET}@/tmp/redis.sock",
        f"redis+cluster://u:{SECRET}@h1:7000,h2:7001",
        f"redis://u:{SECRET}@h/0?client_name=x&password={SECRET}",
    ],
)
def test_repr_redacts_the_password_of_every_url_form(url: str) -> None:
    assert SECRET not in repr(Settings(url=url))
    assert SECRET not in repr(Settings.from_url(url))


@pytest.mark.parametrize("url", [f"redis:u:{SECRET}@h", f"redis:/u:{SECRET}@h/0"])
def test_a_network_url_without_slashes_is_refused_without_echoing_it(url: str) -> None:
    # redis-py would read such a URL as "localhost", the credentials as a path
    with pytest.raises(ConfigurationError, match="url") as info:
        Settings(url=url)
    _never_shows(info.value, SECRET)


# -- text that cannot be encoded -----------------------------------------------------------------

TEXT_FIELDS = [
    "password",
    "username",
    "sentinel_password",
    "secret_key",
    "prefix",
    "url",
    "ssl_ca_certs",
    "ssl_keyfile",
    "idempotency_header",
]


@pytest.mark.parametrize("name", TEXT_FIELDS)
def test_a_lone_surrogate_in_a_text_setting_is_refused_without_echoing_it(name: str) -> None:
    # it used to pass, then fail at connect with a UnicodeEncodeError holding the password
    value = f"redis://u:{SECRET}\udcff@h/0" if name == "url" else f"{SECRET}-long-enough\udcff"
    hidden = (SECRET,) if name in (*SECRET_FIELDS, "url") else ()
    builds = [lambda: Settings(**{name: value})]
    builds.append(lambda: Settings.from_mapping({name.upper(): value}))
    if name != "url":
        builds.append(lambda: Settings.from_env({f"REDKIT_{name.upper()}": value}))
    for build in builds:
        with pytest.raises(ConfigurationError, match=name) as info:
            build()
        _never_shows(info.value, *hidden)
    if name == "url":
        return
    # in a URL's query: raw, or %-escaped (not UTF-8 then, which would decode to U+FFFD)
    for query in (value, quote(value, errors="surrogatepass")):
        with pytest.raises(ConfigurationError, match="url") as in_url:
            Settings.from_url(f"redis://h/0?{name}={query}")
        _never_shows(in_url.value, *hidden)


def test_a_lone_surrogate_in_a_list_setting_is_refused() -> None:
    for name in ("trusted_proxies", "cache_credential_headers", "idempotency_methods"):
        with pytest.raises(ConfigurationError, match=name):
            Settings(**{name: ("ok", "x\udcff")})
        with pytest.raises(ConfigurationError, match=name):
            Settings.from_env({f"REDKIT_{name.upper()}": "POST,\ud800"})


def test_a_surrogate_password_never_reaches_the_connection() -> None:
    with pytest.raises(ConfigurationError, match="password") as info:
        redkit.Redkit.from_url("redis://127.0.0.1:6379/15", password=f"{SECRET}\udcff")
    _never_shows(info.value, SECRET)


# -- malformed URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"redis://u:{SECRET}@[::1/0",
        f"redis://u:{SECRET}@h]:1/0",
        f"redis://u:{SECRET}@h:99999/0",
        f"redis://u:{SECRET}@h:port/0",
        f"redis://u:{SECRET}@h:-1/0",
        f"rediss://u:{SECRET}@[::1/0?prefix=x",
        f"redis+sentinel://u:{SECRET}@[::1:26379/m",
    ],
)
def test_a_malformed_url_is_a_configuration_error_without_the_password(url: str) -> None:
    # "[::1" used to raise urllib's own ValueError
    with pytest.raises(ConfigurationError, match="url") as from_url:
        Settings.from_url(url)
    _never_shows(from_url.value, SECRET)
    with pytest.raises(ConfigurationError, match="url") as direct:
        Settings(url=url)
    _never_shows(direct.value, SECRET)
    with pytest.raises(ConfigurationError, match="url") as env:
        Settings.from_env({"REDKIT_URL": url})
    _never_shows(env.value, SECRET)


def test_good_urls_with_ports_and_several_hosts_still_pass() -> None:
    for url in (
        "redis://h:6379/0",
        "redis://[::1]:6379/0",
        "rediss://u:p@h",
        "unix:///tmp/redis.sock?db=2",
        "redis+sentinel://h1:26379,h2:26380/mymaster/3",
        "redis+cluster://h1:7000,h2:7001",
        "memory://",
        "memory://name",
    ):
        assert Settings(url=url).url == url


# -- integers ------------------------------------------------------------------------------------

INT64_MAX = 2**63 - 1


@pytest.mark.parametrize("name", INT_FIELDS)
def test_an_int_of_thousands_of_digits_is_a_configuration_error(name: str) -> None:
    # repr() and int() of more than 4,300 digits used to raise a raw ValueError
    for value in (10**5000, -(10**5000), INT64_MAX + 1):
        with pytest.raises(ConfigurationError, match=name):
            Settings(**{name: value})
        with pytest.raises(ConfigurationError, match=name):
            Settings.from_mapping({name: value})
    for text in ("9" * 5000, "-" + "9" * 5000, str(INT64_MAX + 1), "1e400", "1" * 4301):
        with pytest.raises(ConfigurationError, match=name):
            Settings.from_env({f"REDKIT_{name.upper()}": text})
        with pytest.raises(ConfigurationError, match=name):
            Settings.from_url(f"redis://h/0?{name}={text}")
    for number in (1e300, -1e300, math.inf, math.nan):
        with pytest.raises(ConfigurationError, match=name):
            Settings.from_mapping({name: number})


@pytest.mark.parametrize(
    ("name", "largest"),
    [
        ("max_key_length", 512 * 1024**2),
        ("session_max_bytes", 512 * 1024**2),
        ("idempotency_max_bytes", 512 * 1024**2),
        ("queue_max_bytes", 512 * 1024**2),
        ("stream_maxlen", INT64_MAX),
        ("queue_keep_failed", 2**40),
        ("queue_events_maxlen", 10**9),
        ("retry_attempts", INT64_MAX),
    ],
)
def test_int_settings_have_an_upper_bound(name: str, largest: int) -> None:
    assert getattr(Settings(**{name: largest}), name) == largest
    assert getattr(Settings.from_env({f"REDKIT_{name.upper()}": str(largest)}), name) == largest
    with pytest.raises(ConfigurationError, match=f"{name}.*at most"):
        Settings(**{name: largest + 1})


def test_a_huge_int_in_a_non_int_setting_is_reported_without_its_digits() -> None:
    for name in ("cache_fail_open", "cache_jitter", "prefix", "password", "cache_ttl"):
        with pytest.raises(ConfigurationError, match=name) as info:
            Settings(**{name: 10**5000})
        assert len(str(info.value)) < 300


# -- fuzz: every wrong input is a ConfigurationError and never shows a secret --------------------

HOSTILE: list[Any] = [
    None,
    "",
    " ",
    "\x00",
    "\udcff",
    f"{SECRET}\ud800",
    "9" * 5000,
    "-1",
    "0",
    "1e400",
    "nan",
    "-inf",
    " 8 ",
    "1_000",
    "0x10",
    "true",
    "none",
    "a,b",
    10**5000,
    -(10**5000),
    2**64,
    -1,
    0,
    1.5,
    1e300,
    math.nan,
    math.inf,
    True,
    Fraction(1, 3),
    1 + 2j,
    timedelta(days=10**6),
    timedelta(0),
    b"bytes",
    SECRET.encode(),
    bytearray(b"x"),
    [],
    ["a", 1],
    [SECRET],
    {"a": 1},
    object(),
    "redis://u:" + SECRET + "@[::1",
]


def _settles(build: Any, *secrets: str) -> None:
    """``build()`` gives Settings or a ConfigurationError hiding ``secrets``; nothing else."""
    try:
        settings = build()
    except ConfigurationError as exc:
        error = exc
    else:
        text = repr(settings)
        for secret in secrets:
            assert secret not in text, text
        return
    _never_shows(error, *secrets)
    assert len(str(error)) < 2000


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Settings)])
def test_fuzz_every_setting_with_hostile_values(name: str) -> None:
    upper = name.upper()
    for value in HOSTILE:
        # a URL's secret is its credentials: the text before an "@"
        if name == "url" and isinstance(value, str) and "@" not in value:
            secrets: tuple[str, ...] = ()
        else:
            secrets = (SECRET,) if name in (*SECRET_FIELDS, "url") else ()
        _settles(lambda v=value: Settings(**{name: v}), *secrets)
        _settles(lambda v=value: Settings.from_mapping({upper: v}), *secrets)
        _settles(lambda v=value: Settings.from_config({f"REDKIT_{upper}": v}), *secrets)
        _settles(lambda v=value: Settings().replace(**{name: v}), *secrets)
        if isinstance(value, str):
            _settles(lambda v=value: Settings.from_env({f"REDKIT_{upper}": v}), *secrets)
            if name != "url":
                query = quote(value, errors="surrogatepass")
                _settles(lambda q=query: Settings.from_url(f"redis://h/0?{name}={q}"), *secrets)


URL_PIECES = [
    "redis://",
    "rediss://",
    "unix://",
    "redis+sentinel://",
    "redis+cluster://",
    "memory://",
    "REDIS://",
    "redis:",
    "http://",
    "",
    f"u:{SECRET}@",
    f":{SECRET}@",
    f"{SECRET}@",
    f"u:{SECRET}\udcff@",
    f"u:{SECRET}/?#@",
    "h",
    "[::1",
    "[::1]",
    "h]",
    "h:99999",
    "h:abc",
    "h:",
    "h1:1,h2:2",
    "/0",
    "/abc",
    "/m/x",
    "?prefix=p",
    "?cache_ttl=-1",
    "?max_connections=" + "9" * 5000,
    "?decode_responses=1",
    f"?password={SECRET}",
    "?%zz=%ff",
    "?prefix=%ED%B2%80",
    "#frag",
    "\n",
    " ",
]


def test_fuzz_urls_assembled_from_hostile_pieces() -> None:
    rng = random.Random(20240607)
    urls = ["".join(p) for p in itertools.product(URL_PIECES[:7], URL_PIECES[10:14], ["h", "[::1"])]
    urls += ["".join(rng.choice(URL_PIECES) for _ in range(rng.randint(1, 5))) for _ in range(600)]
    for url in urls:
        _settles(lambda u=url: Settings.from_url(u), SECRET)
        _settles(lambda u=url: Settings(url=u), SECRET)
        _settles(lambda u=url: Settings.from_env({"REDKIT_URL": u}), SECRET)
