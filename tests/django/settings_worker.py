"""Settings of the worker processes the command tests start: the test settings, with the
``REDKIT`` prefix the test chose (``RKT_PREFIX``) and redkit's ``django.tasks`` backend."""

from __future__ import annotations

import os

from tests.django.settings import *  # noqa: F403
from tests.django.settings import REDIS_URL

REDKIT = {"URL": os.environ.get("RKT_URL", REDIS_URL), "PREFIX": os.environ["RKT_PREFIX"]}
TASKS = {
    "default": {
        "BACKEND": "redkit_django.tasks.RedkitBackend",
        "QUEUES": ["default", "emails"],
    }
}
