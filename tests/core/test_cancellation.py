"""Cancellation of async flows, including one that asyncio swallowed on its way."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import pytest

import redkit.asyncio
from redkit._ops import Load, Sleep


async def test_a_flow_stops_when_a_cancellation_was_swallowed_on_its_way() -> None:
    """asyncio.wait_for on Python 3.11 may drop a cancellation that races with a result; a
    multi-step flow (a lock waiting its turn) must still stop at its next step."""
    if sys.version_info < (3, 11):
        pytest.skip("Task.cancelling() is new in Python 3.11")
    kit = redkit.asyncio.Redkit()
    steps: list[str] = []

    async def swallowing() -> str:
        asyncio.current_task().cancel()  # type: ignore[union-attr]
        # what wait_for does on 3.11 when the reply arrives at the same moment
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(1)
        return "reply"

    def flow() -> Any:
        steps.append(str((yield Load(swallowing))))
        yield Sleep(30)
        steps.append("kept waiting")

    with pytest.raises(asyncio.CancelledError):
        await kit._executor.drive(flow())
    assert steps == ["reply"]
    await kit.aclose()
