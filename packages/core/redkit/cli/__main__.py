"""``python -m redkit.cli``: the same as the ``redkit`` command."""

import sys

from . import main

sys.exit(main())
