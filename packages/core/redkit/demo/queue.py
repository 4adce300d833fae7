"""The job queue: tasks, retries with backoff, delays, priorities, progress, a dead-letter queue
and a worker running in this process. ``python -m redkit demo --part queue`` runs it.

With a Redis server, workers run in their own processes instead: ``redkit worker
myapp.jobs:queue`` serves the queue that ``myapp/jobs.py`` defines at module level.
"""

from __future__ import annotations

import asyncio

from redkit import Backoff, JobFailed, Redkit, Unrecoverable
from redkit.queue import Job, current_job


def waited(job: Job) -> float:
    """Seconds from when ``job`` was added to when a worker started it."""
    record = job.refresh().record
    if record is None or record.created_at is None or record.processed_at is None:
        return float("nan")
    return (record.processed_at - record.created_at).total_seconds()


def run(url: str) -> None:
    with Redkit.from_url(url, prefix="demo") as kit:
        kit.clear()
        queue = kit.queue("emails", dead_letter="emails-dead")
        ran: list[str] = []  # what the jobs handled, in order

        @queue.task(name="send_welcome")
        def send_welcome(to: str, name: str) -> str:
            ran.append(to)
            return f"welcome sent to {name} <{to}>"

        @queue.task(name="flaky_charge", attempts=3, backoff=Backoff.exponential(0.05))
        def flaky_charge(order: int) -> str:
            job = current_job()
            if job.attempts_made < 2:  # the first two attempts fail
                raise ConnectionError("payment provider timed out")
            return f"order {order} charged on attempt {job.attempts_made + 1}"

        @queue.task(name="refuse")
        def refuse(order: int) -> None:
            raise Unrecoverable(f"order {order} is cancelled: no retry")

        @queue.task(name="build_report")
        async def build_report(rows: int) -> dict[str, int]:
            job = current_job()
            for done in range(0, rows + 1, rows // 4):
                await job.update_progress(round(100 * done / rows))
                await asyncio.sleep(0.01)
            return {"rows": rows}

        @queue.task(name="urgent")
        def urgent(label: str) -> None:
            ran.append(label)

        print(f"1. jobs are added to queue {queue.name!r} before any worker runs")
        welcome = send_welcome.enqueue("ada@example.com", name="Ada")
        again = send_welcome.options(job_id="welcome-ada").enqueue("ada@example.com", "Ada")
        duplicate = send_welcome.options(job_id="welcome-ada").enqueue("x@example.com", "X")
        print(f"  same job_id, same job: {again.id == duplicate.id}")
        charge = flaky_charge.enqueue(41)
        refused = refuse.enqueue(42)
        report = build_report.enqueue(400)
        later = send_welcome.enqueue_in(0.2, "bob@example.com", name="Bob")
        for label in ("low", "high"):
            urgent.options(priority=1 if label == "high" else 9).enqueue(label)
        print("  counts:", queue.counts())

        print("\n2. a worker with 4 jobs in flight runs them (its log lines are shown too)")
        worker = queue.worker(concurrency=4).start()
        try:
            print(" ", welcome.wait(10))
            print(" ", charge.wait(10))
            print(f"  report: {report.wait(10)}, progress {report.refresh().progress}%")
            try:
                refused.wait(10)
            except JobFailed as exc:
                print(f"  waiting for the refused job raises JobFailed: {exc}")
            print(" ", later.wait(10))
            print(f"  the delayed job started {waited(later):.1f}s after it was added (delay 0.2s)")
            dead = kit.queue("emails-dead")
            for dead_id in dead.jobs("waiting"):
                letter = dead.get_job(dead_id)
                assert letter is not None
                print(
                    f"  dead-letter queue got {letter.data['name']}: {letter.data['failed_reason']}"
                )
            print("  priority 1 ran before priority 9:", ran.index("high") < ran.index("low"))
        finally:
            worker.stop()
        print("  counts at the end:", queue.counts())
        kit.clear()
