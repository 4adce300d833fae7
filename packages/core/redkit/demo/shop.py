"""A small shop on Flask, Flask-SQLAlchemy and redkit: every feature of the Flask extension.

- sessions kept in Redis (``REDKIT_SESSIONS``), regenerated at login, rate-limited login;
- ``GET /users/<id>`` and ``GET /users/<id>/orders`` cached with tags, invalidated when a
  transaction that changed the user or their orders commits (never on rollback);
- ``POST`` and ``PATCH`` honour ``Idempotency-Key`` app-wide; ``POST /orders`` sends the receipt
  job only when its transaction commits;
- ``POST /reports`` answers ``202`` with a job id at once; ``GET /jobs/<id>`` shows the job's
  state, progress and result.

Run it: ``flask --app redkit.demo.shop run`` and ``flask --app redkit.demo.shop redkit worker``
beside it, or ``python -m redkit demo --part shop`` for a tour with an in-process worker.
``REDKIT_URL`` and ``DATABASE_URL`` choose the servers. Without them the shop runs on
``memory://`` and an in-memory SQLite database: both live in one process only, so the web
process and a worker process would not see each other's data; a real deployment sets
``REDKIT_URL=redis://...`` (and ``DATABASE_URL``).
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import ForeignKey, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from flask import Blueprint, Flask, abort, jsonify, request, session, url_for
from redkit.errors import JobError
from redkit.queue import current_job
from redkit.sqlalchemy import enqueue_after_commit
from redkit_flask import Redkit, regenerate_session


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
kit = Redkit()
bp = Blueprint("shop", __name__)


class User(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "shop_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    email: Mapped[str] = mapped_column(String(120), unique=True)


class Order(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "shop_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("shop_users.id"))
    total: Mapped[int]  # cents


# which cache tags a change of each model invalidates, after its transaction commits
kit.bind_sqlalchemy(
    db,
    {
        User: ["user:{id}", "users"],
        Order: ["order:{id}", "user:{user_id}:orders"],
    },
)

receipts: list[int] = []  # what the receipt task "sent" (in this process)


@kit.task(queue="mail", attempts=5, backoff=2.0)
def send_receipt(order_id: int) -> int:
    order = db.session.get(Order, order_id)  # runs in an app context: Flask-SQLAlchemy works
    if order is None:
        raise LookupError(f"order {order_id} is gone")
    receipts.append(order_id)
    return order.total


@kit.task(queue="reports", attempts=3, timeout=300)
def build_report(user_id: int, steps: int = 5, pause: float = 0.05) -> dict[str, Any]:
    job = current_job()
    for step in range(1, steps + 1):
        time.sleep(pause)  # the slow part
        job.update_progress({"step": step, "of": steps})
    count, total = db.session.execute(
        select(func.count(Order.id), func.coalesce(func.sum(Order.total), 0)).where(
            Order.user_id == user_id
        )
    ).one()
    return {"user_id": user_id, "orders": count, "total": int(total)}


def _user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "name": user.name, "email": user.email}


def _body(*names: str) -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or any(n not in data for n in names):
        abort(400, f"expected a JSON object with {', '.join(names)}")
    return data


# -- sessions ------------------------------------------------------------------------------------
@bp.post("/login")
@kit.rate_limit("5/minute", scope="login")  # per client address, through trusted proxies
def login() -> Any:
    user = db.session.get(User, int(_body("user_id")["user_id"]))
    if user is None:
        abort(401)
    regenerate_session()  # a new session id for the logged-in user: no session fixation
    session["user_id"] = user.id
    return {"user": _user_json(user)}


@bp.post("/logout")
def logout() -> Any:
    session.clear()  # the session is deleted in Redis and the cookie removed
    return {"ok": True}


def _current_user_id() -> int:
    user_id = session.get("user_id")
    if user_id is None:
        abort(401)
    return int(user_id)


@kit.user_loader
def _idempotency_scope() -> object:
    return session.get("user_id")  # idempotency keys are kept apart per user


# -- users: cached reads, invalidated after commit -------------------------------------------------
@bp.post("/users")
def create_user() -> Any:
    data = _body("name", "email")
    user = User(name=str(data["name"]), email=str(data["email"]))
    db.session.add(user)
    db.session.commit()
    return _user_json(user), 201, {"Location": url_for("shop.get_user", user_id=user.id)}


@bp.get("/users/<int:user_id>")
@kit.cached(ttl=300, tags=["user:{user_id}"])
def get_user(user_id: int) -> Any:
    return _user_json(db.get_or_404(User, user_id))


@bp.patch("/users/<int:user_id>")
def update_user(user_id: int) -> Any:
    user = db.get_or_404(User, user_id)
    user.name = str(_body("name")["name"])
    if request.args.get("dry_run"):
        db.session.flush()  # written in the transaction...
        db.session.rollback()  # ...and rolled back: nothing is invalidated
        return {"dry_run": True}
    db.session.commit()  # "user:<id>" is invalidated once this commit succeeds
    return _user_json(user)


@bp.get("/users/<int:user_id>/orders")
@kit.cached(ttl=60, tags=["user:{user_id}:orders"])
def user_orders(user_id: int) -> Any:
    orders = db.session.scalars(select(Order).where(Order.user_id == user_id).order_by(Order.id))
    return {"orders": [{"id": o.id, "total": o.total} for o in orders]}


# -- orders: a job sent only when the order is committed ---------------------------------------
@bp.post("/orders")
@kit.idempotent()  # also app-wide here; per view it works without REDKIT_IDEMPOTENCY_METHODS
def create_order() -> Any:
    data = _body("total")
    user_id = _current_user_id()
    order = Order(user_id=user_id, total=int(data["total"]))
    db.session.add(order)
    db.session.flush()  # the order has its id
    job_id = enqueue_after_commit(db.session(), send_receipt, order.id)
    if order.total <= 0:
        db.session.rollback()  # no order, no receipt job, no invalidation
        abort(422, "total must be positive")
    db.session.commit()
    return {"id": order.id, "total": order.total, "receipt_job": job_id}, 201


# -- a slow report: 202 and a job to poll -------------------------------------------------------
@bp.post("/reports")
@kit.rate_limit("3/minute", key=_current_user_id)
def start_report() -> Any:
    job = build_report.options(keep=True).enqueue(_current_user_id())
    status_url = url_for("shop.job_status", job_id=job.id)
    return {"job_id": job.id, "status_url": status_url}, 202, {"Location": status_url}


@bp.get("/jobs/<job_id>")
@kit.exempt  # polled often: not counted against the default limit
def job_status(job_id: str) -> Any:
    try:
        job = kit.queue("reports").get_job(job_id)
    except (JobError, ValueError):
        job = None
    if job is None or not job.data or job.data["args"][0] != _current_user_id():
        abort(404)  # unknown, or another user's job
    body: dict[str, Any] = {"id": job.id, "state": job.state, "progress": job.progress}
    if job.state == "completed":
        body["result"] = job.result
    elif job.state == "failed":
        body["error"] = job.failed_reason
    return jsonify(body)


def create_app(**config: Any) -> Flask:
    """The application; ``config`` overrides the defaults (and the environment)."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=os.environ.get("SECRET_KEY", "change-me-in-production"),
        SQLALCHEMY_DATABASE_URI=os.environ.get("DATABASE_URL", "sqlite://"),
        REDKIT_URL=os.environ.get("REDKIT_URL", "memory://shop"),
        REDKIT_PREFIX="shop",
        REDKIT_SESSIONS=True,
        REDKIT_RATELIMIT_DEFAULT="120/minute",
        REDKIT_IDEMPOTENCY_METHODS="POST, PATCH",
    )
    app.config.from_prefixed_env()  # FLASK_REDKIT_PREFIX=..., FLASK_SQLALCHEMY_DATABASE_URI=...
    app.config.update(config)
    db.init_app(app)
    kit.init_app(app)
    app.register_blueprint(bp)
    with app.app_context():
        db.create_all()
    return app
