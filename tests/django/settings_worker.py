"""Settings of the worker processes the command tests start: the test settings, with the
``REDKIT`` prefix the test chose (``RKT_PREFIX``) and redkit's ``django.tasks`` backend; the
outbox on with ``RKT_OUTBOX``, and the test's database as ``default`` with ``RKT_DB_NAME``."""

from __future__ import annotations

import os

from tests.django.settings import *  # noqa: F403
from tests.django.settings import DATABASES, REDIS_URL

REDKIT = {"URL": os.environ.get("RKT_URL", REDIS_URL), "PREFIX": os.environ["RKT_PREFIX"]}
if os.environ.get("RKT_OUTBOX"):
    REDKIT["OUTBOX"] = True
if os.environ.get("RKT_DB_NAME"):
    DATABASES = {
        **DATABASES,
        "default": {**DATABASES["default"], "NAME": os.environ["RKT_DB_NAME"]},
    }
TASKS = {
    "default": {
        "BACKEND": "redkit_django.tasks.RedkitBackend",
        "QUEUES": ["default", "emails"],
    }
}
