"""redkit's web primitives at work: sessions, idempotency keys, rate limits, locks, pub/sub and
streams, on the embedded ``memory://`` backend (no server needed).

The code of this part of ``python -m redkit demo`` is ``packages/core/redkit/demo/web.py``;
``python examples/web_demo.py`` runs it (``--url redis://127.0.0.1:6379/0`` on a server).
"""

import sys

from redkit.demo import main

if __name__ == "__main__":
    sys.exit(main(["--part", "web", *sys.argv[1:]]))
