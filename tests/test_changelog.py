"""CHANGELOG.md tells the truth about moved names: every removed path is gone, every name it
says to import instead imports, and every renamed argument still works under its old name."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")


def _table(heading: str) -> list[list[str]]:
    """The rows (cells without the header) of the first table after ``### heading``."""
    section = TEXT.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


REMOVED = _table("Removed module paths")
DOTTED = re.compile(r"`(redkit(?:\.\w+)+)`")


def test_the_table_lists_the_paths_removed_with_the_move_to_underscore_modules() -> None:
    paths = {row[0].strip("`") for row in REMOVED}
    assert {"redkit.client", "redkit.clientip", "redkit.cache.api", "redkit.queue.worker"} <= paths
    assert "redkit.web.http" in paths
    assert len(paths) == len(REMOVED) == 26


@pytest.mark.parametrize("path", [row[0].strip("`") for row in REMOVED])
def test_a_removed_path_no_longer_imports(path: str) -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(path)


def _public(dotted: str) -> object:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(
    "name", sorted({n for row in REMOVED for n in DOTTED.findall(row[1])} | {"redkit.AsyncRedkit"})
)
def test_a_name_to_import_instead_is_public(name: str) -> None:
    module, _, attr = name.rpartition(".")
    assert attr in importlib.import_module(module).__all__
    assert _public(name) is not None


def test_every_row_names_a_replacement_or_says_internal() -> None:
    for path, instead in REMOVED:
        assert DOTTED.search(instead) or instead.startswith("internal"), path


@pytest.mark.parametrize(
    ("old", "new"),
    [("idempotency_wait", "idempotency_timeout"), ("cache_lock_wait", "cache_lock_timeout")],
)
def test_a_renamed_setting_and_its_variable_still_work(
    old: str, new: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redkit.settings import Settings

    assert any(row[:2] == [f"`{old}`", f"`{new}`"] for row in _table("Renamed arguments"))
    monkeypatch.setenv(f"REDKIT_{old.upper()}", "3")
    with pytest.warns(DeprecationWarning, match=new):
        settings = Settings.from_env()
    assert getattr(settings, new) == 3.0
