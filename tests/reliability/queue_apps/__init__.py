"""Worker apps and process helpers for the job queue's reliability tests.

The tests start ``python -m redkit worker queue_apps.jobs:queue`` (with ``tests/reliability`` on
``PYTHONPATH``) as real processes, then kill, freeze, restart or signal them.
"""
