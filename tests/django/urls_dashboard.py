"""The dashboard's URLs of ``test_dashboard``: staff only (the default) and a token."""

from __future__ import annotations

from django.urls import include, path

from redkit_django.dashboard import dashboard_urls

TOKEN = "django-dashboard-token-0123456789"

urlpatterns = [
    path("ops/redkit/", include(dashboard_urls())),
    path("token/", include(dashboard_urls(auth=None, token=TOKEN, read_only=True))),
]
