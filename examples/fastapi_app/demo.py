"""A tour of the FastAPI shop on the embedded ``memory://`` backend and SQLite, no server
needed: its workers run in the application's event loop, requests are handed to the ASGI
application directly.

The code of this part of ``python -m redkit demo`` is
``packages/core/redkit/demo/fastapi_tour.py``; ``python examples/fastapi_app/demo.py`` runs it
(``--url redis://127.0.0.1:6379/0`` on a server).
"""

import sys

from redkit.demo import main

if __name__ == "__main__":
    sys.exit(main(["--part", "fastapi", *sys.argv[1:]]))
