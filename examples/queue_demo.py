"""The job queue: tasks, retries, delays, priorities, progress, a dead-letter queue and a worker
running in this process, on the embedded ``memory://`` backend (no server needed).

The code of this part of ``python -m redkit demo`` is ``packages/core/redkit/demo/queue.py``;
``python examples/queue_demo.py`` runs it (``--url redis://127.0.0.1:6379/0`` on a server).
"""

import sys

from redkit.demo import main

if __name__ == "__main__":
    sys.exit(main(["--part", "queue", *sys.argv[1:]]))
