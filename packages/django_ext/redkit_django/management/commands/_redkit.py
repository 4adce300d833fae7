"""What the job-queue commands share: the project's client (memory:// refused), and redkit's
usage errors (exit status 2) and Redis' errors (exit status 1) as ``CommandError``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.management.base import CommandError

from redkit import cli
from redkit.errors import RedkitError

from ...conf import get_kit


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(...)``: a usage mistake exits with status 2, an error of Redis' with status 1, each
    as one line."""
    try:
        return fn(*args, **kwargs)
    except cli.UsageError as exc:
        raise CommandError(" ".join(str(exc).split()), returncode=2) from None
    except RedkitError as exc:
        raise CommandError(f"redkit: {' '.join(str(exc).split())}", returncode=1) from None


def project_kit() -> Any:
    """The project's client; memory:// is refused (no other process sees its store)."""
    kit = get_kit()
    call(cli.refuse_memory, kit.settings, 'settings.REDKIT["URL"]')
    return kit
