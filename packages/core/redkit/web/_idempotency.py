"""Idempotent requests: a request carrying an ``Idempotency-Key`` runs once; a retry gets the
stored response again (``Idempotent-Replayed: true``), ``409`` while the first one runs, ``422``
when the key was used for another request (method, path, query, body, content type), ``400``
for a malformed key (or a missing one where it is required), ``503`` when Redis is down.

A key belongs to a scope, so one client can never be answered with another's response (the
IETF draft and Stripe scope keys per account): the user id (a user loader, or the view's own
``scope`` hook) when there is one, else a hash of the request's credentials (``Authorization``
and the ``cache_credential_headers``), else the client's address (through trusted proxies, IPv6
by /64). Responses that stream, set a cookie or fail with a 5xx are not stored: the key is
released so that a retry runs again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import IdempotencyKeyError, RedkitConnectionError, RedkitError, ResponseTooLarge
from ..idempotency import Begin, Outcome, fingerprint, parse_key_header
from ._http import Answer, Request, Response, WebFlow, problem, unavailable
from ._ratelimit import RateLimits

__all__ = ["Held", "IdempotentRequests", "IdempotentRule", "idempotency_error"]

log = logging.getLogger("redkit.web")

DEFAULT_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class IdempotentRule:
    """An idempotent view: the methods it applies to, whether the key is ``required``, a
    ``scope`` hook (returns who the key belongs to; ``None`` falls back to the defaults),
    ``store_server_errors`` (``None``: the setting) and response headers replayed besides the
    safe default ones (``allow_headers``)."""

    methods: frozenset[str] = DEFAULT_METHODS
    required: bool = False
    scope: Callable[..., Any] | None = None
    store_server_errors: bool | None = None
    allow_headers: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        required: bool = False,
        methods: Iterable[str] = DEFAULT_METHODS,
        scope: Callable[..., Any] | None = None,
        store_server_errors: bool | None = None,
        allow_headers: Iterable[str] = (),
    ) -> IdempotentRule:
        """A checked rule from decorator arguments."""
        if isinstance(methods, str):
            methods = [methods]
        chosen = frozenset(str(m).upper() for m in methods)
        unsafe = chosen - DEFAULT_METHODS
        if unsafe:
            raise ValueError(
                f"idempotency keys apply to POST, PUT, PATCH and DELETE, not {sorted(unsafe)}"
            )
        if scope is not None and not callable(scope):
            raise TypeError(f"scope must be a callable, not {scope!r}")
        if store_server_errors is not None and not isinstance(store_server_errors, bool):
            raise TypeError("store_server_errors must be True, False or None")
        if isinstance(allow_headers, str):
            allow_headers = [allow_headers]
        return cls(chosen, bool(required), scope, store_server_errors, tuple(allow_headers))


def idempotency_error(begun: Begin | None, malformed: str | None = None) -> Answer:
    """The answer of an idempotent request that must not run: 400 for a malformed key
    (``malformed`` is the reason), 409 while another request with the key runs (with
    ``Retry-After``), 422 when the key was used for another request."""
    if malformed is not None or begun is None:
        return problem(
            400, "Bad Idempotency-Key", malformed or "malformed idempotency key", (), "idempotency"
        )
    if begun.outcome is Outcome.IN_PROGRESS:
        wait = begun.retry_after if begun.retry_after is not None else 1.0
        return problem(
            409,
            "Request In Progress",
            "a request with this idempotency key is being processed; retry later",
            [("Retry-After", str(max(1, round(wait))))],
            "idempotency",
        )
    if begun.outcome is Outcome.MISMATCH:
        return problem(
            422,
            "Idempotency-Key Reused",
            "this idempotency key was used with a different request",
            (),
            "idempotency",
        )
    raise ValueError(f"outcome {begun.outcome.name} is not an error")


@dataclass(slots=True)
class Held:
    """A request that holds its idempotency key while it runs."""

    begun: Begin
    rule: IdempotentRule
    handle: int | None = None


def _without_refreshes(
    headers: list[tuple[str, str]], cookies: Mapping[str, str]
) -> list[tuple[str, str]]:
    """``headers`` without the ``Set-Cookie`` fields that set a cookie to the value the request
    already carried (a refresh of its expiry: nothing a replay must repeat)."""
    out = []
    for name, value in headers:
        if name.lower() == "set-cookie":
            cookie, _, rest = value.partition("=")
            if cookies.get(cookie.strip()) == rest.split(";", 1)[0].strip():
                continue
        out.append((name, value))
    return out


class IdempotentRequests:
    """The idempotent requests of one application (``settings``: ``idempotency_header``,
    ``idempotency_methods``, ``cache_credential_headers``). ``keeper`` renews the leases of
    running requests (``add(begun) -> handle``, ``remove(handle)``), like
    :class:`redkit.idempotency.LeaseKeeper`."""

    def __init__(self, settings: Any, limits: RateLimits, keeper: Any = None) -> None:
        self.header = settings.idempotency_header
        self.methods = frozenset(m.upper() for m in settings.idempotency_methods)
        self.credentials = tuple(n.lower() for n in settings.cache_credential_headers)
        self.keeper = keeper
        self._limits = limits
        self.retry_after = max(1, round(settings.breaker_cooldown))

    def rule_for(self, req: Request, own: IdempotentRule | None) -> IdempotentRule | None:
        """The rule that applies to ``req``: the view's own, else the application-wide
        ``idempotency_methods``; ``None`` when the request is not idempotent."""
        rule = own
        if rule is None and req.method in self.methods:
            rule = IdempotentRule(self.methods)
        return rule if rule is not None and req.method in rule.methods else None

    def scope(self, req: Request, rule: IdempotentRule) -> WebFlow[str]:
        """Flow: the scope of ``req``'s key: ``user:<id>``, ``auth:<hash>`` or
        ``client:<address>``."""
        who = None
        own, user = rule.scope, req.user
        if own is not None:
            who = yield lambda kit: req.invoke(own)
        if (who is None or who is False or who == "") and user is not None:
            who = yield lambda kit: user()
        if who is not None and who is not False and who != "":
            return f"user:{who}"
        shown = [[n, req.headers.get_all(n)] for n in self.credentials if n in req.headers]
        if shown:
            text = json.dumps(shown, separators=(",", ":"))
            return "auth:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        return "client:" + self._limits.client(req)

    def begin(self, req: Request, rule: IdempotentRule) -> WebFlow[Answer | Held | None]:
        """Flow: take the key of ``req``. A :class:`Held` when the request should run (pass it
        to :meth:`finish` or :meth:`abort`), ``None`` when it carries no key (and needs none),
        else the answer to send instead of running it."""
        raw = req.headers.get(self.header)
        if raw is None:
            if rule.required:
                return idempotency_error(None, f"this request needs an {self.header} header")
            return None
        try:
            key = parse_key_header(raw)
        except IdempotencyKeyError as exc:
            return idempotency_error(None, str(exc))
        scope = yield from self.scope(req, rule)
        body = b""
        if req.body is not None:
            read = req.body
            body = yield lambda kit: read()
        fp = fingerprint(req.method, req.path, body, req.query, req.headers.get("content-type"))
        try:
            begun: Begin = yield lambda kit: kit.idempotency.begin(key, fp, scope)
        except RedkitConnectionError:
            return unavailable(self.retry_after, "the idempotency key cannot be checked")
        if begun.started:
            handle = self.keeper.add(begun) if self.keeper is not None else None
            return Held(begun, rule, handle)
        if begun.replayed:
            return Answer(begun.status or 200, tuple(begun.replay_headers()), begun.body, "replay")
        return idempotency_error(begun)

    def _let_go(self, held: Held) -> None:
        if held.handle is not None and self.keeper is not None:
            self.keeper.remove(held.handle)
            held.handle = None

    def finish(
        self, held: Held, response: Response, cookies: Mapping[str, str] | None = None
    ) -> WebFlow[None]:
        """Flow: store ``response`` for replay (or release the key when it must not be
        replayed). A ``Set-Cookie`` that only sets again a cookie the request carried
        (``cookies``), like a permanent session's refreshed expiry, is left out of the stored
        response instead of preventing it. Errors are logged: the key's lease then expires by
        itself."""
        self._let_go(held)
        begun, rule = held.begun, held.rule
        token = begun.token
        assert token is not None
        try:
            if response.body is None:  # a stream cannot be replayed
                yield lambda kit: kit.idempotency.release(begun.key, token, begun.scope)
                return
            body = response.body
            headers = _without_refreshes(response.headers, cookies or {})
            yield lambda kit: kit.idempotency.complete(
                begun.key,
                token,
                response.status,
                headers,
                body,
                begun.scope,
                store_server_errors=rule.store_server_errors,
                allow_headers=rule.allow_headers,
            )
        except ResponseTooLarge:
            log.warning("redkit: response too large to store for replay; key released")
        except RedkitError as exc:
            log.warning(
                "redkit: could not store an idempotent response (%s); its lease expires", exc
            )

    def abort(self, held: Held) -> WebFlow[None]:
        """Flow: the request failed before a response was made: release its key."""
        self._let_go(held)
        begun, token = held.begun, held.begun.token
        assert token is not None
        try:
            yield lambda kit: kit.idempotency.release(begun.key, token, begun.scope)
        except RedkitError as exc:
            log.warning("redkit: could not release an idempotency key (%s)", exc)
