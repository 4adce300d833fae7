"""``python -m redkit demo``: a tour of redkit on the embedded ``memory://`` backend (fakeredis),
no server needed: the cache, the web primitives, the job queue with a worker, a Flask shop, a
FastAPI shop and a Django shop.

Each part is a module of this package with a ``run(url)`` function, written to be read:
:mod:`redkit.demo.cache`, :mod:`redkit.demo.web`, :mod:`redkit.demo.queue`, and
:mod:`redkit.demo.shop_tour`, which drives the application in :mod:`redkit.demo.shop`.
``--part NAME`` runs one part; ``--url`` runs the tour on a Redis server instead (the
``REDKIT_URL`` variable is not read, so the tour always shows the same thing).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

__all__ = ["PARTS", "main"]

URL = "memory://demo"


class Part(NamedTuple):
    title: str
    module: str
    needs: tuple[str, ...] = ()  # importable modules the part cannot run without


PARTS = {
    "cache": Part(
        "the cache: cache-aside, tags, stampede protection, TTL jitter, asyncio",
        "redkit.demo.cache",
    ),
    "web": Part(
        "web primitives: sessions, idempotency keys, rate limits, locks, pub/sub, streams",
        "redkit.demo.web",
    ),
    "queue": Part("the job queue, with a worker in this process", "redkit.demo.queue"),
    "shop": Part(
        "a Flask shop: Flask-SQLAlchemy on SQLite, its worker in this process",
        "redkit.demo.shop_tour",
        ("flask", "flask_sqlalchemy"),
    ),
    "fastapi": Part(
        "a FastAPI shop: the same shop on FastAPI and async SQLAlchemy, its workers in the "
        "application's event loop",
        "redkit.demo.fastapi_tour",
        ("fastapi", "sqlalchemy", "aiosqlite"),
    ),
    "django": Part(
        "a Django shop: the same shop on Django and SQLite, with django.tasks, its workers in "
        "this process",
        "redkit.demo.django_tour",
        ("django",),
    ),
}


def intro(url: str) -> str:
    from redkit import __version__

    if not url.startswith("memory:"):
        return (
            f"redkit {__version__}: a tour on {url}; it deletes the keys under the prefixes "
            "'demo' and 'shop' there, before and after."
        )
    return (
        f"redkit {__version__}: a tour on {url}, the embedded backend (fakeredis): no server "
        "needed.\nmemory:// lives in this process only: no other process sees its data, and it "
        "is gone when\nthe tour ends. A real deployment sets REDKIT_URL (like "
        "REDKIT_URL=redis://127.0.0.1:6379/0)\nand runs its workers in their own processes "
        "(redkit worker myapp.jobs:queue)."
    )


def _worker_log_line(record: logging.LogRecord) -> bool:
    """Prints a worker's report of a failed job attempt as a line of the tour (the queue part
    makes jobs fail on purpose) and stops it there; any other record goes on as usual."""
    message = str(record.msg)
    if not message.startswith("redkit job "):
        return True
    print("  the worker logs:", record.getMessage().removeprefix("redkit "))
    return False


@contextmanager
def _story_logs() -> Iterator[None]:
    logger = logging.getLogger("redkit.worker")
    logger.addFilter(_worker_log_line)
    try:
        yield
    finally:
        logger.removeFilter(_worker_log_line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="redkit demo",
        description="A tour of redkit on the embedded memory:// backend: no server needed.",
    )
    parser.add_argument("--part", choices=list(PARTS), help="run this part only")
    parser.add_argument("--url", help=f"run on this Redis URL instead of {URL}")
    args = parser.parse_args(argv)
    url = args.url or URL
    started = time.perf_counter()
    print(intro(url))
    with _story_logs():
        for name in [args.part] if args.part else list(PARTS):
            part = PARTS[name]
            print(f"\n== {list(PARTS).index(name) + 1}/{len(PARTS)} {part.title} ==\n")
            missing = [m for m in part.needs if importlib.util.find_spec(m) is None]
            if missing:
                print(f"skipped: this part needs {', '.join(missing)}: pip install 'redkit[all]'")
                continue
            importlib.import_module(part.module).run(url)
    print(f"\nThe tour took {time.perf_counter() - started:.1f} s.")
    return 0
