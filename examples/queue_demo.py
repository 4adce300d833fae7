"""The job queue on the embedded memory:// backend: tasks, retries, delays, priorities, progress,
a dead-letter queue and a worker running in this process.

    python examples/queue_demo.py

With a Redis server, set REDKIT_URL=redis://localhost:6379/0 and run the worker in its own
process instead: ``redkit worker examples.queue_demo:queue``.
"""

from __future__ import annotations

import asyncio
import os

from redkit import Backoff, Redkit, Unrecoverable
from redkit.queue import current_job

kit = Redkit.from_url(os.environ.get("REDKIT_URL", "memory://queue-demo"), prefix="demo")
queue = kit.queue("emails", dead_letter="emails-dead")
ran: list[str] = []


@queue.task
def send_welcome(to: str, name: str) -> str:
    ran.append(to)
    return f"welcome sent to {name} <{to}>"


@queue.task(attempts=3, backoff=Backoff.exponential(0.05))
def flaky_charge(order: int) -> str:
    job = current_job()
    if job.attempts_made < 2:  # the first two attempts fail
        raise ConnectionError("payment provider timed out")
    return f"order {order} charged on attempt {job.attempts_made + 1}"


@queue.task
def refuse(order: int) -> None:
    raise Unrecoverable(f"order {order} is cancelled: no retry")


@queue.task
async def build_report(rows: int) -> dict[str, int]:
    job = current_job()
    for done in range(0, rows + 1, rows // 4):
        await job.update_progress(round(100 * done / rows))
        await asyncio.sleep(0.01)
    return {"rows": rows}


@queue.task(name="urgent")
def urgent(label: str) -> None:
    ran.append(label)


def main() -> None:
    kit.clear()
    print(f"queue {queue.name!r} on {kit.settings.url}")

    welcome = send_welcome.enqueue("ada@example.com", name="Ada")
    again = send_welcome.options(job_id="welcome-ada").enqueue("ada@example.com", name="Ada")
    duplicate = send_welcome.options(job_id="welcome-ada").enqueue("ada@example.com", name="Ada")
    print(f"same job_id, same job: {again.id == duplicate.id}")
    charge = flaky_charge.enqueue(41)
    refused = refuse.enqueue(42)
    report = build_report.enqueue(400)
    later = send_welcome.enqueue_in(0.2, "bob@example.com", name="Bob")
    for label in ("low", "high"):
        urgent.options(priority=1 if label == "high" else 9).enqueue(label)
    print("counts before the worker starts:", queue.counts())

    worker = queue.worker(concurrency=4).start()
    try:
        print(welcome.wait(10))
        print(charge.wait(10))
        print(f"report: {report.wait(10)}, progress {queue.get_job(report.id).progress}%")
        try:
            refused.wait(10)
        except Exception as exc:  # JobFailed
            print(f"{type(exc).__name__}: {exc}")
        print(later.wait(10))
        record = queue.get_job(later.id).record
        waited = (record.processed_at - record.created_at).total_seconds()
        print(f"the delayed job started {waited:.1f}s after it was added (delay 0.2s)")
        dead = kit.queue("emails-dead")
        dead_ids = dead.jobs("waiting")
        if dead_ids:
            letter = dead.get_job(dead_ids[0])
            print(f"dead-letter queue got {letter.data['name']}: {letter.data['failed_reason']}")
        print("priority 1 ran before priority 9:", ran.index("high") < ran.index("low"))
    finally:
        worker.stop()
    print("counts at the end:", queue.counts())
    kit.close()


if __name__ == "__main__":
    main()
