"""Settings of the example shop. ``REDKIT_URL`` chooses the Redis (default: the embedded
``memory://``), ``DATABASE_URL`` the database (``postgresql://...``; default: SQLite in
``SHOP_SQLITE``, a file path, else in memory)."""

from __future__ import annotations

import os
import urllib.parse

SECRET_KEY = os.environ.get("SECRET_KEY", "change-me-in-production-0123456789abcdef")
DEBUG = os.environ.get("DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
ROOT_URLCONF = "redkit.demo.django_shop.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "redkit_django",
    "redkit.demo.django_shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "redkit_django.middleware.RateLimitMiddleware",
    "redkit_django.middleware.IdempotencyMiddleware",
    "redkit_django.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

REDKIT = {
    "URL": os.environ.get("REDKIT_URL", "memory://shop"),
    "PREFIX": os.environ.get("REDKIT_PREFIX", "shop"),
    "RATELIMIT_DEFAULT": "120/minute",
    "IDEMPOTENCY_METHODS": "POST, PATCH",
    # which cache tags a change of each model invalidates, after its transaction commits
    "INVALIDATE": {
        "auth.User": ["user:{id}"],
        "shop.Order": ["order:{id}", "user:{user_id}:orders"],
    },
}

CACHES = {"default": {"BACKEND": "redkit_django.cache.RedkitCache"}}  # on REDKIT's URL
SESSION_ENGINE = "redkit_django.sessions"
TASKS = {"default": {"BACKEND": "redkit_django.tasks.RedkitBackend", "QUEUES": ["reports"]}}


def _database() -> dict[str, str]:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://", "postgresql+psycopg://")):
        parts = urllib.parse.urlsplit(url)
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path.lstrip("/"),
            "USER": parts.username or "",
            "PASSWORD": parts.password or "",
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
        }
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_SQLITE", ":memory:"),
    }


DATABASES = {"default": _database()}

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "static/"

# 4xx answers are part of the tour: Django would log each one as a warning
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django.request": {"level": "ERROR"}, "django.tasks": {"level": "WARNING"}},
}
