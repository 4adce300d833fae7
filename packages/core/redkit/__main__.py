"""``python -m redkit``: the same as the ``redkit`` command."""

import sys

from .cli import main

sys.exit(main())
