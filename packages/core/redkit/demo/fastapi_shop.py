"""The example shop on FastAPI and async SQLAlchemy: every feature of redkit's Starlette/FastAPI
adapter, the same shop as the Flask one (:mod:`redkit.demo.shop`).

- sessions kept in Redis (``Depends(rk.session)``), regenerated at login, a rate-limited login
  (``Depends(rk.limit(...))``);
- ``GET /users/{id}`` and ``GET /users/{id}/orders`` cached with tags (``@rk.cached``),
  invalidated when a transaction that changed the user or their orders commits (never on
  rollback): ``rk.bind_sqlalchemy`` on the ``async_sessionmaker``;
- ``POST`` and ``PATCH`` honour ``Idempotency-Key`` app-wide; ``POST /orders`` sends the receipt
  job only when its transaction commits (``enqueue_after_commit``);
- ``POST /reports`` answers ``202`` at once; ``GET /jobs/{id}`` is the job's state and
  ``GET /jobs/{id}/events`` follows it as Server-Sent Events (``rk.job_events``);
- the workers of both queues run in the application's event loop, started and stopped by its
  lifespan.

Run it: ``uvicorn redkit.demo.fastapi_shop:app``, or ``python -m redkit demo --part fastapi``
for a tour. ``REDKIT_URL`` and ``DATABASE_URL`` (an async driver's URL, like
``postgresql+psycopg_async://...``) choose the servers (``REDKIT_PREFIX`` the keys' prefix);
without them the shop runs on ``memory://`` and an in-memory SQLite database (one process
only), and its session key is a fixed demo key (set ``REDKIT_SESSION_SECRET`` in a deployment).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel
from sqlalchemy import ForeignKey, String, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import StaticPool

from redkit.queue import current_job
from redkit.sqlalchemy import enqueue_after_commit
from redkit.web import LazySession
from redkit_starlette import Redkit, regenerate_session

__all__ = ["Order", "Sessions", "User", "app", "create_app", "receipts", "rk"]


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "shop_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    email: Mapped[str] = mapped_column(String(120), unique=True)


class Order(Base):
    __tablename__ = "shop_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("shop_users.id"))
    total: Mapped[int]  # cents


DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite+aiosqlite://")
# one shared connection for the in-memory database, so that every session sees the same data
engine = create_async_engine(
    DATABASE_URL, **({"poolclass": StaticPool} if DATABASE_URL == "sqlite+aiosqlite://" else {})
)
Sessions = async_sessionmaker(engine, expire_on_commit=False)

rk = Redkit(
    os.environ.get("REDKIT_URL", "memory://shop"),
    prefix=os.environ.get("REDKIT_PREFIX", "shop"),
    sessions=True,
    session_secret=os.environ.get("REDKIT_SESSION_SECRET", "demo-only-session-key-change-me"),
    ratelimit_default="120/minute",
    idempotency_methods=("POST", "PATCH"),  # keys kept apart per session cookie, by default
)
# which cache tags a change of each model invalidates, after its transaction commits
rk.bind_sqlalchemy(
    Sessions,
    {User: ["user:{id}", "users"], Order: ["order:{id}", "user:{user_id}:orders"]},
)

receipts: list[int] = []  # what the receipt task "sent" (in this process)


@rk.task(queue="mail", attempts=5, backoff=2.0)
async def send_receipt(order_id: int) -> int:
    async with Sessions() as db:
        order = await db.get(Order, order_id)
    if order is None:
        raise LookupError(f"order {order_id} is gone")
    receipts.append(order_id)
    return order.total


@rk.task(queue="reports", attempts=3, timeout=300)
async def build_report(user_id: int, steps: int = 5, pause: float = 0.05) -> dict[str, Any]:
    job = current_job()
    for step in range(1, steps + 1):
        await asyncio.sleep(pause)  # the slow part
        if job is not None:
            await job.update_progress({"step": step, "of": steps})
    async with Sessions() as db:
        count, total = (
            await db.execute(
                select(func.count(Order.id), func.coalesce(func.sum(Order.total), 0)).where(
                    Order.user_id == user_id
                )
            )
        ).one()
    return {"user_id": user_id, "orders": count, "total": int(total)}


rk.worker("mail", concurrency=4)
rk.worker("reports", concurrency=4)


async def database() -> AsyncIterator[AsyncSession]:
    async with Sessions() as db:
        yield db


Db = Annotated[AsyncSession, Depends(database)]
Session = Annotated[LazySession, Depends(rk.session)]


class NewUser(BaseModel):
    name: str
    email: str


class Rename(BaseModel):
    name: str


class Login(BaseModel):
    user_id: int


class NewOrder(BaseModel):
    total: int


def _user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "name": user.name, "email": user.email}


def _current_user_id(session: LazySession) -> int:
    user_id = session.get("user_id")
    if user_id is None:
        raise HTTPException(401, "log in first")
    return int(user_id)


def create_app() -> FastAPI:
    """The application (one per call, each with its own kit while it runs)."""

    @asynccontextmanager
    async def tables(_: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        yield

    shop = FastAPI(title="shop", lifespan=rk.lifespan(tables), middleware=rk.middleware())

    # -- sessions ----------------------------------------------------------------------------
    @shop.post("/login", dependencies=[Depends(rk.limit("5/minute", scope="login"))])
    async def login(body: Login, request: Request, db: Db, session: Session) -> dict[str, Any]:
        user = await db.get(User, body.user_id)
        if user is None:
            raise HTTPException(401, "no such user")
        regenerate_session(request)  # a new session id for the logged-in user: no fixation
        session["user_id"] = user.id
        return {"user": _user_json(user)}

    @shop.post("/logout")
    async def logout(session: Session) -> dict[str, bool]:
        session.clear()  # the session is deleted in Redis and the cookie removed
        return {"ok": True}

    # -- users: cached reads, invalidated after commit ---------------------------------------
    @shop.post("/users", status_code=201)
    async def create_user(body: NewUser, db: Db, response: Response) -> dict[str, Any]:
        taken = await db.scalar(select(User.id).where(User.email == body.email))
        if taken is not None:
            raise HTTPException(409, "this email is taken")
        user = User(name=body.name, email=body.email)
        db.add(user)
        await db.commit()  # returns once "users" is invalidated
        response.headers["Location"] = f"/users/{user.id}"
        return _user_json(user)

    @shop.get("/users/{user_id}")
    @rk.cached(ttl=300, tags=["user:{user_id}"])
    async def get_user(user_id: int, db: Db) -> dict[str, Any]:
        user = await db.get(User, user_id)
        if user is None:
            raise HTTPException(404, "no such user")
        return _user_json(user)

    @shop.patch("/users/{user_id}")
    async def rename_user(
        user_id: int, body: Rename, db: Db, dry_run: bool = False
    ) -> dict[str, Any]:
        user = await db.get(User, user_id)
        if user is None:
            raise HTTPException(404, "no such user")
        user.name = body.name
        if dry_run:
            await db.flush()  # written in the transaction...
            await db.rollback()  # ...and rolled back: nothing is invalidated
            return {"dry_run": True}
        await db.commit()  # "user:<id>" is invalidated once this commit succeeds
        return _user_json(user)

    @shop.get("/users/{user_id}/orders")
    @rk.cached(ttl=60, tags=["user:{user_id}:orders"])
    async def user_orders(user_id: int, db: Db) -> dict[str, Any]:
        orders = await db.scalars(select(Order).where(Order.user_id == user_id).order_by(Order.id))
        return {"orders": [{"id": o.id, "total": o.total} for o in orders]}

    # -- orders: a job sent only when the order is committed ---------------------------------
    @shop.post("/orders", status_code=201)
    async def create_order(
        body: NewOrder,
        request: Request,
        db: Db,
        session: Session,
        key: Annotated[str | None, Depends(rk.idempotency())],
    ) -> dict[str, Any]:
        user_id = _current_user_id(session)
        order = Order(user_id=user_id, total=body.total)
        db.add(order)
        await db.flush()  # the order has its id
        task = rk.task_for(request, send_receipt)
        job_id = enqueue_after_commit(db, task, order.id)
        if order.total <= 0:
            await db.rollback()  # no order, no receipt job, no invalidation
            raise HTTPException(422, "total must be positive")
        await db.commit()  # the receipt job is sent once this commit succeeds
        return {"id": order.id, "total": order.total, "receipt_job": job_id, "key": key}

    # -- a slow report: 202, then its state or its events ------------------------------------
    @shop.post("/reports", status_code=202)
    async def start_report(
        request: Request, response: Response, session: Session
    ) -> dict[str, str]:
        user_id = _current_user_id(session)
        job = await rk.task_for(request, build_report).options(keep=True).enqueue(user_id)
        response.headers["Location"] = f"/jobs/{job.id}"
        return {"job_id": job.id, "status": f"/jobs/{job.id}", "events": f"/jobs/{job.id}/events"}

    async def _own_job(request: Request, job_id: str, session: LazySession) -> Any:
        try:
            job = await request.app.state.redkit.queue("reports").get_job(job_id)
        except ValueError:
            job = None
        if job is None or not job.data or job.data["args"][0] != _current_user_id(session):
            raise HTTPException(404, "no such job")  # unknown, or another user's job
        return job

    @shop.get("/jobs/{job_id}", dependencies=[Depends(rk.limit("600/minute"))])
    async def job_status(job_id: str, request: Request, session: Session) -> dict[str, Any]:
        job = await _own_job(request, job_id, session)
        body: dict[str, Any] = {"id": job.id, "state": job.state, "progress": job.progress}
        if job.state == "completed":
            body["result"] = job.result
        elif job.state == "failed":
            body["error"] = job.failed_reason
        return body

    @shop.get("/jobs/{job_id}/events")
    async def job_events(job_id: str, request: Request, session: Session) -> Response:
        await _own_job(request, job_id, session)  # only the job's owner follows it
        return await rk.job_events(request, job_id, queue="reports", result=True)

    return shop


app = create_app()
