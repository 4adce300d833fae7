"""A tour of the Django example shop on the embedded ``memory://`` backend and SQLite, no
server needed: its workers run in this process, requests go through Django's test client.

The code of this part of ``python -m redkit demo`` is ``packages/core/redkit/demo/django_tour.py``;
``python examples/django_project/demo.py`` runs it (``--url redis://127.0.0.1:6379/0`` on a server).
"""

import sys

from redkit.demo import main

if __name__ == "__main__":
    sys.exit(main(["--part", "django", *sys.argv[1:]]))
