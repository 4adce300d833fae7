"""Rules: which cache tags a mapped object, or an ORM bulk statement on a table, carries."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import inspect

Rule = Callable[[Any], Iterable[str]] | Iterable[str]
"""A model's tags: a function of the object, or templates such as ``"user:{id}"`` filled from
its attributes. An object whose columns changed gets the tags of its old values too."""


class _Attributes(dict[str, Any]):
    """A template's fields: the object's attributes, read when a template names them."""

    def __init__(self, obj: Any) -> None:
        super().__init__()
        self.obj = obj

    def __missing__(self, name: str) -> Any:
        return getattr(self.obj, name)


class _Before:
    """An object as it was before this flush: changed columns read their old values."""

    def __init__(self, obj: Any, previous: Mapping[str, Any]) -> None:
        self.__dict__["_obj"] = obj
        self.__dict__["_previous"] = previous

    def __getattr__(self, name: str) -> Any:
        previous = self.__dict__["_previous"]
        if name in previous:
            return previous[name]
        return getattr(self.__dict__["_obj"], name)


def _previous_values(obj: Any) -> dict[str, Any]:
    """The old values of the columns this flush changes."""
    state = inspect(obj)
    out: dict[str, Any] = {}
    for attr in state.mapper.column_attrs:
        history = state.attrs[attr.key].history
        if history.deleted and history.deleted[0] is not None:
            out[attr.key] = history.deleted[0]
    return out


class Rules:
    """The checked ``rules`` and ``tables`` of one binding."""

    def __init__(self, rules: Mapping[type, Rule], tables: Mapping[Any, Iterable[str]]) -> None:
        self.models: dict[type, Callable[[Any], Iterable[str]]] = {}
        for model, rule in rules.items():
            if not isinstance(model, type):
                raise TypeError(f"rules are keyed by mapped classes, not {model!r}")
            self.models[model] = rule if callable(rule) else _templates(model, rule)
        self.tables: dict[str, set[str]] = {}
        for model, rule in self.models.items():
            constant = getattr(rule, "constant", None)
            name = _table_name(model)
            if constant and name:
                self.tables.setdefault(name, set()).update(constant)
        for key, tags in tables.items():
            name = key if isinstance(key, str) else _table_name(key)
            if not name:
                raise TypeError(f"tables are keyed by table names or mapped classes, not {key!r}")
            if isinstance(tags, str):
                raise TypeError(f"the tags of table {name!r} are a list of tags, not a string")
            self.tables.setdefault(name, set()).update(tags)

    def tags_of(self, obj: Any) -> set[str]:
        """The tags of an object (the rule of its class, or of a base class); for an object
        whose columns changed, its tags before the change as well."""
        for cls in type(obj).__mro__:
            rule = self.models.get(cls)
            if rule is not None:
                tags = {str(tag) for tag in rule(obj)}
                previous = _previous_values(obj)
                if previous:
                    tags |= {str(tag) for tag in rule(_Before(obj, previous))}
                return tags
        return set()

    def table_tags(self, table: Any) -> set[str]:
        """The tags of an ORM ``update()``/``delete()`` statement on ``table``."""
        return self.tables.get(getattr(table, "name", ""), set())


def _table_name(model: Any) -> str | None:
    table = getattr(model, "__table__", None)
    name = getattr(table, "name", None)
    return name if isinstance(name, str) else None


def _templates(model: type, templates: Iterable[str]) -> Callable[[Any], Iterable[str]]:
    if isinstance(templates, str):
        raise TypeError(f"the tags of {model.__name__} are a list of tags, not a string")
    items = [str(t) for t in templates]

    def tags(obj: Any) -> Iterable[str]:
        return {t.format_map(_Attributes(obj)) for t in items}

    tags.constant = [t for t in items if "{" not in t]  # type: ignore[attr-defined]
    return tags
