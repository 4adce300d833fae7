"""The small description of an HTTP exchange that the web flows work on, the answers they give,
and the two drivers that run a flow with a sync or an asyncio kit.

An adapter translates its framework's request into a :class:`Request` and its response into a
:class:`Response`; a flow (a generator) yields *operations*, each a function of the kit (``lambda
kit: kit.cache.get(key)``) or of the request's own hooks, and receives their results. The sync
driver :func:`run` calls them; :func:`arun` awaits what they return. The flows hold every rule
and know no framework; the drivers hold no rule.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl

__all__ = [
    "Answer",
    "Headers",
    "Request",
    "Response",
    "WebFlow",
    "arun",
    "problem",
    "run",
    "unavailable",
]

T = TypeVar("T")
Op = Callable[[Any], Any]
WebFlow = Generator[Op, Any, T]
"""A web flow: yields operations (functions of the kit), returns its result."""


class Headers:
    """Header fields as ``(name, value)`` text pairs, repeats kept, looked up without regard to
    case. Bytes (ASGI) are read as Latin-1, the encoding HTTP fields travel in.

    A framework's own header object is used as it is, through :meth:`of`: nothing is copied
    for a request whose headers the flows never read."""

    __slots__ = ("_index", "_joined", "_pairs", "_source")

    def __init__(self, pairs: Iterable[tuple[str | bytes, str | bytes]] = ()) -> None:
        self._pairs: list[tuple[str, str]] = [(_text(n), _text(v)) for n, v in pairs]
        self._index: dict[str, list[str]] | None = None
        self._source: Any = None
        self._joined = False

    @classmethod
    def of(cls, source: Any, joined: bool = False) -> Headers:
        """Headers read through ``source``: case-insensitive ``get(name)``, ``getlist(name)``
        unless ``joined`` (a WSGI environ holds one field per name, repeats joined by commas:
        then only ``get`` is used, in constant time), text values, iteration over
        ``(name, value)`` pairs."""
        made = cls()
        made._source = source
        made._joined = joined
        return made

    def _list(self, name: str) -> list[Any]:
        if self._joined:
            found = self._source.get(name)
            return [] if found is None else [found]
        return list(self._source.getlist(name))

    def _lookup(self) -> dict[str, list[str]]:
        if self._index is None:
            index: dict[str, list[str]] = {}
            for name, value in self._pairs:
                index.setdefault(name.lower(), []).append(value)
            self._index = index
        return self._index

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        if self._source is not None:
            found = self._list(name)
            return str(found[0]) if found else default
        got = self._lookup().get(name.lower())
        return got[0] if got else default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        if self._source is not None:
            return [str(v) for v in self._list(name)]
        return list(self._lookup().get(name.lower(), ()))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if self._source is not None:
            return bool(self._list(name))
        return name.lower() in self._lookup()

    def items(self) -> list[tuple[str, str]]:
        """The pairs, in order."""
        if self._source is not None:
            return [(str(n), str(v)) for n, v in self._source.items()]
        return list(self._pairs)

    def __iter__(self) -> Any:
        return iter(self.items()) if self._source is not None else iter(self._pairs)

    def __repr__(self) -> str:
        return f"Headers({[n for n, _ in self.items()]!r})"


def _text(part: str | bytes) -> str:
    return part.decode("latin-1") if isinstance(part, (bytes, bytearray)) else str(part)


@dataclass(slots=True, eq=False)
class Request:
    """What the web flows need to know of a request.

    ``query`` is the raw query string; ``client`` the socket peer's address (the flows resolve
    the real client through trusted proxies); ``cookies`` the parsed ``Cookie`` header.
    ``body`` reads the body on demand (it may return an awaitable under asyncio) and is called
    at most once. ``user`` returns the current user's id, or ``None`` when anonymous.
    ``scheme`` is ``http`` or ``https`` as the application sees it. ``session_digest``
    returns who the request's session is for the view cache (its id and contents, hashed;
    ``anonymous`` for none); without it, pages that read the session vary on ``Cookie``.
    ``call`` runs a user-supplied hook (a key function, ``exempt_when``, ``unless``, ...) the
    way the framework's users write them: Flask's take no argument, others take the request."""

    method: str
    path: str
    query: str = ""
    headers: Headers = field(default_factory=Headers)
    client: str | None = None
    host: str = ""
    cookies: Mapping[str, str] = field(default_factory=dict)
    body: Callable[[], bytes | Awaitable[bytes]] | None = None
    user: Callable[[], object] | None = None
    scheme: str = "http"
    session_digest: Callable[[], str | None] | None = None
    call: Callable[[Callable[..., Any]], Any] | None = None
    _args: list[tuple[str, str]] | None = field(default=None, repr=False)
    _body: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.method = self.method.upper()

    def invoke(self, fn: Callable[..., Any]) -> Any:
        """Run a user-supplied hook the framework's way (see ``call``)."""
        return fn() if self.call is None else self.call(fn)

    @property
    def args(self) -> list[tuple[str, str]]:
        """The query arguments as ``(name, value)`` pairs, repeats and order kept; a malformed
        escape or non-UTF-8 byte never fails (it stays as it came)."""
        if self._args is None:
            self._args = parse_qsl(self.query, keep_blank_values=True, errors="surrogateescape")
        return self._args


@dataclass(slots=True)
class Response:
    """What the web flows need to know of a response. ``body`` is ``None`` for a streamed
    response (its bytes are not known when the flows run)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes | None
    vary: list[str] | None = None
    """The ``Vary`` values the application set, before the session layer added ``Cookie``
    for a session it read (``None``: those of ``headers``)."""

    @property
    def sets_cookie(self) -> bool:
        """Whether the response sets a cookie."""
        return any(n.lower() in ("set-cookie", "set-cookie2") for n, _ in self.headers)


@dataclass(frozen=True, slots=True)
class Answer:
    """A response a flow gives instead of running the view (a cached page, a 429, a replay, an
    error): the adapter turns it into its framework's response as it is."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    kind: str = ""
    """What it is: ``cached``, ``rate_limited``, ``replay``, ``idempotency`` or
    ``unavailable``; adapters may dispatch on it (Flask raises its 429 as an exception)."""
    detail: Any = None
    """The decision behind it (a rate-limit ``Decision`` for ``rate_limited``)."""


def problem(
    status: int,
    title: str,
    detail: str,
    headers: Iterable[tuple[str, str]] = (),
    kind: str = "",
    extra: Any = None,
) -> Answer:
    """An RFC 9457 ``application/problem+json`` answer."""
    body = json.dumps({"status": status, "title": title, "detail": detail}).encode()
    fields = (("Content-Type", "application/problem+json"), *headers)
    return Answer(status, fields, body, kind, extra)


def unavailable(retry_after: int, what: str) -> Answer:
    """The ``503 Service Unavailable`` answer when Redis cannot be reached: ``what`` failed,
    retry in ``retry_after`` seconds."""
    return problem(
        503,
        "Service Unavailable",
        f"{what}: the data store is unreachable; retry later",
        [("Retry-After", str(max(1, int(retry_after))))],
        "unavailable",
    )


# -- drivers --------------------------------------------------------------------------------------
def run(flow: WebFlow[T], kit: Any) -> T:
    """Run ``flow`` with a sync kit (``redkit.Redkit``): each operation is called, its result
    (or the exception it raised) sent back."""
    try:
        op = next(flow)
        while True:
            try:
                value = op(kit)
            except Exception as exc:
                op = flow.throw(exc)
            else:
                op = flow.send(value)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def arun(flow: WebFlow[T], kit: Any) -> T:
    """Run ``flow`` with an asyncio kit (``redkit.asyncio.Redkit``): what an operation returns is
    awaited when it is awaitable."""
    try:
        op = next(flow)
        while True:
            try:
                value = op(kit)
                if inspect.isawaitable(value):
                    value = await value
            except Exception as exc:
                op = flow.throw(exc)
            else:
                op = flow.send(value)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
