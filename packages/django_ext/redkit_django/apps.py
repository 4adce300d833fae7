"""The Django application: ``"redkit_django"`` in ``INSTALLED_APPS``."""

from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import setting_changed


class RedkitConfig(AppConfig):  # type: ignore[misc]
    """Connects redkit's receivers and registers its system checks when Django is ready."""

    name = "redkit_django"
    label = "redkit"
    verbose_name = "redkit"

    def ready(self) -> None:
        from . import checks, conf, invalidation

        setting_changed.connect(conf.on_setting_changed, dispatch_uid="redkit.setting_changed")
        checks.register()
        invalidation.connect()
