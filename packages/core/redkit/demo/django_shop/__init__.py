"""The example shop on Django: the same shop as :mod:`redkit.demo.shop`, with every feature of
redkit's Django adapter, and the admin.

- sessions in Redis (``SESSION_ENGINE = "redkit_django.sessions"``), a new session key at login
  (Django's ``login()``), a rate-limited login;
- ``GET /users/<id>/`` and ``GET /users/<id>/orders/`` cached with tags, invalidated when a
  transaction that changed the user or their orders commits (never on rollback); only the
  user themself may rename themself (``PATCH``) or read their orders and reports;
- ``POST`` honours ``Idempotency-Key`` (middleware); a new order's receipt job is sent only when
  its transaction commits;
- ``POST /reports/`` answers ``202`` with a ``django.tasks`` result id at once; ``GET
  /reports/<id>/`` shows its status, progress and return value.

Run it in ``examples/django_project`` (``python manage.py runserver`` and ``python manage.py
redkit_worker`` beside it), or ``python -m redkit demo --part django`` for a tour with an
in-process worker. ``REDKIT_URL`` and ``DATABASE_URL`` choose the servers; without them the shop
runs on ``memory://`` and SQLite.
"""
