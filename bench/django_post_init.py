"""What the invalidation rules cost a read: iterating a 10,000-row queryset of a model with a rule
that reads a field (each loaded instance keeps that field's value at ``post_init``) against the
same model without a rule.

Run ``python bench/django_post_init.py`` (``--rows``, ``--rounds``). It uses the test project's
settings (tests/django/settings.py) and its ``sqlite`` database (in memory), fills
``testapp.Tag`` with ``--rows`` rows, then alternates, ``--rounds`` times, one iteration without
rules and one with ``REDKIT["INVALIDATE"] = {"testapp.Tag": ["tag:{name}"]}``. It prints the
median wall time of each and their ratio. Redis is not touched (nothing is written).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for sub in ("packages/core", "packages/django_ext", ""):
    sys.path.insert(0, str(ROOT / sub))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django.settings")

import django  # noqa: E402

django.setup()

from django.db import connections  # noqa: E402
from django.test import override_settings  # noqa: E402
from tests.django.testapp.models import Tag  # noqa: E402


def iterate() -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in Tag.objects.using("sqlite").all():
        pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with connections["sqlite"].schema_editor() as editor:
        editor.create_model(Tag)
    Tag.objects.using("sqlite").bulk_create(Tag(name=f"t{i}") for i in range(args.rows))
    plain: list[float] = []
    ruled: list[float] = []
    redkit = {"URL": "memory://", "INVALIDATE": {"testapp.Tag": ["tag:{name}"]}}
    iterate()  # warm up
    for _ in range(args.rounds):
        plain.append(iterate())
        with override_settings(REDKIT=redkit):
            ruled.append(iterate())
    a, b = statistics.median(plain), statistics.median(ruled)
    print(f"{args.rows} rows, {args.rounds} rounds (median)")
    print(f"no rule:           {a * 1000:8.2f} ms  ({a / args.rows * 1e6:.2f} µs/row)")
    print(f"rule with a field: {b * 1000:8.2f} ms  ({b / args.rows * 1e6:.2f} µs/row)")
    print(f"ratio:             {b / a:8.3f}")


if __name__ == "__main__":
    main()
