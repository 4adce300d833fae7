"""Operations as data: what to send to Redis and how to read the reply, with no I/O.

A :class:`Batch` is one round trip: one or more calls (commands or Lua scripts) plus a pure function
that parses the replies. A multi-step flow (get-or-set with a stampede lock, ...) is a generator
that yields steps (:class:`Batch`, :class:`Sleep`, :class:`Load`) and receives their results; the
sync and the async executor drive the same generator, so the logic exists once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Generic, TypeVar

from ._checks import INT64_MAX, INT64_MIN, shown

__all__ = ["Batch", "Call", "Flow", "Load", "Script", "Sleep", "Step", "command", "script"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script shipped as package data (``redkit/scripts/<name>.lua``), called by SHA."""

    name: str
    source: str
    sha: str

    @classmethod
    def load(cls, name: str) -> Script:
        """Read ``redkit/scripts/<name>.lua`` from the installed package. A line
        ``-- include: <other>`` is replaced by ``scripts/<other>.lua`` (functions shared by
        several scripts: Redis runs each script as one self-contained source)."""
        source = "".join(_expand(name, ()))
        return cls(name, source, hashlib.sha1(source.encode()).hexdigest())


def _expand(name: str, seen: tuple[str, ...]) -> list[str]:
    if name in seen:
        raise ValueError(f"scripts include each other: {' -> '.join((*seen, name))}")
    text = resources.files("redkit").joinpath(f"scripts/{name}.lua").read_text("utf-8")
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.startswith("-- include: "):
            out += _expand(line[len("-- include: ") :].strip(), (*seen, name))
        else:
            out.append(line)
    return out


class Call:
    """One command (``args``) or one script call (``script`` with ``args`` = keys + argv).

    A plain slotted class rather than a frozen dataclass: one is built per call on hot paths.
    """

    __slots__ = ("args", "idempotent", "numkeys", "options", "script")

    def __init__(
        self,
        args: tuple[Any, ...],
        script: Script | None = None,
        numkeys: int = 0,
        options: dict[str, Any] | None = None,
        idempotent: bool = True,
    ) -> None:
        self.args = args
        self.script = script
        self.numkeys = numkeys
        self.options = options
        self.idempotent = idempotent
        """Whether sending it twice is harmless: only batches of idempotent calls are re-sent
        after a connection error (the first send may have run before the connection broke)."""

    def __repr__(self) -> str:
        # arguments are left out: they hold keys built from session ids, tokens and user data,
        # and a repr ends up in logs and tracebacks
        if self.script:
            return f"Call(script {self.script.name}, {len(self.args)} args)"
        name = self.args[0] if self.args and isinstance(self.args[0], str) else "?"
        return f"Call({name}, {len(self.args) - 1} args)"


def command(*args: Any, idempotent: bool = True, bounded: bool = False, **options: Any) -> Call:
    """A plain Redis command: ``command("GET", key)``. ``options`` go to redis-py's reply
    parsing (``get=True`` makes ``SET ... GET`` return the old value instead of a bool).
    ``bounded=True`` skips the 64-bit check of int arguments: for hot paths that hold no int,
    or only ints already checked (milliseconds of validated durations)."""
    if not bounded and int in map(type, args):
        _bounded(args, str(args[0]), 0)
    return Call(args, None, 0, options or None, idempotent)


def script(
    s: Script,
    keys: Sequence[str],
    argv: Sequence[Any] = (),
    *,
    idempotent: bool = True,
    bounded: bool = False,
) -> Call:
    """A script call; the executor sends ``EVALSHA`` and loads the script on ``NOSCRIPT``.
    ``bounded`` as for :func:`command`."""
    if not bounded and int in map(type, argv):
        _bounded(argv, s.name, 1)
    return Call((*keys, *argv), s, len(keys), None, idempotent)


def _bounded(args: Sequence[Any], what: str, first: int) -> None:
    """The last line of defence: Redis reads an int argument as a signed 64-bit number, and a
    wider one is refused (or, of thousands of digits, cannot be sent at all). Public calls check
    their own int parameters by name; this catches what reaches a call unchecked."""
    for i, arg in enumerate(args, first):
        if type(arg) is int and not INT64_MIN <= arg <= INT64_MAX:
            raise ValueError(f"{what} argument {i} must be a 64-bit integer, got {shown(arg)}")


def first(replies: list[Any]) -> Any:
    """Parse function of a one-call batch: its only reply."""
    return replies[0]


class Batch(Generic[T]):
    """One round trip: ``calls`` are pipelined (no MULTI) and ``parse`` reads their replies."""

    __slots__ = ("calls", "parse")

    def __init__(
        self,
        calls: tuple[Call, ...],
        parse: Callable[[list[Any]], T] = list,  # type: ignore[assignment]
    ) -> None:
        self.calls = calls
        self.parse = parse

    @classmethod
    def one(cls, call: Call, parse: Callable[[Any], T] | None = None) -> Batch[T]:
        """A batch of a single call; ``parse`` receives its reply alone."""
        if parse is None:
            return cls((call,), first)
        return cls((call,), lambda replies: parse(replies[0]))


@dataclass(frozen=True, slots=True)
class Sleep:
    """Pause the flow (``time.sleep`` or ``asyncio.sleep``)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Load:
    """Call user code (a loader). The async executor awaits the result when it is awaitable."""

    fn: Callable[[], Any]


Step = Batch[Any] | Sleep | Load
Flow = Generator[Step, Any, T]
