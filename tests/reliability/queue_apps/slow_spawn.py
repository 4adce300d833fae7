"""``redkit`` whose supervisor takes a second to start each worker process (a slow fork on a
loaded host), so a test can signal it while a restart is under way.

Run as ``python slow_spawn.py worker queue_apps.jobs:queue --processes 2 ...``; it prints
``spawning`` when a start begins.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import redkit.cli

_Popen = subprocess.Popen


class SlowPopen(_Popen):  # type: ignore[type-arg]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        print("spawning", flush=True)
        time.sleep(1.0)
        super().__init__(*args, **kwargs)


subprocess.Popen = SlowPopen  # type: ignore[misc]

if __name__ == "__main__":
    sys.exit(redkit.cli.main(sys.argv[1:]))
