"""kit.idempotency through the public API: real Redis, memory:// and a cluster, sync and async."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import redkit
import redkit.asyncio
from redkit.errors import (
    IdempotencyKeyError,
    InvalidKeyError,
    RedkitConnectionError,
    ResponseTooLarge,
)
from redkit.idempotency import (
    REPLAYED_HEADER,
    AsyncGuard,
    Begin,
    Guard,
    LeaseKeeper,
    Outcome,
    fingerprint,
    parse_key_header,
)
from tests.conftest import Kits, call

FP = fingerprint("POST", "/orders", b'{"item": 1}')
OTHER_FP = fingerprint("POST", "/orders", b'{"item": 2}')
BINARY = bytes(range(256))


def record_key(kit: Any, key: str | bytes, scope: str | int | None = None) -> str:
    return str(kit.idempotency._core.record_key(key, scope))


async def stored_keys(kit: Any) -> list[str]:
    found = kit.scan("idempotency:*")
    if hasattr(found, "__aiter__"):
        return [k async for k in found]
    return list(found)


async def poll_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


# -- the basic cycle -------------------------------------------------------------------------------
async def test_started_then_replayed_byte_for_byte(kit: Any) -> None:
    idem = kit.idempotency
    first = await call(idem.begin("order-1", FP, "alice"))
    assert first.outcome is Outcome.STARTED
    assert first.started
    assert not first.replayed
    assert first.token
    assert first.key == "order-1"
    assert first.scope == "alice"
    headers = [("Content-Type", "application/octet-stream"), ("Location", "/orders/7")]
    assert await call(idem.complete("order-1", first.token, 201, headers, BINARY, "alice"))

    again = await call(idem.begin("order-1", FP, "alice"))
    assert again.outcome is Outcome.REPLAY
    assert again.replayed
    assert again.status == 201
    assert again.body == BINARY
    assert again.headers == tuple(headers)
    assert again.replay_headers() == [*headers, REPLAYED_HEADER]
    assert REPLAYED_HEADER == ("Idempotent-Replayed", "true")
    assert again.token is None
    stats = kit.stats.snapshot()
    assert stats["idempotency_started"] == 1
    assert stats["idempotency_replays"] == 1
    assert stats["idempotency_stored"] == 1


async def test_empty_body_and_no_headers_replay(kit: Any) -> None:
    b = await call(kit.idempotency.begin(b"bytes-key", FP))
    assert b.key == "bytes-key"
    assert b.scope is None
    assert await call(kit.idempotency.complete(b"bytes-key", b.token, 204, {}, b""))
    again = await call(kit.idempotency.begin("bytes-key", FP))  # str and bytes: the same key
    assert (again.outcome, again.status, again.headers, again.body) == (
        Outcome.REPLAY,
        204,
        (),
        b"",
    )


async def test_a_second_request_while_the_first_runs_is_in_progress(kit: Any) -> None:
    first = await call(kit.idempotency.begin("k", FP))
    second = await call(kit.idempotency.begin("k", FP))
    assert second.outcome is Outcome.IN_PROGRESS
    assert second.token is None
    assert second.retry_after is not None
    assert 0 < second.retry_after <= kit.settings.idempotency_lease
    assert second.replay_headers() == []
    assert first.started


async def test_concurrent_requests_with_one_key_start_exactly_once(make_kit: Kits) -> None:
    kit = make_kit()
    n = 8
    if make_kit.mode == "sync":
        barrier = threading.Barrier(n)

        def one(_: int) -> Begin:
            barrier.wait()
            result: Begin = kit.idempotency.begin("pay-1", FP, "alice")
            return result

        with ThreadPoolExecutor(n) as pool:
            results = list(pool.map(one, range(n)))
    else:
        results = list(
            await asyncio.gather(*(kit.idempotency.begin("pay-1", FP, "alice") for _ in range(n)))
        )
    outcomes = [r.outcome for r in results]
    assert outcomes.count(Outcome.STARTED) == 1
    assert outcomes.count(Outcome.IN_PROGRESS) == n - 1


async def test_another_fingerprint_is_a_mismatch_in_progress_and_after(kit: Any) -> None:
    idem = kit.idempotency
    first = await call(idem.begin("k", FP, "alice"))
    mismatch = await call(idem.begin("k", OTHER_FP, "alice"))
    assert mismatch.outcome is Outcome.MISMATCH
    assert not mismatch.started
    await call(idem.complete("k", first.token, 200, {}, b"done", "alice"))
    assert (await call(idem.begin("k", OTHER_FP, "alice"))).outcome is Outcome.MISMATCH
    assert (await call(idem.begin("k", FP, "alice"))).outcome is Outcome.REPLAY
    assert kit.stats.get("idempotency_mismatches") == 2


async def test_begin_with_its_own_token_is_safe_to_resend(kit: Any) -> None:
    idem = kit.idempotency
    # a begin whose reply was lost, sent again with the same token, still owns its lease
    assert (await call(idem.begin("k", FP, token="tok-1"))).started
    again = await call(idem.begin("k", FP, token="tok-1"))
    assert again.started
    assert again.token == "tok-1"
    assert (await call(idem.begin("k", FP, token="tok-2"))).outcome is Outcome.IN_PROGRESS
    assert await call(idem.complete("k", "tok-1", 200, {}, b"x"))
    # a re-sent complete (same call, its reply lost) changes nothing and still reports success
    assert await call(idem.complete("k", "tok-1", 200, {}, b"x"))
    assert await call(idem.complete("k", "tok-1", 200, {}, b"not written over"))
    replay = await call(idem.begin("k", FP, token="tok-1"))
    assert (replay.outcome, replay.status, replay.body) == (Outcome.REPLAY, 200, b"x")


# -- leases ----------------------------------------------------------------------------------------
async def test_a_crashed_request_is_taken_over_after_its_lease(make_kit: Kits) -> None:
    kit = make_kit(idempotency_lease=0.3)
    idem = kit.idempotency
    crashed = await call(idem.begin("k", FP))
    assert crashed.started
    # the request dies: nothing renews, completes or releases. A retry waits out the lease.
    retry = await call(idem.begin("k", FP, timeout=10))
    assert retry.started
    assert retry.token != crashed.token
    assert await call(idem.complete("k", crashed.token, 200, {}, b"late")) is False
    assert await call(idem.renew("k", crashed.token)) is False
    assert await call(idem.release("k", crashed.token)) is False
    assert await call(idem.complete("k", retry.token, 201, {}, b"retry"))
    replay = await call(idem.begin("k", FP))
    assert (replay.status, replay.body) == (201, b"retry")
    assert kit.stats.get("idempotency_lease_lost") == 1


async def test_renew_extends_the_lease_of_its_holder_only(kit: Any) -> None:
    idem = kit.idempotency
    b = await call(idem.begin("k", FP))
    rkey = record_key(kit, "k")
    await call(kit.client.pexpire(rkey, 500))  # as if most of the lease had passed
    assert await call(idem.renew("k", "someone-else")) is False
    assert await call(kit.client.pttl(rkey)) <= 500
    assert await call(idem.renew("k", b.token)) is True
    assert await call(kit.client.pttl(rkey)) > 25_000
    await call(idem.complete("k", b.token, 200, {}, b"ok"))
    # a stored response is not shortened to a lease by a late renewal
    assert await call(idem.renew("k", b.token)) is False
    assert await call(kit.client.pttl(rkey)) > 23 * 3600 * 1000


async def test_release_lets_a_retry_run_and_never_removes_a_response(kit: Any) -> None:
    idem = kit.idempotency
    b = await call(idem.begin("k", FP))
    assert await call(idem.release("k", "not-the-holder")) is False
    assert await call(idem.release("k", b.token)) is True
    retry = await call(idem.begin("k", FP))
    assert retry.started
    await call(idem.complete("k", retry.token, 200, {}, b"ok"))
    assert await call(idem.release("k", retry.token)) is False
    assert (await call(idem.begin("k", FP))).replayed


async def test_wait_returns_the_replay_once_the_first_request_completes(make_kit: Kits) -> None:
    kit = make_kit()
    idem = kit.idempotency
    first = await call(idem.begin("k", FP))

    if make_kit.mode == "sync":

        def finish() -> None:
            time.sleep(0.2)
            idem.complete("k", first.token, 201, {"Content-Type": "text/plain"}, b"made")

        worker = threading.Thread(target=finish)
        worker.start()
        waited = idem.begin("k", FP, timeout=10)
        worker.join()
    else:

        async def finish_async() -> None:
            await asyncio.sleep(0.2)
            await idem.complete("k", first.token, 201, {"Content-Type": "text/plain"}, b"made")

        task = asyncio.create_task(finish_async())
        waited = await idem.begin("k", FP, timeout=10)
        await task
    assert waited.outcome is Outcome.REPLAY
    assert (waited.status, waited.body) == (201, b"made")


async def test_wait_gives_up_with_in_progress(make_kit: Kits) -> None:
    kit = make_kit(idempotency_timeout=0.1)
    await call(kit.idempotency.begin("k", FP))
    # from the setting, then per call
    assert (await call(kit.idempotency.begin("k", FP))).outcome is Outcome.IN_PROGRESS
    assert (await call(kit.idempotency.begin("k", FP, timeout=0.05))).outcome is Outcome.IN_PROGRESS


# -- what is stored --------------------------------------------------------------------------------
async def test_server_errors_release_the_key_unless_configured(make_kit: Kits) -> None:
    kit = make_kit()
    idem = kit.idempotency
    b = await call(idem.begin("k", FP))
    assert await call(idem.complete("k", b.token, 500, {}, b"oops")) is True
    retry = await call(idem.begin("k", FP))
    assert retry.started  # the client may retry a server error
    assert await call(idem.complete("k", retry.token, 503, {}, b"busy", store_server_errors=True))
    assert (await call(idem.begin("k", FP))).status == 503
    assert kit.stats.get("idempotency_not_stored") == 1

    keeps = make_kit(idempotency_store_server_errors=True)
    b = await call(keeps.idempotency.begin("k", FP))
    await call(keeps.idempotency.complete("k", b.token, 502, {}, b"gateway"))
    replay = await call(keeps.idempotency.begin("k", FP))
    assert (replay.outcome, replay.status, replay.body) == (Outcome.REPLAY, 502, b"gateway")
    b = await call(keeps.idempotency.begin("k2", FP))
    await call(keeps.idempotency.complete("k2", b.token, 500, {}, b"", store_server_errors=False))
    assert (await call(keeps.idempotency.begin("k2", FP))).started


async def test_client_errors_are_stored(kit: Any) -> None:
    b = await call(kit.idempotency.begin("k", FP))
    await call(kit.idempotency.complete("k", b.token, 402, {}, b"card declined"))
    replay = await call(kit.idempotency.begin("k", FP))
    assert (replay.status, replay.body) == (402, b"card declined")


async def test_a_response_setting_a_cookie_is_never_stored(kit: Any) -> None:
    b = await call(kit.idempotency.begin("k", FP))
    headers = [("Content-Type", "text/plain"), ("set-cookie", "sid=secret; HttpOnly")]
    assert await call(kit.idempotency.complete("k", b.token, 200, headers, b"logged in"))
    assert (await call(kit.idempotency.begin("k", FP))).started
    assert await stored_keys(kit) != []  # the new lease, not a stored response
    assert kit.stats.get("idempotency_stored") == 0


async def test_too_large_a_response_raises_and_releases(make_kit: Kits) -> None:
    kit = make_kit(idempotency_max_bytes=1024)
    idem = kit.idempotency
    b = await call(idem.begin("big", FP))
    with pytest.raises(ResponseTooLarge, match="1024"):
        await call(idem.complete("big", b.token, 200, {}, b"x" * 2000))
    assert isinstance(ResponseTooLarge("x"), ValueError)
    assert (await call(idem.begin("big", FP))).started  # released: a retry runs again
    b = await call(idem.begin("small", FP))
    assert await call(idem.complete("small", b.token, 200, {"Content-Type": "a/b"}, b"y" * 900))
    assert (await call(idem.begin("small", FP))).body == b"y" * 900


async def test_only_safe_headers_are_stored(kit: Any) -> None:
    idem = kit.idempotency
    headers: list[tuple[str | bytes, str | bytes]] = [
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer secret"),
        ("Location", "/orders/1"),
        ("Proxy-Authorization", "Basic x"),
        ("Connection", "close"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "12"),
        ("Keep-Alive", "timeout=5"),
        (b"ETag", b'"v1"'),  # raw header pairs, as ASGI servers give them
        ("Cache-Control", "no-cache"),
        ("Link", "</a>; rel=next"),
        ("Link", "</b>; rel=prev"),
        ("X-Internal-Secret", "hunter2"),
        ("X-Order-Id", "42"),
        ("Date", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ("Server", "app/1.0"),
    ]
    b = await call(idem.begin("k", FP))
    await call(idem.complete("k", b.token, 201, headers, b"{}", allow_headers=["x-order-id"]))
    replay = await call(idem.begin("k", FP))
    assert replay.headers == (
        ("Content-Type", "application/json"),
        ("Location", "/orders/1"),
        ("ETag", '"v1"'),
        ("Cache-Control", "no-cache"),
        ("Link", "</a>; rel=next"),
        ("Link", "</b>; rel=prev"),
        ("X-Order-Id", "42"),
    )


async def test_bad_completions_raise_before_writing(kit: Any) -> None:
    idem = kit.idempotency
    b = await call(idem.begin("k", FP))
    bad: list[tuple[type[Exception], dict[str, Any]]] = [
        (ValueError, {"allow_headers": ["Set-Cookie"]}),
        (ValueError, {"allow_headers": ["Authorization"]}),
        (ValueError, {"allow_headers": ["bad name"]}),
        (TypeError, {"allow_headers": "X-Order-Id"}),
        (ValueError, {"headers": {"Location": "/a\r\nSet-Cookie: x=1"}}),
        (TypeError, {"headers": "Content-Type: text/plain"}),
        (TypeError, {"headers": [("only-a-name",)]}),
        (ValueError, {"status": 99}),
        (ValueError, {"status": 600}),
        (TypeError, {"status": True}),
        (TypeError, {"status": "200"}),
        (TypeError, {"body": "text"}),
        (TypeError, {"store_server_errors": "yes"}),
        (ValueError, {"token": ""}),
        (TypeError, {"token": None}),
    ]
    for error, change in bad:
        args: dict[str, Any] = {"status": 200, "headers": {}, "body": b"ok", "token": b.token}
        args.update(change)
        with pytest.raises(error):
            await call(idem.complete("k", **args))
    # nothing was stored or released by the bad calls
    assert (await call(idem.begin("k", FP))).outcome is Outcome.IN_PROGRESS
    assert await call(idem.complete("k", b.token, 200, {}, b"ok"))


# -- keys and scopes -------------------------------------------------------------------------------
async def test_scopes_are_isolated(kit: Any) -> None:
    idem = kit.idempotency
    alice = await call(idem.begin("same-key", FP, "alice"))
    bob = await call(idem.begin("same-key", FP, "bob"))
    anonymous = await call(idem.begin("same-key", FP))
    user_42 = await call(idem.begin("same-key", FP, 42))
    assert all(r.started for r in (alice, bob, anonymous, user_42))
    assert len({alice.token, bob.token, anonymous.token, user_42.token}) == 4
    await call(idem.complete("same-key", alice.token, 200, {}, b"alice's", "alice"))
    assert (await call(idem.begin("same-key", FP, "alice"))).body == b"alice's"
    assert (await call(idem.begin("same-key", FP, "bob"))).outcome is Outcome.IN_PROGRESS
    # an int scope is its decimal text: 42 and "42" are one scope
    assert (await call(idem.begin("same-key", FP, "42"))).outcome is Outcome.IN_PROGRESS
    # bob's token cannot touch alice's record, nor the anonymous one
    assert await call(idem.complete("same-key", bob.token, 200, {}, b"x", "alice")) is False
    assert await call(idem.release("same-key", bob.token)) is False


async def test_scope_and_key_combinations_never_collide(kit: Any) -> None:
    pairs: list[tuple[str | None, str]] = [
        ("a:b", "c"),
        ("a", "b:c"),
        (None, "x"),
        ("-", "x"),
        ("", "x"),
        ("1:", "x"),
        ("1", ":x"),
    ]
    rkeys = {record_key(kit, key, scope) for scope, key in pairs}
    assert len(rkeys) == len(pairs)
    for scope, key in pairs:
        assert (await call(kit.idempotency.begin(key, FP, scope))).started, (scope, key)


ALLOWED_KEYS = [
    "*",
    "a?b",
    "[abc]",
    "{tag}",
    "*?[]{}",
    "key with spaces",
    " ",
    "%41",
    "~x",
    "\\",
    '"quoted"',
    "x" * 255,
    "8e03978e-40d5-43e8-bc93-6894a57f9324",
]


async def test_printable_keys_are_allowed_and_stay_in_the_keyspace(kit: Any) -> None:
    prefix = f"{kit.settings.prefix}:idempotency:{{"
    for key in ALLOWED_KEYS:
        b = await call(kit.idempotency.begin(key, FP))
        assert b.started, key
        assert b.key == key
        rkey = record_key(kit, key)
        assert rkey.startswith(prefix), rkey
        assert rkey.endswith("}"), rkey
        inner = rkey[len(prefix) : -1]
        assert not any(c in inner for c in "*?[]{} \n\r\t\x00"), rkey
        assert len(rkey) < 400
        assert await call(kit.idempotency.complete(key, b.token, 200, {}, key.encode()))
    for key in ALLOWED_KEYS:  # none touched another's record
        assert (await call(kit.idempotency.begin(key, FP))).body == key.encode(), key
    assert len(await stored_keys(kit)) == len(ALLOWED_KEYS)


MALFORMED_KEYS: list[object] = [
    "",
    b"",
    "line\nbreak",
    "cr\r",
    "nul\x00",
    "tab\there",
    "del\x7f",
    "x" * 256,
    "x" * 10_000,
    "ümlaut",
    "日本",
    "emoji-🙂",
    "\udcff",
    b"\xff\xfe not utf-8",
    b"caf\xc3\xa9",
    b"x" * 256,
]


async def test_malformed_keys_are_rejected_by_every_method(kit: Any) -> None:
    idem = kit.idempotency
    for key in MALFORMED_KEYS:
        with pytest.raises(IdempotencyKeyError):
            await call(idem.begin(key, FP))
        with pytest.raises(IdempotencyKeyError):
            await call(idem.guard(key, FP))
        with pytest.raises(IdempotencyKeyError):
            await call(idem.renew(key, "tok"))
        with pytest.raises(IdempotencyKeyError):
            await call(idem.release(key, "tok"))
        with pytest.raises(IdempotencyKeyError, match="idempotency key") as info:
            await call(idem.complete(key, "tok", 200, {}, b""))
        assert isinstance(info.value, InvalidKeyError)
        assert isinstance(info.value, ValueError)
    for key in (None, 5, 1.5, ["k"]):
        with pytest.raises(TypeError):
            await call(idem.begin(key, FP))
    assert await stored_keys(kit) == []


HOSTILE_SCOPES: list[str | int] = [
    "",
    "a:b",
    "}{",
    "*?[",
    "\n\r\t\x00",
    "ümlaut-🙂",
    "\udcff",
    "x" * 5000,
    "user 1",
    "%41",
    0,
    -1,
]


async def test_hostile_scopes_are_escaped(kit: Any) -> None:
    prefix = f"{kit.settings.prefix}:idempotency:{{"
    rkeys = set()
    for scope in HOSTILE_SCOPES:
        b = await call(kit.idempotency.begin("k", FP, scope))
        assert b.started, repr(scope)
        rkey = record_key(kit, "k", scope)
        assert rkey.startswith(prefix), rkey
        assert rkey.endswith("}"), rkey
        assert not any(c in rkey[len(prefix) : -1] for c in "*?[]{} \n\r\t\x00"), rkey
        assert len(rkey) < 400
        rkeys.add(rkey)
    assert len(rkeys) == len(HOSTILE_SCOPES)
    assert len(await stored_keys(kit)) == len(HOSTILE_SCOPES)
    for bad in (b"bytes", 1.5, True, object()):
        with pytest.raises(TypeError, match="scope"):
            await call(kit.idempotency.begin("k", FP, bad))


async def test_bad_arguments_to_begin_raise(kit: Any) -> None:
    idem = kit.idempotency
    cases: list[tuple[type[Exception], dict[str, Any]]] = [
        (ValueError, {"fingerprint": ""}),
        (ValueError, {"fingerprint": "f" * 1025}),
        (TypeError, {"fingerprint": b"bytes"}),
        (TypeError, {"fingerprint": None}),
        (ValueError, {"timeout": -1}),
        (ValueError, {"timeout": float("nan")}),
        (TypeError, {"timeout": "1"}),
        (ValueError, {"token": "has space"}),
        (ValueError, {"token": "t" * 129}),
        (TypeError, {"token": 5}),
    ]
    for error, change in cases:
        args: dict[str, Any] = {"fingerprint": FP}
        args.update(change)
        with pytest.raises(error):
            await call(idem.begin("k", **args))
    assert await stored_keys(kit) == []


async def test_every_key_has_a_ttl(make_kit: Kits) -> None:
    kit = make_kit(idempotency_lease=20, idempotency_ttl=3600)
    idem = kit.idempotency
    running = await call(idem.begin("running", FP, "u1"))
    done = await call(idem.begin("done", FP, "u1"))
    await call(idem.complete("done", done.token, 200, {}, BINARY, "u1"))
    failed = await call(idem.begin("failed", FP, "u1"))
    await call(idem.complete("failed", failed.token, 500, {}, b"", "u1"))
    assert running.started
    keys = await stored_keys(kit)
    assert len(keys) == 2
    for key in keys:
        pttl = await call(kit.client.pttl(f"{kit.settings.prefix}:{key}"))
        assert pttl > 0, key
    running_ttl = await call(kit.client.pttl(record_key(kit, "running", "u1")))
    assert 0 < running_ttl <= 20_000
    done_ttl = await call(kit.client.pttl(record_key(kit, "done", "u1")))
    assert 3_500_000 < done_ttl <= 3_600_000
    assert await call(kit.client.pttl(record_key(kit, "failed", "u1"))) == -2


# -- the guard -------------------------------------------------------------------------------------
async def test_guard_renews_the_lease_while_the_request_runs(make_kit: Kits) -> None:
    kit = make_kit(idempotency_lease=0.6)
    idem = kit.idempotency

    def renewed_four_times() -> bool:
        # renewals come every lease/3 = 0.2 s: four of them span more than the 0.6 s lease
        return bool(kit.stats.get("idempotency_renewals") >= 4)

    if make_kit.mode == "sync":
        with idem.guard("slow", FP) as g:
            assert isinstance(g, Guard)
            assert g.started
            assert g.outcome is Outcome.STARTED
            await poll_until(renewed_four_times)
            assert idem.begin("slow", FP).outcome is Outcome.IN_PROGRESS
            assert g.complete(201, {"Content-Type": "text/plain"}, b"slow result")
    else:
        async with idem.guard("slow", FP) as ag:
            assert isinstance(ag, AsyncGuard)
            assert ag.started
            await poll_until(renewed_four_times)
            assert (await idem.begin("slow", FP)).outcome is Outcome.IN_PROGRESS
            assert await ag.complete(201, {"Content-Type": "text/plain"}, b"slow result")
    replay = await call(idem.begin("slow", FP))
    assert (replay.status, replay.body) == (201, b"slow result")
    assert not (g if make_kit.mode == "sync" else ag).lost


async def test_guard_releases_on_an_exception_and_when_not_completed(make_kit: Kits) -> None:
    kit = make_kit()
    idem = kit.idempotency
    if make_kit.mode == "sync":
        with pytest.raises(RuntimeError, match="boom"), idem.guard("k", FP, "alice") as g:
            raise RuntimeError("boom")
        with idem.guard("k2", FP):
            pass
    else:
        with pytest.raises(RuntimeError, match="boom"):
            async with await idem.guard("k", FP, "alice"):
                raise RuntimeError("boom")
        async with idem.guard("k2", FP):
            pass
    assert (await call(idem.begin("k", FP, "alice"))).started
    assert (await call(idem.begin("k2", FP))).started
    assert kit.stats.get("idempotency_released") == 2
    if make_kit.mode == "sync":
        assert g.result.scope == "alice"


async def test_guard_of_a_request_that_did_not_start(kit: Any) -> None:
    idem = kit.idempotency
    first = await call(idem.begin("k", FP))
    g = await call(idem.guard("k", FP))
    assert g.outcome is Outcome.IN_PROGRESS
    assert not g.started
    assert not g.replayed
    with pytest.raises(RuntimeError, match="IN_PROGRESS"):
        await call(g.complete(200, {}, b""))
    with pytest.raises(RuntimeError):
        await call(g.release())
    await call(idem.complete("k", first.token, 200, {}, b"first"))
    g = await call(idem.guard("k", FP))
    assert g.replayed
    assert g.result.body == b"first"
    assert (await call(idem.guard("k", OTHER_FP))).outcome is Outcome.MISMATCH


async def test_guard_release_frees_the_key(kit: Any) -> None:
    g = await call(kit.idempotency.guard("k", FP))
    assert await call(g.release()) is True
    assert (await call(kit.idempotency.begin("k", FP))).started


# -- failure policy --------------------------------------------------------------------------------
def test_redis_down_fails_closed() -> None:
    kit = redkit.Redkit.from_url(
        "redis://127.0.0.1:1/0", retry_attempts=0, socket_connect_timeout=0.5
    )
    try:
        with pytest.raises(RedkitConnectionError):
            kit.idempotency.begin("k", FP)
        with pytest.raises(RedkitConnectionError):
            kit.idempotency.complete("k", "tok", 200, {}, b"")
        with pytest.raises(RedkitConnectionError):
            kit.idempotency.guard("k", FP)
    finally:
        kit.close()


async def test_redis_down_fails_closed_async() -> None:
    kit = redkit.asyncio.Redkit.from_url(
        "redis://127.0.0.1:1/0", retry_attempts=0, socket_connect_timeout=0.5
    )
    try:
        with pytest.raises(RedkitConnectionError):
            await kit.idempotency.begin("k", FP)
        with pytest.raises(RedkitConnectionError):
            await kit.idempotency.release("k", "tok")
    finally:
        await kit.aclose()


# -- pure helpers ----------------------------------------------------------------------------------
def test_fingerprint_tells_requests_apart() -> None:
    base = fingerprint("POST", "/orders", b"{}")
    assert base == fingerprint("POST", "/orders", b"{}")
    assert len(base) == 64
    assert int(base, 16) >= 0
    others = {
        fingerprint("PUT", "/orders", b"{}"),
        fingerprint("POST", "/orders/", b"{}"),
        fingerprint("POST", "/orders", b"{ }"),
        fingerprint("POST", "/orders", b"{}", "v=2"),
        fingerprint("POST", "/orders", b"{}", None),
        fingerprint("POST", "/orders", b"{}", ""),
        fingerprint("POST", "/order", b"s{}"),
    }
    assert base not in others
    assert len(others) == 7
    assert fingerprint("POST", "/a", b"bc") != fingerprint("POST", "/ab", b"c")
    assert fingerprint("POST", b"/orders", "{}") == base
    with pytest.raises(TypeError):
        fingerprint("POST", "/orders", b"{}", 5)  # type: ignore[arg-type]


def test_parse_key_header() -> None:
    assert parse_key_header('"8e03978e-40d5"') == "8e03978e-40d5"
    assert parse_key_header("8e03978e-40d5") == "8e03978e-40d5"
    assert parse_key_header(' \t"a\\"b\\\\c" ') == 'a"b\\c'
    assert parse_key_header(b'"bytes"') == "bytes"
    assert parse_key_header('"with space"') == "with space"
    bad_values: list[str | bytes] = [
        '"open',
        '"a"b',
        '"a\\nb"',
        "",
        '""',
        "   ",
        b"\xff",
        "ü",
        '"a\x01"',
        "x" * 256,
    ]
    for bad in bad_values:
        with pytest.raises(IdempotencyKeyError):
            parse_key_header(bad)
    with pytest.raises(TypeError):
        parse_key_header(None)  # type: ignore[arg-type]


async def test_an_async_guard_begins_when_entered_or_awaited(url: str, prefix: str) -> None:
    async with redkit.asyncio.Redkit.from_url(url, prefix=prefix) as akit:
        idem = akit.idempotency
        pending = idem.guard("lazy", FP)
        with pytest.raises(RuntimeError, match="has not begun"):
            _ = pending.outcome
        # nothing was sent: a begin with another fingerprint still starts
        first = await idem.begin("lazy", OTHER_FP)
        assert first.outcome is Outcome.STARTED
        async with pending as g:  # begins on entry: sees the other request
            assert g.outcome is Outcome.MISMATCH
        awaited = await idem.guard("lazy", OTHER_FP)
        assert awaited.outcome is Outcome.IN_PROGRESS
        await akit.clear()


def test_lease_keeper_renews_running_requests_from_one_thread(url: str, prefix: str) -> None:
    kit = redkit.Redkit.from_url(url, prefix=prefix, idempotency_lease=0.6)
    try:
        keeper = LeaseKeeper(kit.idempotency, 0.6)
        begun = [kit.idempotency.begin(f"k{i}", FP) for i in range(3)]
        handles = [keeper.add(b) for b in begun]
        time.sleep(1.5)  # well past the first lease: only the keeper's renewals hold the keys
        for i in range(3):
            assert kit.idempotency.begin(f"k{i}", FP).outcome is Outcome.IN_PROGRESS
        renewers = [t for t in threading.enumerate() if t.name == "redkit-idempotency-leases"]
        assert len(renewers) >= 1
        keeper.remove(handles[0])  # finished: no longer renewed, its lease runs out
        time.sleep(1.0)
        assert kit.idempotency.begin("k0", FP).started
        assert kit.idempotency.begin("k1", FP).outcome is Outcome.IN_PROGRESS
        for handle in handles[1:]:
            keeper.remove(handle)
    finally:
        kit.clear()
        kit.close()
