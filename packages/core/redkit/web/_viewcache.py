"""The view cache: which requests may be answered from the cache, which responses may be stored,
and under which key, so that a shared cache never hands one client's response to another
(RFC 9111, section 3).

- Only ``GET`` responses are stored (``HEAD`` is answered from them), with a status the view
  allows (200 by default).
- A request carrying credentials (``Authorization``, and the headers named in
  ``cache_credential_headers`` or by the view) is neither answered from nor stored in the cache,
  unless the view opts in with ``per_credential=True``; then those headers are part of the key.
- A response that sets a cookie, or whose request created, changed or regenerated the
  session, is never stored; a response whose view read the session varies on the session
  (its id and contents, not the whole ``Cookie`` header).
- ``Cache-Control: no-store``, ``no-cache`` or ``private`` (with or without field names) and
  ``Vary: *`` are never stored; the other ``Vary`` fields become part of the key.
- Nothing is stored while the request's database transaction has uncommitted writes.
- Redis down: the lookup misses (the view runs) and the store is skipped (fail open).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import _durations as durations
from .._durations import Duration
from ..errors import RedkitError
from ._http import Answer, Headers, Request, Response, WebFlow

__all__ = ["CacheRule", "CachedResponse", "ViewCache", "ViewCachePolicy"]

log = logging.getLogger("redkit.web")

_NEVER_STORED_HEADERS = frozenset({"set-cookie", "set-cookie2"})
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "date"}
)
_UNCACHEABLE = frozenset({"no-store", "private", "no-cache"})
_PER_CLIENT = frozenset(
    {
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "ratelimit",
        "ratelimit-policy",
    }
)
"""Rate-limit headers describe the client that filled the cache: each answer gets its own."""


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


def _names(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if name and name not in out:
                out.append(name)
    return out


def _fields(headers: Headers) -> Callable[[str], str | None]:
    """A request header's value as a key takes it: every field of that name (HTTP/2 sends
    ``Cookie`` as one field per cookie), joined by a line break, which no field holds."""

    def value(name: str) -> str | None:
        found = headers.get_all(name)
        return "\n".join(found) if found else None

    return value


SESSION = "(session)"
"""The name a page that read the session varies on: not a header (no header name holds
parentheses) but the session itself, as ``Request.session_digest`` tells it."""


def _resolver(req: Request, names: Sequence[str]) -> WebFlow[Callable[[str], str | None]]:
    """Flow: the values a varied key takes, the session's digest read when ``names`` has it."""
    fields = _fields(req.headers)
    if SESSION not in names or req.session_digest is None:
        return fields
    read = req.session_digest
    digest = yield lambda kit: read()

    def value(name: str) -> str | None:
        return digest if name == SESSION else fields(name)

    return value


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class ViewCachePolicy:
    """What a cached view stores, and under which key.

    ``query``: ``True`` keys on every query argument, ``False`` on none, a list on those named
    (the others cannot make the cache hold a copy per value). ``statuses``: statuses stored
    (default 200 only). ``cookies``: store a response that sets a cookie (default never: it
    would hand one client's cookie to the others). ``vary``: request headers always part of the
    key, besides those the response's ``Vary`` names. ``per_credential``: answer and store
    requests carrying credentials too, one entry per credential (default: such requests
    bypass the cache). ``credentials``: headers that carry credentials for this view, besides
    ``Authorization`` and the ``cache_credential_headers`` setting."""

    query: bool | tuple[str, ...] = True
    statuses: frozenset[int] = frozenset({200})
    cookies: bool = False
    vary: tuple[str, ...] = ()
    per_credential: bool = False
    credentials: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        query: bool | Iterable[str] = True,
        statuses: Iterable[int] = (200,),
        cookies: bool = False,
        vary: Iterable[str] = (),
        per_credential: bool = False,
        credentials: Iterable[str] = (),
    ) -> ViewCachePolicy:
        """A policy from decorator arguments, checked."""
        if isinstance(vary, str):
            vary = [vary]
        if isinstance(credentials, str):
            credentials = [credentials]
        if not isinstance(query, bool):
            if isinstance(query, str):
                query = [query]
            query = tuple(sorted({str(q) for q in query}))
        if isinstance(statuses, int):
            statuses = [statuses]
        codes = frozenset(statuses)
        for code in codes:
            if isinstance(code, bool) or not isinstance(code, int) or not 200 <= code <= 599:
                raise ValueError(f"statuses takes HTTP statuses (200 to 599), got {code!r}")
            if code in (206, 304):
                raise ValueError(
                    f"a {code} answers one request's Range or conditions: it is never cached"
                )
        return cls(
            query,
            codes,
            bool(cookies),
            tuple(_names(vary)),
            bool(per_credential),
            tuple(_names(credentials)),
        )

    def base_key(
        self,
        method: str,
        host: str,
        path: str,
        args: Iterable[tuple[str, str]],
        scheme: str = "http",
    ) -> str:
        """The key of a request before ``Vary``: method class (GET and HEAD share one), scheme,
        host, path, and the query arguments the policy keys on, sorted by name (their order of
        appearance within a name is kept)."""
        if self.query is False:
            pairs: list[tuple[str, str]] = []
        else:
            keep = None if self.query is True else set(self.query)
            pairs = [(k, v) for k, v in args if keep is None or k in keep]
            pairs.sort(key=lambda kv: kv[0])
        verb = "GET" if method in ("GET", "HEAD") else method
        parts = [verb, scheme.lower(), host.lower(), path, pairs]
        return "view:" + _digest(json.dumps(parts, separators=(",", ":")))

    @staticmethod
    def varied_key(base: str, names: Sequence[str], header: Callable[[str], str | None]) -> str:
        """The key of a response that varies on ``names``: ``base`` plus the request's values
        of those headers (hashed: a credential never appears in a key)."""
        values = [[name, header(name)] for name in names]
        return base + ":" + _digest(json.dumps(values, separators=(",", ":")))[:32]

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
        (unless allowed), no ``Cache-Control: no-store``, ``no-cache`` or ``private``, no
        ``Vary: *``."""
        if method != "GET" or status not in self.statuses:
            return False
        for name, value in headers:
            lower = name.lower()
            if lower in _NEVER_STORED_HEADERS and not self.cookies:
                return False
            if lower == "cache-control":
                directives = {d.strip().split("=")[0].strip().lower() for d in value.split(",")}
                if directives & _UNCACHEABLE:
                    return False
            if lower == "vary" and "*" in _names([value]):
                return False
        return True

    def stored(
        self, status: int, headers: Iterable[tuple[str, str]], body: bytes
    ) -> CachedResponse:
        """The response as it is stored: hop-by-hop headers, ``Date``, cookies and rate-limit
        headers dropped."""
        dropped = _HOP_BY_HOP | _NEVER_STORED_HEADERS | _PER_CLIENT
        kept = tuple((n, v) for n, v in headers if n.lower() not in dropped)
        return CachedResponse(status, kept, bytes(body))


@dataclass(frozen=True, slots=True)
class CacheRule:
    """A cached view: its TTL (``None``: ``cache_ttl``), tags (templates over the view's
    arguments like ``"user:{user_id}"``, or a callable taking them), the policy, and
    ``unless`` (a hook: when it returns true, the request bypasses the cache)."""

    ttl: float | None
    tags: Any
    policy: ViewCachePolicy
    unless: Callable[..., Any] | None = None

    @classmethod
    def build(
        cls,
        ttl: Duration | None = None,
        tags: Any = None,
        unless: Callable[..., Any] | None = None,
        **policy: Any,
    ) -> CacheRule:
        """A checked rule from decorator arguments."""
        seconds = durations.optional_seconds("ttl", ttl)
        if isinstance(tags, str):
            raise TypeError("tags must be a list of strings or a callable, not a single string")
        if tags is not None and not callable(tags):
            tags = tuple(tags)
            for tag in tags:
                if not isinstance(tag, str):
                    raise TypeError(f"tags must be strings, got {tag!r}")
        if unless is not None and not callable(unless):
            raise TypeError(f"unless must be a callable, not {unless!r}")
        return cls(seconds, tags, ViewCachePolicy.build(**policy), unless)

    def render_tags(self, args: Mapping[str, Any]) -> list[str] | None:
        """The tags of one request, from the view's arguments (a template naming an argument
        the view lacks raises ``KeyError`` with the names it has)."""
        if self.tags is None:
            return None
        if callable(self.tags):
            out = self.tags(**args)
            return [out] if isinstance(out, str) else list(out)
        try:
            return [t.format(**args) for t in self.tags]
        except (KeyError, IndexError) as exc:
            raise KeyError(
                f"cache tag template names {exc}, which the view's arguments "
                f"({', '.join(sorted(args)) or 'none'}) do not have"
            ) from None


@dataclass(slots=True)
class CacheTicket:
    """A request the cache missed: what is needed to store its response."""

    rule: CacheRule
    base: str


class ViewCache:
    """The view cache of one application (``settings``: ``cache_enabled``,
    ``cache_credential_headers``)."""

    def __init__(self, settings: Any) -> None:
        self.enabled = bool(settings.cache_enabled)
        self.credentials = tuple(_names(settings.cache_credential_headers))

    def _credentials(self, rule: CacheRule) -> list[str]:
        return sorted({*self.credentials, *rule.policy.credentials})

    def bypassed(self, req: Request, rule: CacheRule) -> bool:
        """Whether ``req`` neither reads nor fills the cache: not GET/HEAD, the cache turned
        off, credentials without ``per_credential``, or ``unless`` says so."""
        if not self.enabled or req.method not in ("GET", "HEAD"):
            return True
        if not rule.policy.per_credential and any(
            n in req.headers for n in self._credentials(rule)
        ):
            return True
        return rule.unless is not None and bool(req.invoke(rule.unless))

    def lookup(self, req: Request, rule: CacheRule) -> WebFlow[Answer | CacheTicket | None]:
        """Flow: the stored response for ``req`` (an :class:`Answer` of kind ``cached``), or a
        ticket to store the response the view makes, or ``None`` when the request bypasses
        the cache."""
        if self.bypassed(req, rule):
            return None
        base = rule.policy.base_key(req.method, req.host, req.path, req.args, req.scheme)
        ticket = CacheTicket(rule, base)
        try:
            found = yield lambda kit: kit.cache.get(base)
            if isinstance(found, dict) and "vary" in found:
                names = [str(n) for n in found["vary"]]
                value = yield from _resolver(req, names)
                varied = ViewCachePolicy.varied_key(base, names, value)
                found = yield lambda kit: kit.cache.get(varied)
        except RedkitError as exc:  # fail closed cache: still run the view
            log.warning("redkit: view cache lookup failed (%s); running the view", exc)
            return ticket
        stored = CachedResponse.decode(found)
        if stored is None:
            return ticket
        return Answer(stored.status, stored.headers, stored.body, "cached")

    def store(
        self,
        req: Request,
        ticket: CacheTicket,
        response: Response,
        args: Mapping[str, Any] | None = None,
        session: tuple[bool, bool] = (False, False),
        uncommitted: bool = False,
    ) -> WebFlow[bool]:
        """Flow: store ``response`` when the rules allow it; True when stored. ``session`` is
        ``(used, changed)`` (see :func:`redkit.web._sessions.session_state`); ``uncommitted``
        whether the request's transaction has writes not yet committed.

        A page whose view read the session varies on the session (its id and contents, from
        ``Request.session_digest``) rather than on the whole ``Cookie`` header, unless the
        application itself names ``Cookie`` in ``Response.vary``: other cookies, made up or
        not, then cannot make copies of it, and a session changed or destroyed under the
        same cookie does not find its old page."""
        rule = ticket.rule
        used, changed = session
        if changed or uncommitted or response.body is None:
            return False
        if not rule.policy.storable(req.method, response.status, response.headers):
            return False
        by_session = used and req.session_digest is not None
        extra = [SESSION if by_session else "cookie"] if used else []
        if rule.policy.per_credential:
            extra.extend(self._credentials(rule))
        own = response.headers if response.vary is None else [("Vary", v) for v in response.vary]
        names = rule.policy.vary_of(own, extra)
        if names is None:
            return False
        try:
            tags = rule.render_tags(args or {})
        except KeyError as exc:
            log.error("redkit: response of %s not cached: %s", req.path, exc.args[0])
            return False
        stored = rule.policy.stored(response.status, response.headers, response.body).encode()
        base, ttl = ticket.base, rule.ttl
        try:
            if names:
                value = yield from _resolver(req, names)
                key = ViewCachePolicy.varied_key(base, names, value)
                yield lambda kit: kit.cache.set(base, {"vary": names}, ttl, tags)
                ok = yield lambda kit: kit.cache.set(key, stored, ttl, tags)
            else:
                ok = yield lambda kit: kit.cache.set(base, stored, ttl, tags)
        except RedkitError as exc:
            log.warning("redkit: could not store a cached view (%s)", exc)
            return False
        return bool(ok)
