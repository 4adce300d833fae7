"""A job's options, checked: names, durations, payloads (strict JSON), :class:`Backoff`,
:class:`Keep` and :class:`JobOptions` (no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .. import _durations as durations
from .._checks import shown
from .._durations import Duration, to_ms
from ..errors import PayloadTooLarge, SerializationError
from ..serializers import JsonSerializer, find_unserializable

__all__ = ["Backoff", "JobOptions", "Keep"]

MAX_PRIORITY = 2**31 - 1
MAX_DELAY = 10 * 365 * 86400.0  # ten years
MAX_ATTEMPTS = 10_000
MAX_NAME = 200

_json = JsonSerializer()


# -- validation -------------------------------------------------------------------------------
def _seconds(name: str, value: object, *, allow_zero: bool = True) -> float:
    return durations.seconds(name, value, zero=allow_zero)


def _int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {shown(value)}")
    return value


def check_name(what: str, value: object) -> str:
    """A job name, task name or job id: a str of 1 to 200 characters, none of them a control
    character (they end up in keys, logs and the dashboard)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > MAX_NAME:
        raise ValueError(f"{what} must be at most {MAX_NAME} characters, got {len(value)}")
    if not value.isprintable():
        raise ValueError(f"{what} must not contain control characters: {shown(value)}")
    return value


def encode(value: Any, what: str, limit: int) -> bytes:
    """Strict JSON of ``value`` (see :class:`~redkit.serializers.JsonSerializer`), at most
    ``limit`` bytes. Errors name where in ``value`` the problem is (``data["user"] is a
    datetime``)."""
    try:
        raw = _json.dumps(value)
    except SerializationError:
        where = find_unserializable(value, what) or f"{what} could not be encoded"
        raise SerializationError(
            f"{where}: job data, results and progress must be JSON (dict with str keys, list, "
            "str, int, float, bool, None)"
        ) from None
    if len(raw) > limit:
        raise PayloadTooLarge(
            f"{what} is {len(raw)} bytes encoded, more than queue_max_bytes ({limit}); store "
            "large payloads elsewhere and pass a reference"
        )
    return raw


def decode(raw: bytes | None) -> Any:
    return None if raw is None else _json.loads(raw)


def to_delay(delay: object) -> float:
    """Seconds from now: a number, a ``timedelta`` or an aware ``datetime`` (run at)."""
    if isinstance(delay, datetime):
        if delay.tzinfo is None:
            raise ValueError(
                "a datetime to run at must be timezone-aware (naive times are ambiguous across "
                "hosts): use datetime.now(timezone.utc) + ..."
            )
        return max(0.0, (delay - datetime.now(timezone.utc)).total_seconds())
    return durations.seconds("delay", delay, zero=True, maximum=MAX_DELAY)


@dataclass(frozen=True)
class Backoff:
    """How long to wait before retrying a failed job: ``Backoff.fixed(5)`` or
    ``Backoff.exponential(1, max=300)`` (1, 2, 4, 8 ... seconds). ``jitter`` is a fraction of the
    delay drawn at random and taken off it (0.2: between 80% and 100% of the delay)."""

    kind: str = "fixed"
    delay: float = 0.0
    max: float | None = None
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "exponential"):
            raise ValueError(
                f"backoff kind must be 'fixed' or 'exponential', got {shown(self.kind)}"
            )
        # held as seconds: a timedelta is converted (the delay is stored with the job as JSON)
        object.__setattr__(self, "delay", _seconds("backoff delay", self.delay))
        if self.max is not None:
            object.__setattr__(self, "max", _seconds("backoff max", self.max))
        j = self.jitter
        if isinstance(j, bool) or not isinstance(j, (int, float)) or not 0 <= j <= 1:
            raise ValueError(f"backoff jitter must be a fraction between 0 and 1, got {shown(j)}")

    @classmethod
    def fixed(cls, delay: Duration, *, jitter: float = 0.0) -> Backoff:
        return cls("fixed", _seconds("backoff delay", delay), None, jitter)

    @classmethod
    def exponential(
        cls, delay: Duration, *, max: Duration | None = None, jitter: float = 0.0
    ) -> Backoff:
        top = None if max is None else _seconds("backoff max", max)
        return cls("exponential", _seconds("backoff delay", delay), top, jitter)

    def seconds(self, attempt: int, rand: Callable[[], float]) -> float:
        """The delay after failed attempt number ``attempt`` (1 for the first failure)."""
        delay = self.delay if self.kind == "fixed" else self.delay * 2 ** min(attempt - 1, 60)
        if self.max is not None:
            delay = min(delay, self.max)
        if self.jitter:
            delay *= 1 - self.jitter * rand()
        return delay

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"k": self.kind, "d": self.delay}
        if self.max is not None:
            out["m"] = self.max
        if self.jitter:
            out["j"] = self.jitter
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Backoff:
        return cls(raw.get("k", "fixed"), raw.get("d", 0.0), raw.get("m"), raw.get("j", 0.0))


BackoffSpec = Backoff | float | int | Callable[[int, BaseException], float]


def check_backoff(
    backoff: object, *, allow_callable: bool
) -> Backoff | Callable[..., float] | None:
    if backoff is None or isinstance(backoff, Backoff):
        return backoff
    if isinstance(backoff, (int, float, timedelta)) and not isinstance(backoff, bool):
        return Backoff.fixed(_seconds("backoff", backoff))
    if callable(backoff):
        if not allow_callable:
            raise TypeError(
                "a custom backoff function cannot be stored with a job: give it to "
                "@queue.task(backoff=...) or kit.queue(name, backoff=...)"
            )
        return backoff
    raise TypeError(
        f"backoff must be seconds, a Backoff or a function(attempt, exc), not {shown(backoff)}"
    )


@dataclass(frozen=True)
class Keep:
    """How many finished jobs a queue keeps, and for how long (``None``: the queue's default).
    ``Keep(completed=0)`` deletes a job as soon as it completes."""

    completed: int | None = None
    completed_age: float | None = None
    failed: int | None = None
    failed_age: float | None = None

    def __post_init__(self) -> None:
        for name in ("completed", "failed"):
            value = getattr(self, name)
            if value is not None:
                _int(f"Keep.{name}", value, 0, 2**40)
        for name in ("completed_age", "failed_age"):
            value = getattr(self, name)
            if value is not None:  # held as seconds, a timedelta converted
                object.__setattr__(self, name, _seconds(f"Keep.{name}", value))

    @classmethod
    def coerce(cls, keep: object) -> Keep | None:
        """``None``, a ``Keep``, ``False`` (keep no completed job), ``True`` (the defaults) or an
        int (that many completed jobs)."""
        if keep is None or isinstance(keep, Keep):
            return keep
        if keep is True:
            return None
        if keep is False:
            return cls(completed=0)
        if isinstance(keep, int):
            return cls(completed=keep)
        raise TypeError(f"keep must be a Keep, a bool or an int, not {shown(keep)}")

    def args(self) -> list[int]:
        """The four retention arguments of the add script (-1: the queue's default)."""

        def ms(value: float | None) -> int:
            return -1 if value is None else to_ms(value)

        return [
            -1 if self.completed is None else self.completed,
            ms(self.completed_age),
            -1 if self.failed is None else self.failed,
            ms(self.failed_age),
        ]


_NO_KEEP = [-1, -1, -1, -1]


@dataclass(frozen=True)
class Dedup:
    """Deduplication by an id of your own: an ``add`` whose dedup id is held by another job adds
    nothing and returns that job. ``Dedup("report:7")`` holds until that job completes or fails
    (30 days at most); with ``ttl`` (seconds) it holds that long whatever the job does (a
    throttle), ``extend=True`` starts the ``ttl`` again at each duplicate, ``replace=True`` gives
    the job the duplicate's data while it has not started (and its ``delay``, counted again).
    ``Dedup.debounce(id, wait, max_wait=None)``: the job runs ``wait`` seconds after the last add,
    with its data, and never more than ``max_wait`` seconds after the first."""

    id: str
    ttl: float | None = None
    extend: bool = False
    replace: bool = False
    delay: float | None = None
    """The job's delay when the add gives none (what ``debounce`` sets)."""
    max_wait: float | None = None
    """With ``replace``: the most a duplicate's delay may put the run after the holder's add."""

    def __post_init__(self) -> None:
        check_name("dedup id", self.id)
        if self.ttl is not None:
            object.__setattr__(self, "ttl", _seconds("dedup ttl", self.ttl, allow_zero=False))
        elif self.extend or self.replace:
            raise ValueError("Dedup(extend=True) and Dedup(replace=True) need a ttl")
        for name in ("extend", "replace"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"Dedup.{name} is a bool, not {shown(getattr(self, name))}")
        if self.delay is not None:
            object.__setattr__(self, "delay", to_delay(self.delay))
        if self.max_wait is not None:
            if not self.replace:
                raise ValueError("Dedup(max_wait=...) needs replace=True")
            most = _seconds("dedup max_wait", self.max_wait, allow_zero=False)
            if self.delay is not None and most < self.delay:
                raise ValueError(
                    f"Dedup max_wait ({most:g}s) is shorter than its delay ({self.delay:g}s)"
                )
            object.__setattr__(self, "max_wait", most)

    @classmethod
    def debounce(cls, id: str, wait: Duration, max_wait: Duration | None = None) -> Dedup:
        """Run once, ``wait`` seconds after the last add with this id, with the last data; with
        ``max_wait``, no later than ``max_wait`` seconds after the first add, however many
        follow (a stream of adds closer together than ``wait`` still runs)."""
        wait = _seconds("debounce wait", wait, allow_zero=False)
        most = None if max_wait is None else _seconds("dedup max_wait", max_wait, allow_zero=False)
        return cls(id, ttl=wait, extend=True, replace=True, delay=wait, max_wait=most)

    @classmethod
    def coerce(cls, value: object) -> Dedup | None:
        if value is None or isinstance(value, Dedup):
            return value
        if isinstance(value, str):
            return cls(value)
        raise TypeError(f"dedup is a str (the dedup id) or a Dedup, not {shown(value)}")

    def args(self) -> list[Any]:
        """The add script's three dedup arguments: id, ttl ms (0: until the job ends), flags."""
        flags = ("e" if self.extend else "") + ("r" if self.replace else "")
        if self.max_wait is not None:
            flags += f":{to_ms(self.max_wait)}"
        return [self.id, 0 if self.ttl is None else to_ms(self.ttl), flags]


@dataclass(frozen=True)
class JobOptions:
    """Options of one job, validated; what the worker needs is stored with it as JSON."""

    job_id: str | None = None
    delay: float = 0.0
    priority: int = 0
    attempts: int = 1
    backoff: Backoff | None = None
    timeout: float | None = None
    keep: Keep | None = None
    dedup: Dedup | None = None

    @classmethod
    def build(
        cls,
        *,
        job_id: object = None,
        delay: object = None,
        priority: object = None,
        attempts: object = None,
        backoff: object = None,
        timeout: object = None,
        keep: object = None,
        dedup: object = None,
        defaults: JobOptions | None = None,
    ) -> JobOptions:
        base = defaults or _DEFAULTS
        dd = Dedup.coerce(dedup)
        if delay is None and dd is not None and dd.delay is not None:
            delay = dd.delay
        b = check_backoff(backoff, allow_callable=False) if backoff is not None else base.backoff
        return cls(
            job_id=None if job_id is None else check_name("job_id", job_id),
            delay=base.delay if delay is None else to_delay(delay),
            priority=base.priority
            if priority is None
            else _int("priority", priority, 0, MAX_PRIORITY),
            attempts=base.attempts
            if attempts is None
            else _int("attempts", attempts, 1, MAX_ATTEMPTS),
            backoff=b if isinstance(b, Backoff) else None,
            timeout=base.timeout
            if timeout is None
            else _seconds("timeout", timeout, allow_zero=False),
            keep=base.keep if keep is None else Keep.coerce(keep),
            dedup=dd,
        )

    def stored(self) -> bytes:
        """The options the worker reads, as JSON (empty when all are defaults)."""
        out: dict[str, Any] = {}
        if self.attempts != 1:
            out["a"] = self.attempts
        if self.backoff is not None:
            out["b"] = self.backoff.to_json()
        if self.timeout is not None:
            out["t"] = self.timeout
        return _json.dumps(out) if out else b""


_DEFAULTS = JobOptions()
