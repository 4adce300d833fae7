"""Start worker processes of :mod:`queue_apps.jobs` and look at what they did.

A :class:`Harness` owns one key prefix, one client (for the test's own reads and adds) and every
process it started; :meth:`Harness.cleanup` kills whatever is left (children of a supervisor too,
frozen ones included) and deletes the prefix's keys, whatever state the test ended in.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import redkit
from redkit.errors import RedkitError
from tests.conftest import REDIS_URL, new_prefix

APPS_PATH = str(Path(__file__).resolve().parent.parent)  # tests/reliability
TARGET = "queue_apps.jobs:queue"


def settings_url(base: str, **settings: Any) -> str:
    """``base`` with ``settings`` added to its query (``?prefix=...&queue_lock_ttl=1``)."""
    query = "&".join(f"{k}={v}" for k, v in settings.items())
    at = base.rfind("@")
    return f"{base}{'&' if '?' in base[at + 1 :] else '?'}{query}"


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name is in parentheses and may hold spaces: fields follow the last ')'
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            out.append(int(entry))
    return out


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def wait_for(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    *,
    every: float = 0.02,
    log: Callable[[], str] | None = None,
) -> Any:
    """Poll ``check`` until it returns something true (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = f"\n--- log ---\n{log()[-6000:]}" if log else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{tail}")
        time.sleep(every)


class Proc:
    """One process started by the harness, its output going to a log file."""

    def __init__(self, popen: subprocess.Popen[bytes], log_path: Path, log_file: IO[bytes]):
        self.popen = popen
        self.pid = popen.pid
        self.log_path = log_path
        self._log_file = log_file

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.pid, sig)

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float) -> int:
        """The exit code; fails the test (with the log) when the process is still running."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"process {self.pid} still running after {timeout}s\n--- log ---\n"
                f"{self.log()[-6000:]}"
            ) from None

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(10)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._log_file.close()


class Harness:
    """One test's queue: its prefix, settings, client, processes and run records."""

    def __init__(
        self,
        tmp_path: Path,
        base_url: str = REDIS_URL,
        queue: str = "jobs",
        env: dict[str, str] | None = None,
        **settings: Any,
    ) -> None:
        self.tmp_path = tmp_path
        self.extra_env = env or {}
        self.prefix = new_prefix()
        self.queue_name = queue
        self.url = settings_url(base_url, prefix=self.prefix, **settings)
        self.kit = redkit.Redkit.from_url(self.url)
        self.queue = self.kit.queue(queue)
        self.client = self.kit.client
        self.procs: list[Proc] = []
        self._count = 0

    # -- processes ------------------------------------------------------------------------------
    def env(self, queue: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDKIT_")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (APPS_PATH, env.get("PYTHONPATH", "")) if p)
        env["RKQ_URL"] = self.url
        env["RKQ_QUEUE"] = queue or self.queue_name
        env.update(self.extra_env)
        env.pop("PYTHONFAULTHANDLER", None)
        return env

    def start(self, *argv: str, queue: str | None = None) -> Proc:
        """Start ``python <argv>`` (its own session, output to a log file); ``queue``: the
        queue of ``queue_apps.jobs`` when not the harness' own."""
        self._count += 1
        log_path = self.tmp_path / f"proc-{self._count}.log"
        log_file = open(log_path, "wb")  # noqa: SIM115 - closed by cleanup()
        popen = subprocess.Popen(
            [sys.executable, *argv],
            env=self.env(queue),
            cwd=self.tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc = Proc(popen, log_path, log_file)
        self.procs.append(proc)
        return proc

    def worker(self, *options: str, queue: str | None = None) -> Proc:
        """``python -m redkit worker queue_apps.jobs:queue <options>`` (of ``queue`` when not
        the harness' own)."""
        return self.start(
            "-m", "redkit", "worker", TARGET, "--log-level", "INFO", *options, queue=queue
        )

    def worker_pids(self) -> dict[int, str]:
        """pid -> worker id of the workers registered on the queue (heartbeats in Redis)."""
        out = {}
        for wid, _seen in self.queue.workers():
            out[int(wid.rsplit(":", 2)[1])] = wid
        return out

    def serving_children(self, pid: int) -> set[int]:
        """Live children of process ``pid`` that registered as workers of the queue."""
        return {p for p in children_of(pid) if alive(p)} & set(self.worker_pids())

    def wait_serving(self, proc: Proc, timeout: float = 30) -> str:
        """Wait until the worker process ``proc`` registered itself; its worker id."""
        pids = wait_for(
            lambda: self.worker_pids() if proc.pid in self.worker_pids() else None,
            timeout,
            f"worker process {proc.pid} to serve",
            log=proc.log,
        )
        return str(pids[proc.pid])

    # -- jobs and records -----------------------------------------------------------------------
    def add_records(
        self, indexes: range | list[int], sleep: float = 0.0, *, task: str = "record"
    ) -> list[str]:
        """Add one job per index (job id ``job-<index>``), in one bulk call per 1,000."""
        self.queue.add_bulk(
            [
                {"name": task, "data": {"args": [i, sleep], "kwargs": {}}, "job_id": f"job-{i}"}
                for i in indexes
            ]
        )
        return [f"job-{i}" for i in indexes]

    def entries(self, which: str) -> list[tuple[int, int]]:
        """``(index, pid)`` of each run recorded in ``starts`` or ``ends``, in order."""
        raw = self.client.lrange(self.kit.keyspace.key(which), 0, -1)
        out = []
        for item in raw:
            index, pid = item.decode().split(":")
            out.append((int(index), int(pid)))
        return out

    def run_counts(self, which: str = "ends") -> Counter[int]:
        return Counter(index for index, _ in self.entries(which))

    def recorded(self, which: str = "ends") -> int:
        return int(self.client.llen(self.kit.keyspace.key(which)))

    def state(self, job_id: str) -> str | None:
        """The job's state now (None: no such job)."""
        job = self.queue.get_job(job_id)
        return None if job is None else job.state

    def active_ids(self) -> list[str]:
        return self.queue.jobs("active", 0, -1)

    def token(self, job_id: str) -> str | None:
        raw = self.client.hget(self.queue._core.job_key(job_id), "tok")
        return None if raw is None else raw.decode()

    def redis_ms(self) -> int:
        seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def lock_expired(self, job_id: str) -> bool:
        score = self.client.zscore(self.queue._core.active, job_id)
        return score is not None and score < self.redis_ms()

    # -- teardown -------------------------------------------------------------------------------
    def own_pids(self) -> list[int]:
        """Every live process started for this harness (orphaned supervisor children too):
        those whose environment holds this harness' ``RKQ_URL``."""
        mark = f"\0RKQ_URL={self.url}\0".encode()
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    environ = b"\0" + f.read()
            except OSError:
                continue
            if mark in environ:
                out.append(int(entry))
        return out

    def cleanup(self) -> None:
        pids = {p.pid for p in self.procs if p.popen.poll() is None}
        for proc in self.procs:
            pids.update(children_of(proc.pid))
        pids.update(self.own_pids())
        for pid in pids:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(10)
            proc.close()
        with contextlib.suppress(RedkitError):
            self.kit.clear()
        self.kit.close()
