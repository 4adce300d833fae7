"""The web primitives: sessions, idempotency keys, rate limits, locks, pub/sub and streams.
``python -m redkit demo --part web`` runs it."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import redkit
import redkit.asyncio
from redkit.idempotency import Outcome, fingerprint
from redkit.sessions import SessionData


def sessions(kit: redkit.Redkit) -> None:
    print("1. sessions: two concurrent requests change different keys, neither change is lost")
    sid = kit.sessions.create({"user": None, "cart": []})
    first: SessionData = kit.sessions.open(sid)  # two requests with the same cookie
    second: SessionData = kit.sessions.open(sid)
    first["cart"] = ["tea"]
    second["theme"] = "dark"
    kit.sessions.commit(first)
    kit.sessions.commit(second)
    print("  stored:", kit.sessions.load(sid))
    new_sid = kit.sessions.regenerate(sid)  # at login: a new id, the old one is gone
    print(f"  after regenerate: old id loads {kit.sessions.load(sid)}, new id keeps the data")
    print("  an id the server never issued is not adopted:", kit.sessions.load("attacker-id"))
    assert new_sid is not None
    kit.sessions.destroy(new_sid)


def idempotency(kit: redkit.Redkit) -> None:
    print("\n2. idempotency keys: a retried POST runs once and replays the stored response")
    body = b'{"amount": 1000}'
    fp = fingerprint("POST", "/payments", body)
    charges = []
    for attempt in (1, 2):
        begun = kit.idempotency.begin("pay-8f3a", fp, scope="customer-7")
        if begun.outcome is Outcome.STARTED:
            charges.append(attempt)
            assert begun.token is not None
            kit.idempotency.complete(
                "pay-8f3a", begun.token, 201, {"Content-Type": "application/json"},
                b'{"id": "ch_1"}', scope="customer-7",
            )  # fmt: skip
            print(f"  attempt {attempt}: started, charged, stored 201")
        else:
            print(f"  attempt {attempt}: {begun.outcome.name}, {begun.status} {begun.body!r}")
    other = kit.idempotency.begin("pay-8f3a", fingerprint("POST", "/payments", b"{}"), "customer-7")
    print(f"  same key, different body: {other.outcome.name}; charges made: {len(charges)}")


def rate_limits(kit: redkit.Redkit) -> None:
    print("\n3. rate limits: 20 threads share '100/minute', exactly 100 pass")
    barrier = threading.Barrier(20)

    def client(_: int) -> int:
        barrier.wait()
        return sum(bool(kit.limiter.hit("api:alice", "100/minute")) for _ in range(10))

    with ThreadPoolExecutor(20) as pool:
        print("  allowed:", sum(pool.map(client, range(20))), "of 200")
    denied = kit.limiter.hit("api:alice", "100/minute")
    print("  headers of the next one:", denied.headers(legacy=False))
    ip = kit.client_ip.resolve("198.51.100.4", {"X-Forwarded-For": "6.6.6.6"})
    print(f"  X-Forwarded-For from an untrusted peer is ignored: client ip {ip}")


def locks(kit: redkit.Redkit) -> None:
    print("\n4. locks: fencing tokens increase with every holder")
    tokens = []
    for _ in range(3):
        with kit.lock("nightly-report", ttl=10) as lock:
            tokens.append(lock.fencing_token)
    print("  fencing tokens:", " < ".join(str(t) for t in tokens))
    holder = kit.lock("nightly-report", ttl=10)
    holder.acquire()
    try:
        with kit.lock("nightly-report", ttl=10, timeout=0.05):
            pass
    except redkit.LockNotAcquired:
        print("  a second worker gives up after 50 ms: LockNotAcquired")
    holder.release()


async def messaging(url: str) -> None:
    print("\n5. pub/sub and streams (async)")
    async with redkit.asyncio.Redkit.from_url(url, prefix="demo") as akit:
        async with akit.pubsub.subscribe("orders") as sub:
            await akit.pubsub.publish("orders", {"id": 1, "total": 9.5})
            message = await sub.get(timeout=5)
            print("  received on 'orders':", message.data if message else None)
        stream = akit.stream("audit")
        for n in range(3):
            await stream.add({"event": "login", "n": n})
        batch = await stream.read("auditors", "worker-1", count=10)
        print(f"  worker-1 read {len(batch)} entries and acknowledges 2 of them")
        await stream.ack("auditors", *batch[:2])
        await asyncio.sleep(0.05)
        stale = await stream.claim_stale("auditors", "worker-2", min_idle=0.01)
        print("  worker-2 recovers the unacknowledged one:", [m.data for m in stale])
        await akit.clear()


def run(url: str) -> None:
    with redkit.Redkit.from_url(url, prefix="demo") as kit:
        kit.clear()
        sessions(kit)
        idempotency(kit)
        rate_limits(kit)
        locks(kit)
        asyncio.run(messaging(url))
        kit.clear()
