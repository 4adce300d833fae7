"""Views of the session, middleware and decorator tests: function views (sync and async),
class-based views (method_decorator and mixins), Django REST framework APIView and ViewSet."""

from __future__ import annotations

import itertools
from typing import Any

from django.contrib.auth import login, logout
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.middleware.csrf import get_token
from django.utils.decorators import method_decorator
from django.views import View
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

import redkit_django
from redkit_django import cached_view, idempotent, ratelimit, ratelimit_exempt
from redkit_django.decorators import CachedViewMixin, IdempotentMixin, RateLimitMixin

counter = itertools.count(1)


def calls() -> int:
    return next(counter)


# -- sessions -------------------------------------------------------------------------------------
def session_set(request: HttpRequest, key: str, value: str) -> HttpResponse:
    request.session[key] = value
    return HttpResponse("ok")


def session_get(request: HttpRequest) -> JsonResponse:
    return JsonResponse({k: v for k, v in request.session.items() if not k.startswith("_")})


def session_expiry(request: HttpRequest, seconds: int) -> HttpResponse:
    request.session["e"] = 1
    request.session.set_expiry(seconds)
    return HttpResponse("ok")


def session_lost(request: HttpRequest) -> HttpResponse:
    """Reads the session, which another request then deletes (a logout), then changes it."""
    assert request.session.get("a") is not None
    redkit_django.get_kit().sessions.destroy(request.session.session_key)
    request.session["b"] = 2
    return HttpResponse("changed")


def do_login(request: HttpRequest, name: str) -> HttpResponse:
    user, _ = User.objects.get_or_create(username=name)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return HttpResponse(f"in {user.pk}")


def do_logout(request: HttpRequest) -> HttpResponse:
    logout(request)
    return HttpResponse("out")


async def asession_set(request: HttpRequest, key: str, value: str) -> HttpResponse:
    await request.session.aset(key, value)
    return HttpResponse("ok")


async def asession_get(request: HttpRequest) -> JsonResponse:
    items = await request.session.aitems()
    return JsonResponse({k: v for k, v in items if not k.startswith("_")})


async def acycle(request: HttpRequest) -> HttpResponse:
    await request.session.acycle_key()
    return HttpResponse("cycled")


# -- rate limits ----------------------------------------------------------------------------------
def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"plain {calls()}")


@ratelimit_exempt
def exempt(request: HttpRequest) -> HttpResponse:
    return HttpResponse("exempt")


@ratelimit("2/minute")
def limited(request: HttpRequest) -> HttpResponse:
    return HttpResponse("limited")


@ratelimit("2/minute", key="user")
def by_user(request: HttpRequest) -> HttpResponse:
    return HttpResponse("by user")


@ratelimit("2/minute", key="header:X-Api-Key")
def by_header(request: HttpRequest) -> HttpResponse:
    return HttpResponse("by header")


@ratelimit("2/minute", methods=["POST"])
def post_only(request: HttpRequest) -> HttpResponse:
    return HttpResponse("post only")


@ratelimit("2/minute", key=lambda request: request.GET.get("who"))
def by_callable(request: HttpRequest) -> HttpResponse:
    return HttpResponse("by callable")


@ratelimit("2/minute")
async def alimited(request: HttpRequest) -> HttpResponse:
    return HttpResponse("async limited")


@ratelimit("2/minute", key="user")
async def aby_user(request: HttpRequest) -> HttpResponse:
    return HttpResponse("async by user")


@method_decorator(ratelimit("2/minute"), name="dispatch")
class LimitedView(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("cbv")


class LimitedMixinView(RateLimitMixin, View):
    ratelimit = "2/minute"

    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("mixin")


class LimitedAPI(APIView):
    @method_decorator(ratelimit("2/minute"))
    def get(self, request: Request) -> Response:
        return Response({"api": True})


class LimitedViewSet(RateLimitMixin, viewsets.ViewSet):
    ratelimit = "2/minute"

    def list(self, request: Request) -> Response:
        return Response(["a", "b"])


# -- idempotency ----------------------------------------------------------------------------------
@idempotent()
def pay(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"payment": calls(), "body": request.body.decode()}, status=201)


@idempotent(required=True)
def pay_required(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"payment": calls()}, status=201)


@idempotent()
async def apay(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"payment": calls()}, status=201)


@idempotent()
def pay_and_fail(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the payment provider is down")


@idempotent()
def pay_streamed(request: HttpRequest) -> StreamingHttpResponse:
    n = calls()
    return StreamingHttpResponse(iter([b"paid ", str(n).encode()]), status=201)


def pay_plain(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"payment": calls()}, status=201)


class PayAPI(IdempotentMixin, APIView):
    def post(self, request: Request) -> Response:
        return Response({"payment": calls()}, status=201)


class PayViewSet(viewsets.ViewSet):
    @method_decorator(idempotent())
    def create(self, request: Request) -> Response:
        return Response({"payment": calls()}, status=201)


# -- the view cache -------------------------------------------------------------------------------
@cached_view(60, tags=["page:{name}"])
def page(request: HttpRequest, name: str) -> HttpResponse:
    return HttpResponse(f"{name} {calls()}")


@cached_view(60)
def page_reading_session(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"hello {request.session.get('name', 'stranger')} {calls()}")


@cached_view(60)
def page_setting_cookie(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(f"cookie {calls()}")
    response.set_cookie("theme", "dark")
    return response


@cached_view(60)
def page_with_csrf(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"token {get_token(request)} {calls()}")


@cached_view(60)
def page_private(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(f"private {calls()}")
    response["Cache-Control"] = "private"
    return response


@cached_view(60)
def page_varying(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(f"lang {request.headers.get('Accept-Language')} {calls()}")
    response["Vary"] = "Accept-Language"
    return response


@cached_view(60)
@ratelimit("1/minute")
def page_limited(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"limited page {calls()}")


@cached_view(60)
async def apage(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"async page {calls()}")


@method_decorator(cached_view(60), name="dispatch")
class CachedCBV(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(f"cbv page {calls()}")


class CachedMixinView(CachedViewMixin, View):
    cache_ttl = 60

    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(f"mixin page {calls()}")


class CachedAPI(CachedViewMixin, APIView):
    cache_ttl = 60

    def get(self, request: Request) -> Response:
        return Response({"n": calls()})


class CachedViewSet(viewsets.ViewSet):
    @method_decorator(cached_view(60))
    def list(self, request: Request) -> Response:
        return Response({"n": calls()})


def echo(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    return HttpResponse("echo")
