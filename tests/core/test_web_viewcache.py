"""The view cache of ``redkit.web`` without a framework: what is answered from the cache, what is
stored and under which key, so that one client's response never reaches another; sync and
asyncio drivers, real Redis and ``memory://``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from redkit import web
from tests.conftest import call
from tests.core.test_web import App, app, backend, page, request

__all__ = ["app", "backend"]  # the fixtures, shared with test_web


def cached(**rule: Any) -> web.ViewRules:
    return web.ViewRules(cache=web.CacheRule.build(ttl=60, **rule))


async def answered(a: App, req: web.Request, view: web.ViewRules) -> bytes | None:
    """The body the cache answers ``req`` with, or ``None`` when the view would run."""
    got = await a.before(req, view)
    if isinstance(got, web.Answer):
        assert got.kind == "cached"
        return got.body
    return None


async def test_a_get_is_stored_once_and_answered(app: Callable[..., App]) -> None:
    a = app()
    view = cached()
    first = await a.exchange(request(), view, page(b"one"))
    assert isinstance(first, web.Response)
    second = await a.exchange(request(), view, page(b"two"))
    assert isinstance(second, web.Answer)
    assert second.kind == "cached"
    assert second.status == 200
    assert second.body == b"one"
    assert ("Content-Type", "text/html") in second.headers
    assert await answered(a, request("HEAD"), view) == b"one"  # HEAD from the GET
    assert await answered(a, request(path="/other"), view) is None
    assert await answered(a, request(scheme="https"), view) is None
    upper = web.Request("GET", "/page", "", web.Headers(), None, "SHOP.example")
    assert await answered(a, upper, view) == b"one"  # host names have no case


async def test_only_get_responses_are_stored(app: Callable[..., App]) -> None:
    a = app()
    view = cached()
    head = await a.before(request("HEAD"), view)
    assert isinstance(head, web.Pending)
    await a.finish(request("HEAD"), head, page(b""))
    assert await answered(a, request(), view) is None  # an empty HEAD body is never a page
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        got = await a.before(request(method), view)
        assert isinstance(got, web.Pending)
        assert got.ticket is None


async def test_headers_of_the_connection_and_cookies_are_not_stored(
    app: Callable[..., App],
) -> None:
    a = app()
    view = cached(cookies=True)
    headers = [
        ("Content-Type", "text/html"),
        ("Connection", "keep-alive"),
        ("Date", "Tue, 01 Jan 2030 00:00:00 GMT"),
        ("Set-Cookie", "session=alice"),
        ("X-Kept", "1"),
    ]
    await a.exchange(request(), view, page(b"x", headers=headers))
    got = await a.before(request(), view)
    assert isinstance(got, web.Answer)
    names = {n.lower() for n, _ in got.headers}
    assert {"content-type", "x-kept"} <= names
    assert not names & {"connection", "date", "set-cookie"}


async def test_the_order_of_query_arguments_does_not_matter(app: Callable[..., App]) -> None:
    a = app()
    view = cached()
    await a.exchange(request(query="a=1&b=2&b=3"), view, page(b"ab"))
    assert await answered(a, request(query="b=2&a=1&b=3"), view) == b"ab"
    assert await answered(a, request(query="b=3&a=1&b=2"), view) is None  # b's own order counts
    assert await answered(a, request(query="a=1&b=2"), view) is None
    assert await answered(a, request(query="a=1&b=2&b=3&c="), view) is None


async def test_query_false_and_a_list_of_arguments(app: Callable[..., App]) -> None:
    a = app()
    nothing, some = cached(query=False), cached(query=["page"])
    await a.exchange(request(path="/n", query="x=1"), nothing, page(b"n"))
    assert await answered(a, request(path="/n", query="x=2&y=3"), nothing) == b"n"
    assert await answered(a, request(path="/n"), nothing) == b"n"
    await a.exchange(request(path="/s", query="page=1&utm=a"), some, page(b"s1"))
    assert await answered(a, request(path="/s", query="utm=b&page=1"), some) == b"s1"
    assert await answered(a, request(path="/s", query="page=1"), some) == b"s1"
    assert await answered(a, request(path="/s", query="page=2"), some) is None


async def test_a_query_that_is_not_utf8_never_fails(app: Callable[..., App]) -> None:
    a = app()
    view = cached()
    await a.exchange(request(query="q=%ff"), view, page(b"ff"))
    assert await answered(a, request(query="q=%ff"), view) == b"ff"
    assert await answered(a, request(query="q=%fe"), view) is None
    assert await answered(a, request(query="q=%zz&%=%"), view) is None


CREDENTIALS = [("Authorization", "Bearer alice")]


@pytest.mark.parametrize(
    ("settings", "rule", "header"),
    [
        ({}, {}, ("Authorization", "Bearer alice")),
        ({}, {}, ("authorization", "Basic YTpi")),
        ({"cache_credential_headers": ("Authorization", "X-Api-Key")}, {}, ("X-Api-Key", "k1")),
        ({}, {"credentials": ["X-Tenant-Token"]}, ("x-tenant-token", "t1")),
    ],
    ids=["authorization", "basic", "setting", "policy"],
)
async def test_a_request_with_credentials_is_neither_answered_nor_stored(
    app: Callable[..., App],
    settings: dict[str, Any],
    rule: dict[str, Any],
    header: tuple[str, str],
) -> None:
    a = app(**settings)
    view = cached(**rule)
    await a.exchange(request(), view, page(b"public"))
    got = await a.before(request(headers=[header]), view)
    assert isinstance(got, web.Pending)  # the view runs: not the anonymous page
    assert got.ticket is None
    private = cached(**rule)
    await a.exchange(request(path="/me", headers=[header]), private, page(b"alice's"))
    assert await answered(a, request(path="/me"), private) is None
    assert await answered(a, request(path="/me", headers=[header]), private) is None


async def test_per_credential_stores_one_entry_per_credential(app: Callable[..., App]) -> None:
    a = app(cache_credential_headers=("Authorization", "X-Api-Key"))
    view = cached(per_credential=True)
    alice, bob = [("Authorization", "Bearer alice")], [("Authorization", "Bearer bob")]
    await a.exchange(request(headers=alice), view, page(b"alice's"))
    assert await answered(a, request(headers=alice), view) == b"alice's"
    assert await answered(a, request(headers=bob), view) is None
    await a.exchange(request(headers=bob), view, page(b"bob's"))
    assert await answered(a, request(headers=bob), view) == b"bob's"
    assert await answered(a, request(headers=alice), view) == b"alice's"
    assert await answered(a, request(), view) is None
    keyed = [*alice, ("X-Api-Key", "k2")]
    assert await answered(a, request(headers=keyed), view) is None  # every credential counts


NEVER_STORED: list[tuple[str, web.Response, dict[str, Any]]] = [
    ("set-cookie", page(headers=[("Set-Cookie", "sid=alice; HttpOnly")]), {}),
    ("set-cookie2", page(headers=[("set-cookie2", "sid=alice")]), {}),
    ("private", page(headers=[("Cache-Control", "private")]), {}),
    ("private-upper", page(headers=[("Cache-Control", "max-age=60, Private")]), {}),
    ("private-field", page(headers=[("Cache-Control", 'private="Set-Cookie"')]), {}),
    ("no-store", page(headers=[("Cache-Control", "public, no-store")]), {}),
    ("no-cache-field", page(headers=[("cache-control", 'no-cache="x"')]), {}),
    ("vary-star", page(headers=[("Vary", "Accept-Encoding, *")]), {}),
    ("vary-star-alone", page(headers=[("Vary", "Accept"), ("Vary", "*")]), {}),
    ("404", page(status=404), {}),
    ("500", page(status=500), {}),
    ("201", page(status=201), {}),
    ("streamed", page(body=None), {}),
    ("session-changed", page(), {"session": (True, True)}),
    ("session-created", page(), {"session": (False, True)}),
    ("uncommitted", page(), {"uncommitted": True}),
]


@pytest.mark.parametrize(
    ("response", "extra"), [c[1:] for c in NEVER_STORED], ids=[c[0] for c in NEVER_STORED]
)
async def test_responses_that_are_never_stored(
    app: Callable[..., App], response: web.Response, extra: dict[str, Any]
) -> None:
    a = app()
    view = cached()
    sent = await a.exchange(request(), view, response, **extra)
    assert isinstance(sent, web.Response)
    assert await answered(a, request(), view) is None


async def test_statuses_the_view_allows_are_stored(app: Callable[..., App]) -> None:
    a = app()
    view = cached(statuses=[200, 404])
    await a.exchange(request(), view, page(b"gone", status=404))
    got = await a.before(request(), view)
    assert isinstance(got, web.Answer)
    assert got.status == 404
    assert got.body == b"gone"


async def test_a_view_that_read_the_session_varies_on_cookie(app: Callable[..., App]) -> None:
    a = app()
    view = cached()
    alice = [("Cookie", "session=alice")]
    await a.exchange(request(headers=alice), view, page(b"hi alice"), session=(True, False))
    assert await answered(a, request(headers=alice), view) == b"hi alice"
    assert await answered(a, request(headers=[("Cookie", "session=bob")]), view) is None
    assert await answered(a, request(), view) is None


async def test_every_field_of_a_varied_header_is_keyed(app: Callable[..., App]) -> None:
    """HTTP/2 may split ``Cookie`` into one field per cookie: the key takes them all, so a
    client sending another's first cookie (a theme, a consent flag) does not get its page."""
    a = app()
    view = cached()
    alice = [("Cookie", "theme=dark"), ("Cookie", "session=alice")]
    bob = [("Cookie", "theme=dark"), ("Cookie", "session=bob")]
    await a.exchange(request(headers=alice), view, page(b"hi alice"), session=(True, False))
    assert await answered(a, request(headers=alice), view) == b"hi alice"
    assert await answered(a, request(headers=bob), view) is None
    assert await answered(a, request(headers=alice[:1]), view) is None


async def test_vary_names_become_part_of_the_key(app: Callable[..., App]) -> None:
    a = app()
    view = cached()
    varies = [("Content-Type", "text/html"), ("Vary", "Accept-Language")]
    en, fr = [("Accept-Language", "en")], [("accept-language", "fr")]
    await a.exchange(request(headers=en), view, page(b"hello", headers=varies))
    assert await answered(a, request(headers=en), view) == b"hello"
    assert await answered(a, request(headers=fr), view) is None
    assert await answered(a, request(), view) is None
    await a.exchange(request(headers=fr), view, page(b"bonjour", headers=varies))
    assert await answered(a, request(headers=fr), view) == b"bonjour"
    assert await answered(a, request(headers=en), view) == b"hello"
    own = cached(vary=["X-Region"])
    await a.exchange(request(path="/r", headers=[("X-Region", "eu")]), own, page(b"eu"))
    assert await answered(a, request(path="/r", headers=[("X-Region", "eu")]), own) == b"eu"
    assert await answered(a, request(path="/r", headers=[("X-Region", "us")]), own) is None


async def test_unless_bypasses_the_cache(app: Callable[..., App]) -> None:
    a = app()
    preview = cached(unless=lambda: True)
    await a.exchange(request(), preview, page(b"draft"))
    assert await answered(a, request(), preview) is None
    assert await answered(a, request(), cached()) is None  # and nothing was stored
    by_request = cached(unless=lambda r: "preview" in r.path)  # a hook taking the request

    def starlette(path: str) -> web.Request:
        req = request(path=path)
        req.call = lambda fn: fn(req)
        return req

    await a.exchange(starlette("/preview"), by_request, page(b"draft"))
    assert await answered(a, starlette("/preview"), by_request) is None
    await a.exchange(starlette("/live"), by_request, page(b"live"))
    assert await answered(a, starlette("/live"), by_request) == b"live"


async def test_cache_enabled_false_runs_every_view(app: Callable[..., App]) -> None:
    a = app(cache_enabled=False)
    view = cached()
    for _ in range(2):
        got = await a.before(request(), view)
        assert isinstance(got, web.Pending)
        assert got.ticket is None
        await a.finish(request(), got, page())
    assert await call(a.kit.cache.get("anything")) is None


async def test_tags_from_the_view_arguments(app: Callable[..., App]) -> None:
    a = app()
    view = cached(tags=["user:{user_id}", "users"])
    req = request(path="/users/7")
    await a.exchange(req, view, page(b"user 7"), args={"user_id": 7})
    assert await answered(a, req, view) == b"user 7"
    await call(a.kit.cache.invalidate(["user:7"]))
    assert await answered(a, req, view) is None
    by_hook = cached(tags=lambda user_id: f"user:{user_id}")
    await a.exchange(request(path="/h/8"), by_hook, page(b"8"), args={"user_id": 8})
    assert await answered(a, request(path="/h/8"), by_hook) == b"8"
    await call(a.kit.cache.invalidate(["user:8"]))
    assert await answered(a, request(path="/h/8"), by_hook) is None


async def test_a_tag_template_naming_a_missing_argument_stores_nothing(
    app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    a = app()
    view = cached(tags=["user:{user_id}"])
    with caplog.at_level(logging.ERROR, logger="redkit.web"):
        sent = await a.exchange(request(), view, page(), args={"id": 7})
    assert isinstance(sent, web.Response)
    assert await answered(a, request(), view) is None
    assert "user_id" in caplog.text
    assert "not cached" in caplog.text


def test_cache_rules_are_checked_when_built() -> None:
    with pytest.raises(TypeError):
        web.CacheRule.build(tags="user:{id}")
    with pytest.raises(TypeError):
        web.CacheRule.build(tags=["ok", 3])
    with pytest.raises(TypeError):
        web.CacheRule.build(unless="yes")
    for bad in (100, 600, True, "200"):
        with pytest.raises(ValueError):
            web.CacheRule.build(statuses=[bad])


async def test_redis_down_runs_the_view_and_stores_nothing(app: Callable[..., App]) -> None:
    a = app(down=True)
    view = cached()
    got = await a.before(request(), view)
    assert isinstance(got, web.Pending)
    assert got.ticket is not None  # a miss: the view runs
    stored = await a.drive(a.rules.cache.store(request(), got.ticket, page()))
    assert stored is False
    await a.finish(request(), got, page())  # never an error after the response


async def test_a_cached_answer_shows_the_rate_limits_of_its_own_client(
    app: Callable[..., App],
) -> None:
    """A page stored while one client was counted must not carry that client's rate-limit
    headers to the others."""
    a = app(ratelimit_application="5/minute")
    view = cached()
    await a.exchange(request(client="198.51.100.1"), view, page(b"p"))
    for remaining in (4, 3, 2):
        got = await a.before(request(client="198.51.100.2"), view)
        assert isinstance(got, web.Answer)
        assert got.kind == "cached"
        shown = [v for n, v in got.headers if n.lower() == "x-ratelimit-remaining"]
        assert shown == [str(remaining)]
