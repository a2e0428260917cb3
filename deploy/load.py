"""Traffic for the dashboards: the demo chain under a varying load, with real failures.

Runs the demo's three apps (identity, licensing, notifications) in this process on the
memory transport, serves ``/metrics`` like ``bus run``, and publishes hires at a rate
that swings between ``--rate``/4 and ``--rate`` events/s. Failures happen for real: the
directory times out now and then (retried; sometimes three times in a row: dead letter),
and the CRM seat pool runs dry until it is topped up (dead letters, no retry).

``--simulate-sagas`` also feeds the saga hooks of ``bus.metrics`` from a stand-in
coordinator (random step times and outcomes) until the saga coordinator exists: the
sagas dashboard then shows the shape of its panels, not measured saga behaviour.

    python deploy/load.py --port 9400 --minutes 6 [--simulate-sagas]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import time
from datetime import date

from bus import HttpServer, MemoryBroker, MemoryTransport, Publisher, Runner, default_metrics
from handlers.hr.contracts import EmployeeHired
from handlers.identity.handler import build_app as identity_app
from handlers.identity.system import Directory
from handlers.licensing.handler import build_app as licensing_app
from handlers.licensing.system import LicenseManager
from handlers.notifications.handler import build_app as notifications_app
from handlers.notifications.system import Mailer

DEPARTMENTS = ["engineering", "engineering", "sales", "support"]


def _letters(n: int) -> str:
    """``n`` in letters: the directory builds logins from the letters of a name only, and
    names that differ only in digits would all collide on one login (each hire then
    scans every account: the handler latency panel showed that as growing p50)."""
    out = ""
    while True:
        n, digit = divmod(n, 26)
        out = chr(ord("a") + digit) + out
        if n == 0:
            return out


async def publish(publisher: Publisher, rate: float, stop: asyncio.Event) -> None:
    started = time.monotonic()
    n = 0
    while not stop.is_set():
        t = time.monotonic() - started
        current = rate * (0.625 + 0.375 * math.sin(2 * math.pi * t / 150))
        n += 1
        await publisher.publish(
            EmployeeHired(
                employee_id=f"e-{n}",
                full_name=f"Person {_letters(n)}",
                department=random.choice(DEPARTMENTS),
                manager_email="boss@example.com",
                start_date=date(2027, 1, 4),
            )
        )
        await asyncio.sleep(random.expovariate(current))


async def make_trouble(directory: Directory, licenses: LicenseManager, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(1)
        roll = random.random()
        if roll < 0.15:
            directory.fail_next = 1  # one timeout: the retry succeeds
        elif roll < 0.18:
            directory.fail_next = 3  # three in a row: out of tries, dead-lettered
        if random.random() < 0.03:
            licenses.seats["crm"] = 0  # the pool runs dry ...
        elif random.random() < 0.2:
            licenses.seats["crm"] = max(licenses.seats["crm"], 50)  # ... until someone buys seats
        licenses.seats.update(office=10**9, chat=10**9, **{"code-hosting": 10**9})


async def simulate_sagas(stop: asyncio.Event) -> None:
    """A stand-in coordinator: calls the saga hooks as a real one would."""
    metrics = default_metrics()
    active: dict[int, tuple[float, str]] = {}
    steps = [("create_account", 0.05), ("assign_licenses", 0.2), ("notify_manager", 0.02)]
    n = 0
    while not stop.is_set():
        await asyncio.sleep(0.25)
        now = time.monotonic()
        for _ in range(random.randint(0, 4)):
            n += 1
            active[n] = (now, "running")
            metrics.saga_started("onboarding")
        for saga_id, (began, state) in list(active.items()):
            age = now - began
            if state == "needs_attention":
                if random.random() < 0.01:
                    del active[saga_id]
                    metrics.saga_finished("onboarding", "compensated", age)
                continue
            if age < random.uniform(1, 8):
                continue
            for step, typical_s in steps:
                took = random.lognormvariate(math.log(typical_s), 0.6)
                timed_out = random.random() < 0.01
                outcome = "timed_out" if timed_out else "succeeded"
                metrics.saga_step_finished("onboarding", step, outcome, took)
                if timed_out:
                    metrics.saga_timeout_fired("onboarding", step)
            roll = random.random()
            if roll < 0.9:
                del active[saga_id]
                metrics.saga_finished("onboarding", "completed", age)
            elif roll < 0.97:
                del active[saga_id]
                metrics.saga_finished("onboarding", "compensated", age)
            elif roll < 0.99:
                del active[saga_id]
                metrics.saga_finished("onboarding", "failed", age)
            else:
                active[saga_id] = (began, "needs_attention")
                metrics.saga_needs_attention("onboarding")
        counts: dict[str, int] = {"running": 0, "compensating": 0, "needs_attention": 0}
        for _, state in active.values():
            counts[state] += 1
        counts["compensating"] = random.randint(0, 3)
        oldest = max((now - began for began, _ in active.values()), default=0.0)
        metrics.sagas_active("onboarding", counts, oldest_age_s=oldest)
        backlog = random.randint(0, 5)
        metrics.outbox_observed(
            "sqlite", backlog=backlog, oldest_age_s=random.uniform(0, 0.5) if backlog else 0.0
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9400)
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--rate", type=float, default=80.0, help="peak hires per second")
    parser.add_argument("--simulate-sagas", action="store_true")
    args = parser.parse_args()
    directory, licenses = Directory(), LicenseManager()
    apps = [identity_app(directory), licensing_app(licenses), notifications_app(Mailer())]
    transport = MemoryTransport(MemoryBroker(default_partitions=3))
    runner = Runner(apps, transport)
    stop = asyncio.Event()
    async with HttpServer(port=args.port) as server, asyncio.TaskGroup() as tg:
        print(f"serving {server.url}/metrics for {args.minutes} minutes", flush=True)
        tg.create_task(runner.run(stop))
        await runner.started.wait()
        tg.create_task(publish(Publisher(transport, source="bus://hr"), args.rate, stop))
        tg.create_task(make_trouble(directory, licenses, stop))
        if args.simulate_sagas:
            tg.create_task(simulate_sagas(stop))
        await asyncio.sleep(args.minutes * 60)
        stop.set()


if __name__ == "__main__":
    asyncio.run(main())
