from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from . import views

shop = (
    [
        path("csrf/", views.csrf, name="csrf"),
        path("login/", views.login_view, name="login"),
        path("logout/", views.logout_view, name="logout"),
        path("users/", views.create_user, name="users"),
        path("users/<int:user_id>/", views.user, name="user"),
        path("users/<int:user_id>/orders/", views.user_orders, name="user-orders"),
        path("orders/", views.create_order, name="orders"),
        path("reports/", views.start_report, name="reports"),
        path("reports/<str:result_id>/", views.report, name="report"),
    ],
    "shop",
)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include(shop)),
]
