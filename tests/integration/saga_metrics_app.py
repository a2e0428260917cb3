"""Sagas with known outcomes for the Prometheus test, in one long-lived process.

The onboarding handler apps (simulated systems) and the real saga coordinator, with
``observer=default_saga_metrics()`` as ``bus sagas run`` passes it, on the memory transport and a
SQLite store, serving ``/metrics`` like ``bus sagas run``. Once the file ``--gate`` exists
(the test creates it after Prometheus scraped the idle process) HR publishes :data:`HIRES`;
the manager approves one admin and never answers for the other, whose saga stays running.
The process then stays up until SIGTERM, so Prometheus scrapes the final figures.

    python -m tests.integration.saga_metrics_app --store sqlite:/tmp/s.db --gate /tmp/g
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from datetime import date

from bus import (
    HttpServer,
    MemoryBroker,
    MemoryTransport,
    Publisher,
    Runner,
    TopicSpec,
    WorkerSettings,
)
from handlers.hr.contracts import EmployeeHired, PrivilegedAccessApproved
from sagas.coordinator import Coordinator
from sagas.definitions.onboarding import onboarding
from sagas.demo import Systems
from sagas.metrics import default_saga_metrics
from sagas.state import StepStatus
from sagas.stores.url import store_from_url
from sagas.versions import Catalog

log = logging.getLogger("it.sagas")


def _hire(n: int, department: str, **extra: str) -> EmployeeHired:
    return EmployeeHired.model_validate(
        {
            "employee_id": f"e-{n}",
            "full_name": f"Person {chr(ord('a') + n)}",
            "department": department,
            "manager_email": "boss@example.com",
            "start_date": date(2027, 1, 4),
            **extra,
        }
    )


#: Outcome by employee id: what the simulated systems and the manager are told to do.
HIRES = [
    _hire(1, "engineering"),  # completed: account, licenses + repositories, note, payroll
    _hire(2, "sales"),  # completed: no repositories (not an engineer)
    _hire(3, "finance", employment_type="contractor"),  # completed: no payroll
    _hire(4, "engineering", role="admin"),  # completed after the manager's approval
    _hire(5, "research"),  # compensated: payroll refuses (account, licenses, note undone)
    _hire(6, "engineering"),  # compensated: payroll refuses (repositories undone too)
    _hire(7, "support"),  # failed: the directory refuses the account (nothing to undo)
    _hire(8, "sales", role="admin"),  # running: waits for an approval that never comes
]
APPROVED = {"e-4"}
PAYROLL_REJECTS = {"e-5", "e-6"}
IDENTITY_REFUSES = {"e-7"}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--gate", required=True)
    parser.add_argument("--http-port", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
    logging.getLogger("bus").setLevel(logging.WARNING)
    logging.getLogger("bus.http").setLevel(logging.INFO)

    systems = Systems()
    systems.payroll.reject.update(PAYROLL_REJECTS)
    systems.directory.refuse.update(IDENTITY_REFUSES)
    transport = MemoryTransport(MemoryBroker(default_partitions=3))
    store = store_from_url(args.store)
    observer = default_saga_metrics()
    metrics = observer.metrics
    coordinator = Coordinator(
        Catalog([onboarding]),
        store,
        transport,
        poll_interval_s=0.05,
        gauges_interval_s=0.5,  # Prometheus scrapes every second
        observer=observer,
    )
    topics = {*coordinator.topics, *(t.bus_topic for t in onboarding.command_types())}
    runner = Runner(
        systems.apps(),
        transport,
        WorkerSettings(commit_interval_s=0.05),
        ensure_topics=[TopicSpec(t, partitions=3) for t in sorted(topics)],
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stop_coordinator, stop_apps = asyncio.Event(), asyncio.Event()
    await store.open()
    try:
        async with HttpServer(port=args.http_port, metrics=metrics) as server:
            log.info("serving /metrics on %s", server.url)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(runner.run(stop_apps))
                await runner.started.wait()
                saga_loop = tg.create_task(coordinator.run(stop_coordinator))
                while not os.path.exists(args.gate) and not stop.is_set():
                    await asyncio.sleep(0.05)
                hr = Publisher(transport, source="bus://hr")
                for hired in HIRES:
                    await hr.publish(hired)
                approved: set[str] = set()
                while not stop.is_set():  # the manager answers when the saga asks
                    for employee in APPROVED - approved:
                        stored = await store.load(onboarding.saga_id_for(_by_id(employee)))
                        wait = (
                            None if stored is None else stored.state.steps.get("manager_approval")
                        )
                        if wait is not None and wait.status == StepStatus.RUNNING:
                            approved.add(employee)
                            await hr.publish(
                                PrivilegedAccessApproved(
                                    employee_id=employee, approver="boss@example.com"
                                )
                            )
                    await asyncio.sleep(0.05)
                # The coordinator first: the runner stops the transport it publishes on.
                stop_coordinator.set()
                await asyncio.wait([saga_loop])
                stop_apps.set()
    finally:
        await store.close()


def _by_id(employee_id: str) -> EmployeeHired:
    return next(h for h in HIRES if h.employee_id == employee_id)


if __name__ == "__main__":
    asyncio.run(main())
