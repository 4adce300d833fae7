"""URLs of the session, middleware and decorator tests."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from tests.django import views_web as v

router = SimpleRouter()
router.register("limited-set", v.LimitedViewSet, basename="limited-set")
router.register("pay-set", v.PayViewSet, basename="pay-set")
router.register("cached-set", v.CachedViewSet, basename="cached-set")

urlpatterns = [
    path("s/set/<str:key>/<str:value>", v.session_set),
    path("s/get", v.session_get),
    path("s/expiry/<int:seconds>", v.session_expiry),
    path("s/lost", v.session_lost),
    path("s/login/<str:name>", v.do_login),
    path("s/logout", v.do_logout),
    path("as/set/<str:key>/<str:value>", v.asession_set),
    path("as/get", v.asession_get),
    path("as/cycle", v.acycle),
    path("plain", v.plain, name="plain"),
    path("echo", v.echo, name="echo"),
    path("exempt", v.exempt, name="exempt"),
    path("limited", v.limited, name="limited"),
    path("by-user", v.by_user, name="by-user"),
    path("by-header", v.by_header, name="by-header"),
    path("post-only", v.post_only, name="post-only"),
    path("by-callable", v.by_callable, name="by-callable"),
    path("alimited", v.alimited, name="alimited"),
    path("aby-user", v.aby_user, name="aby-user"),
    path("limited-cbv", v.LimitedView.as_view(), name="limited-cbv"),
    path("limited-mixin", v.LimitedMixinView.as_view(), name="limited-mixin"),
    path("limited-api", v.LimitedAPI.as_view(), name="limited-api"),
    path("pay", v.pay, name="pay"),
    path("pay-required", v.pay_required, name="pay-required"),
    path("apay", v.apay, name="apay"),
    path("pay-and-fail", v.pay_and_fail, name="pay-and-fail"),
    path("pay-streamed", v.pay_streamed, name="pay-streamed"),
    path("pay-plain", v.pay_plain, name="pay-plain"),
    path("pay-api", v.PayAPI.as_view(), name="pay-api"),
    path("page/<str:name>", v.page, name="page"),
    path("page-session", v.page_reading_session, name="page-session"),
    path("page-cookie", v.page_setting_cookie, name="page-cookie"),
    path("page-csrf", v.page_with_csrf, name="page-csrf"),
    path("page-private", v.page_private, name="page-private"),
    path("page-varying", v.page_varying, name="page-varying"),
    path("page-limited", v.page_limited, name="page-limited"),
    path("apage", v.apage, name="apage"),
    path("cached-cbv", v.CachedCBV.as_view(), name="cached-cbv"),
    path("cached-mixin", v.CachedMixinView.as_view(), name="cached-mixin"),
    path("cached-api", v.CachedAPI.as_view(), name="cached-api"),
    *router.urls,
]
