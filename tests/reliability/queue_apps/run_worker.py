"""``Worker.run()`` in a script of its own (no CLI): ``python -m queue_apps.run_worker <grace>``
serves the queue of :mod:`queue_apps.jobs` until SIGTERM, then prints ``run returned``."""

from __future__ import annotations

import sys

from queue_apps.jobs import queue

if __name__ == "__main__":
    queue.worker(concurrency=2, shutdown_timeout=float(sys.argv[1])).run()
    print("run returned", flush=True)
