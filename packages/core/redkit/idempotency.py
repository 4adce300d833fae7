"""Idempotency keys: ``kit.idempotency``, the records behind the ``Idempotency-Key`` header.

A client sends a non-idempotent request (``POST``, ``PATCH``) with a key it generated; when it
retries after a lost reply, the server must not run the request again but answer what the first
attempt answered. A record per key and scope does that:

1. :meth:`Idempotency.begin` atomically answers :attr:`Outcome.STARTED` (this request holds a
   *lease* on the key and runs), :attr:`Outcome.IN_PROGRESS` (another request holds it),
   :attr:`Outcome.REPLAY` (the stored response) or :attr:`Outcome.MISMATCH` (the key was used with
   another request fingerprint).
2. While the request runs its lease is renewed (:meth:`Idempotency.renew`); a request that dies
   stops renewing, and once the lease expires a retry gets ``STARTED`` and takes over.
3. :meth:`Idempotency.complete` stores status, safe headers and body for replay (or releases the
   key when the response must not be replayed); :meth:`Idempotency.release` drops the lease when
   the request failed.

:meth:`Idempotency.guard` wraps the three steps, renewing the lease from a thread (or a task).
The logic lives once in :class:`IdempotencyCore` as batches and flows; the sync and async classes
hand them to their executor. Every state change is one Lua script (``idempotency_*.lua``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import logging
import math
import re
import secrets
import threading
import time
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeAlias

from ._executor import AsyncExecutor, SyncExecutor
from ._keys import Keyspace
from ._ops import Batch, Flow, Script, Sleep, script
from ._stats import Stats
from .errors import (
    IdempotencyKeyError,
    RedkitConnectionError,
    RedkitError,
    ResponseTooLarge,
    SerializationError,
)
from .settings import Settings

__all__ = [
    "NEVER_STORED",
    "REPLAYED_HEADER",
    "SAFE_HEADERS",
    "AsyncGuard",
    "AsyncIdempotency",
    "Begin",
    "Guard",
    "Idempotency",
    "IdempotencyCore",
    "LeaseKeeper",
    "Outcome",
    "check_key",
    "fingerprint",
    "parse_key_header",
]

log = logging.getLogger("redkit.idempotency")

BEGIN = Script.load("idempotency_begin")
RENEW = Script.load("idempotency_renew")
COMPLETE = Script.load("idempotency_complete")
RELEASE = Script.load("idempotency_release")

REPLAYED_HEADER = ("Idempotent-Replayed", "true")
"""The header a replayed response carries, so that clients can tell it from a fresh one."""

SAFE_HEADERS = frozenset(
    {
        "allow",
        "cache-control",
        "content-disposition",
        "content-encoding",
        "content-language",
        "content-location",
        "content-type",
        "etag",
        "expires",
        "last-modified",
        "link",
        "location",
        "preference-applied",
        "vary",
    }
)
"""Response headers stored for replay (lower case). Every other header is dropped unless named in
``allow_headers``; :data:`NEVER_STORED` ones cannot be allowed at all."""

NEVER_STORED = frozenset(
    {
        # credentials and per-client state
        "authorization",
        "cookie",
        "proxy-authenticate",
        "proxy-authorization",
        "set-cookie",
        "set-cookie2",
        # hop-by-hop and framing: they describe one connection or one transfer, not the response
        "connection",
        "content-length",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
"""Response headers that are never stored, whatever ``allow_headers`` says."""

_KEY = re.compile(r"[\x20-\x7e]{1,255}\Z")
_TOKEN = re.compile(r"[\x21-\x7e]{1,128}\Z")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_HEADER_VALUE_BAD = re.compile(r"[\r\n\x00]")
_MAX_FINGERPRINT = 1024
_FIRST_POLL = 0.01  # first pause of a waiting begin; doubles up to _MAX_POLL
_MAX_POLL = 0.2
_STARTED, _IN_PROGRESS, _DONE, _MISMATCH = 1, 2, 3, 4

HeaderInput: TypeAlias = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]
"""Response headers: a mapping (one value per name) or ``(name, value)`` pairs (repeats kept)."""


class Outcome(enum.Enum):
    """What :meth:`Idempotency.begin` found. Adapters map them to HTTP answers: run the request,
    ``409 Conflict``, replay, ``422 Unprocessable Content``."""

    STARTED = "started"
    """No record (or an expired lease): this request holds the lease and runs."""
    IN_PROGRESS = "in_progress"
    """Another request with this key and fingerprint holds the lease (adapters answer 409)."""
    REPLAY = "replay"
    """A response was stored for this key and fingerprint: send it again."""
    MISMATCH = "mismatch"
    """The key belongs to a request with another fingerprint (adapters answer 422)."""


@dataclass(frozen=True, slots=True)
class Begin:
    """The answer of :meth:`Idempotency.begin`.

    ``token`` is set for ``STARTED`` (pass it to ``renew``/``complete``/``release``);
    ``status``, ``headers`` and ``body`` for ``REPLAY`` (the body byte for byte as stored);
    ``retry_after`` for ``IN_PROGRESS``: seconds left on the other request's lease (it may be
    renewed), a hint for a ``Retry-After`` header.
    """

    outcome: Outcome
    key: str
    """The idempotency key, as text."""
    scope: str | None
    """The scope, as text (``None``: the shared anonymous scope)."""
    token: str | None = field(default=None, repr=False)
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = field(default=b"", repr=False)
    retry_after: float | None = None

    @property
    def started(self) -> bool:
        """True when this request holds the lease and should run."""
        return self.outcome is Outcome.STARTED

    @property
    def replayed(self) -> bool:
        """True when this is a stored response to send again."""
        return self.outcome is Outcome.REPLAY

    def replay_headers(self) -> list[tuple[str, str]]:
        """The headers to send with a replay: the stored ones plus
        ``Idempotent-Replayed: true``. Empty unless :attr:`replayed`."""
        if not self.replayed:
            return []
        return [*self.headers, REPLAYED_HEADER]


# -- validation and helpers ------------------------------------------------------------------------
def check_key(key: str | bytes) -> str:
    """``key`` as text when it is a valid idempotency key: 1 to 255 printable ASCII characters
    (space included); :class:`~redkit.errors.IdempotencyKeyError` otherwise."""
    if isinstance(key, (bytes, bytearray)):
        try:
            key = bytes(key).decode("ascii")
        except UnicodeDecodeError:
            raise IdempotencyKeyError(
                "an idempotency key must be printable ASCII; got non-ASCII bytes"
            ) from None
    elif not isinstance(key, str):
        raise TypeError(f"an idempotency key must be str or bytes, not {type(key).__name__}")
    if not key:
        raise IdempotencyKeyError("an idempotency key must not be empty")
    if len(key) > 255:
        raise IdempotencyKeyError(
            f"an idempotency key must be at most 255 characters, got {len(key)}"
        )
    if not _KEY.match(key):
        raise IdempotencyKeyError(
            "an idempotency key must be printable ASCII (no control or non-ASCII characters)"
        )
    return key


def parse_key_header(value: str | bytes) -> str:
    """The key carried by an ``Idempotency-Key`` header value: a structured-field string
    (``"8e03978e-40d5"``, with ``\\"`` and ``\\\\`` escapes) or, as many clients send it, the bare
    key. Surrounding spaces and tabs are ignored. Raises
    :class:`~redkit.errors.IdempotencyKeyError` when the value is malformed (adapters answer 400).
    """
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise IdempotencyKeyError("the Idempotency-Key header must be ASCII") from None
    elif not isinstance(value, str):
        raise TypeError(f"a header value must be str or bytes, not {type(value).__name__}")
    text = value.strip(" \t")
    if not text.startswith('"'):
        return check_key(text)
    out: list[str] = []
    i, end = 1, len(text)
    while i < end:
        c = text[i]
        if c == "\\":
            if i + 1 >= end or text[i + 1] not in '"\\':
                raise IdempotencyKeyError("bad escape in the Idempotency-Key header")
            out.append(text[i + 1])
            i += 2
        elif c == '"':
            if i != end - 1:
                raise IdempotencyKeyError("unexpected text after the Idempotency-Key string")
            return check_key("".join(out))
        else:
            out.append(c)
            i += 1
    raise IdempotencyKeyError("unterminated string in the Idempotency-Key header")


def _fingerprint_part(part: object) -> bytes | None:
    if part is None:
        return None
    if isinstance(part, str):
        return part.encode("utf-8", "surrogatepass")
    if isinstance(part, (bytes, bytearray, memoryview)):
        return bytes(part)
    raise TypeError(f"fingerprint parts must be str, bytes or None, not {type(part).__name__}")


def fingerprint(
    method: str, path: str | bytes, body: bytes | str, *extra: str | bytes | None
) -> str:
    """A SHA-256 (hex) of a request, for :meth:`Idempotency.begin`: its method, path, body and
    any ``extra`` parts that make two requests different (query string, content type, API
    version, ...). Each part is length-prefixed, so ``("ab", "c")`` and ``("a", "bc")`` differ.
    ``str`` parts are UTF-8 encoded (a str and its UTF-8 bytes are the same part); ``None`` is a
    part of its own."""
    digest = hashlib.sha256(b"redkit-idempotency-fingerprint-v1")
    for part in (method, path, body, *extra):
        data = _fingerprint_part(part)
        if data is None:
            digest.update(b"\xff" * 8)
        else:
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)
    return digest.hexdigest()


def _check_fingerprint(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"fingerprint must be a str, not {type(value).__name__}")
    if not value or len(value) > _MAX_FINGERPRINT:
        raise ValueError(f"fingerprint must be 1 to {_MAX_FINGERPRINT} characters")
    return value


def _check_token(token: object) -> str:
    if not isinstance(token, str):
        raise TypeError(f"token must be a str, not {type(token).__name__}")
    if not _TOKEN.match(token):
        raise ValueError("token must be 1 to 128 printable ASCII characters without spaces")
    return token


def _scope_text(scope: object) -> str | None:
    if scope is None:
        return None
    if isinstance(scope, bool) or not isinstance(scope, (str, int)):
        raise TypeError(f"scope must be a str, an int or None, not {type(scope).__name__}")
    return str(scope)


def _wait(value: object, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"wait must be a number of seconds, not {type(value).__name__}")
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(f"wait must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _status(status: object) -> int:
    if isinstance(status, bool) or not isinstance(status, int):
        raise TypeError(f"status must be an int, not {type(status).__name__}")
    if not 200 <= status <= 599:
        raise ValueError(f"status must be a final HTTP status (200 to 599), got {status}")
    return int(status)


def _body(body: object) -> bytes:
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"body must be bytes (encode text first), not {type(body).__name__}")


def _allowed(allow_headers: Iterable[str]) -> frozenset[str]:
    if isinstance(allow_headers, (str, bytes)):
        raise TypeError('allow_headers must be a list of names, e.g. ["X-Order-Id"]')
    extra = set()
    for name in allow_headers:
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ValueError(f"allow_headers: {name!r} is not a header name")
        low = name.lower()
        if low in NEVER_STORED:
            raise ValueError(f"allow_headers: {name} is never stored for replay")
        extra.add(low)
    return SAFE_HEADERS | extra if extra else SAFE_HEADERS


def _header_text(part: object, what: str) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, (bytes, bytearray)):
        return bytes(part).decode("latin-1")
    raise TypeError(f"header {what}s must be str or bytes, not {type(part).__name__}")


def _headers(headers: Any, allowed: frozenset[str]) -> tuple[list[list[str]], bool]:
    """The headers to store, as ``[name, value]`` pairs, and whether a Set-Cookie was seen."""
    if isinstance(headers, (str, bytes)):
        raise TypeError("headers must be a mapping or (name, value) pairs")
    items = headers.items() if hasattr(headers, "items") else headers
    kept: list[list[str]] = []
    cookie = False
    for item in items:
        try:
            raw_name, raw_value = item
        except (TypeError, ValueError):
            raise TypeError("headers must be a mapping or (name, value) pairs") from None
        name = _header_text(raw_name, "name")
        low = name.lower()
        if low in ("set-cookie", "set-cookie2"):
            cookie = True
            continue
        if low not in allowed:
            continue
        value = _header_text(raw_value, "value")
        if not _HEADER_NAME.match(name):
            raise ValueError(f"invalid header name {name!r}")
        if _HEADER_VALUE_BAD.search(value):
            raise ValueError(f"the value of header {name} holds CR, LF or NUL")
        kept.append([name, value])
    return kept, cookie


def _stored_headers(raw: bytes) -> tuple[tuple[str, str], ...]:
    try:
        pairs = json.loads(raw) if raw else []
        return tuple((str(name), str(value)) for name, value in pairs)
    except (ValueError, TypeError) as exc:
        raise SerializationError(f"a stored idempotency record is corrupt: {exc}") from None


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


# -- the logic, once -------------------------------------------------------------------------------
class IdempotencyCore:
    """Key building, validation and the flows of ``kit.idempotency`` (shared by sync and async)."""

    def __init__(self, settings: Settings, keyspace: Keyspace, stats: Stats) -> None:
        self.settings = settings
        self.keys = keyspace
        self.stats = stats
        self.lease = settings.idempotency_lease

    def record_key(self, key: str | bytes, scope: str | int | None) -> str:
        """The Redis key of the record of ``key`` in ``scope``."""
        return self._locate(key, scope)[0]

    def _locate(self, key: str | bytes, scope: object) -> tuple[str, str, str | None]:
        text = check_key(key)
        scope_text = _scope_text(scope)
        # length-prefixed scope: ("a:b", "c") and ("a", "b:c") cannot meet; "-" is no scope
        head = "-" if scope_text is None else f"{len(scope_text)}:{scope_text}"
        return self.keys.tagged("idempotency", f"{head}:{text}"), text, scope_text

    # -- begin ----------------------------------------------------------------------------------
    def begin(
        self,
        key: str | bytes,
        fingerprint: str,
        scope: str | int | None,
        wait: float | None,
        token: str | None,
    ) -> Flow[Begin]:
        """Flow of ``begin``: one script call; with ``wait``, polls (with backoff) while another
        request holds the lease. The same token is sent each time, so a re-sent or repeated call
        that finds its own lease answers ``STARTED`` again."""
        rkey, text, scope_text = self._locate(key, scope)
        fp = _check_fingerprint(fingerprint)
        tok = secrets.token_hex(16) if token is None else _check_token(token)
        patience = _wait(wait, self.settings.idempotency_wait)
        call = script(BEGIN, [rkey], [fp, tok, _ms(self.lease)])

        def parse(reply: list[Any]) -> Begin:
            return self._parse_begin(reply, text, scope_text, tok)

        deadline: float | None = None
        delay = _FIRST_POLL
        while True:
            result: Begin = yield Batch.one(call, parse)
            if result.outcome is not Outcome.IN_PROGRESS or patience <= 0:
                break
            now = time.monotonic()
            if deadline is None:
                deadline = now + patience
            if now >= deadline:
                break
            pause = min(delay, deadline - now)
            if result.retry_after is not None:  # the lease may expire sooner: look again then
                pause = min(pause, result.retry_after + 0.001)
            yield Sleep(pause)
            delay = min(delay * 2, _MAX_POLL)
        self.stats.incr(f"idempotency_{_COUNTERS[result.outcome]}")
        return result

    def _parse_begin(self, reply: list[Any], key: str, scope: str | None, token: str) -> Begin:
        code = int(reply[0])
        if code == _STARTED:
            return Begin(Outcome.STARTED, key, scope, token=token)
        if code == _IN_PROGRESS:
            return Begin(Outcome.IN_PROGRESS, key, scope, retry_after=max(int(reply[1]), 0) / 1000)
        if code == _MISMATCH:
            return Begin(Outcome.MISMATCH, key, scope)
        if code == _DONE and len(reply) == 4:
            try:
                status = int(reply[1])
            except ValueError:
                raise SerializationError("a stored idempotency record is corrupt") from None
            return Begin(
                Outcome.REPLAY,
                key,
                scope,
                status=status,
                headers=_stored_headers(reply[2]),
                body=bytes(reply[3]),
            )
        raise SerializationError(f"unexpected reply from idempotency_begin: {reply!r}")

    # -- the lease ------------------------------------------------------------------------------
    def renew(self, key: str | bytes, token: str, scope: str | int | None) -> Batch[bool]:
        """One script call: extend the lease to ``idempotency_lease`` if ``token`` holds it."""
        rkey = self._locate(key, scope)[0]
        call = script(RENEW, [rkey], [_check_token(token), _ms(self.lease)])
        return Batch.one(call, self._renewed)

    def _renewed(self, reply: Any) -> bool:
        if int(reply) == 1:
            self.stats.incr("idempotency_renewals")
            return True
        return False

    def release(self, key: str | bytes, token: str, scope: str | int | None) -> Batch[bool]:
        """One script call: delete the in-progress record if ``token`` holds its lease."""
        rkey = self._locate(key, scope)[0]
        return Batch.one(script(RELEASE, [rkey], [_check_token(token)]), self._released)

    def _released(self, reply: Any) -> bool:
        if int(reply) == 1:
            self.stats.incr("idempotency_released")
            return True
        return False

    def complete(
        self,
        key: str | bytes,
        token: str,
        status: int,
        headers: HeaderInput,
        body: bytes,
        scope: str | int | None,
        store_server_errors: bool | None,
        allow_headers: Iterable[str],
    ) -> Flow[bool]:
        """Flow of ``complete``: validate and size everything, then one script call that stores
        the response (or releases the key when it must not be replayed)."""
        rkey = self._locate(key, scope)[0]
        tok = _check_token(token)
        code = _status(status)
        payload = _body(body)
        if store_server_errors is not None and not isinstance(store_server_errors, bool):
            raise TypeError("store_server_errors must be True, False or None")
        keep_5xx = (
            self.settings.idempotency_store_server_errors
            if store_server_errors is None
            else store_server_errors
        )
        pairs, cookie = _headers(headers, _allowed(allow_headers))
        if cookie or (code >= 500 and not keep_5xx):
            # not replayable: free the key so that a retry runs the request again
            self.stats.incr("idempotency_not_stored")
            released: bool = yield self.release(key, tok, scope)
            return released
        encoded = json.dumps(pairs, separators=(",", ":"))
        size = len(payload) + len(encoded) + 3
        limit = self.settings.idempotency_max_bytes
        if size > limit:
            self.stats.incr("idempotency_not_stored")
            with contextlib.suppress(RedkitConnectionError):  # else the lease expires by itself
                yield self.release(key, tok, scope)
            raise ResponseTooLarge(
                f"a response of {size} bytes cannot be stored for replay "
                f"(idempotency_max_bytes={limit}); the key was released"
            )
        ttl = _ms(self.settings.idempotency_ttl)
        reply = yield Batch.one(script(COMPLETE, [rkey], [tok, code, encoded, payload, ttl]))
        if int(reply) == 1:
            self.stats.incr("idempotency_stored")
            return True
        self.stats.incr("idempotency_lease_lost")
        return False


_COUNTERS = {
    Outcome.STARTED: "started",
    Outcome.IN_PROGRESS: "in_progress",
    Outcome.REPLAY: "replays",
    Outcome.MISMATCH: "mismatches",
}


# -- sync ------------------------------------------------------------------------------------------
class Idempotency:
    """Idempotency-Key records over Redis: begin, renew, complete, release (see the module doc).

    Reached as ``kit.idempotency``. Keys are 1 to 255 printable ASCII characters (str or bytes);
    ``scope`` (a user, tenant or API client id; ``None`` is one shared anonymous scope) keeps one
    client's keys apart from another's. Fails closed: when Redis is unreachable every method
    raises :class:`~redkit.errors.RedkitConnectionError`.
    """

    def __init__(self, kit: Any) -> None:
        self._core = IdempotencyCore(kit.settings, kit.keyspace, kit.stats)
        self._x: SyncExecutor = kit._executor

    def begin(
        self,
        key: str | bytes,
        fingerprint: str,
        scope: str | int | None = None,
        *,
        wait: float | None = None,
        token: str | None = None,
    ) -> Begin:
        """Start a request with ``key``: one atomic script returning a :class:`Begin` whose
        ``outcome`` is STARTED (run it; ``.token`` holds the lease), IN_PROGRESS, REPLAY or
        MISMATCH. ``wait`` (default ``idempotency_wait``) is how long to poll while another
        request holds the lease. ``token`` (default: a fresh random one) lets a caller repeat a
        begin whose reply was lost: with the same token it answers STARTED again."""
        return self._x.drive(self._core.begin(key, fingerprint, scope, wait, token))

    def renew(self, key: str | bytes, token: str, scope: str | int | None = None) -> bool:
        """Extend the lease of a running request to ``idempotency_lease``; False when ``token``
        no longer holds it (it expired, or another request took over)."""
        return self._x.run(self._core.renew(key, token, scope))

    def complete(
        self,
        key: str | bytes,
        token: str,
        status: int,
        headers: HeaderInput,
        body: bytes,
        scope: str | int | None = None,
        *,
        store_server_errors: bool | None = None,
        allow_headers: Iterable[str] = (),
    ) -> bool:
        """Store the response for replay (status, the safe headers, body bytes) for
        ``idempotency_ttl``. 5xx responses (unless ``store_server_errors``, default the
        setting) and responses setting a cookie release the key instead. Raises
        ``ResponseTooLarge`` (after releasing) above ``idempotency_max_bytes``. Returns False
        when ``token`` no longer held the lease (nothing was written)."""
        return self._x.drive(
            self._core.complete(
                key, token, status, headers, body, scope, store_server_errors, allow_headers
            )
        )

    def release(self, key: str | bytes, token: str, scope: str | int | None = None) -> bool:
        """Drop a running request's record (the request failed) so a retry may run it again.
        False when ``token`` does not hold the lease; a stored response is never removed."""
        return self._x.run(self._core.release(key, token, scope))

    def guard(
        self,
        key: str | bytes,
        fingerprint: str,
        scope: str | int | None = None,
        *,
        wait: float | None = None,
        token: str | None = None,
    ) -> Guard:
        """Begin at once and return a :class:`Guard`: used as a context manager, it renews the
        lease from a daemon thread while the block runs and releases the key at the end unless
        ``guard.complete(...)`` stored a response."""
        return Guard(self, self.begin(key, fingerprint, scope, wait=wait, token=token))


class _GuardBase:
    def __init__(self, result: Begin) -> None:
        self.result = result
        """The :class:`Begin` answer."""
        self.lost = False
        """True once a renewal found the lease gone: another request may be running."""
        self._finished = not result.started

    @property
    def outcome(self) -> Outcome:
        """The outcome of the begin."""
        return self.result.outcome

    @property
    def started(self) -> bool:
        """True when this request holds the lease and should run."""
        return self.result.started

    @property
    def replayed(self) -> bool:
        """True when ``result`` is a stored response to send again."""
        return self.result.replayed

    def _token(self) -> str:
        if not self.result.started or self.result.token is None:
            raise RuntimeError(f"this request did not start (outcome {self.outcome.name})")
        return self.result.token

    def _interval(self, lease: float) -> float:
        return lease / 3


class Guard(_GuardBase):
    """A begun request (sync). ``with`` it: the lease is renewed every third of
    ``idempotency_lease`` from a daemon thread while the block runs; on leaving, a request that
    started and did not :meth:`complete` is released (also on an exception)."""

    def __init__(self, owner: Idempotency, result: Begin) -> None:
        super().__init__(result)
        self._owner = owner
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Guard:
        if not self._finished and self._thread is None:
            self._thread = threading.Thread(
                target=self._keep_alive, name="redkit-idempotency-lease", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop_renewing()
        if self._finished:
            return
        self._finished = True
        try:
            self._owner.release(self.result.key, self._token(), self.result.scope)
        except RedkitConnectionError as err:
            log.warning(
                "redkit: could not release an idempotency key (%s); its lease expires in %.1fs",
                err,
                self._owner._core.lease,
            )

    def complete(
        self,
        status: int,
        headers: HeaderInput,
        body: bytes,
        *,
        store_server_errors: bool | None = None,
        allow_headers: Iterable[str] = (),
    ) -> bool:
        """:meth:`Idempotency.complete` for this request (stops the renewals first)."""
        token = self._token()
        self._stop_renewing()
        done = self._owner.complete(
            self.result.key,
            token,
            status,
            headers,
            body,
            self.result.scope,
            store_server_errors=store_server_errors,
            allow_headers=allow_headers,
        )
        self._finished = True
        return done

    def release(self) -> bool:
        """:meth:`Idempotency.release` for this request (stops the renewals first)."""
        token = self._token()
        self._stop_renewing()
        self._finished = True
        return self._owner.release(self.result.key, token, self.result.scope)

    def _stop_renewing(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _keep_alive(self) -> None:
        token = self._token()
        interval = self._interval(self._owner._core.lease)
        while not self._stop.wait(interval):
            try:
                if not self._owner.renew(self.result.key, token, self.result.scope):
                    self.lost = True
                    return
            except RedkitError as err:  # keep trying: the lease may outlive a short outage
                log.warning("redkit: could not renew an idempotency lease: %s", err)


# -- async -----------------------------------------------------------------------------------------
class AsyncIdempotency:
    """The asyncio twin of :class:`Idempotency` (``redkit.asyncio.Redkit().idempotency``); same
    methods, awaited."""

    def __init__(self, kit: Any) -> None:
        self._core = IdempotencyCore(kit.settings, kit.keyspace, kit.stats)
        self._x: AsyncExecutor = kit._executor

    async def begin(
        self,
        key: str | bytes,
        fingerprint: str,
        scope: str | int | None = None,
        *,
        wait: float | None = None,
        token: str | None = None,
    ) -> Begin:
        """Start a request with ``key``: STARTED, IN_PROGRESS, REPLAY or MISMATCH (see
        :meth:`Idempotency.begin`)."""
        return await self._x.drive(self._core.begin(key, fingerprint, scope, wait, token))

    async def renew(self, key: str | bytes, token: str, scope: str | int | None = None) -> bool:
        """Extend the lease of a running request; False when ``token`` no longer holds it."""
        return await self._x.run(self._core.renew(key, token, scope))

    async def complete(
        self,
        key: str | bytes,
        token: str,
        status: int,
        headers: HeaderInput,
        body: bytes,
        scope: str | int | None = None,
        *,
        store_server_errors: bool | None = None,
        allow_headers: Iterable[str] = (),
    ) -> bool:
        """Store the response for replay, or release the key when it must not be replayed (see
        :meth:`Idempotency.complete`); False when ``token`` no longer held the lease."""
        return await self._x.drive(
            self._core.complete(
                key, token, status, headers, body, scope, store_server_errors, allow_headers
            )
        )

    async def release(self, key: str | bytes, token: str, scope: str | int | None = None) -> bool:
        """Drop a running request's record so a retry may run it again; False when ``token``
        does not hold the lease."""
        return await self._x.run(self._core.release(key, token, scope))

    def guard(
        self,
        key: str | bytes,
        fingerprint: str,
        scope: str | int | None = None,
        *,
        wait: float | None = None,
        token: str | None = None,
    ) -> AsyncGuard:
        """An :class:`AsyncGuard` that begins when entered (``async with idem.guard(...) as g``)
        or awaited (``g = await idem.guard(...)``); while an ``async with`` block runs it renews
        the lease from a task, and at the end it releases the key unless ``await
        g.complete(...)`` stored a response."""
        return AsyncGuard(self, (key, fingerprint, scope, wait, token))


class AsyncGuard(_GuardBase):
    """A request guarded by an idempotency key (async). It begins when awaited or entered;
    ``async with`` it: the lease is renewed from a task while the block runs; on leaving, a
    request that started and did not :meth:`complete` is released."""

    def __init__(
        self,
        owner: AsyncIdempotency,
        begin: tuple[str | bytes, str, str | int | None, float | None, str | None],
    ) -> None:
        self._owner = owner
        self._begin_args: (
            tuple[str | bytes, str, str | int | None, float | None, str | None] | None
        ) = begin
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _start(self) -> AsyncGuard:
        if self._begin_args is not None:
            key, fingerprint, scope, wait, token = self._begin_args
            result = await self._owner.begin(key, fingerprint, scope, wait=wait, token=token)
            self._begin_args = None
            _GuardBase.__init__(self, result)
        return self

    def __getattr__(self, name: str) -> Any:
        # only reached for attributes set by the begin: "result", "lost", ...
        if name.startswith("__") or self.__dict__.get("_begin_args") is None:
            raise AttributeError(name)
        raise RuntimeError("the guard has not begun: await it or enter it with 'async with'")

    def __await__(self) -> Generator[Any, None, AsyncGuard]:
        return self._start().__await__()

    async def __aenter__(self) -> AsyncGuard:
        await self._start()
        if not self._finished and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._keep_alive())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop_renewing()
        if self._finished:
            return
        self._finished = True
        try:
            await self._owner.release(self.result.key, self._token(), self.result.scope)
        except RedkitConnectionError as err:
            log.warning(
                "redkit: could not release an idempotency key (%s); its lease expires in %.1fs",
                err,
                self._owner._core.lease,
            )

    async def complete(
        self,
        status: int,
        headers: HeaderInput,
        body: bytes,
        *,
        store_server_errors: bool | None = None,
        allow_headers: Iterable[str] = (),
    ) -> bool:
        """:meth:`AsyncIdempotency.complete` for this request (stops the renewals first)."""
        token = self._token()
        await self._stop_renewing()
        done = await self._owner.complete(
            self.result.key,
            token,
            status,
            headers,
            body,
            self.result.scope,
            store_server_errors=store_server_errors,
            allow_headers=allow_headers,
        )
        self._finished = True
        return done

    async def release(self) -> bool:
        """:meth:`AsyncIdempotency.release` for this request (stops the renewals first)."""
        token = self._token()
        await self._stop_renewing()
        self._finished = True
        return await self._owner.release(self.result.key, token, self.result.scope)

    async def _stop_renewing(self) -> None:
        # no cancel: a renewal in flight finishes its round trip, then sees the event
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            await task

    async def _keep_alive(self) -> None:
        token = self._token()
        interval = self._interval(self._owner._core.lease)
        while True:
            try:
                await asyncio.wait_for(self._stop.wait(), interval)
                return
            except asyncio.TimeoutError:
                pass
            try:
                if not await self._owner.renew(self.result.key, token, self.result.scope):
                    self.lost = True
                    return
            except RedkitError as err:  # keep trying: the lease may outlive a short outage
                log.warning("redkit: could not renew an idempotency lease: %s", err)


class LeaseKeeper:
    """Renews the leases of the requests begun through ``idempotency`` (a sync
    :class:`Idempotency`) that are running in this process, from one daemon thread (started on
    first use, again after a fork): every third of ``lease`` a running request's lease is
    extended, so a request shorter than that costs no renewal. Framework adapters keep one per
    application instead of a :class:`Guard` thread per request. The thread ends when nothing
    is left to renew, and :meth:`add` starts it again."""

    def __init__(self, idempotency: Any, lease: float) -> None:
        self._idem = idempotency
        self._every = lease / 3
        self._lock = threading.Lock()
        self._active: dict[int, list[Any]] = {}
        self._next = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def add(self, begun: Begin) -> int:
        """Keep ``begun``'s lease alive until :meth:`remove`; returns the handle to remove."""
        due = time.monotonic() + self._every
        with self._lock:
            self._next += 1
            handle = self._next
            self._active[handle] = [begun, due]
            if self._thread is None or not self._thread.is_alive():
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run,
                    args=(self._stop,),
                    name="redkit-idempotency-leases",
                    daemon=True,
                )
                self._thread.start()
        return handle

    def remove(self, handle: int) -> None:
        with self._lock:
            self._active.pop(handle, None)

    def close(self) -> None:
        """Stop renewing (the thread ends; a later :meth:`add` starts it again)."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._active.clear()
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(min(self._every / 4, 1.0)):
            now = time.monotonic()
            with self._lock:
                if not self._active:  # idle: end; the next add() starts a thread again
                    if self._thread is threading.current_thread():
                        self._thread = None
                    return
                due = [(h, e[0]) for h, e in self._active.items() if e[1] <= now]
                for handle, _ in due:
                    self._active[handle][1] = now + self._every
            for handle, begun in due:
                try:
                    kept = self._idem.renew(begun.key, begun.token, begun.scope)
                except Exception as exc:  # keep renewing the others
                    log.warning("redkit: renewing an idempotency lease failed: %s", exc)
                    continue
                if not kept:
                    log.warning(
                        "redkit: the lease of idempotency key %r was lost: another request "
                        "may run it too",
                        begun.key,
                    )
                    self.remove(handle)
