"""The shop's JSON views: every one of them uses a part of redkit's Django adapter."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from redkit_django import cached_view, ratelimit, ratelimit_exempt

from .models import Order


class BadRequest(Exception):
    pass


def _body(request: HttpRequest, *names: str) -> dict[str, Any]:
    try:
        data = json.loads(request.body or b"null")
    except ValueError:
        data = None
    if not isinstance(data, dict) or any(n not in data for n in names):
        raise BadRequest(f"expected a JSON object with {', '.join(names)}")
    return data


def _user_json(user: User) -> dict[str, Any]:
    return {"id": user.pk, "username": user.username, "name": user.first_name}


def _problem(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"status": status, "detail": detail}, status=status)


@require_GET
@ensure_csrf_cookie
def csrf(request: HttpRequest) -> HttpResponse:
    """The CSRF token for a client outside the browser: send it back as ``X-CSRFToken``."""
    return JsonResponse({"csrf_token": get_token(request)})


# -- sessions ------------------------------------------------------------------------------------
@require_POST
@ratelimit("5/minute", scope="login")  # per client address, through trusted proxies
def login_view(request: HttpRequest) -> HttpResponse:
    try:
        data = _body(request, "username", "password")
    except BadRequest as exc:
        return _problem(400, str(exc))
    user = authenticate(request, username=str(data["username"]), password=str(data["password"]))
    if user is None:
        return _problem(401, "unknown user or wrong password")
    login(request, user)  # a new session key (cycle_key): no session fixation
    return JsonResponse({"user": _user_json(user)})


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)  # the session is deleted in Redis
    return JsonResponse({"ok": True})


# -- users: cached reads, invalidated after commit ------------------------------------------------
@require_POST
def create_user(request: HttpRequest) -> HttpResponse:
    try:
        data = _body(request, "username", "password", "name")
    except BadRequest as exc:
        return _problem(400, str(exc))
    username = str(data["username"])
    if not username or len(username) > 150:
        return _problem(400, "username must have 1 to 150 characters")
    try:
        with transaction.atomic():
            user = User.objects.create_user(
                username, password=str(data["password"]), first_name=str(data["name"])[:150]
            )
    except IntegrityError:  # taken (also by a request racing this one)
        return _problem(409, "this username is taken")
    response = JsonResponse(_user_json(user), status=201)
    response["Location"] = reverse("shop:user", args=[user.pk])
    return response


@require_http_methods(["GET", "HEAD", "PATCH"])
def user(request: HttpRequest, user_id: int) -> HttpResponse:
    if request.method == "PATCH":
        return _update_user(request, user_id)
    return _user_page(request, user_id=user_id)


@cached_view(300, tags=["user:{user_id}"])
def _user_page(request: HttpRequest, user_id: int) -> HttpResponse:
    return JsonResponse(_user_json(get_object_or_404(User, pk=user_id)))


def _not_yours(request: HttpRequest, user_id: int) -> JsonResponse | None:
    """A 401 or 403 unless the request is made by user ``user_id``."""
    if not request.user.is_authenticated:
        return _problem(401, "log in first")
    if request.user.pk != user_id:
        return _problem(403, "only the user themself may do this")
    return None


def _update_user(request: HttpRequest, user_id: int) -> HttpResponse:
    refused = _not_yours(request, user_id)
    if refused is not None:
        return refused
    try:
        name = str(_body(request, "name")["name"])
    except BadRequest as exc:
        return _problem(400, str(exc))
    with transaction.atomic():
        person = get_object_or_404(User.objects.select_for_update(), pk=user_id)
        person.first_name = name
        person.save()  # "user:<id>" is invalidated once the transaction commits...
        if request.GET.get("dry_run"):
            transaction.set_rollback(True)  # ...and never if it rolls back
            return JsonResponse({"dry_run": True})
    return JsonResponse(_user_json(person))


@require_GET
def user_orders(request: HttpRequest, user_id: int) -> HttpResponse:
    """A user's own orders: checked at each request, then read from the cache."""
    refused = _not_yours(request, user_id)
    return refused if refused is not None else _orders_page(request, user_id=user_id)


@cached_view(60, tags=["user:{user_id}:orders"])
def _orders_page(request: HttpRequest, user_id: int) -> HttpResponse:
    orders = Order.objects.filter(user_id=user_id)
    return JsonResponse({"orders": [{"id": o.pk, "total": o.total} for o in orders]})


# -- orders: idempotent (REDKIT["IDEMPOTENCY_METHODS"]), a receipt job sent after commit ---------
@require_POST
def create_order(request: HttpRequest) -> HttpResponse:
    from .tasks import send_receipt

    if not request.user.is_authenticated:
        return _problem(401, "log in first")
    try:
        total = int(_body(request, "total")["total"])
    except (BadRequest, TypeError, ValueError) as exc:
        return _problem(400, str(exc))
    with transaction.atomic():
        order = Order.objects.create(user=request.user, total=max(total, 0))
        job_id = send_receipt.enqueue_on_commit(order.pk)
        if total <= 0:
            transaction.set_rollback(True)  # no order, no receipt job, no invalidation
            return _problem(422, "total must be positive")
    return JsonResponse({"id": order.pk, "total": order.total, "receipt_job": job_id}, status=201)


# -- a slow report: 202 and a django.tasks result to poll ------------------------------------------
@require_POST
@ratelimit("3/minute", key="user")
def start_report(request: HttpRequest) -> HttpResponse:
    from .tasks import build_report

    if not request.user.is_authenticated:
        return _problem(401, "log in first")
    result = build_report.enqueue(request.user.pk)
    status_url = reverse("shop:report", args=[result.id])
    response = JsonResponse({"id": result.id, "status_url": status_url}, status=202)
    response["Location"] = status_url
    return response


@require_GET
@ratelimit_exempt  # polled often: not counted against the site-wide limit
def report(request: HttpRequest, result_id: str) -> HttpResponse:
    from .tasks import build_report, report_progress

    try:
        result = build_report.get_result(result_id)
    except Exception:  # unknown id: django.tasks raises its ResultDoesNotExist
        result = None
    if result is None or list(result.args[:1]) != [request.user.pk]:
        return _problem(404, "no such report")  # unknown, or another user's
    body: dict[str, Any] = {
        "id": result.id,
        "status": str(result.status),
        "progress": report_progress(result.id),
    }
    if body["status"] == "SUCCESSFUL":
        body["result"] = result.return_value
    return JsonResponse(body)
