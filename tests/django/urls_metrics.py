"""The metrics views of ``test_metrics_view``: staff only, a token (or staff), a token only, a
rule of the project's own."""

from __future__ import annotations

from django.urls import path

from redkit_django.metrics import metrics_view

TOKEN = "s3cret-token-of-the-scraper-0123"

urlpatterns = [
    path("staff", metrics_view()),
    path("scraper", metrics_view(token=TOKEN, queues=["mail"])),
    path("token-only", metrics_view(token=TOKEN, allow=None)),
    path("header", metrics_view(allow=lambda request: "HTTP_X_INTERNAL" in request.META)),
]
