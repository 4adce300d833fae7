"""redkit's cache at work: cache-aside with ``@cached``, tag invalidation, stampede protection,
TTL jitter and the asyncio twin, on the embedded ``memory://`` backend (no server needed).

The code of this part of ``python -m redkit demo`` is ``packages/core/redkit/demo/cache.py``;
``python examples/cache_demo.py`` runs it (``--url redis://127.0.0.1:6379/0`` on a server).
"""

import sys

from redkit.demo import main

if __name__ == "__main__":
    sys.exit(main(["--part", "cache", *sys.argv[1:]]))
