"""Guard and AsyncGuard run one set of flows (leaving the block, complete, release, each
renewal): what they must keep doing, through the public API on real Redis, memory:// and a
cluster, sync and async."""

from __future__ import annotations

from typing import Any

import pytest

from redkit.idempotency import AsyncGuard, Outcome
from tests.conftest import Kits, call
from tests.core.test_idempotency import FP, poll_until, record_key


async def _enter(guard: Any) -> Any:
    if isinstance(guard, AsyncGuard):
        return await guard.__aenter__()
    return guard.__enter__()


async def _leave(guard: Any) -> None:
    if isinstance(guard, AsyncGuard):
        await guard.__aexit__(None, None, None)
    else:
        guard.__exit__(None, None, None)


async def test_a_guard_whose_lease_was_taken_over_says_so_and_stores_nothing(
    make_kit: Kits,
) -> None:
    kit = make_kit(idempotency_lease=0.6)
    idem = kit.idempotency
    g = await _enter(idem.guard("slow", FP))
    assert g.started
    assert not g.lost
    # the lease ran out (here: the record vanished) and another request took the key over
    await call(kit.client.delete(record_key(kit, "slow")))
    other = await call(idem.begin("slow", FP))
    assert other.started
    await poll_until(lambda: bool(g.lost))
    assert await call(g.complete(201, {}, b"too late")) is False
    await _leave(g)
    assert kit.stats.get("idempotency_lease_lost") == 1
    assert kit.stats.get("idempotency_released") == 0
    # the other request still holds the key, and can store its own response
    assert (await call(idem.begin("slow", FP))).outcome is Outcome.IN_PROGRESS
    assert await call(idem.complete("slow", other.token, 201, {}, b"theirs"))
    assert (await call(idem.begin("slow", FP))).body == b"theirs"


async def test_a_complete_that_raises_leaves_the_key_to_be_released_on_leaving(
    make_kit: Kits,
) -> None:
    kit = make_kit()
    idem = kit.idempotency
    g = await _enter(idem.guard("k", FP, "alice"))
    with pytest.raises(ValueError, match="status"):
        await call(g.complete(99, {}, b""))
    with pytest.raises(TypeError, match="body"):
        await call(g.complete(200, {}, "text"))
    await _leave(g)
    assert kit.stats.get("idempotency_released") == 1
    assert (await call(idem.begin("k", FP, "alice"))).started


async def test_release_then_leaving_releases_once(make_kit: Kits) -> None:
    kit = make_kit()
    idem = kit.idempotency
    g = await _enter(idem.guard("k", FP))
    assert await call(g.release()) is True
    await _leave(g)
    assert kit.stats.get("idempotency_released") == 1
    again = await call(idem.begin("k", FP))
    assert again.started
    g2 = await _enter(idem.guard("k", FP))
    assert g2.outcome is Outcome.IN_PROGRESS
    await _leave(g2)  # did not start: nothing to release
    assert kit.stats.get("idempotency_released") == 1
