"""Cache tags invalidated from model signals, after the transaction commits.

Rules name the tags a model's rows carry (``REDKIT["INVALIDATE"]`` or :func:`invalidates`);
``post_save``, ``post_delete`` and ``m2m_changed`` record the tags of the rows written (for a
changed field, of its old value too), and the first ``transaction.on_commit`` callback of the
outermost transaction invalidates them all with one ``kit.cache.invalidate``. A rollback
invalidates nothing; a savepoint rolled back drops what was recorded inside it (Django drops the
``on_commit`` callbacks registered there); outside a transaction (autocommit) the tags are
invalidated at once, after the write. Each database alias has its own transactions.

While a transaction has written and not committed, the cache stores nothing read by the code
that runs in it (:func:`redkit.cache.writes_pending`), and cached calls carrying one of the
written tags read past the cache. An error while invalidating is logged, never raised: the
commit stands (fail-open, like the cache).
"""

from __future__ import annotations

import logging
import operator
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import connections, models
from django.db.models import signals

from redkit.cache import Uncommitted, uncommitted_scope

from . import _rules
from ._rules import MISSING, Coverage, ModelRule

__all__ = [
    "check_rules",
    "connect",
    "coverage",
    "invalidate_on_commit",
    "invalidates",
    "tags_of",
]

log = logging.getLogger("redkit.django")

M = TypeVar("M", bound=type[models.Model])

_SNAPSHOT = "_redkit_loaded"  # instance.__dict__: the rule fields' values as loaded
_FETCHED = "_redkit_fetched"  # instance.__dict__: rule fields read from the row before a write
_CLEARING = "_redkit_clearing"  # instance.__dict__: pks of a relation about to be cleared
_BATCH = "_redkit_batch"  # connection: the _Batch of its open transaction

_lock = threading.RLock()
_coverage: Coverage | None = None
_connected: list[tuple[signals.ModelSignal, type, str]] = []


# -- rules ----------------------------------------------------------------------------------------
def invalidates(*templates: str) -> Callable[[M], M]:
    """Class decorator: writes to this model (and its subclasses) invalidate ``templates``
    (``"order:{id}"``, ``"user:{user_id}"``, constant tags) besides its table's tag
    ``table:<db_table>``. Checked when Django starts, like ``REDKIT["INVALIDATE"]``."""
    for template in templates:
        if not isinstance(template, str):
            raise TypeError(f"invalidates() takes tag templates (str), not {template!r}")

    def decorate(model: M) -> M:
        if not (isinstance(model, type) and issubclass(model, models.Model)):
            raise TypeError(f"@invalidates decorates a model class, not {model!r}")
        _rules.declared.setdefault(model, []).extend(templates)
        return model

    return decorate


def _build() -> tuple[Coverage, list[str]]:
    from .conf import adapter_option

    try:
        raw = adapter_option("INVALIDATE")
    except ImproperlyConfigured:  # REDKIT itself is wrong: said where the client is built
        raw = None
    return _rules.build(raw)


def coverage() -> Coverage:
    """The rules in force (built when Django starts and again when ``REDKIT`` changes)."""
    current = _coverage
    if current is None:
        with _lock:
            if _coverage is None:
                _install()
            assert _coverage is not None
            current = _coverage
    return current


def tags_of(instance: models.Model) -> set[str]:
    """The tags a write of ``instance`` invalidates, by its values in memory (empty when no rule
    covers its model)."""
    rule = coverage().rule(type(instance))
    if rule is None:
        return set()
    return set(rule.constant) | rule.tags(_values(instance, rule))


def check_rules(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """System check ``redkit.E301``: every invalidation rule names installed models and their
    fields, in valid templates."""
    errors = _build()[1]
    return [
        checks.Error(
            message,
            hint="See the Invalidation section of the redkit Django docs.",
            id="redkit.E301",
        )
        for message in errors
    ]


# -- connecting receivers ---------------------------------------------------------------------
def connect() -> None:
    """Check the rules and connect the model-signal receivers (called by the app's
    ``ready()``). Bad rules do not stop Django from starting, so that ``manage.py check``
    can report them (``redkit.E301``, which also stops ``runserver`` and ``migrate``): they
    are logged as an error and no rule is installed; what asks for the rules then (an
    ``InvalidatingQuerySet`` write, :func:`tags_of`) raises ``ImproperlyConfigured``."""
    checks.register(check_rules, "redkit")
    setting_changed.connect(_on_setting_changed, dispatch_uid="redkit.invalidation")
    with _lock:
        try:
            _install()
        except ImproperlyConfigured as exc:
            log.error("redkit: %s (nothing is invalidated until they are fixed)", exc)


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "REDKIT":
        with _lock:
            _install()


def _install() -> None:
    global _coverage
    found, errors = _build()
    if errors:
        _coverage = None
        _disconnect()
        raise ImproperlyConfigured("redkit invalidation rules: " + "; ".join(errors))
    _disconnect()
    for model, rule in found.models.items():
        receivers: list[tuple[signals.ModelSignal, Callable[..., None]]] = [
            (signals.post_save, _post_save),
            (signals.post_delete, _post_delete),
        ]
        if rule.fields:
            receivers += [
                (signals.post_init, _snapshotter(rule)),
                (signals.pre_save, _before_write),
                (signals.pre_delete, _before_write),
            ]
        for signal, receiver in receivers:
            _listen(signal, receiver, model)
    for through in found.throughs:
        _listen(signals.m2m_changed, _m2m_changed, through)
    _coverage = found


def _listen(
    signal: signals.ModelSignal, receiver: Callable[..., None], sender: type[models.Model]
) -> None:
    uid = f"redkit.{receiver.__name__}.{sender._meta.label}"
    signal.connect(receiver, sender=sender, weak=False, dispatch_uid=uid)
    _connected.append((signal, sender, uid))


def _disconnect() -> None:
    while _connected:
        signal, sender, uid = _connected.pop()
        signal.disconnect(sender=sender, dispatch_uid=uid)


# -- receivers ------------------------------------------------------------------------------------
def _snapshotter(rule: ModelRule) -> Callable[..., None]:
    """A post_init receiver keeping the rule fields' values as loaded, to know a changed
    field's old value; called for every instance made, so it does as little as it can."""
    fields = rule.fields
    pick: Callable[[dict[str, Any]], tuple[Any, ...]]
    if len(fields) == 1:
        (only,) = fields

        def pick(d: dict[str, Any]) -> tuple[Any, ...]:
            return (d[only],)

    else:
        pick = operator.itemgetter(*fields)

    def _snapshot(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
        d = instance.__dict__
        try:
            d[_SNAPSHOT] = pick(d)
        except KeyError:  # a deferred field
            d[_SNAPSHOT] = tuple([d.get(a, MISSING) for a in fields])

    return _snapshot


def _before_write(
    sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any
) -> None:
    """pre_save/pre_delete: read the rule fields that are not loaded (deferred) from the row."""
    rule = _coverage.models.get(sender) if _coverage is not None else None
    if rule is None or instance._state.adding or instance.pk is None:
        return
    d = instance.__dict__
    loaded = d.get(_SNAPSHOT, ())
    missing = [
        a
        for i, a in enumerate(rule.fields)
        if a not in d or i >= len(loaded) or loaded[i] is MISSING
    ]
    if missing:
        row = sender._base_manager.using(using).filter(pk=instance.pk).values(*missing).first()
        d[_FETCHED] = row or {}


def _values(instance: models.Model, rule: ModelRule) -> dict[str, Any]:
    d = instance.__dict__
    fetched = d.get(_FETCHED, {})
    return {a: d[a] if a in d else fetched.get(a, MISSING) for a in rule.fields}


def _loaded(instance: models.Model, rule: ModelRule) -> dict[str, Any] | None:
    """The rule fields' values when the row was loaded (None for a new instance)."""
    d = instance.__dict__
    loaded = d.get(_SNAPSHOT)
    if loaded is None or len(loaded) != len(rule.fields):
        return None
    fetched = d.get(_FETCHED, {})
    return {
        a: fetched.get(a, MISSING) if v is MISSING else v
        for a, v in zip(rule.fields, loaded, strict=True)
    }


def written_tags(instance: models.Model, rule: ModelRule, update_fields: Any = None) -> set[str]:
    """The tags of a row written from ``instance``: its values now, and as loaded; the values
    now become the loaded ones."""
    tags = set(rule.constant)
    if not rule.fields:
        return tags
    now = _values(instance, rule)
    tags |= rule.tags(now)
    before = _loaded(instance, rule)
    if before is not None and before != now:
        tags |= rule.tags(before)
    if update_fields is not None and before is not None:
        saved = {rule.names.get(name, name) for name in update_fields}
        now = {a: now[a] if a in saved else before[a] for a in rule.fields}
    d = instance.__dict__
    d.pop(_FETCHED, None)
    d[_SNAPSHOT] = tuple(now[a] for a in rule.fields)
    return tags


def _post_save(
    sender: type[models.Model],
    instance: models.Model,
    using: str,
    update_fields: Any = None,
    **kwargs: Any,
) -> None:
    rule = coverage().rule(sender)
    if rule is not None:
        invalidate_on_commit(written_tags(instance, rule, update_fields), using=using)


def _post_delete(
    sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any
) -> None:
    rule = coverage().rule(sender)
    if rule is not None:
        invalidate_on_commit(written_tags(instance, rule), using=using)


def _m2m_changed(
    sender: type[models.Model],
    instance: models.Model,
    action: str,
    reverse: bool,
    model: type[models.Model],
    pk_set: set[Any] | None,
    using: str,
    **kwargs: Any,
) -> None:
    found = coverage()
    through = found.throughs.get(sender)
    if through is None or action not in ("post_add", "post_remove", "pre_clear", "post_clear"):
        return
    other = found.rule(model)
    if action == "pre_clear":
        if other is not None and other.fields:
            mine, theirs = through.columns(reverse)
            rows = sender._base_manager.using(using).filter(**{mine: instance.pk})
            instance.__dict__[_CLEARING] = set(rows.values_list(theirs, flat=True))
        return
    if action == "post_clear":
        pk_set = instance.__dict__.pop(_CLEARING, None)
    tags = {through.tag}
    for rule in (found.rule(sender), found.rule(type(instance))):
        if rule is not None:
            tags |= rule.constant
    own = found.rule(type(instance))
    if own is not None:
        tags |= own.tags(_values(instance, own))
    if other is not None:
        tags |= other.constant | _tags_of_pks(other, model, pk_set or (), using)
    invalidate_on_commit(tags, using=using)


def _tags_of_pks(
    rule: ModelRule, model: type[models.Model], pks: Iterable[Any], using: str
) -> set[str]:
    pks = list(pks)
    if not rule.fields or not pks:
        return set()
    pk = model._meta.pk.attname
    if rule.only_pk(model):
        rows: Iterable[dict[str, Any]] = ({pk: value} for value in pks)
    else:
        rows = model._base_manager.using(using).filter(pk__in=pks).values(pk, *rule.fields)
    tags: set[str] = set()
    for row in rows:
        tags |= rule.tags(row)
    return tags


# -- after the commit -----------------------------------------------------------------------------
class _Batch:
    """The tags recorded in one outermost transaction of one connection, by savepoint."""

    __slots__ = ("__weakref__", "connection", "done", "last", "markers", "scopes")

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.done = False
        # held weakly: Django holds the markers it will run, and forgets those of a savepoint
        # rolled back, so a marker still alive at commit time is one that survived
        self.markers: dict[frozenset[Any], weakref.ref[_Marker]] = {}
        self.last: _Marker | None = None
        self.scopes: list[Uncommitted] = []

    def marker(self, key: frozenset[Any]) -> _Marker | None:
        """The marker of savepoint set ``key`` if Django still holds it."""
        ref = self.markers.get(key)
        marker = ref() if ref is not None else None
        if marker is not None and marker.held(self.connection):
            return marker
        return None

    def still_open(self) -> bool:
        """Whether this transaction is still running with something recorded in it."""
        if self.done:
            return False
        if self.last is not None and self.last.held(self.connection):
            return True
        live = [m for ref in self.markers.values() if (m := ref()) is not None]
        return any(m.held(self.connection) for m in live)

    def record(self, tags: set[str]) -> None:
        connection = self.connection
        key = frozenset(connection.savepoint_ids)
        marker = self.marker(key)
        if marker is None:
            marker = _Marker(self)
            self.markers[key] = weakref.ref(marker)
            connection.on_commit(marker, robust=True)
            marker.index = len(connection.run_on_commit) - 1
        marker.tags |= tags
        self.last = marker
        scope = uncommitted_scope()
        if not any(s is scope for s in self.scopes):
            self.scopes.append(scope)
        scope.record(self, tags, self.still_open)

    def settle(self) -> None:
        """The transaction ended: nothing more is recorded here, the cache may be filled."""
        self.done = True
        self.last = None
        for scope in self.scopes:
            scope.settle(self)
        self.scopes.clear()

    def flush(self) -> None:
        """The transaction committed: invalidate what survived, once."""
        if self.done:
            return
        self.settle()
        tags: set[str] = set()
        for ref in self.markers.values():
            marker = ref()
            if marker is not None:
                tags |= marker.tags
        _invalidate(tags)


class _Marker:
    """One ``on_commit`` callback of a batch: the tags recorded inside one set of savepoints."""

    __slots__ = ("__weakref__", "batch", "index", "tags")

    def __init__(self, batch: _Batch) -> None:
        self.batch = batch
        self.tags: set[str] = set()
        self.index = -1

    def held(self, connection: Any) -> bool:
        """Whether Django will still run this callback (it is in the connection's list)."""
        hooks = connection.run_on_commit
        if 0 <= self.index < len(hooks) and hooks[self.index][1] is self:
            return True
        for i, (_, func, _) in enumerate(hooks):
            if func is self:
                self.index = i
                return True
        return False

    def __call__(self) -> None:
        try:
            self.batch.flush()
        except Exception:  # an on_commit callback must not break the code that committed
            log.exception("redkit: invalidating after a commit failed")


def invalidate_on_commit(tags: Iterable[str], using: str | None = None) -> None:
    """Invalidate ``tags`` once the transaction of database ``using`` (default: ``"default"``)
    commits, with the other tags of that transaction; at once outside a transaction. Nothing is
    invalidated if it rolls back. For writes that send no model signal (raw SQL)."""
    tags = {tags} if isinstance(tags, str) else set(tags)
    if not tags:
        return
    connection = connections[using or "default"]
    if not connection.in_atomic_block:
        _invalidate(tags)  # autocommit: the write is committed already
        return
    batch: _Batch | None = getattr(connection, _BATCH, None)
    if batch is None or batch.done or not batch.still_open():
        if batch is not None:
            batch.settle()  # it rolled back: its scopes forget it
        batch = _Batch(connection)
        setattr(connection, _BATCH, batch)
    batch.record(tags)


def _invalidate(tags: set[str]) -> None:
    if not tags:
        return
    from .conf import get_kit

    try:
        get_kit().cache.invalidate(sorted(tags))
    except Exception as exc:  # the commit stands: report, never break the request
        log.error("redkit: invalidating %s after a commit failed: %s", sorted(tags), exc)
