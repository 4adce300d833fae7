"""Job-queue benchmark: redkit's queue against RQ, arq, SAQ, Dramatiq, Huey, Celery (Redis broker)
and bullmq (Python), on the same Redis, with no-op jobs.

Run ``python bench/queue/run.py`` from a Python where redkit and the peers are installed. The
peers are not redkit's dependencies: install them into a virtual environment of their own, and
arq (which pins redis-py < 6 while bullmq and Celery need >= 6) into another one::

    python -m venv ../benchenv
    ../benchenv/bin/pip install -e . rq saq "dramatiq[redis]" huey "celery[redis]" bullmq \\
        redis hiredis orjson py-spy
    python -m venv ../benchenv-arq
    ../benchenv-arq/bin/pip install arq hiredis orjson
    ../benchenv/bin/python bench/queue/run.py

A peer that is not installed, or that fails, is reported as such and the run goes on. arq runs
from ``../benchenv-arq`` when it exists (``--python arq=PATH`` to choose). The benchmark owns a
whole Redis database (``--url``, default ``redis://127.0.0.1:6379/9``): it empties it with
``FLUSHDB`` between runs, refuses database 15 (the tests') and refuses a database that holds keys
it did not write.

Every contender runs in processes of its own (``agent.py``, with one ``lib_<name>.py`` per
library). A job's body is the same everywhere: one ``INCR`` of a counter key, from a module-level
redis-py client (asyncio for the asyncio libraries). Logging is at WARNING for every library, so
no per-job log line is written.

Per library:

* enqueue, one process: ``--warm`` adds, then ``--n`` adds one call at a time in a loop
  (single), and, after emptying the database, ``--n`` adds in one call of the library's bulk API
  where it has one (redkit ``q.add_bulk``, RQ ``enqueue_many``, bullmq ``addBulk``; arq, SAQ,
  Dramatiq, Huey and Celery have none). The input list of a bulk call is built before the clock
  starts.
* processing, ONE worker process (the row says when the library's worker forks children):
  the queue holds the jobs before the worker starts; the rate is measured from the first job the
  worker runs to the last one (the counter is polled every 2 ms), so start-up is left out (and
  shown apart). Every run checks, after the worker stopped, that the counter equals the number
  of jobs: each job ran exactly once. ``default`` is the library's default settings (its worker
  command's, in one process), on the ``--n`` jobs of the single-add run; ``sweep`` rows try a few
  concurrencies (``SWEEP`` in each ``lib_<name>.py``) on ``--sweep-n`` jobs each; ``best``
  re-runs the sweep's fastest on the ``--n`` jobs of the bulk run. A setting known to run at a
  few hundred jobs/s or less (RQ's fork per job, arq's polling at low ``max_jobs``, Celery's
  prefork, Dramatiq with one thread) gets fewer jobs, as its ``n`` says, to keep the whole run
  within about ten minutes. A run without progress for ``--timeout`` seconds is abandoned and
  noted, with the worker's most frequent error. redkit also runs a sync task (on the worker's
  thread pool).
* memory: the exact ``MEMORY USAGE`` of every key of the database, by kind of key, before and
  after the single adds (per waiting job) and after the default run (what the library keeps of
  completed jobs), and the change in Redis' ``used_memory`` (server-wide: other clients of the
  same server blur it).

How to read the output: ``RTT`` is round trips, counted in the library's process on redis-py's
connections (a command, a pipeline, a script call or a blocking pop is one; the job body's
``INCR`` is left out; forked children are not counted: ``-``). ``cmds`` is Redis' own count of
commands processed (``total_commands_processed``: the commands a script runs count too), less
the body's ``INCR`` and the benchmark's polling; ``scripts`` the script calls (``EVAL``,
``EVALSHA``, ``FCALL``) among them. ``redis µs`` is Redis' CPU time per job, ``worker µs`` the
CPU time of the worker's processes per job. Per-job figures of processing are over the measured
window. ``ratio`` is redkit's rate over the peer's (above 1: redkit faster), default against
default and best against best. Redis-side counters are server-wide: other clients of the same
server add to them; the header gives the CPU that other processes used during the run.

Targets for redkit: processing at least 15,000 no-op jobs/s from one worker process; a single
add at least 85% of the rate of raw redis-py round trips (``PING``, measured in the same run,
interleaved with the adds by ``bench/harness.py``; ``INCR`` shown too), sync and async;
``add_bulk`` at least 100,000 jobs/s. These figures assume a machine where one Python process
makes 14,000 sync and 28,000 asyncio raw round trips per second; the report also gives them scaled
to the machine it ran on (processing and bulk rates as multiples of the raw PING rates measured in
the same run), and the rate of the job body alone, without any queue, at redkit's best
concurrency: no worker can run jobs faster than their bodies. ``--profile`` (on by default) also
profiles redkit's worker at its best concurrency on ``--profile-n`` jobs: py-spy's samples of the
busy threads while the jobs run, then a separate run under cProfile (figures per job), and single
adds under cProfile. ``--json`` prints the report as JSON (``--report FILE`` shows a saved one as
text); ``--check`` exits with status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # bench/, for harness

import harness  # noqa: E402
import probe  # noqa: E402
import redis  # noqa: E402
from harness import fmt  # noqa: E402

from redkit.settings import redact_url  # noqa: E402

DESCRIPTION = "Job-queue benchmark: redkit against RQ, arq, SAQ, Dramatiq, Huey, Celery, bullmq."
LIBRARIES = ("redkit", "rq", "arq", "saq", "dramatiq", "huey", "celery", "bullmq")
DEFAULT_URL = "redis://127.0.0.1:6379/9"
OWNER_KEY = "rkbench:owner"
PROCESS_TARGET = 15_000
ADD_RATIO_TARGET = 0.85
BULK_TARGET = 100_000
# The targets above are for a machine where one Python process makes 14,000 sync and 28,000
# asyncio round trips per second with redis-py. On another machine the same targets, as shares
# of that machine's own raw round-trip rates (measured in the same run):
REFERENCE_SYNC_RTT = 14_000
REFERENCE_ASYNC_RTT = 28_000
POLL = 0.002
SPY_RATE = 500


class PeerError(Exception):
    """A contender that could not run (not installed, or failed): reported, not fatal."""


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live descendants (reaped children included)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, list[str]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    stats[int(name)] = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
    children = collections.defaultdict(list)
    for p, fields in stats.items():
        children[int(fields[1])].append(p)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        fields = stats.get(p)
        if fields is None:
            continue
        total += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
        todo += children.get(p, [])
    return total


class Bench:
    """One run: the Redis database, the contenders' Pythons, and the measurements."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.url = args.url
        self.n = args.n
        self.sweep_n = args.sweep_n
        self.warm = args.warm
        self.timeout = args.timeout
        self.pythons = _pythons(args.python)
        self.r = redis.Redis.from_url(self.url)
        self.server = probe.Server(self.url)
        self.notes: list[str] = []
        self.bulk: dict[str, bool] = {}
        self.logs = tempfile.mkdtemp(prefix="rkbench-queue-")

    # -- the database --------------------------------------------------------------------------
    def claim(self) -> None:
        db = int(self.r.connection_pool.connection_kwargs.get("db", 0))
        if db == 15:
            raise SystemExit("refusing database 15 (the tests'): pass --url with another one")
        if self.r.dbsize() and not self.r.exists(OWNER_KEY):
            raise SystemExit(
                f"database {db} holds keys this benchmark did not write; it empties its database "
                "between runs: pass --url with an empty one"
            )
        self.flush()

    def flush(self) -> None:
        self.r.flushdb()
        self.r.set(OWNER_KEY, "bench/queue")

    # -- running a contender's process -----------------------------------------------------------
    def env(self, **extra: Any) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"RKBENCH_URL": self.url, "PYTHONPATH": HERE, "PYTHONUNBUFFERED": "1"})
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def agent(
        self,
        lib: str,
        action: str,
        args: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        cmd = [self.pythons.get(lib, sys.executable), os.path.join(HERE, "agent.py"), lib, action]
        cmd.append(json.dumps(args or {}))
        try:
            done = subprocess.run(
                cmd,
                cwd=HERE,
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=timeout or self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise PeerError(
                f"{lib} {action}: no answer within {timeout or self.timeout}s"
            ) from None
        for line in reversed(done.stdout.splitlines()):
            if line.startswith("RKBENCH "):
                return json.loads(line[8:])
        raise PeerError(f"{lib} {action} failed (exit {done.returncode}): {_tail(done.stderr)}")

    def enqueue(self, lib: str, mode: str, n: int, *, warm: int = 0, **extra: Any) -> Any:
        # a fixed amount of work: on a slow machine 20,000 single adds take well over a minute
        return self.agent(
            lib,
            "enqueue",
            {"n": n, "mode": mode, "warm": warm, **extra},
            timeout=max(self.timeout, 1800),
        )

    def process(
        self,
        lib: str,
        config: Mapping[str, Any],
        expected: int,
        kind: str,
        *,
        spy: str | None = None,
    ) -> dict[str, Any]:
        """Start a worker on a queue holding ``expected`` jobs, time it from the first job to the
        last, stop it, check the counter."""
        self.r.delete(probe.COUNTER_KEY, probe.MARK_KEY)
        out = os.path.join(self.logs, f"{lib}-{kind}-{time.monotonic_ns()}")
        cmd = [self.pythons.get(lib, sys.executable), os.path.join(HERE, "agent.py"), lib]
        cmd += ["worker", json.dumps(dict(config))]
        row: dict[str, Any] = {
            "library": lib,
            "kind": kind,
            "config": config["label"],
            "processes": config.get("processes", "1"),
            "n": expected,
        }
        with open(out + ".log", "w") as log:
            spawned = time.perf_counter()
            p = subprocess.Popen(
                cmd,
                cwd=HERE,
                env=self.env(RKBENCH_N=expected, RKBENCH_OUT=out + ".json"),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            sampler = None
            try:
                get, polls = self.r.get, 0
                first = end = None
                c_first = 0
                last_change, last_v = spawned, -1
                while True:
                    v = int(get(probe.COUNTER_KEY) or 0)
                    now = time.perf_counter()
                    polls += 1
                    if v and first is None:
                        first, c_first, polls = now, v, 0
                        s_first, cpu_first = self.server.stats(), _tree_cpu(p.pid)
                        if spy:
                            sampler = _start_spy(p.pid, spy)
                    if v >= expected:
                        end = now
                        s_end, cpu_end = self.server.stats(), _tree_cpu(p.pid)
                        break
                    if v != last_v:
                        last_v, last_change = v, now
                    if p.poll() is not None:
                        raise PeerError(
                            f"{lib} worker ({config['label']}) exited ({p.returncode}) after "
                            f"{v} of {expected} jobs: {_tail(_read(out + '.log'))}"
                        )
                    if now - last_change > self.timeout:
                        raise PeerError(
                            f"{lib} worker ({config['label']}): no progress for {self.timeout:g}s "
                            f"at {v} of {expected} jobs{_errors(out + '.log')}"
                        )
                    time.sleep(POLL)
                if sampler is not None:
                    sampler.send_signal(signal.SIGINT)
            finally:
                _stop(p)
                if sampler is not None:
                    try:
                        sampler.wait(30)
                    except subprocess.TimeoutExpired:
                        sampler.kill()
        final = int(self.r.get(probe.COUNTER_KEY) or 0)
        marks = {k.decode(): int(v) for k, v in self.r.hgetall(probe.MARK_KEY).items()}
        jobs = expected - c_first
        seconds = end - first
        if jobs < 1 or seconds <= 0:
            raise PeerError(f"{lib} worker ({config['label']}): too few jobs to time")
        commands = s_end["commands"] - s_first["commands"] - polls - 1 - jobs
        calls = probe.command_delta(s_first, s_end, {"get": polls, "info": 1, "incrby": jobs})
        forks = config.get("processes", "1") != "1"
        rtt = None
        if not forks and "first" in marks and "last" in marks and expected > 1:
            rtt = (marks["last"] - marks["first"]) / (expected - 1)
        row.update(
            {
                "jobs_timed": jobs,
                "seconds": round(seconds, 4),
                "rate": round(jobs / seconds, 1),
                "startup_s": round(first - spawned, 2),
                "worker_cpu_us": round((cpu_end - cpu_first) / jobs * 1e6, 1),
                "redis_cpu_us": round((s_end["cpu"] - s_first["cpu"]) / jobs * 1e6, 1),
                "commands_per_job": round(commands / jobs, 2),
                "scripts_per_job": round((s_end["scripts"] - s_first["scripts"]) / jobs, 3),
                "round_trips_per_job": None if rtt is None else round(rtt, 3),
                "calls_per_job": _per_job(calls, jobs),
                "counter": final,
                "ok": final == expected,
            }
        )
        if final != expected:
            self.notes.append(
                f"{lib} ({config['label']}): the counter is {final} after {expected} jobs"
            )
        return row

    # -- one library ---------------------------------------------------------------------------
    def library(self, lib: str, info: Mapping[str, Any]) -> dict[str, Any]:
        mod = _config(lib)
        out: dict[str, Any] = {"library": lib, "enqueue": [], "processing": [], "memory": None}
        # single adds, then the default worker on them
        self.flush()
        single = self.enqueue(lib, "single", self.n, warm=self.warm, memory=True)
        out["enqueue"].append(_enqueue_row(lib, "single", "one call per job", single))
        default, queued = mod["DEFAULT"], single["queued"]
        if default.get("n") and default["n"] < queued:  # a slow default: fewer jobs
            self.flush()
            queued = self.fill(lib, default["n"])
        self.attempt(out["processing"], lib, default, queued, "default")
        out["memory"] = _memory(single, self.server.memory(), self.n, queued)
        # the sweep
        sweep = []
        for config in mod["SWEEP"]:
            self.flush()
            queued = self.fill(lib, min(self.sweep_n, config.get("n", self.sweep_n)))
            self.attempt(sweep, lib, config, queued, "sweep")
        out["processing"] += sweep
        # bulk adds, then the sweep's fastest on them
        self.flush()
        if info.get("bulk"):
            bulk = self.enqueue(lib, "bulk", self.n, warm=min(self.warm, 100))
            out["enqueue"].append(_enqueue_row(lib, "bulk", info["bulk"], bulk))
            queued = bulk["queued"]
        else:
            queued = self.fill(lib, self.n)
        good = [s for s in sweep if s["ok"]]
        if good:
            best = max(good, key=lambda s: s["rate"])
            config = next(c for c in mod["SWEEP"] if c["label"] == best["config"])
            if config.get("n") and config["n"] < queued:  # a slow one: fewer jobs
                self.flush()
                queued = self.fill(lib, config["n"])
            self.attempt(out["processing"], lib, config, queued, "best")
        return out

    def fill(self, lib: str, n: int, **extra: Any) -> int:
        """Put ``n`` jobs in the queue, untimed: bulk when the library can."""
        mode = "bulk" if self.bulk.get(lib) else "single"
        return int(self.enqueue(lib, mode, n, **extra)["queued"])

    def attempt(self, rows: list[dict[str, Any]], *args: Any, **kwargs: Any) -> None:
        """One processing run; a failure becomes a note and the run goes on."""
        try:
            rows.append(self.process(*args, **kwargs))
        except PeerError as exc:
            self.notes.append(str(exc))

    # -- redkit's extras -------------------------------------------------------------------------
    def redkit_sync(self) -> list[dict[str, Any]]:
        mod = _config("redkit")
        rows = []
        self.flush()
        queued = self.fill("redkit", self.n, task="sync")
        self.attempt(rows, "redkit", mod["SYNC_DEFAULT"], queued, "default")
        for config in mod["SYNC_SWEEP"]:
            self.flush()
            queued = self.fill("redkit", self.sweep_n, task="sync")
            self.attempt(rows, "redkit", config, queued, "sweep")
        return rows

    def profile(self, config: Mapping[str, Any], n: int) -> dict[str, Any]:
        """redkit's worker at ``config``: py-spy's samples, then cProfile (a separate run)."""
        out: dict[str, Any] = {"config": config["label"], "n": n}
        spy_path = os.path.join(self.logs, "py-spy.txt")
        if _py_spy() is None:
            out["py_spy"] = {"error": "py-spy is not installed"}
        else:
            self.flush()
            queued = self.fill("redkit", n)
            row = self.process("redkit", config, queued, "profile (py-spy)", spy=spy_path)
            out["py_spy"] = {"row": row, **_spy_report(spy_path)}
        self.flush()
        queued = self.fill("redkit", n)
        prof = os.path.join(self.logs, "worker.prof")
        row = self.process("redkit", {**config, "cprofile": prof}, queued, "profile (cProfile)")
        out["cprofile"] = {"row": row, **_cprofile_report(prof, queued)}
        # the producer's side: single adds under cProfile
        self.flush()
        prof = os.path.join(self.logs, "add.prof")
        e = self.enqueue("redkit", "single", self.n, warm=self.warm, cprofile=prof)
        out["add_cprofile"] = {"rate": round(e["rate"], 1), **_cprofile_report(prof, self.n, 10)}
        return out


# -- helpers ---------------------------------------------------------------------------------
def _pythons(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    repo = os.path.dirname(os.path.dirname(HERE))
    arq = os.path.join(os.path.dirname(repo), "benchenv-arq", "bin", "python")
    if os.path.exists(arq):
        out["arq"] = arq
    for pair in pairs:
        lib, sep, path = pair.partition("=")
        if not sep or lib not in LIBRARIES:
            raise SystemExit(f"--python takes LIBRARY=PATH, got {pair!r}")
        out[lib] = path
    return out


def _config(lib: str) -> dict[str, Any]:
    """A library module's worker settings, read without importing the library."""
    import ast

    with open(os.path.join(HERE, f"lib_{lib}.py")) as f:
        tree = ast.parse(f.read())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name, value = node.target.id, node.value
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        else:
            continue
        if name.isupper() and value is not None:
            out[name] = eval(compile(ast.Expression(value), lib, "eval"), {})  # literals only
    return out


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _errors(path: str) -> str:
    """The most frequent exception in a worker's log, as a note's ending."""
    found = collections.Counter(
        line.strip()
        for line in _read(path).splitlines()
        if line[:1].isalpha()
        and ("Error" in line or "Exception" in line)
        and not line.startswith(("Traceback", "During handling"))
    )
    if not found:
        return ""
    return "; its log has " + ", ".join(
        f"{count} x {line[:160]!r}" for line, count in found.most_common(2)
    )


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def _stop(p: subprocess.Popen[Any]) -> None:
    """SIGTERM (a graceful stop for every library), then SIGKILL to the process group."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    with contextlib.suppress(ProcessLookupError):  # children a library forked and left behind
        os.killpg(p.pid, signal.SIGKILL)


def _per_job(calls: Mapping[str, int], jobs: int) -> dict[str, float]:
    """Calls per job by command (the most frequent first; below 0.01 left out)."""
    out = {k: round(v / jobs, 3) for k, v in calls.items() if v / jobs >= 0.01}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _enqueue_row(lib: str, mode: str, api: str, e: Mapping[str, Any]) -> dict[str, Any]:
    n = e["n"]
    kit = e.get("kit_round_trips")
    return {
        "library": lib,
        "mode": mode,
        "api": api,
        "n": n,
        "seconds": round(e["seconds"], 4),
        "rate": round(e["rate"], 1),
        "round_trips_per_job": round(e["round_trips"] / n, 4),
        "kit_round_trips_per_job": None if kit is None else round(kit / n, 4),
        "commands_per_job": round(e["commands"] / n, 2),
        "scripts_per_job": round(e["scripts"] / n, 3),
        "redis_cpu_us": round(e["redis_cpu"] / n * 1e6, 1),
        "calls_per_job": _per_job(e["calls"], n),
    }


def _memory(
    single: Mapping[str, Any], after: Mapping[str, Any], n: int, done: int
) -> dict[str, Any]:
    before, full = single["memory_before"], single["memory_after"]
    groups: dict[str, Any] = {}
    for name in sorted(set(before["groups"]) | set(full["groups"]) | set(after["groups"])):
        if name in (OWNER_KEY, probe.COUNTER_KEY, probe.MARK_KEY):
            continue
        b = before["groups"].get(name, {"keys": 0, "bytes": 0})
        w = full["groups"].get(name, {"keys": 0, "bytes": 0})
        a = after["groups"].get(name, {"keys": 0, "bytes": 0})
        groups[name] = {"waiting": [w["keys"] - b["keys"], w["bytes"] - b["bytes"]]}
        groups[name]["after"] = [a["keys"], a["bytes"]]
    own = sum(
        v["bytes"]
        for k, v in after["groups"].items()
        if k not in (OWNER_KEY, probe.COUNTER_KEY, probe.MARK_KEY)
    )
    return {
        "waiting_bytes_per_job": round((full["bytes"] - before["bytes"]) / n, 1),
        "waiting_used_memory_per_job": round((full["used_memory"] - before["used_memory"]) / n, 1),
        "after_processing_jobs": done,
        "after_processing_bytes": own,
        "after_processing_bytes_per_job": round(own / done, 1),
        "after_processing_keys": sum(
            v["keys"]
            for k, v in after["groups"].items()
            if k not in (OWNER_KEY, probe.COUNTER_KEY, probe.MARK_KEY)
        ),
        "groups": groups,
    }


def _py_spy() -> str | None:
    here = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return here if os.path.exists(here) else shutil.which("py-spy")


def _start_spy(pid: int, path: str) -> subprocess.Popen[Any] | None:
    exe = _py_spy()
    if exe is None:
        return None
    cmd = [exe, "record", "--pid", str(pid), "--rate", str(SPY_RATE), "--format", "raw"]
    cmd += ["--function", "--nonblocking", "--threads", "--output", path]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _frame(label: str) -> str:
    """``func (path:line)`` with the path cut to its package."""
    name, _, where = label.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "packages/core/", "lib/python3.11/", "bench/queue/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})" if where else name


def _package(where: str) -> str:
    """Which code a frame's file belongs to (a full path, or py-spy's short one)."""
    where = where.split(":", 1)[0]
    if where.startswith("~") or not where:
        return "C functions (socket, epoll, builtins)"
    name = where.rsplit("/", 1)[-1]
    if "bench/queue/" in where or name in ("probe.py", "agent.py") or name.startswith("lib_"):
        return "job body and bench"
    for marker in ("site-packages/", "packages/core/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    if "/" not in where:
        return "Python stdlib, other"
    top = where.split("/", 1)[0]
    return {"asyncio": "asyncio", "redis": "redis-py", "redkit": "redkit"}.get(top, top)


def _by_package(counts: Mapping[str, float], total: float) -> list[dict[str, Any]]:
    return [
        {"package": k, "percent": round(100 * v / total, 1)}
        for k, v in sorted(counts.items(), key=lambda kv: -kv[1])
        if total and v / total >= 0.005
    ]


def _spy_report(path: str, top: int = 15) -> dict[str, Any]:
    packages: collections.Counter[str] = collections.Counter()
    under_body = 0
    own: collections.Counter[str] = collections.Counter()
    cum: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in _read(path).splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        frames = stack.split(";")
        thread = frames[0]
        if len(frames) > 1:
            packages[_package(frames[-1].rpartition(" (")[2])] += c
            under_body += c if any(f.startswith("body_") for f in frames) else 0
        frames = [_frame(f) for f in frames[1:] if f]
        if not frames:
            continue
        total += c
        threads[thread.split(" ")[0] + " " + thread.split('"')[1] if '"' in thread else thread] += c
        own[frames[-1]] += c
        for f in set(frames):
            cum[f] += c
    if not total:
        return {"error": "py-spy recorded no samples"}

    def rows(counter: collections.Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": f, "samples": c, "percent": round(100 * c / total, 1)}
            for f, c in counter.most_common(top)
        ]

    return {
        "samples": total,
        "threads": [{"thread": t, "samples": c} for t, c in threads.most_common()],
        "leaf_package": _by_package(packages, total),
        "under_job_body_percent": round(100 * under_body / total, 1),
        "own": rows(own),
        "cumulative": rows(cum),
    }


def _cprofile_report(path: str, jobs: int, top: int = 15) -> dict[str, Any]:
    if not os.path.exists(path):
        return {"error": "no profile was written"}
    st = pstats.Stats(path)
    entries = []
    packages: collections.Counter[str] = collections.Counter()
    for (file, line, name), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        where = _frame(f"{name} ({file}:{line})")
        entries.append((where, nc, tt, ct))
        packages[_package(file)] += tt
    total = max(tt for _, _, tt, _ in entries) if entries else 0

    def rows(key: int) -> list[dict[str, Any]]:
        ordered = sorted(entries, key=lambda e: e[key], reverse=True)[:top]
        return [
            {
                "function": w,
                "calls_per_job": round(nc / jobs, 2),
                "own_us_per_job": round(tt / jobs * 1e6, 2),
                "cum_us_per_job": round(ct / jobs * 1e6, 2),
            }
            for w, nc, tt, ct in ordered
        ]

    return {
        "jobs": jobs,
        "total_own_s": round(sum(tt for _, _, tt, _ in entries), 3),
        "largest_own_s": round(total, 3),
        "own_by_package": _by_package(packages, sum(packages.values())),
        "own": rows(2),
        "cumulative": rows(3),
    }


# -- the run -------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.report:
        with open(args.report) as f:
            return json.load(f)  # type: ignore[no-any-return]
    bench = Bench(args)
    bench.r.ping()  # fail here when Redis does not answer
    bench.claim()
    libs = [x.strip() for x in args.libraries.split(",") if x.strip()]
    unknown = set(libs) - set(LIBRARIES)
    if unknown:
        raise SystemExit(f"unknown libraries: {', '.join(sorted(unknown))}")
    if "redkit" not in libs:
        libs.insert(0, "redkit")
    peers: dict[str, Any] = {}
    for lib in libs:
        try:
            peers[lib] = bench.agent(lib, "info")
            bench.bulk[lib] = bool(peers[lib].get("bulk"))
        except PeerError as exc:
            peers[lib] = {"error": str(exc)}
            bench.notes.append(f"{lib} is not usable: {exc}")
    versions = {k: v.get("version") for k, v in peers.items() if k != "redkit"}
    watch = harness.Watch(bench.r, bench.url, cpu_model=_cpu_model(), **versions)
    rtt = bench.agent(
        "redkit",
        "rtt",
        {"rounds": args.rounds, "ops": args.ops, "chunk": args.chunk, "warmup": args.warmup},
        timeout=3600,  # a fixed amount of work, however slow the machine
    )["results"]
    results: dict[str, Any] = {}
    for lib in libs:
        if "error" in peers[lib]:
            continue
        try:
            results[lib] = bench.library(lib, peers[lib])
        except PeerError as exc:
            bench.notes.append(str(exc))
            results[lib] = {"library": lib, "error": str(exc)}
    if "error" not in results.get("redkit", {"error": 1}):
        try:
            results["redkit"]["sync_task"] = bench.redkit_sync()
        except PeerError as exc:
            bench.notes.append(f"redkit sync task: {exc}")
    profile = None
    ceiling = None
    best = _best(results.get("redkit", {}))
    if best is not None:
        config = next(c for c in _config("redkit")["SWEEP"] if c["label"] == best["config"])
        bench.flush()
        try:
            ceiling = bench.agent(
                "redkit",
                "ceiling",
                {"n": args.n, "concurrency": config["concurrency"]},
                timeout=600,
            )
            ceiling["concurrency"] = config["concurrency"]
            ceiling["share"] = round(best["rate"] / ceiling["rate"], 3)
        except PeerError as exc:
            bench.notes.append(f"body ceiling: {exc}")
    if args.profile and best is not None:
        try:
            profile = bench.profile(config, args.profile_n or 2 * args.n)
        except PeerError as exc:
            bench.notes.append(f"profile: {exc}")
    seconds = watch.stop()
    bench.r.flushdb()
    bench.r.close()
    enqueue, processing = _tables(results)
    memory = {lib: res["memory"] for lib, res in results.items() if res.get("memory")}
    return {
        "config": {
            "url": redact_url(bench.url),
            "n": args.n,
            "sweep_n": args.sweep_n,
            "warm": args.warm,
            "libraries": libs,
            "rounds": args.rounds,
            "ops": args.ops,
            "chunk": args.chunk,
            "warmup": args.warmup,
        },
        "machine": watch.info,
        "peers": peers,
        "notes": bench.notes,
        "seconds": round(seconds, 1),
        "round_trip": rtt,
        "enqueue": enqueue,
        "processing": processing,
        "memory": memory,
        "targets": targets(enqueue, processing, rtt),
        "ceiling": ceiling,
        "profile": profile,
        "logs": bench.logs,
    }


def _best(res: Mapping[str, Any]) -> dict[str, Any] | None:
    rows = [r for r in res.get("processing", []) if r["kind"] == "best"]
    return rows[0] if rows else None


def _tables(results: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    enqueue: list[dict[str, Any]] = []
    processing: list[dict[str, Any]] = []
    for res in results.values():
        enqueue += res.get("enqueue", [])
        processing += res.get("processing", [])
        for row in res.get("sync_task", []):
            processing.append({**row, "library": "redkit (sync task)"})
    kit_enq = {r["mode"]: r["rate"] for r in enqueue if r["library"] == "redkit"}
    for r in enqueue:
        base = kit_enq.get(r["mode"])
        r["ratio"] = None if r["library"] == "redkit" or not base else round(base / r["rate"], 2)
    kit_proc = {r["kind"]: r["rate"] for r in processing if r["library"] == "redkit"}
    for r in processing:
        base = kit_proc.get(r["kind"]) if r["kind"] in ("default", "best") else None
        peer = r["library"] in LIBRARIES and r["library"] != "redkit"
        r["ratio"] = round(base / r["rate"], 2) if peer and base else None
    return enqueue, processing


def targets(
    enqueue: Sequence[Mapping[str, Any]],
    processing: Sequence[Mapping[str, Any]],
    rtt: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    out = []
    best = [r for r in processing if r["library"] == "redkit" and r["kind"] == "best"]
    rate = best[0]["rate"] if best else 0.0
    out.append(
        {
            "what": "processing, 1 worker process",
            "value": rate,
            "unit": "jobs/s",
            "limit": PROCESS_TARGET,
            "ok": rate >= PROCESS_TARGET and bool(best) and best[0]["ok"],
        }
    )
    for mode in ("sync", "async"):
        rows = {r["contender"]: r for r in rtt if r["mode"] == mode}
        if "q.add" not in rows:
            continue
        add = rows["q.add"]["median_us"]
        for raw, judged in (("raw PING", True), ("raw INCR", False)):
            share = rows[raw]["median_us"] / add
            out.append(
                {
                    "what": f"single add / {raw.split()[1]} rate, {mode}",
                    "value": round(share, 3),
                    "unit": "share",
                    "limit": ADD_RATIO_TARGET if judged else None,
                    "ok": share >= ADD_RATIO_TARGET or not judged,
                }
            )
    bulk = [r for r in enqueue if r["library"] == "redkit" and r["mode"] == "bulk"]
    value = bulk[0]["rate"] if bulk else 0.0
    out.append(
        {
            "what": "add_bulk",
            "value": value,
            "unit": "jobs/s",
            "limit": BULK_TARGET,
            "ok": value >= BULK_TARGET,
        }
    )
    # the same targets on this machine's scale: rates as multiples of its raw PING rates
    raw = {
        r["mode"]: 1e6 / r["median_us"]
        for r in rtt
        if r["contender"] == "raw PING" and r["median_us"]
    }
    for what, rate_value, mode, reference, limit in (
        ("processing", rate, "async", REFERENCE_ASYNC_RTT, PROCESS_TARGET),
        ("processing", rate, "sync", REFERENCE_SYNC_RTT, PROCESS_TARGET),
        ("add_bulk", value, "sync", REFERENCE_SYNC_RTT, BULK_TARGET),
    ):
        if mode not in raw:
            continue
        share = rate_value / raw[mode]
        out.append(
            {
                "what": f"{what} / raw {mode} PING rate",
                "value": round(share, 3),
                "unit": "share",
                "limit": round(limit / reference, 2),
                "ok": share >= limit / reference,
                "scaled": True,
            }
        )
    return out


# -- reporting -------------------------------------------------------------------------------
def render(report: dict[str, Any]) -> str:
    cfg, m = report["config"], report["machine"]
    lines = [
        f"redkit job-queue benchmark: {cfg['n']} no-op jobs per run ({cfg['sweep_n']} per sweep "
        f"run, {cfg['warm']} warm-up adds), {cfg['url']}, {report['seconds']} s",
        harness.machine_line(m) + f", CPU {m.get('cpu_model')}",
        harness.load_line(m),
        "peers: "
        + ", ".join(
            f"{lib} {p.get('version')} (redis-py {p.get('redis_py')})"
            if "error" not in p
            else f"{lib} not usable"
            for lib, p in report["peers"].items()
            if lib != "redkit"
        ),
        *(f"note: {n}" for n in report["notes"]),
        "",
        "Round trips, one client, one call at a time (harness: "
        f"{cfg['rounds']} rounds x {cfg['ops']} calls, slices of {cfg['chunk']})",
        f"{'mode':<5} {'call':<9} {'µs/call':>7} {'calls/s':>8} {'cpu µs':>6} {'RTT':>5}",
    ]
    for r in report["round_trip"]:
        lines.append(
            f"{r['mode']:<5} {r['contender']:<9} {r['median_us']:>7.1f} "
            f"{1e6 / r['median_us']:>8.0f} {r['median_cpu_us']:>6.1f} "
            f"{fmt(r['round_trips_per_op'], '.2f'):>5}"
        )
    lines += [
        "",
        f"Enqueue, one process, {cfg['n']} jobs (ratio: redkit's rate over the library's)",
        f"{'library':<9} {'mode':<6} {'API':<19} {'jobs/s':>8} {'RTT/job':>7} {'cmds':>5} "
        f"{'scripts':>7} {'redis µs':>8} {'ratio':>6}",
    ]
    for r in sorted(report["enqueue"], key=lambda r: (r["mode"] != "single", r["mode"])):
        lines.append(
            f"{r['library']:<9} {r['mode']:<6} {r['api']:<19} {r['rate']:>8.0f} "
            f"{r['round_trips_per_job']:>7.3f} {r['commands_per_job']:>5.1f} "
            f"{r['scripts_per_job']:>7.2f} {r['redis_cpu_us']:>8.1f} {fmt(r['ratio'], '.2f'):>6}"
        )
    no_bulk = [lib for lib, p in report["peers"].items() if "error" not in p and not p["bulk"]]
    if no_bulk:
        lines.append(f"no bulk add API: {', '.join(no_bulk)}")
    lines += [
        "",
        "Processing, one worker process (n: jobs in the queue; ratio: redkit's rate over the "
        "library's, default vs default, best vs best)",
    ]
    head = (
        f"{'library':<19} {'kind':<8} {'config':<22} {'procs':>7} {'n':>6} {'jobs/s':>7} "
        f"{'worker µs':>9} {'redis µs':>8} {'cmds':>5} {'scripts':>7} {'RTT':>6} "
        f"{'start s':>7} {'ok':>3} {'ratio':>6}"
    )
    lines.append(head)
    order = {"default": 0, "best": 1, "sweep": 2}
    rows = sorted(
        report["processing"], key=lambda r: (order.get(r["kind"], 3), r["library"] != "redkit")
    )
    previous = None
    for r in rows:
        if previous is not None and r["kind"] != previous:
            lines.append("")
        previous = r["kind"]
        lines.append(_process_line(r))
    lines += [
        "",
        "Redis commands per job, redkit (Redis' count, inner commands of scripts included)",
    ]
    for r in report["enqueue"]:
        if r["library"] == "redkit":
            lines.append(f"  add, {r['mode']:<22} {_calls(r['calls_per_job'])}")
    for r in rows:
        if r["library"].startswith("redkit") and r["kind"] in ("default", "best"):
            what = f"worker, {r['kind']} {r['config']}"
            lines.append(f"  {what:<27} {_calls(r['calls_per_job'])}")
    lines += ["", "Memory (MEMORY USAGE of the database's keys; used_memory is server-wide)"]
    lines.append(
        f"{'library':<9} {'B/waiting job':>13} {'used_memory/job':>15}   after the default run: "
        f"{'jobs run':>8} {'bytes kept':>11} {'keys':>6} {'B/job run':>9}"
    )
    for lib, mem in report["memory"].items():
        lines.append(
            f"{lib:<9} {mem['waiting_bytes_per_job']:>13.0f} "
            f"{mem['waiting_used_memory_per_job']:>15.0f}   {'':<22} "
            f"{mem['after_processing_jobs']:>8} {mem['after_processing_bytes']:>11,} "
            f"{mem['after_processing_keys']:>6} {mem['after_processing_bytes_per_job']:>9.0f}"
        )
    kit = report["memory"].get("redkit")
    if kit:
        lines.append(
            "redkit by key (keys, bytes): waiting = added by the single adds; after = "
            "after the default run"
        )
        for name, g in kit["groups"].items():
            lines.append(
                f"  {name:<34} waiting {g['waiting'][0]:>6} {g['waiting'][1]:>10,}   "
                f"after {g['after'][0]:>6} {g['after'][1]:>10,}"
            )
        lines.append("  " + _retained_line(kit))
    ceiling = report.get("ceiling")
    if ceiling:
        lines += [
            "",
            f"The job body alone, no queue (asyncio redis-py INCR by {ceiling['concurrency']} "
            f"coroutines): {ceiling['rate']:,.0f}/s, {ceiling['cpu_us']:.1f} µs of CPU each; "
            f"redkit's best run reached {ceiling['share']:.0%} of it",
        ]
    lines += ["", "Targets (redkit)"]
    scaled_header = False
    for t in report["targets"]:
        if t.get("scaled") and not scaled_header:
            scaled_header = True
            raw = {
                r["mode"]: 1e6 / r["median_us"]
                for r in report["round_trip"]
                if r["contender"] == "raw PING" and r["median_us"]
            }
            lines.append(
                f"  the same, scaled to this machine: it makes {raw.get('sync', 0):,.0f} sync and "
                f"{raw.get('async', 0):,.0f} asyncio raw round trips/s (the targets assume "
                f"{REFERENCE_SYNC_RTT:,} and {REFERENCE_ASYNC_RTT:,})"
            )
        value = f"{t['value']:,.0f} jobs/s" if t["unit"] == "jobs/s" else f"{t['value']:.2f}"
        limit = (
            "info"
            if t["limit"] is None
            else (f">= {t['limit']:,} jobs/s" if t["unit"] == "jobs/s" else f">= {t['limit']}")
        )
        verdict = "" if t["limit"] is None else ("met" if t["ok"] else "NOT MET")
        lines.append(f"  {t['what']:<32} {value:>16}  {limit:<18} {verdict}")
    if report.get("profile"):
        lines += ["", *_profile_lines(report["profile"])]
    return "\n".join(lines)


def _calls(calls: Mapping[str, float]) -> str:
    return " ".join(f"{k.upper()} {v:g}" for k, v in calls.items())


def _retained_line(mem: Mapping[str, Any]) -> str:
    jobs = [g for name, g in mem["groups"].items() if name.endswith(":j:*")]
    completed = [g for name, g in mem["groups"].items() if name.endswith(":completed")]
    if not jobs or not jobs[0]["after"][0]:
        return "retained completed jobs: none"
    count, size = jobs[0]["after"]
    size += completed[0]["after"][1] if completed else 0
    return f"retained completed jobs: {count}, {size / count:.0f} B each (hash + completed entry)"


def _process_line(r: Mapping[str, Any]) -> str:
    return (
        f"{r['library']:<19} {r['kind']:<8} {r['config']:<22} {r['processes']:>7} "
        f"{r['n']:>6} {r['rate']:>7.0f} {r['worker_cpu_us']:>9.1f} {r['redis_cpu_us']:>8.1f} "
        f"{r['commands_per_job']:>5.1f} {r['scripts_per_job']:>7.3f} "
        f"{fmt(r['round_trips_per_job'], '.3f'):>6} {r['startup_s']:>7.2f} "
        f"{'yes' if r['ok'] else 'NO':>3} {fmt(r['ratio'], '.2f'):>6}"
    )


def _profile_lines(p: Mapping[str, Any]) -> list[str]:
    lines = [f"Profile of redkit's worker ({p['config']}, {p['n']} jobs)"]
    spy = p.get("py_spy") or {}
    if "error" in spy:
        lines.append(f"py-spy: {spy['error']}")
    elif spy:
        row = spy["row"]
        lines.append(
            f"py-spy, {SPY_RATE} samples/s, non-blocking, while jobs ran ({row['rate']:.0f} jobs/s "
            f"meanwhile): {spy['samples']} samples of busy threads"
        )
        lines.append(
            "  threads: " + ", ".join(f"{t['thread']} {t['samples']}" for t in spy["threads"])
        )
        if "leaf_package" in spy:
            lines.append(
                "  by the package of the running function: "
                + ", ".join(f"{p['package']} {p['percent']}%" for p in spy["leaf_package"])
            )
            lines.append(
                f"  with the job body on the stack: {spy['under_job_body_percent']}% (the body's "
                "commands also run in tasks of their own, without it)"
            )
        for title, key in (("own time", "own"), ("cumulative", "cumulative")):
            lines.append(f"  top by {title}:")
            for e in spy[key]:
                lines.append(f"    {e['percent']:>5.1f}%  {e['function']}")
    cp = p.get("cprofile") or {}
    if "error" in cp:
        lines.append(f"cProfile: {cp['error']}")
    elif cp:
        lines.append(
            f"cProfile (a separate run, {cp['row']['rate']:.0f} jobs/s under the profiler), "
            "per job (a coroutine's calls count its resumptions):"
        )
        if "own_by_package" in cp:
            lines.append(
                "  own time by package: "
                + ", ".join(f"{p['package']} {p['percent']}%" for p in cp["own_by_package"])
            )
        for title, key in (("own time", "own"), ("cumulative time", "cumulative")):
            lines.append(f"  top by {title}: {'calls':>6} {'own µs':>7} {'cum µs':>7}")
            for e in cp[key]:
                lines.append(
                    f"    {e['calls_per_job']:>6.2f} {e['own_us_per_job']:>7.2f} "
                    f"{e['cum_us_per_job']:>7.2f}  {e['function']}"
                )
    add = p.get("add_cprofile") or {}
    if "error" in add:
        lines.append(f"cProfile of q.add: {add['error']}")
    elif add:
        lines.append(
            f"cProfile of single adds ({add['rate']:.0f} adds/s under the profiler), per add:"
        )
        if "own_by_package" in add:
            lines.append(
                "  own time by package: "
                + ", ".join(f"{p['package']} {p['percent']}%" for p in add["own_by_package"])
            )
        for title, key in (("own time", "own"), ("cumulative time", "cumulative")):
            lines.append(f"  top by {title}: {'calls':>6} {'own µs':>7} {'cum µs':>7}")
            for e in add[key]:
                lines.append(
                    f"    {e['calls_per_job']:>6.2f} {e['own_us_per_job']:>7.2f} "
                    f"{e['cum_us_per_job']:>7.2f}  {e['function']}"
                )
    return lines


def _more(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(url=os.environ.get("RKBENCH_QUEUE_URL", DEFAULT_URL), ops=2000)
    parser.add_argument("--n", type=int, default=20_000, help="jobs per run (default 20000)")
    parser.add_argument(
        "--sweep-n", type=int, default=5_000, help="jobs per concurrency-sweep run (default 5000)"
    )
    parser.add_argument("--warm", type=int, default=200, help="warm-up adds (default 200)")
    parser.add_argument(
        "--libraries", default=",".join(LIBRARIES), help="comma-separated (default: all)"
    )
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="LIB=PATH",
        help="the Python to run a library with (repeatable)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        help="seconds without progress before a run is abandoned (default 15)",
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="profile redkit's worker at its best concurrency (default: yes)",
    )
    parser.add_argument(
        "--profile-n", type=int, default=0, help="jobs of each profile run (default 2 x --n)"
    )
    parser.add_argument(
        "--report", metavar="FILE", help="show a report saved with --json instead of running"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python bench/queue/run.py [--url URL] [--n N] [--json] [--check] ...``."""
    return harness.cli(DESCRIPTION, argv, run, render, more=_more)


if __name__ == "__main__":
    sys.exit(main())
