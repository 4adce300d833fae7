"""Lua scripts are package data, called by SHA, reloaded after SCRIPT FLUSH (also pipelined)."""

from __future__ import annotations

from importlib import resources
from typing import Any

from redkit.cache import _fill as core
from tests.conftest import call


def test_scripts_ship_as_package_data() -> None:
    names = {p.name for p in resources.files("redkit").joinpath("scripts").iterdir()}
    assert {"cache_fetch.lua", "cache_store.lua", "cache_release.lua", "cache_incr.lua"} <= names
    assert len(core.FETCH.sha) == 40


async def test_scripts_are_reloaded_after_a_flush(kit: Any) -> None:
    assert await call(kit.cache.get_or_set("a", lambda: 1)) == 1
    await call(kit.client.script_flush())
    loads = kit.stats.get("script_loads")
    # single call path
    assert await call(kit.cache.incr("n")) == 1
    # pipelined path: fetch script plus tag commands in one batch
    assert await call(kit.cache.get_or_set("b", lambda: 2, tags=["t"])) == 2
    assert await call(kit.cache.get_or_set("b", lambda: 3, tags=["t"])) == 2
    assert kit.stats.get("script_loads") > loads


def test_shared_lua_functions_are_included_into_each_script() -> None:
    from redkit.queue._core import RELEASE, STEP

    for loaded in (STEP, RELEASE):
        assert not [line for line in loaded.source.splitlines() if line.startswith("-- include:")]
        assert loaded.source.count("local function requeue(") == 1
    assert STEP.sha != RELEASE.sha
