"""``module:attribute`` targets: import the module, find the queue (or worker) it names, and say
in one line what is wrong when it is not one."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from ._options import UsageError, WorkerOptions, _one_line, refuse_memory


def make_worker(queue: Any, options: WorkerOptions, subject: str) -> Any:
    """``queue.worker()`` with the command's options; a queue on memory:// is refused."""
    try:
        worker = queue.worker(**options.worker_options())
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    refuse_memory(worker.settings, subject)
    return worker


def _where(filename: str | None, lineno: int | None) -> str:
    if not filename:
        return "unknown file"
    shown = filename
    if os.path.isabs(filename) and filename.startswith(os.getcwd() + os.sep):
        shown = os.path.relpath(filename)
    return f"{shown}, line {lineno}" if lineno else shown


def _location(exc: BaseException) -> str:
    """`` (file, line N)`` of the innermost frame of ``exc`` in a file (not importlib's)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    return f" ({_where(frames[-1].filename, frames[-1].lineno)})" if frames else ""


def _describe(exc: BaseException) -> str:
    """``Type: message (file, line N)``, the line being where it was raised."""
    message = _one_line(str(exc))
    return f"{type(exc).__name__}{': ' + message if message else ''}{_location(exc)}"


def _import(module_name: str) -> Any:
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except SyntaxError as exc:
        raise UsageError(
            f"cannot import {module_name!r}: syntax error in {_where(exc.filename, exc.lineno)}: "
            f"{exc.msg}"
        ) from None
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(f"{missing}."):
            raise UsageError(
                f"cannot import {module_name!r}: no module named {missing!r} (run the command "
                "where the module is, or add its directory to PYTHONPATH)"
            ) from None
        raise UsageError(
            f"{module_name!r} was found but its own import failed: it imports {missing!r}, and "
            f"there is no module named {missing!r}{_location(exc)}; is it installed?"
        ) from None
    except Exception as exc:
        raise UsageError(f"importing {module_name!r} failed: {_describe(exc)}") from None


def _not_a_task(target: str, module: Any, obj: Any) -> None:
    """A task names its queue: refuse it, saying which one to name instead."""
    from ..queue import AsyncTask, Task

    if isinstance(obj, (Task, AsyncTask)):
        queue = obj.queue
        holders = [name for name, value in vars(module).items() if value is queue]
        like = f"{module.__name__}:{holders[0]}" if holders else "module:attribute"
        raise UsageError(
            f"{target} is a task of queue {queue.name!r}, not a queue: name its queue, like {like}"
        )
    if isinstance(getattr(obj, "queue_name", None), str) and hasattr(obj, "enqueue"):
        raise UsageError(
            f"{target} is a task of a framework extension (queue {obj.queue_name!r}): run the "
            f"framework's worker command, like: flask --app APP redkit worker {obj.queue_name}"
        )


def load_queue(target: str) -> Any:
    """``module:attribute`` -> the Queue (or Worker) it names; a callable is called first.
    Raises :class:`UsageError` with one line saying what is wrong."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected module:attribute (like myapp.jobs:queue), got {target!r}")
    module = _import(module_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"{module_name!r} has no attribute {attr!r}") from None
    from ..queue import AsyncQueue, Queue, Worker

    kinds = (Queue, AsyncQueue, Worker)
    _not_a_task(target, module, obj)
    if callable(obj) and not isinstance(obj, kinds):
        try:
            obj = obj()
        except Exception as exc:
            raise UsageError(f"calling {target}() failed: {_describe(exc)}") from None
        _not_a_task(target, module, obj)
    if not isinstance(obj, kinds):
        raise UsageError(
            f"{target} is not a redkit queue or worker (it is of type {type(obj).__name__}): "
            'name a queue, like myapp.jobs:queue where queue = kit.queue("emails")'
        )
    return obj


def _workers(targets: Sequence[str], options: WorkerOptions) -> list[Any]:
    from ..queue import Worker

    out = []
    for target in targets:
        obj = load_queue(target)
        if isinstance(obj, Worker):
            refuse_memory(obj.settings, f"the worker {target}")
            out.append(obj)
        else:
            out.append(make_worker(obj, options, f"queue {obj.name!r} of {target}"))
    return out
