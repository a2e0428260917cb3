"""Traffic for the dashboards: the demo chain under a varying load, with real failures.

Runs the demo's three apps (identity, licensing, notifications) in this process on the
memory transport, serves ``/metrics`` like ``bus run``, and publishes hires at a rate
that swings between ``--rate``/4 and ``--rate`` events/s. Failures happen for real: the
directory times out now and then (retried; sometimes three times in a row: dead letter),
and the CRM seat pool runs dry until it is topped up (dead letters, no retry).

``--sagas`` also onboards every hire with the real saga coordinator (SQLite store in a
temporary directory) and the onboarding command handlers (sagas/demo.py's simulated
systems). Each hire's fate is drawn when it is published: most complete; some wait for a
manager who answers after seconds, rejects (compensated) or not within the run; payroll
rejects some (compensated), the directory refuses some (failed), the CRM seat pool runs
dry now and then until it is topped up (sales hires compensated); a few of the rejected
cannot have their account removed (a hold: the compensation times out three times, the
saga needs attention, and an operator lifts the hold and retries 45 s later); the code
host and payroll have transient outages (retried; now and then dead-lettered, so a step
times out and is re-sent).

    python deploy/load.py --port 9400 --minutes 6 [--sagas --rate 10]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from bus import (
    HttpServer,
    MemoryBroker,
    MemoryTransport,
    Publisher,
    Runner,
    TopicSpec,
)
from handlers.hr.contracts import EmployeeHired, PrivilegedAccessApproved, PrivilegedAccessRejected
from handlers.identity.handler import build_app as identity_app
from handlers.identity.system import Directory, DirectoryUnavailableError
from handlers.licensing.handler import build_app as licensing_app
from handlers.licensing.system import LicenseManager
from handlers.notifications.handler import build_app as notifications_app
from handlers.notifications.system import Mailer
from sagas.coordinator import Coordinator, request_action
from sagas.definitions.onboarding import onboarding
from sagas.demo import Systems
from sagas.metrics import default_saga_metrics
from sagas.state import SagaStatus, StepStatus
from sagas.stores.base import SagaQuery, SagaStore
from sagas.stores.url import store_from_url
from sagas.versions import Catalog

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


async def publish(
    publisher: Publisher, rate: float, stop: asyncio.Event, world: SagaWorld | None
) -> None:
    started = time.monotonic()
    n = 0
    while not stop.is_set():
        t = time.monotonic() - started
        current = rate * (0.625 + 0.375 * math.sin(2 * math.pi * t / 150))
        n += 1
        hired = EmployeeHired(
            employee_id=f"e-{n}",
            full_name=f"Person {_letters(n)}",
            department=random.choice(DEPARTMENTS),
            manager_email="boss@example.com",
            start_date=date(2027, 1, 4),
        )
        await publisher.publish(hired if world is None else world.hire(hired))
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


class StuckDirectory(Directory):
    """A directory that cannot remove the accounts in ``stuck`` (say, a legal hold): the
    saga's DeprovisionAccount is dead-lettered, its compensation times out three times and
    the saga stops in needs_attention until an operator clears the hold and retries."""

    def __init__(self) -> None:
        super().__init__()
        self.stuck: set[str] = set()

    def remove_account(self, employee_id: str) -> None:
        if employee_id in self.stuck:
            raise DirectoryUnavailableError(f"{employee_id}'s account is on hold")
        super().remove_account(employee_id)


@dataclass
class SagaWorld:
    """The onboarding saga for real: the coordinator (SQLite store) and the simulated
    systems' command handlers, with each hire's fate drawn when it is published."""

    store: SagaStore
    directory: StuckDirectory = field(default_factory=StuckDirectory)
    systems: Systems = field(init=False)
    #: employee id -> seconds after the hire when the manager answers, and the answer.
    approvals: dict[str, tuple[float, bool]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.systems = Systems(directory=self.directory)
        # transient outages: retried by the handler, now and then dead-lettered (the step
        # then times out after 30 s and its command is re-sent)
        self.systems.host.failure_rate = 0.25
        self.systems.payroll.failure_rate = 0.05
        self.systems.licenses.seats.update(office=10**9, chat=10**9, **{"code-hosting": 10**9})

    def hire(self, hired: EmployeeHired) -> EmployeeHired:
        """Decide what the world does to this hire's onboarding; the hire to publish."""
        e = hired.employee_id
        roll = random.random()
        if roll < 0.04:
            self.directory.refuse.add(e)  # failed: nothing to undo
        elif roll < 0.12:
            self.systems.payroll.reject.add(e)  # compensated
            if random.random() < 0.1:
                self.directory.stuck.add(e)  # ... then stuck undoing the account
        if random.random() < 0.15:
            hired = hired.model_copy(update={"role": "admin"})  # waits for approval
            # most managers answer within seconds, some take longer than the run
            self.approvals[e] = (random.expovariate(1 / 20), random.random() < 0.9)
        if random.random() < 0.2:
            hired = hired.model_copy(update={"employment_type": "contractor"})  # no payroll
        return hired


async def manage(world: SagaWorld, hr: Publisher, stop: asyncio.Event) -> None:
    """Managers answer approval requests; the CRM seat pool runs dry now and then; an
    operator clears stuck sagas after a while."""
    asked: dict[str, float] = {}
    attention: dict[str, float] = {}
    while not stop.is_set():
        await asyncio.sleep(0.5)
        now = time.monotonic()
        seats = world.systems.licenses.seats
        if random.random() < 0.01:
            seats["crm"] = 0  # the pool runs dry: sales hires are compensated ...
        elif random.random() < 0.05:
            seats["crm"] = max(seats["crm"], 50)  # ... until someone buys seats
        for state in await world.store.list_sagas(
            SagaQuery(statuses=(SagaStatus.RUNNING, SagaStatus.NEEDS_ATTENTION), limit=10_000)
        ):
            e = state.data["employee_id"]
            wait = state.steps.get("manager_approval")
            if wait is not None and wait.status == StepStatus.RUNNING and e in world.approvals:
                asked.setdefault(e, now)
                delay, yes = world.approvals[e]
                if now - asked[e] >= delay:
                    del world.approvals[e]
                    answer = PrivilegedAccessApproved if yes else PrivilegedAccessRejected
                    await hr.publish(answer(employee_id=e, approver="boss@example.com"))
            if state.status == SagaStatus.NEEDS_ATTENTION:
                attention.setdefault(state.saga_id, now)
                if now - attention[state.saga_id] > 45:  # the operator fixes it and retries
                    del attention[state.saga_id]
                    world.directory.stuck.discard(e)
                    await request_action(world.store, state.saga_id, "retry", reason="hold lifted")


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9400)
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--rate", type=float, default=80.0, help="peak hires per second")
    parser.add_argument(
        "--sagas", action="store_true", help="also onboard every hire with the saga coordinator"
    )
    args = parser.parse_args()
    directory, licenses = Directory(), LicenseManager()
    apps = [identity_app(directory), licensing_app(licenses), notifications_app(Mailer())]
    transport = MemoryTransport(MemoryBroker(default_partitions=3))
    stop, stop_coordinator = asyncio.Event(), asyncio.Event()
    with tempfile.TemporaryDirectory(prefix="bus-load-") as tmp:
        store = store_from_url(f"sqlite:{Path(tmp) / 'sagas.db'}")
        world = SagaWorld(store) if args.sagas else None
        coordinator = Coordinator(
            Catalog([onboarding]),
            store,
            transport,
            poll_interval_s=0.05,
            gauges_interval_s=1.0,
            observer=default_saga_metrics(),
        )
        topics = {*coordinator.topics, *(t.bus_topic for t in onboarding.command_types())}
        runner = Runner(
            apps + (world.systems.apps() if world else []),
            transport,
            ensure_topics=[TopicSpec(t, partitions=3) for t in sorted(topics)],
        )
        await store.open()
        async with HttpServer(port=args.port) as server, asyncio.TaskGroup() as tg:
            print(f"serving {server.url}/metrics for {args.minutes} minutes", flush=True)
            tg.create_task(runner.run(stop))
            await runner.started.wait()
            hr = Publisher(transport, source="bus://hr")
            if world is not None:
                tg.create_task(coordinator.run(stop_coordinator))
                tg.create_task(manage(world, hr, stop_coordinator))
            tg.create_task(publish(hr, args.rate, stop_coordinator, world))
            tg.create_task(make_trouble(directory, licenses, stop_coordinator))
            await asyncio.sleep(args.minutes * 60)
            stop_coordinator.set()  # first: the runner stops the transport it publishes on
            await asyncio.sleep(1)
            stop.set()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
