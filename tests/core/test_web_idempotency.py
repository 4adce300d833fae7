"""Idempotent requests in ``redkit.web`` without a framework, through ``WebRules.before``,
``finish`` and ``abort``: one run per key, the replay, the errors, and the scope that keeps one
client's response from another; sync and asyncio drivers, real Redis and ``memory://``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from redkit import web
from tests.core.test_web import App, app, backend, request

__all__ = ["app", "backend"]  # the fixtures, shared with test_web

BODY = b'{"amount": 100}'
CREATED = web.Response(
    201,
    [("Content-Type", "application/json"), ("Location", "/orders/7"), ("X-Order", "7")],
    b'{"id": 7, "raw": "\x00\xff\xfe"}',
)
VIEW = web.ViewRules(idempotent=web.IdempotentRule.build())


def post(
    a: App,
    key: str | None = "order-1",
    body: bytes = BODY,
    client: str = "198.51.100.1",
    headers: Iterable[tuple[str, str]] = (),
    query: str = "",
    content_type: str = "application/json",
    user: Callable[[], object] | None = None,
) -> web.Request:
    fields = [("Content-Type", content_type), *headers]
    if key is not None:
        fields.append(("Idempotency-Key", key))
    return request("POST", "/orders", query, fields, client, body=a.body(body), user=user)


async def held(a: App, req: web.Request, view: web.ViewRules = VIEW) -> web.Pending:
    got = await a.before(req, view)
    assert isinstance(got, web.Pending), got
    assert got.holds_key
    return got


async def refused(a: App, req: web.Request, status: int, view: web.ViewRules = VIEW) -> web.Answer:
    got = await a.before(req, view)
    assert isinstance(got, web.Answer), got
    assert got.status == status
    assert got.kind == "idempotency"
    assert json.loads(got.body)["status"] == status
    return got


async def test_started_finished_then_replayed_byte_for_byte(app: Callable[..., App]) -> None:
    a = app()
    view = web.ViewRules(idempotent=web.IdempotentRule.build(allow_headers=["X-Order"]))
    sent = await a.exchange(post(a), view, CREATED)
    assert isinstance(sent, web.Response)
    for _ in range(2):
        replay = await a.before(post(a), view)
        assert isinstance(replay, web.Answer)
        assert replay.kind == "replay"
        assert replay.status == 201
        assert replay.body == CREATED.body
        fields = [(n.lower(), v) for n, v in replay.headers]
        assert ("idempotent-replayed", "true") in fields
        assert ("content-type", "application/json") in fields
        assert ("location", "/orders/7") in fields
        assert ("x-order", "7") in fields
        assert not any(n in ("set-cookie", "set-cookie2") for n, _ in fields)
    plain = await a.exchange(post(a, "order-2"), VIEW, CREATED)
    assert isinstance(plain, web.Response)
    replay = await a.before(post(a, "order-2"), VIEW)
    assert isinstance(replay, web.Answer)
    assert "x-order" not in {n.lower() for n, _ in replay.headers}  # not allowed: not replayed


async def test_a_request_without_a_key_runs_as_usual(app: Callable[..., App]) -> None:
    a = app()
    for _ in range(2):
        got = await a.before(post(a, key=None), VIEW)
        assert isinstance(got, web.Pending)
        assert not got.holds_key


async def test_409_with_retry_after_while_the_key_is_held(app: Callable[..., App]) -> None:
    a = app(idempotency_lease=30)
    first = await held(a, post(a))
    busy = await refused(a, post(a), 409)
    assert 1 <= int(dict(busy.headers)["Retry-After"]) <= 30
    await a.finish(post(a), first, CREATED)
    replay = await a.before(post(a), VIEW)
    assert isinstance(replay, web.Answer)
    assert replay.kind == "replay"


@pytest.mark.parametrize(
    "other",
    [
        {"body": b'{"amount": 1000}'},
        {"body": b""},
        {"query": "currency=eur"},
        {"content_type": "application/x-www-form-urlencoded"},
    ],
    ids=["body", "empty-body", "query", "content-type"],
)
async def test_422_when_the_key_was_used_for_another_request(
    app: Callable[..., App], other: dict[str, Any]
) -> None:
    a = app()
    await a.exchange(post(a), VIEW, CREATED)
    await refused(a, post(a, **other), 422)
    other_path = web.Request(
        "POST", "/refunds", "", post(a).headers, "198.51.100.1", body=a.body(BODY)
    )
    await refused(a, other_path, 422)


@pytest.mark.parametrize(
    "key", ["", " ", "é", "x" * 256, "tab\there", "line\nbreak", '"unterminated', '"a"b', '"\\x"']
)
async def test_400_for_a_malformed_key(app: Callable[..., App], key: str) -> None:
    a = app()
    await refused(a, post(a, key), 400)


async def test_400_when_a_required_key_is_missing(app: Callable[..., App]) -> None:
    a = app()
    required = web.ViewRules(idempotent=web.IdempotentRule.build(required=True))
    answer = await refused(a, post(a, key=None), 400, required)
    assert "Idempotency-Key" in json.loads(answer.body)["detail"]
    quoted = await held(a, post(a, '"order-9"'), required)  # a structured-field string
    assert quoted.held is not None
    assert quoted.held.begun.key == "order-9"


async def test_two_clients_with_one_key_both_run(app: Callable[..., App]) -> None:
    """Keys are scoped: a client guessing another's key (and body) never gets its response."""
    a = app()
    alice = await held(a, post(a, client="198.51.100.1"))
    await held(a, post(a, client="198.51.100.2"))  # not a 409 either
    await a.finish(post(a, client="198.51.100.1"), alice, CREATED)
    await held(a, post(a, client="198.51.100.3"))
    proxied = app(trusted_proxies=("10.0.0.0/8",))
    via = [("X-Forwarded-For", "198.51.100.1")]
    await proxied.exchange(post(proxied, client="10.0.0.1", headers=via), VIEW, CREATED)
    forged = [("X-Forwarded-For", "198.51.100.1")]  # not from a trusted proxy: ignored
    await held(proxied, post(proxied, client="203.0.113.66", headers=forged))


async def test_one_user_from_two_addresses_shares_the_key(app: Callable[..., App]) -> None:
    a = app()
    first = await held(a, post(a, client="198.51.100.1", user=lambda: 42))
    await refused(a, post(a, client="203.0.113.5", user=lambda: 42), 409)
    await held(a, post(a, client="198.51.100.1", user=lambda: 43))  # another user
    await a.finish(post(a), first, CREATED)
    replay = await a.before(post(a, client="203.0.113.5", user=lambda: 42), VIEW)
    assert isinstance(replay, web.Answer)
    assert replay.kind == "replay"
    await held(a, post(a, client="198.51.100.1"))  # anonymous: its own scope
    tenant = web.ViewRules(idempotent=web.IdempotentRule.build(scope=lambda: "tenant-1"))
    await held(a, post(a, "order-5", client="198.51.100.7", user=lambda: 42), tenant)
    await refused(a, post(a, "order-5", client="198.51.100.8", user=lambda: 99), 409, tenant)


async def test_credentials_scope_the_key_without_a_user(app: Callable[..., App]) -> None:
    a = app(cache_credential_headers=("Authorization", "X-Api-Key"))
    alice = [("Authorization", "Bearer alice")]
    await held(a, post(a, client="198.51.100.1", headers=alice))
    await refused(a, post(a, client="203.0.113.5", headers=alice), 409)
    await held(a, post(a, client="198.51.100.1", headers=[("Authorization", "Bearer bob")]))
    await held(a, post(a, client="198.51.100.1", headers=[("X-Api-Key", "k1")]))
    await refused(a, post(a, client="203.0.113.9", headers=[("x-api-key", "k1")]), 409)
    await held(a, post(a, client="198.51.100.1"))  # no credentials: the address


async def test_abort_releases_the_key(app: Callable[..., App]) -> None:
    a = app()
    first = await held(a, post(a))
    await a.drive(a.rules.abort(first))
    assert first.held is None
    second = await held(a, post(a))  # runs again, no 409
    await a.drive(a.rules.abort(second))
    await a.drive(a.rules.abort(second))  # twice: nothing left to release


@pytest.mark.parametrize(
    "response",
    [
        web.Response(500, [("Content-Type", "text/plain")], b"boom"),
        web.Response(503, [], b""),
        web.Response(201, [("Set-Cookie", "sid=alice; HttpOnly")], b"{}"),
        web.Response(200, [("Content-Type", "text/csv")], None),
    ],
    ids=["500", "503", "set-cookie", "streamed"],
)
async def test_responses_that_cannot_be_replayed_release_the_key(
    app: Callable[..., App], response: web.Response
) -> None:
    a = app()
    sent = await a.exchange(post(a), VIEW, response)
    assert isinstance(sent, web.Response)
    again = await held(a, post(a))  # the retry runs again
    await a.finish(post(a), again, CREATED)
    replay = await a.before(post(a), VIEW)
    assert isinstance(replay, web.Answer)
    assert replay.status == 201


async def test_server_errors_are_stored_when_the_rule_says_so(app: Callable[..., App]) -> None:
    a = app()
    view = web.ViewRules(idempotent=web.IdempotentRule.build(store_server_errors=True))
    await a.exchange(post(a), view, web.Response(500, [], b"boom"))
    replay = await a.before(post(a), view)
    assert isinstance(replay, web.Answer)
    assert replay.kind == "replay"
    assert replay.status == 500
    assert replay.body == b"boom"


async def test_a_response_too_large_to_store_releases_the_key(app: Callable[..., App]) -> None:
    a = app(idempotency_max_bytes=1024)
    await a.exchange(post(a), VIEW, web.Response(201, [], b"x" * 4096))
    await held(a, post(a))


async def test_the_application_wide_methods(app: Callable[..., App]) -> None:
    a = app(idempotency_methods=("POST",))
    assert a.rules.everywhere
    first = await held(a, post(a), web.ViewRules())
    await refused(a, post(a), 409, web.ViewRules())
    assert first.held is not None
    put = web.Request("PUT", "/orders", headers=post(a).headers, client="198.51.100.1")
    got = await a.before(put, None)
    assert isinstance(got, web.Pending)
    assert not got.holds_key


async def test_redis_down_answers_503(app: Callable[..., App]) -> None:
    a = app(down=True)
    got = await a.before(post(a), VIEW)
    assert isinstance(got, web.Answer)
    assert got.status == 503
    assert got.kind == "unavailable"
    assert int(dict(got.headers)["Retry-After"]) >= 1


class Keeper:
    """Records the leases a :class:`web.WebRules` asks to renew."""

    def __init__(self) -> None:
        self.running: set[int] = set()
        self.added = 0

    def add(self, begun: Any) -> int:
        self.added += 1
        self.running.add(self.added)
        return self.added

    def remove(self, handle: int) -> None:
        self.running.discard(handle)


async def test_the_lease_keeper_stops_renewing_at_the_end(app: Callable[..., App]) -> None:
    keeper = Keeper()
    a = app(keeper=keeper)
    first = await held(a, post(a, "k-finish"))
    second = await held(a, post(a, "k-abort"))
    assert keeper.running == {1, 2}
    await a.finish(post(a, "k-finish"), first, CREATED)
    await a.drive(a.rules.abort(second))
    assert keeper.running == set()


async def test_a_failing_deduct_hook_still_finishes_the_idempotent_request(
    app: Callable[..., App],
) -> None:
    """The response is sent: a hook that fails after it must not leave the key held (and its
    lease renewed) for ever."""
    keeper = Keeper()
    a = app(keeper=keeper)

    def broken(native: Any) -> bool:
        raise RuntimeError("bug in the hook")

    view = web.ViewRules(
        limits=[web.LimitRule.build("5/minute", deduct_when=broken)], idempotent=VIEW.idempotent
    )
    pending = await held(a, post(a), view)
    with pytest.raises(RuntimeError):
        await a.finish(post(a), pending, CREATED)
    assert keeper.running == set()
    replay = await a.before(post(a), view)
    assert isinstance(replay, web.Answer)
    assert replay.kind == "replay"


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"methods": ["GET"]}, ValueError),
        ({"methods": "get"}, ValueError),
        ({"methods": ["POST", "HEAD"]}, ValueError),
        ({"scope": "user"}, TypeError),
        ({"store_server_errors": "yes"}, TypeError),
    ],
)
def test_idempotent_rules_are_checked_when_built(
    options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        web.IdempotentRule.build(**options)


def test_a_rule_only_applies_to_its_methods() -> None:
    rule = web.IdempotentRule.build(methods=["patch"])
    assert rule.methods == frozenset({"PATCH"})
    assert web.IdempotentRule.build(methods="put").methods == frozenset({"PUT"})
