"""A tour of the example shop on the embedded ``memory://`` backend and SQLite, no server
needed: a worker runs in this process, requests go through Flask's test client.

The code of this part of ``python -m redkit demo`` is ``packages/core/redkit/demo/shop_tour.py``;
``python examples/flask_app/demo.py`` runs it (``--url redis://127.0.0.1:6379/0`` on a server).
"""

import sys

from redkit.demo import main

if __name__ == "__main__":
    sys.exit(main(["--part", "shop", *sys.argv[1:]]))
