"""``manage.py redkit_worker``, ``redkit_info``, ``redkit_drain`` and ``redkit_retry_failed``."""
