"""``python -m redkit.demo``: the same as ``redkit demo``."""

import sys

from . import main

sys.exit(main())
