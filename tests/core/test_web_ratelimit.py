"""The rate limits of ``redkit.web`` without a framework, through ``WebRules.before`` and
``finish``: which rules count a request, who is counted (a client cannot choose), the 429 and
the failure policy; sync and asyncio drivers, real Redis and ``memory://``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

import redkit
from redkit import web
from redkit.errors import InvalidRateLimit
from tests.core.test_web import App, app, backend, page, request

__all__ = ["app", "backend"]  # the fixtures, shared with test_web


def limited(limits: str = "3/minute", **rule: Any) -> web.ViewRules:
    return web.ViewRules(limits=[web.LimitRule.build(limits, **rule)])


async def admitted(
    a: App, req: web.Request, view: web.ViewRules | None, endpoint: str = "v"
) -> bool:
    """Whether ``req`` runs its view (finished with an empty native response); False on a 429."""
    got = await a.exchange(req, view, page(), endpoint)
    if isinstance(got, web.Answer):
        assert got.status == 429
        assert got.kind == "rate_limited"
        return False
    return True


async def test_denied_after_exactly_n_with_retry_after_and_headers(
    app: Callable[..., App],
) -> None:
    a = app()
    view = limited("3/minute")
    for remaining in (2, 1, 0):
        got = await a.before(request(), view)
        assert isinstance(got, web.Pending)
        headers = a.rules.headers(got)
        assert headers["X-RateLimit-Limit"] == "3"
        assert headers["X-RateLimit-Remaining"] == str(remaining)
        assert "RateLimit-Policy" in headers
    denied = await a.before(request(), view)
    assert isinstance(denied, web.Answer)
    assert denied.status == 429
    assert denied.kind == "rate_limited"
    fields = dict(denied.headers)
    assert 1 <= int(fields["Retry-After"]) <= 120  # a sliding window: up to two periods
    assert fields["X-RateLimit-Remaining"] == "0"
    assert fields["Content-Type"] == "application/problem+json"
    assert json.loads(denied.body)["status"] == 429
    assert denied.detail.allowed is False
    assert denied.detail.limit.amount == 3
    quiet = app(ratelimit_headers=False)
    for _ in range(3):
        got = await quiet.before(request(), view)
        assert isinstance(got, web.Pending)
        assert quiet.rules.headers(got) == {}
    hidden = await quiet.before(request(), view)
    assert isinstance(hidden, web.Answer)
    assert {n for n, _ in hidden.headers} == {"Content-Type", "Retry-After"}


async def test_the_application_limit_comes_first_and_is_shared_by_views(
    app: Callable[..., App],
) -> None:
    a = app(ratelimit_application="3/minute")
    assert a.rules.everywhere
    own = limited("10/minute")
    assert await admitted(a, request(), own, "a")
    assert await admitted(a, request(), None, "b")
    assert await admitted(a, request(), own, "c")
    denied = await a.before(request(), own, "a")
    assert isinstance(denied, web.Answer)
    assert denied.detail.limit.amount == 3  # the application's, not the view's
    assert await admitted(a, request(client="198.51.100.9"), own, "a")  # per client


async def test_view_limits_then_groups_then_the_default(app: Callable[..., App]) -> None:
    a = app(ratelimit_default="1/minute")
    group = limited("2/minute")
    assert await admitted(a, request(), None, "plain")
    assert not await admitted(a, request(), None, "plain")
    assert await admitted(a, request(), None, "other")  # counted per view
    grouped = await a.before(request(), web.ViewRules(), "grouped", [group])
    assert isinstance(grouped, web.Pending)
    assert a.rules.headers(grouped)["X-RateLimit-Limit"] == "2"
    own = await a.before(request(), limited("5/minute"), "own", [group])
    assert isinstance(own, web.Pending)
    assert a.rules.headers(own)["X-RateLimit-Limit"] == "5"


async def test_exempt_views_and_groups_are_never_counted(app: Callable[..., App]) -> None:
    a = app(ratelimit_application="1/minute", ratelimit_default="1/minute")
    exempt = web.ViewRules(limits=limited("1/minute").limits, exempt=True)
    for _ in range(4):
        assert await admitted(a, request(), exempt)
        got = await a.before(request(), web.ViewRules(), "static", [web.ViewRules(exempt=True)])
        assert isinstance(got, web.Pending)
        assert got.counted is None
        unlimited = await a.drive(a.rules.before(request(), "file", None, limited=False))
        assert isinstance(unlimited, web.Pending)
        assert unlimited.counted is None
    assert await admitted(a, request(), None)
    assert not await admitted(a, request(), None, "other")  # the application limit, spent


async def test_only_the_named_methods_are_counted(app: Callable[..., App]) -> None:
    a = app()
    view = limited("1/minute", methods=["post"])
    for _ in range(3):
        assert await admitted(a, request("GET"), view)
    assert await admitted(a, request("POST"), view)
    assert not await admitted(a, request("POST"), view)


async def test_cost_and_its_hook(app: Callable[..., App]) -> None:
    a = app()
    assert await admitted(a, request(), limited("3/minute", cost=2), "fixed")
    assert not await admitted(a, request(), limited("3/minute", cost=2), "fixed")
    costs = iter([1, 2, 1])
    hooked = limited("3/minute", cost=lambda: next(costs))
    assert await admitted(a, request(), hooked, "hooked")
    assert await admitted(a, request(), hooked, "hooked")
    assert not await admitted(a, request(), hooked, "hooked")
    for bad in (0, -1, True, "2", None):
        with pytest.raises(InvalidRateLimit):
            await a.before(request(), limited("3/minute", cost=lambda bad=bad: bad), "bad")


async def test_the_key_hook_chooses_who_is_counted(app: Callable[..., App]) -> None:
    a = app()
    view = limited("2/minute", key=lambda: "account-7")
    assert await admitted(a, request(client="198.51.100.1"), view)
    assert await admitted(a, request(client="198.51.100.2"), view)
    assert not await admitted(a, request(client="198.51.100.3"), view)
    shared = limited("1/minute", scope="search")
    assert await admitted(a, request(), shared, "search_a")
    assert not await admitted(a, request(), shared, "search_b")  # one scope, one counter


async def test_exempt_when_skips_the_limit(app: Callable[..., App]) -> None:
    a = app()
    view = limited("1/minute", exempt_when=lambda r: r.headers.get("X-Internal") == "1")

    def req(internal: bool) -> web.Request:
        r = request(headers=[("X-Internal", "1")] if internal else [])
        r.call = lambda fn: fn(r)  # hooks that take the request
        return r

    for _ in range(3):
        assert await admitted(a, req(True), view)
    assert await admitted(a, req(False), view)
    assert not await admitted(a, req(False), view)
    assert await admitted(a, req(True), view)


async def test_deduct_when_charges_only_the_responses_it_accepts(
    app: Callable[..., App],
) -> None:
    a = app()
    view = limited("2/minute", deduct_when=lambda native: native == "failed")
    for _ in range(4):  # what the hook does not accept is given back
        pending = await a.before(request(), view)
        assert isinstance(pending, web.Pending)
        await a.finish(request(), pending, page(status=200), native="ok")
    running = [await a.before(request(), view) for _ in range(2)]
    assert all(isinstance(p, web.Pending) for p in running)
    busy = await a.before(request(), view)  # requests in flight are counted while they run
    assert isinstance(busy, web.Answer)
    assert busy.status == 429
    for pending in running:
        assert isinstance(pending, web.Pending)
        await a.finish(request(), pending, page(status=401), native="failed")
    denied = await a.before(request(), view)
    assert isinstance(denied, web.Answer)
    assert denied.status == 429


async def test_ratelimit_enabled_false_counts_nothing(app: Callable[..., App]) -> None:
    a = app(ratelimit_enabled=False, ratelimit_application="1/minute")
    assert not a.rules.everywhere
    for _ in range(5):
        got = await a.before(request(), limited("1/minute"))
        assert isinstance(got, web.Pending)
        assert a.rules.headers(got) == {}


async def test_a_client_cannot_choose_its_address(app: Callable[..., App]) -> None:
    direct = app()
    view = limited("2/minute")
    for i in range(2):
        spoof = [("X-Forwarded-For", f"192.0.2.{i}"), ("Forwarded", f"for=192.0.2.{i}")]
        assert await admitted(direct, request(headers=spoof), view)
    assert not await admitted(direct, request(headers=[("X-Forwarded-For", "192.0.2.99")]), view)

    proxied = app(trusted_proxies=("10.0.0.0/8",))
    for i in range(2):  # the client forges the left part; the proxy appends the real one
        chain = [("X-Forwarded-For", f"192.0.2.{i}, 198.51.100.7")]
        assert await admitted(proxied, request(headers=chain, client="10.0.0.1"), view)
    chain = [("X-Forwarded-For", "192.0.2.50, 198.51.100.7")]
    assert not await admitted(proxied, request(headers=chain, client="10.0.0.2"), view)
    other = [("X-Forwarded-For", "198.51.100.8")]
    assert await admitted(proxied, request(headers=other, client="10.0.0.1"), view)
    # a peer that is not a trusted proxy is the client, whatever it forwards
    outside = [("X-Forwarded-For", "198.51.100.8")]
    assert await admitted(proxied, request(headers=outside, client="203.0.113.1"), view)


async def test_ipv6_clients_are_counted_by_their_64(app: Callable[..., App]) -> None:
    a = app()
    view = limited("2/minute")
    assert await admitted(a, request(client="2001:db8:1:2::1"), view)
    assert await admitted(a, request(client="[2001:db8:1:2:ffff::9]:443"), view)
    assert not await admitted(a, request(client="2001:db8:1:2:abcd::1"), view)
    assert await admitted(a, request(client="2001:db8:1:3::1"), view)  # another /64
    unknown = [request(client=None), request(client="/run/app.sock")]
    assert await admitted(a, unknown[0], view)
    assert await admitted(a, unknown[1], view)
    assert not await admitted(a, request(client=None), view)  # one "unknown" client


async def test_redis_down_fails_open(app: Callable[..., App]) -> None:
    a = app(down=True, ratelimit_application="1/minute")
    for _ in range(3):
        got = await a.before(request(), limited("1/minute"))
        assert isinstance(got, web.Pending)
        assert a.rules.headers(got) == {}  # nothing is known: no headers


@pytest.mark.parametrize("application", [None, "5/minute"])
async def test_redis_down_fails_closed(app: Callable[..., App], application: str | None) -> None:
    a = app(down=True, ratelimit_fail_open=False, ratelimit_application=application)
    got = await a.before(request(), limited("5/minute"))
    assert isinstance(got, web.Answer)
    assert got.status == 503
    assert got.kind == "unavailable"
    assert int(dict(got.headers)["Retry-After"]) >= 1
    assert json.loads(got.body)["status"] == 503


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"limits": "lots"}, InvalidRateLimit),
        ({"limits": "0/minute"}, InvalidRateLimit),
        ({"limits": "5/fortnight"}, InvalidRateLimit),
        ({"limits": ""}, InvalidRateLimit),
        ({"limits": "5/minute", "cost": 0}, ValueError),
        ({"limits": "5/minute", "cost": -2}, ValueError),
        ({"limits": "5/minute", "cost": True}, ValueError),
        ({"limits": "5/minute", "cost": "1"}, ValueError),
        ({"limits": "5/minute", "algorithm": "leaky"}, InvalidRateLimit),
        ({"limits": "200000/minute", "algorithm": "sliding_window_log"}, InvalidRateLimit),
        ({"limits": "5/minute", "key": "ip"}, TypeError),
        ({"limits": "5/minute", "exempt_when": True}, TypeError),
        ({"limits": "5/minute", "deduct_when": 401}, TypeError),
        ({"limits": "5/minute", "scope": 3}, TypeError),
    ],
)
def test_limit_rules_are_checked_when_built(
    options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        web.LimitRule.build(**options)


def test_settings_limits_are_checked_when_the_rules_are_built() -> None:
    for options in ({"ratelimit_default": "nonsense"}, {"ratelimit_application": "1/eon"}):
        with pytest.raises((InvalidRateLimit, ValueError)):
            web.WebRules(redkit.Settings(**options))
