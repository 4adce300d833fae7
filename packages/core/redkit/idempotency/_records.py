"""The records behind idempotency keys, written once: outcomes, the scripts, and the batches and
flows of begin, renew, complete and release (no I/O)."""

from __future__ import annotations

import contextlib
import enum
import json
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import _durations as durations
from .._checks import shown
from .._durations import Duration, to_ms
from .._keys import Keyspace
from .._ops import Batch, Flow, Script, Sleep, script
from .._stats import Stats
from ..errors import (
    RedkitConnectionError,
    ResponseTooLarge,
    SerializationError,
)
from ..settings import Settings
from ._http import (
    REPLAYED_HEADER,
    HeaderInput,
    _allowed,
    _headers,
    check_key,
)

BEGIN = Script.load("idempotency_begin")
RENEW = Script.load("idempotency_renew")
COMPLETE = Script.load("idempotency_complete")
RELEASE = Script.load("idempotency_release")

_TOKEN = re.compile(r"[\x21-\x7e]{1,128}\Z")
_MAX_FINGERPRINT = 1024
_MAX_SCOPE_INT = 10**100
_FIRST_POLL = 0.01  # first pause of a waiting begin; doubles up to _MAX_POLL
_MAX_POLL = 0.2
_STARTED, _IN_PROGRESS, _DONE, _MISMATCH = 1, 2, 3, 4


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


def _check_fingerprint(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"fingerprint must be a str, not {type(value).__name__}")
    if not value or len(value) > _MAX_FINGERPRINT:
        raise ValueError(f"fingerprint must be 1 to {_MAX_FINGERPRINT} characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("fingerprint must be valid text (it holds a lone surrogate)") from None
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
    if isinstance(scope, int) and not -_MAX_SCOPE_INT < scope < _MAX_SCOPE_INT:
        raise ValueError("scope must be an int of at most 100 digits")
    return str(scope)


def _status(status: object) -> int:
    if isinstance(status, bool) or not isinstance(status, int):
        raise TypeError(f"status must be an int, not {type(status).__name__}")
    if not 200 <= status <= 599:
        raise ValueError(f"status must be a final HTTP status (200 to 599), got {shown(status)}")
    return int(status)


def _body(body: object) -> bytes:
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"body must be bytes (encode text first), not {type(body).__name__}")


def _stored_headers(raw: bytes) -> tuple[tuple[str, str], ...]:
    try:
        pairs = json.loads(raw) if raw else []
        return tuple((str(name), str(value)) for name, value in pairs)
    except (ValueError, TypeError) as exc:
        raise SerializationError(f"a stored idempotency record is corrupt: {exc}") from None


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
        timeout: Duration | None,
        token: str | None,
    ) -> Flow[Begin]:
        """Flow of ``begin``: one script call; with ``timeout``, polls (with backoff) while another
        request holds the lease. The same token is sent each time, so a re-sent or repeated call
        that finds its own lease answers ``STARTED`` again."""
        rkey, text, scope_text = self._locate(key, scope)
        fp = _check_fingerprint(fingerprint)
        tok = secrets.token_hex(16) if token is None else _check_token(token)
        patience = self.settings.idempotency_timeout
        if timeout is not None:
            patience = durations.seconds("timeout", timeout, zero=True)
        call = script(BEGIN, [rkey], [fp, tok, to_ms(self.lease)])

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
        call = script(RENEW, [rkey], [_check_token(token), to_ms(self.lease)])
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
        ttl = to_ms(self.settings.idempotency_ttl)
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
