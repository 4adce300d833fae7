"""Invalidation rules: which cache tags a model's rows carry.

A rule is a list of templates over a model's fields (``"order:{id}"``, ``"user:{user_id}"``);
every covered model also carries the tag of its table, ``table:<db_table>``. Rules come from
``REDKIT["INVALIDATE"]`` and from :func:`redkit_django.invalidates` on a model class, and apply
to the model's subclasses (proxies, multi-table children) too. They are checked when Django
starts: a template naming no field of its model, a bad template or an unknown model is an error.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db import models

__all__ = ["MISSING", "Coverage", "ModelRule", "Through", "build", "declared", "table_tag"]

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
"""A field's value that is not loaded on an instance (deferred)."""

declared: dict[type[models.Model], list[str]] = {}
"""Templates given by ``@invalidates`` on model classes, in the order declared."""

_formatter = string.Formatter()


def table_tag(model: type[models.Model]) -> str:
    """The tag that every write to ``model``'s table invalidates: ``table:<db_table>``."""
    return f"table:{model._meta.db_table}"


class Template:
    """One tag template: its text, and the attribute each of its placeholders reads."""

    __slots__ = ("attnames", "placeholders", "text")

    def __init__(self, text: str, placeholders: Sequence[tuple[str, str]]) -> None:
        self.text = text
        self.placeholders = tuple(placeholders)  # (placeholder, attname)
        self.attnames = tuple(dict.fromkeys(a for _, a in placeholders))

    def render(self, values: Mapping[str, Any]) -> str | None:
        """The tag for a row with ``values`` (by attname); None when a value is NULL or unknown,
        or the tag would be empty."""
        fields: dict[str, Any] = {}
        for placeholder, attname in self.placeholders:
            value = values.get(attname, MISSING)
            if value is None or value is MISSING:
                return None
            fields[placeholder] = value
        return self.text.format_map(fields) or None  # "{name}" of an empty name: no tag


class ModelRule:
    """What a write of one model class invalidates: constant tags (its tables' and the
    templates without a field) and the templates filled from the row."""

    __slots__ = ("constant", "fields", "names", "templates")

    def __init__(self, constant: Iterable[str], templates: Iterable[Template]) -> None:
        self.constant = frozenset(constant)
        self.templates = tuple(templates)
        self.fields = tuple(dict.fromkeys(a for t in self.templates for a in t.attnames))
        self.names: dict[str, str] = {}  # field name or attname -> attname, for update_fields

    def tags(self, values: Mapping[str, Any]) -> set[str]:
        """The row's tags (without the constant ones)."""
        out = set()
        for template in self.templates:
            tag = template.render(values)
            if tag is not None:
                out.add(tag)
        return out

    def only_pk(self, model: type[models.Model]) -> bool:
        """Whether the templates read nothing but the primary key."""
        return set(self.fields) <= {model._meta.pk.attname}


class Through:
    """A many-to-many relation whose changes (``m2m_changed``) invalidate: its table's tag and
    the tags of the rows on each side that a rule covers."""

    __slots__ = ("field", "tag")

    def __init__(self, field: models.ManyToManyField[Any, Any], tag: str) -> None:
        self.field = field
        self.tag = tag

    def columns(self, reverse: bool) -> tuple[str, str]:
        """The through model's columns pointing at the changed instance and at the others."""
        through = self.field.remote_field.through
        source = through._meta.get_field(self.field.m2m_field_name()).attname
        target = through._meta.get_field(self.field.m2m_reverse_field_name()).attname
        return (target, source) if reverse else (source, target)


class Coverage:
    """Every rule in force: by model class (subclasses resolved), and the relations to watch."""

    def __init__(self, models_: dict[type, ModelRule], throughs: dict[type, Through]) -> None:
        self.models = models_
        self.throughs = throughs

    def rule(self, model: type) -> ModelRule | None:
        return self.models.get(model)


def _parse(model: type[models.Model], text: object, errors: list[str]) -> Template | None:
    where = f"{model._meta.label}: tag template {text!r}"
    if not isinstance(text, str) or not text:
        errors.append(f"{model._meta.label}: a tag template is a non-empty string, not {text!r}")
        return None
    try:
        text.encode("utf-8")
        parts = list(_formatter.parse(text))
    except (ValueError, UnicodeEncodeError) as exc:
        errors.append(f"{where} is not a valid template ({exc})")
        return None
    placeholders: list[tuple[str, str]] = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if spec or conversion:
            errors.append(f"{where}: write {{{name}}} without a conversion or format")
            return None
        attname = _attname(model, name, errors, where)
        if attname is None:
            return None
        placeholders.append((name, attname))
    return Template(text, placeholders)


def _attname(model: type[models.Model], name: str, errors: list[str], where: str) -> str | None:
    """The attribute a placeholder reads: a concrete field's name or attname, or ``pk``."""
    opts = model._meta
    if name == "pk":
        return str(opts.pk.attname)
    if not name.isidentifier():
        errors.append(f"{where}: {{{name}}} is not a field name")
        return None
    for field in opts.concrete_fields:
        if field.attname == name:
            return str(field.attname)
    try:
        field = opts.get_field(name)
    except FieldDoesNotExist:
        errors.append(f"{where}: {opts.label} has no field {name!r}")
        return None
    if getattr(field, "concrete", False) and field.attname != name:
        errors.append(f"{where}: {{{name}}} names a relation: use {{{field.attname}}}")
    else:
        errors.append(f"{where}: {{{name}}} is not a column of {opts.label}")
    return None


def _templates_of(label: str, value: object, errors: list[str]) -> list[str] | None:
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        errors.append(f'REDKIT["INVALIDATE"][{label!r}] is a list of tag templates, not {value!r}')
        return None
    return list(value)


def _settings_rules(raw: object, errors: list[str]) -> dict[type[models.Model], list[str]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        errors.append(f'REDKIT["INVALIDATE"] maps "app_label.Model" to tag templates, not {raw!r}')
        return {}
    out: dict[type[models.Model], list[str]] = {}
    for label, value in raw.items():
        if not isinstance(label, str):
            errors.append(f'REDKIT["INVALIDATE"] is keyed by "app_label.Model", not {label!r}')
            continue
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            errors.append(f'REDKIT["INVALIDATE"]: no installed model {label!r}')
            continue
        templates = _templates_of(label, value, errors)
        if templates is not None:
            out.setdefault(model, []).extend(templates)
    return out


def build(raw: object) -> tuple[Coverage, list[str]]:
    """The rules of ``REDKIT["INVALIDATE"]`` (``raw``) and of ``@invalidates``, and the
    problems found (an empty list when every rule is sound)."""
    errors: list[str] = []
    given: dict[type[models.Model], list[str]] = {}
    for model, texts in declared.items():
        if model._meta.abstract or not apps.is_installed(model._meta.app_config.name):
            continue
        given.setdefault(model, []).extend(texts)
    for model, texts in _settings_rules(raw, errors).items():
        given.setdefault(model, []).extend(texts)
    parsed: dict[type, list[Template | str]] = {}
    for model, texts in given.items():
        items: list[Template | str] = []
        for text in texts:
            template = _parse(model, text, errors)
            if template is not None:
                items.append(template if template.placeholders else template.text)
        parsed[model] = items
    covered: dict[type, ModelRule] = {}
    for model in apps.get_models():
        if not any(cls in parsed for cls in model.__mro__):
            continue
        constant: set[str] = set()
        filled: list[Template] = []
        for cls in model.__mro__:
            for item in parsed.get(cls, ()):
                if isinstance(item, str):
                    constant.add(item)
                else:
                    filled.append(item)
            meta = getattr(cls, "_meta", None)
            if meta is not None and not meta.abstract and not meta.proxy:
                constant.add(table_tag(cls))
        rule = covered[model] = ModelRule(constant, filled)
        for field in model._meta.concrete_fields:
            if field.attname in rule.fields:
                rule.names[field.name] = rule.names[field.attname] = field.attname
    throughs: dict[type, Through] = {}
    for model in apps.get_models():
        for field in model._meta.local_many_to_many:
            through = field.remote_field.through
            if not isinstance(through, type):
                continue
            if {model, field.related_model, through} & covered.keys():
                throughs[through] = Through(field, table_tag(through))
    return Coverage(covered, throughs), errors
