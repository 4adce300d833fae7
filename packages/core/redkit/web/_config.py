"""What the framework adapters share in reading their configuration (no I/O)."""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping

from ..errors import ConfigurationError

__all__ = ["url_from_environment"]

log = logging.getLogger("redkit")


def url_from_environment(
    setting: str,
    worker: str,
    environ: Mapping[str, str] | None = None,
    logger: logging.Logger | None = None,
) -> str | None:
    """The Redis URL of an application that configured none: ``$REDKIT_URL`` when it is set,
    else ``None``: the embedded ``memory://`` store, after a warning naming ``setting`` (where
    the URL goes) and ``worker`` (the command that would not share that store), on ``logger``
    (the adapter's). Raises
    :class:`~redkit.errors.ConfigurationError` when the embedded store is not installed."""
    url = (os.environ if environ is None else environ).get("REDKIT_URL")
    if url:
        return url
    if importlib.util.find_spec("fakeredis") is None:
        raise ConfigurationError(
            f"no {setting} configured: set {setting} (like redis://127.0.0.1:6379/0); the "
            "in-process memory:// store needs pip install 'redkit[memory]'"
        )
    (logger or log).warning(
        "redkit: no %s configured, using memory:// - a store inside this process only: server "
        "workers and `%s` will not share it. Set %s (like redis://127.0.0.1:6379/0).",
        setting,
        worker,
        setting,
    )
    return None
