#!/usr/bin/env python
"""The example shop on Django: ``python manage.py migrate``, then
``python manage.py runserver`` and ``python manage.py redkit_worker`` beside it. Its code is
``packages/core/redkit/demo/django_shop`` (``redkit.demo.django_shop``); see README.md here."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "redkit.demo.django_shop.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
