"""What a type checker makes of ``@q.task``: enqueue takes the function's own parameters."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SNIPPET = """
from datetime import datetime, timezone

import redkit
import redkit.asyncio

kit = redkit.Redkit.from_url("memory://typing")
q = kit.queue("q")


@q.task
def add(a: int, b: int = 1) -> int:
    return a + b


@q.task(attempts=3)
def shout(text: str) -> str:
    return text.upper()


reveal_type(add(1, 2))
reveal_type(add.enqueue(1, b=2))
reveal_type(shout.options(job_id="x").enqueue("hi"))
add.enqueue("one")  # ERROR-1
add.enqueue_in(5, 1, c=3)  # ERROR-2
shout.enqueue_at(datetime.now(timezone.utc))  # ERROR-3

akit = redkit.asyncio.Redkit.from_url("memory://typing")
aq = akit.queue("q")


@aq.task
async def fetch(url: str) -> bytes:
    return b""


async def main() -> None:
    reveal_type(await fetch.enqueue("https://example.com"))
    reveal_type(await fetch("https://example.com"))
    await fetch.enqueue(42)  # ERROR-4
"""


def test_enqueue_is_checked_against_the_task_signature(tmp_path: Path) -> None:
    source = tmp_path / "uses_tasks.py"
    source.write_text(textwrap.dedent(SNIPPET))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--no-error-summary",
            str(source),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = source.read_text().splitlines()
    out = result.stdout
    revealed = [
        line.split("Revealed type is ")[1].replace("builtins.", "")
        for line in out.splitlines()
        if "Revealed type is" in line
    ]
    assert revealed == [
        '"int"',
        '"redkit.queue._api.Job"',
        '"redkit.queue._api.Job"',
        '"redkit.queue._api.AsyncJob"',
        '"bytes"',
    ], out
    errors = {int(line.split(":")[1]) for line in out.splitlines() if ": error:" in line}
    expected = {n for n, line in enumerate(lines, 1) if "# ERROR-" in line}
    assert errors == expected, out
