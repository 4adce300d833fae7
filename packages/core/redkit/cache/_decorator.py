"""Key and tag derivation for ``@cache.cached`` (pure, shared by the sync and async caches).

By default the key is ``<module>.<qualname>:<hash of the arguments>``, the arguments bound to the
signature (so ``f(1)`` and ``f(x=1)`` share an entry) and encoded as canonical JSON. A ``self`` or
``cls`` first parameter is left out. A template such as ``"user:{user_id}"`` is filled from the
bound arguments instead; tags may be templates too, or a callable receiving the bound arguments.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._checks import shown
from ..errors import InvalidKeyError
from ..serializers import find_unserializable
from ._inputs import tags as check_tags

__all__ = ["KeyBuilder"]

KeySpec = str | Callable[..., str] | None
TagSpec = Iterable[str] | Callable[..., Iterable[str]] | None


def _fields(template: str, where: str) -> set[str]:
    names = set()
    try:
        for _, name, _, _ in string.Formatter().parse(template):
            if name is not None:
                names.add(name.split(".")[0].split("[")[0])
    except ValueError as exc:  # a lone brace
        raise InvalidKeyError(
            f"template {shown(template)} of {where} is not a valid template ({exc}); "
            "write a literal brace as '{{' or '}}'"
        ) from None
    return names


def _fill(template: str, arguments: Mapping[str, Any], where: str) -> str:
    try:
        return template.format(**arguments)
    except (AttributeError, LookupError, TypeError, ValueError) as exc:
        # ValueError also for an int argument too long to print
        raise InvalidKeyError(
            f"template {shown(template)} of {where} cannot be filled from the arguments "
            f"({type(exc).__name__}: {exc})"
        ) from None


class KeyBuilder:
    """Builds the cache key and tags of one decorated function's call."""

    def __init__(self, func: Callable[..., Any], key: KeySpec, tags: TagSpec) -> None:
        self.func = func
        self.signature = inspect.signature(func)
        self.key = key
        # a list of tags is checked here, as cache.set checks it, and each template's syntax too:
        # a bad tag fails where it is written; what a template is filled with, at each call
        self.tags = tags if tags is None or callable(tags) else check_tags(tags)
        params = list(self.signature.parameters)
        self._skip = params[0] if params and params[0] in ("self", "cls") else None
        self.name = f"{func.__module__}.{func.__qualname__}"
        for spec in (key, *(self.tags if isinstance(self.tags, tuple) else ())):
            if isinstance(spec, str):
                unknown = _fields(spec, self.name) - set(params)
                if unknown:
                    raise InvalidKeyError(
                        f"template {shown(spec)} of {self.name} names {sorted(unknown)}, which "
                        f"are not parameters of the function ({', '.join(params)})"
                    )

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Arguments by parameter name, defaults applied."""
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def key_for(self, arguments: dict[str, Any]) -> str:
        """The cache key of a call."""
        if isinstance(self.key, str):
            return _fill(self.key, arguments, self.name)
        if callable(self.key):
            return str(self.key(**arguments))
        data = {k: v for k, v in arguments.items() if k != self._skip}
        try:
            blob = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            where = find_unserializable(data, "arguments") or "the arguments"
            raise InvalidKeyError(
                f"cannot derive a cache key for {self.name}: {where}; "
                "pass key= (a template like 'user:{user_id}' or a callable)"
            ) from None
        return f"{self.name}:{hashlib.sha256(blob.encode()).hexdigest()[:32]}"

    def tags_for(self, arguments: dict[str, Any]) -> list[str]:
        """The tags of a call."""
        if self.tags is None:
            return []
        if callable(self.tags):
            return list(check_tags(self.tags(**arguments)))
        return [_fill(t, arguments, self.name) for t in self.tags]
