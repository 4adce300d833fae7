"""Glob patterns over cache keys (pure, no I/O): ``cache.keys("user:*")``.

A pattern is written over the caller's keys, in Redis' glob syntax (``*``, ``?``, ``[abc]``,
``[^abc]``, ``[a-z]``, ``\\`` before a character taken literally). Stored keys are escaped (see
:mod:`redkit._keys`), so the pattern becomes two things: a ``SCAN MATCH`` over the escaped form,
where each wildcard widens to ``*`` (an escaped character is three bytes), and a regular
expression over the unescaped key that decides. Keys longer than ``max_key_length`` are stored
hashed: they cannot be read back, so no pattern finds them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .._keys import escape_part

__all__ = ["compile_pattern"]

_PERCENT = re.compile(rb"%([0-9A-F]{2})")


def _literal(text: str) -> str:
    # each character escaped as a key part would be; escape_part refuses "" and hashes long parts
    return "".join(escape_part(ch, 16) for ch in text)


def _parse(pattern: str) -> tuple[str, str]:
    """``(SCAN glob over escaped keys, regex over keys)``."""
    glob: list[str] = []
    regex: list[str] = []
    literal: list[str] = []

    def flush() -> None:
        if literal:
            glob.append(_literal("".join(literal)))
            regex.append(re.escape("".join(literal)))
            literal.clear()

    def wild(part: str) -> None:
        flush()
        if not glob or glob[-1] != "*":
            glob.append("*")
        regex.append(part)

    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            literal.append(pattern[i + 1])
            i += 2
            continue
        if ch == "*":
            wild(".*")
        elif ch == "?":
            wild(".")
        elif ch == "[" and pattern.find("]", i + 2) != -1:
            end = pattern.find("]", i + 2)
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            if negate:
                body = body[1:]
            members = "".join(
                "-" if c == "-" and 0 < k < len(body) - 1 else re.escape(c)
                for k, c in enumerate(body)
            )
            wild(f"[{'^' if negate else ''}{members}]")
            i = end + 1
            continue
        else:
            literal.append(ch)
        i += 1
    flush()
    return "".join(glob), "".join(regex)


def compile_pattern(prefix: str, pattern: str) -> tuple[str, Callable[[bytes], str | bytes | None]]:
    """For entry keys under ``prefix`` (``<prefix>{`` ... ``}``): the ``SCAN MATCH`` pattern,
    and a function from a scanned key to the caller's key it stores (None when it does not
    match, or is hashed)."""
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a str, not {type(pattern).__name__}")
    if not pattern:
        raise ValueError("pattern must not be empty (use '*' for every key)")
    glob, expression = _parse(pattern)
    wanted = re.compile(expression, re.DOTALL)
    head = prefix.encode() + b"{"

    def pick(raw: bytes) -> str | bytes | None:
        if not raw.startswith(head) or not raw.endswith(b"}") or b"~" in raw:
            return None  # a lock, or a hashed long key
        data = _PERCENT.sub(lambda m: bytes([int(m.group(1), 16)]), raw[len(head) : -1])
        try:
            key: str | bytes = data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            key = data
        text = key if isinstance(key, str) else data.decode("latin-1")
        return key if wanted.fullmatch(text) else None

    return f"{prefix}{{{glob}}}", pick
