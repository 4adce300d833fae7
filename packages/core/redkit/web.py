"""HTTP pieces shared by the framework adapters (Flask, Django, Starlette): signed session
cookies, the rules of view caching, and the error answers of rate limits and idempotency keys.

Nothing here does I/O or knows a framework: an adapter reads its request, calls these, and
talks to Redis through ``kit.cache``, ``kit.sessions``, ``kit.limiter`` and ``kit.idempotency``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .idempotency import Begin, Outcome, fingerprint
from .ratelimit import Decision

__all__ = [
    "CachedResponse",
    "CookieSigner",
    "ViewCachePolicy",
    "idempotency_error",
    "request_fingerprint",
    "too_many_requests",
]


# -- signed cookies ------------------------------------------------------------------------------
class CookieSigner:
    """Signs a cookie value (a session id) with HMAC-SHA256: ``<value>.<signature>``.

    ``keys``: the current secret first, then older ones still accepted (key rotation: values
    signed with an old key keep working until it is dropped; new ones use the first). ``salt``
    keeps signatures made for one purpose from being accepted for another."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Sequence[str | bytes], salt: str = "redkit.session") -> None:
        derived = []
        for key in keys:
            raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
            if not raw:
                continue
            derived.append(
                hmac.new(raw, b"redkit-cookie:" + salt.encode(), hashlib.sha256).digest()
            )
        if not derived:
            raise ValueError("signing a cookie needs a non-empty secret key")
        self._keys = tuple(derived)

    @staticmethod
    def _mac(key: bytes, value: str) -> str:
        digest = hmac.new(key, value.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def sign(self, value: str) -> str:
        """``value`` with its signature appended (by the current key)."""
        return f"{value}.{self._mac(self._keys[0], value)}"

    def unsign(self, signed: str | None) -> str | None:
        """The value of a signed cookie, or ``None`` when it is missing, malformed or signed by
        none of the keys (compared in constant time)."""
        if not signed or not isinstance(signed, str) or len(signed) > 512:
            return None
        value, dot, mac = signed.rpartition(".")
        if not dot or not value:
            return None
        ok = False
        for key in self._keys:
            ok |= hmac.compare_digest(self._mac(key, value), mac)
        return value if ok else None


# -- view caching --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CachedResponse:
    """A response as stored by a view cache: status, headers (repeats kept), body bytes."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def encode(self) -> dict[str, Any]:
        """A value any serializer (JSON included) can store."""
        try:
            return {"s": self.status, "h": self.headers, "t": self.body.decode("utf-8")}
        except UnicodeDecodeError:
            return {"s": self.status, "h": self.headers, "b": base64.b64encode(self.body).decode()}

    @classmethod
    def decode(cls, value: Any) -> CachedResponse | None:
        """The response stored as ``value``, or ``None`` when it is not one."""
        if not isinstance(value, dict) or not isinstance(value.get("s"), int):
            return None
        try:
            body = value["t"].encode("utf-8") if "t" in value else base64.b64decode(value["b"])
            headers = tuple((str(k), str(v)) for k, v in value["h"])
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        return cls(value["s"], headers, body)


_NEVER_CACHED_HEADERS = frozenset({"set-cookie", "set-cookie2"})
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "date"}
)


def _names(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if name and name not in out:
                out.append(name)
    return out


@dataclass(frozen=True, slots=True)
class ViewCachePolicy:
    """What a cached view stores, and under which key.

    ``query``: ``True`` keys on every query argument, ``False`` on none, a list on those named
    (the others cannot make the cache hold a copy per value). ``statuses``: statuses stored
    (default 200 only). ``cookies``: store a response that sets a cookie (default never: it
    would hand one client's cookie to the others). ``vary``: request headers always part of the
    key, in addition to those the response's ``Vary`` names."""

    query: bool | tuple[str, ...] = True
    statuses: frozenset[int] = frozenset({200})
    cookies: bool = False
    vary: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        query: bool | Iterable[str] = True,
        statuses: Iterable[int] = (200,),
        cookies: bool = False,
        vary: Iterable[str] = (),
    ) -> ViewCachePolicy:
        """A policy from decorator arguments, checked."""
        if isinstance(vary, str):
            vary = [vary]
        if not isinstance(query, bool):
            if isinstance(query, str):
                query = [query]
            query = tuple(sorted({str(q) for q in query}))
        codes = frozenset(statuses)
        for code in codes:
            if isinstance(code, bool) or not isinstance(code, int) or not 200 <= code <= 599:
                raise ValueError(f"statuses takes HTTP statuses (200 to 599), got {code!r}")
        return cls(query, codes, bool(cookies), tuple(_names(vary)))

    def base_key(self, method: str, host: str, path: str, args: Iterable[tuple[str, str]]) -> str:
        """The key of a request before ``Vary``: method class (GET and HEAD share one), host,
        path, and the query arguments the policy keys on, sorted by name (their order of
        appearance within a name is kept)."""
        if self.query is False:
            pairs: list[tuple[str, str]] = []
        else:
            keep = None if self.query is True else set(self.query)
            pairs = [(k, v) for k, v in args if keep is None or k in keep]
            pairs.sort(key=lambda kv: kv[0])
        verb = "GET" if method in ("GET", "HEAD") else method
        text = json.dumps([verb, host.lower(), path, pairs], separators=(",", ":"))
        return "view:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    @staticmethod
    def varied_key(base: str, names: Sequence[str], header: Callable[[str], str | None]) -> str:
        """The key of a response that varies on ``names``: ``base`` plus the request's values
        of those headers."""
        values = [[name, header(name)] for name in names]
        text = json.dumps(values, separators=(",", ":"))
        return base + ":" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]

    def vary_of(
        self, headers: Iterable[tuple[str, str]], extra: Iterable[str] = ()
    ) -> list[str] | None:
        """The request headers a response varies on (sorted, lower case: the policy's own,
        the response's ``Vary``, ``extra``), or ``None`` for ``Vary: *`` (never cached)."""
        names = set(self.vary) | set(_names(extra))
        for name, value in headers:
            if name.lower() == "vary":
                found = _names([value])
                if "*" in found:
                    return None
                names.update(found)
        return sorted(names)

    def storable(self, method: str, status: int, headers: Iterable[tuple[str, str]]) -> bool:
        """Whether a response may be stored: a GET, a status the policy stores, no cookie set
        (unless allowed), no ``Cache-Control: no-store`` or ``private``, no ``Vary: *``."""
        if method != "GET" or status not in self.statuses:
            return False
        for name, value in headers:
            lower = name.lower()
            if lower in _NEVER_CACHED_HEADERS and not self.cookies:
                return False
            if lower == "cache-control":
                directives = {d.strip().split("=")[0].lower() for d in value.split(",")}
                if directives & {"no-store", "private", "no-cache"}:
                    return False
            if lower == "vary" and "*" in _names([value]):
                return False
        return True

    def stored(
        self, status: int, headers: Iterable[tuple[str, str]], body: bytes
    ) -> CachedResponse:
        """The response as it is stored: hop-by-hop headers, ``Date`` and cookies dropped."""
        kept = tuple(
            (n, v)
            for n, v in headers
            if n.lower() not in _HOP_BY_HOP and n.lower() not in _NEVER_CACHED_HEADERS
        )
        return CachedResponse(status, kept, bytes(body))


# -- error answers -------------------------------------------------------------------------------
def _problem(status: int, title: str, detail: str) -> tuple[int, list[tuple[str, str]], bytes]:
    body = json.dumps({"status": status, "title": title, "detail": detail}).encode()
    return status, [("Content-Type", "application/problem+json")], body


def too_many_requests(
    decision: Decision, headers: bool = True
) -> tuple[int, list[tuple[str, str]], bytes]:
    """The ``429 Too Many Requests`` answer of a denied request: ``Retry-After`` always, the
    rate-limit headers when ``headers``; an RFC 9457 problem body."""
    status, out, body = _problem(
        429,
        "Too Many Requests",
        f"rate limit exceeded ({decision.limit}); retry in {max(1, round(decision.retry_after))} s",
    )
    fields = decision.headers(legacy=headers, draft=headers)
    fields.setdefault("Retry-After", str(max(1, round(decision.retry_after))))
    out.extend(fields.items())
    return status, out, body


def idempotency_error(
    begun: Begin | None, malformed: str | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    """The answer of an idempotent request that must not run: 400 for a malformed key
    (``malformed`` is the reason), 409 while another request with the key runs (with
    ``Retry-After``), 422 when the key was used for another request."""
    if malformed is not None or begun is None:
        return _problem(400, "Bad Idempotency-Key", malformed or "malformed idempotency key")
    if begun.outcome is Outcome.IN_PROGRESS:
        status, headers, body = _problem(
            409,
            "Request In Progress",
            "a request with this idempotency key is being processed; retry later",
        )
        wait = begun.retry_after if begun.retry_after is not None else 1.0
        headers.append(("Retry-After", str(max(1, round(wait)))))
        return status, headers, body
    if begun.outcome is Outcome.MISMATCH:
        return _problem(
            422,
            "Idempotency-Key Reused",
            "this idempotency key was used with a different request",
        )
    raise ValueError(f"outcome {begun.outcome.name} is not an error")


def request_fingerprint(
    method: str, path: str, query: str | bytes, body: bytes, content_type: str | None
) -> str:
    """The fingerprint of an HTTP request for idempotency: method, path, query string, body
    and content type (two requests differing in any of them do not share a key)."""
    return fingerprint(method, path, body, query, content_type)
