"""The onboarding demo (the README's main command): several hires, end to end, one process.

``bus sagas demo`` runs the handler apps (identity, licensing, repositories,
notifications, payroll - simulated systems), the coordinator and an upstream HR system
on one transport and one saga store: by default the memory transport and a fresh SQLite
file, so no broker and no server. It runs both onboarding versions (new hires start on
version 2) and the offboarding. The scenario (``sagas/demo_hires.json``) has hires that
complete (each manager assigns a desk: the demo completes the ``assign_desk`` task as
them, as ``bus tasks complete`` would), one that waits for a manager's approval (granted
when the saga asks), one approved before the saga asked (the early approval is kept), a
contractor (no payroll record), one whose start date HR moves while the saga waits for
it (the activation is re-planned), one the payroll refuses mid-way (compensated: account,
licenses, repositories and the manager's note undone, last first), one whose account the
directory refuses (nothing to undo), and two leavers offboarded (one under a legal hold:
the account is kept and legal told), each returning their equipment to the manager in a
child saga (IT issues the hires' equipment the same way). The start dates are past (the
moved one is moved into the past), so each account is activated at once: the demo runs in
real time.
It prints each saga's story and timeline, a table and a summary; exit 0 when every saga
ended as the scenario expects.

The same code runs on Kafka + PostgreSQL: ``bus sagas demo --transport kafka --store
postgresql://...`` (ids then get a run suffix, so a second run does not meet the first
run's sagas).

Example::

    code = await run_demo(load_scenario(DEFAULT_SCENARIO), store=store, transport=transport)
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from bus import (
    App,
    BusError,
    ConfigError,
    NamespacedTransport,
    Publisher,
    Runner,
    TopicSpec,
    Transport,
    WorkerSettings,
    utc_now,
)
from handlers.hr.contracts import EmployeeLeft, HireChanged, PrivilegedAccessApproved
from handlers.identity.handler import build_command_app as identity_commands
from handlers.identity.system import Directory
from handlers.licensing.handler import build_command_app as licensing_commands
from handlers.licensing.system import LicenseManager
from handlers.notifications.handler import build_command_app as notification_commands
from handlers.notifications.system import Mailer
from handlers.payroll.handler import build_app as payroll_app
from handlers.payroll.system import Payroll
from handlers.repositories.handler import build_app as repositories_app
from handlers.repositories.system import CodeHost
from sagas.console import echo
from sagas.coordinator import Coordinator
from sagas.definition import SagaDefinition
from sagas.definitions.equipment import equipment_issue, equipment_recovery
from sagas.definitions.offboarding import offboarding
from sagas.definitions.onboarding import onboarding
from sagas.definitions.onboarding_v2 import onboarding_v2
from sagas.demo_scenario import DEFAULT_SCENARIO, Scenario, load_scenario
from sagas.state import SagaState, StepStatus
from sagas.stores.base import SagaStore
from sagas.story import story
from sagas.tasks import complete_task, list_tasks
from sagas.timeline import format_table, format_timeline, summary
from sagas.versions import Catalog

__all__ = ["DEFAULT_SCENARIO", "DemoTimeoutError", "Scenario", "Systems", "load_scenario", "run_demo",
           "still_running"]  # fmt: skip

log = logging.getLogger("sagas.demo")

#: What the demo runs: both onboarding versions (new hires start on version 2), the
#: offboarding, and the equipment child sagas they start.
DEMO_DEFINITIONS: tuple[SagaDefinition, ...] = (
    onboarding,
    onboarding_v2,
    offboarding,
    equipment_issue,
    equipment_recovery,
)


@dataclass
class Systems:
    """The simulated systems the handlers act on."""

    directory: Directory = field(default_factory=Directory)
    licenses: LicenseManager = field(default_factory=LicenseManager)
    mailer: Mailer = field(default_factory=Mailer)
    payroll: Payroll = field(default_factory=Payroll)
    host: CodeHost = field(default_factory=CodeHost)

    def apps(self) -> list[App]:
        return [
            identity_commands(self.directory),
            licensing_commands(self.licenses),
            notification_commands(self.mailer),
            payroll_app(self.payroll),
            repositories_app(self.host),
        ]

    def employ(self, person: EmployeeLeft, department: str = "engineering") -> None:
        """Give ``person`` what they had before the demo: an account, seats, grants, pay."""
        login = self.directory.create_account(person.employee_id, person.full_name)
        self.licenses.assign(person.email, department)
        self.host.grant(person.employee_id, login, department)
        self.payroll.create_record(person.employee_id, person.full_name, utc_now().date())

    def report(self) -> str:
        return (
            f"systems: {len(self.directory.accounts)} account(s), "
            f"{len(self.licenses.assigned)} license holder(s), "
            f"{len(self.host.grants)} repository user(s), {len(self.payroll.records)} payroll "
            f"record(s), {len(self.mailer.sent)} mail(s) to managers"
        )


def isolated(transport: Transport, run_id: str) -> Transport:
    """``transport`` with the demo's topics and consumer groups under ``demo-<run_id>.``
    on a shared log (Kafka), so the demo neither reads the hires real apps published nor
    shares a consumer group with a running coordinator or handler; a memory transport is
    the demo's own already.

    >>> isolated(MemoryTransport(MemoryBroker()), "1").name
    'memory'
    """
    if transport.name == "memory":
        return transport
    return NamespacedTransport(transport, prefix=f"demo-{run_id}.")


async def run_demo(
    scenario: Scenario,
    *,
    store: SagaStore,
    transport: Transport,
    settings: WorkerSettings | None = None,
    partitions: int = 3,
    timeout_s: float = 60.0,
    fault_point: str | None = None,
    out: TextIO = sys.stdout,
    verbose: bool = False,
) -> int:
    """Onboard every hire of ``scenario``; print each one's story and timeline (message
    ids when ``verbose``), a table and a summary; 0 if every saga ended as expected.

    ``store`` must be open; ``transport`` is started and stopped here (by the runner).
    """
    systems = Systems()
    systems.payroll.reject.update(scenario.payroll_rejects)
    systems.payroll.reject_reasons.update(scenario.payroll_rejects)
    systems.directory.refuse.update(scenario.identity_refuses)
    systems.directory.refusal_reasons.update(scenario.identity_refuses)
    for person in scenario.leavers:
        systems.employ(person)
    catalog = Catalog(DEMO_DEFINITIONS)
    coordinator = Coordinator(
        catalog, store, transport, poll_interval_s=0.05, fault_point=fault_point
    )
    commands = {t for d in DEMO_DEFINITIONS for t in d.command_types()}
    topics = {*coordinator.topics, *(t.bus_topic for t in commands)}
    runner = Runner(
        systems.apps(),
        transport,
        settings or WorkerSettings(commit_interval_s=0.05),
        # before any consumer subscribes: a Kafka consumer learns of new topics late
        ensure_topics=[TopicSpec(t, partitions=partitions) for t in sorted(topics)],
    )
    ids = [onboarding_v2.saga_id_for(h) for h in scenario.hires]
    ids += [offboarding.saga_id_for(p) for p in scenario.leavers]
    stop_apps, stop_coordinator = asyncio.Event(), asyncio.Event()
    started = time.monotonic()
    states: list[SagaState] = []
    late: ConfigError | None = None
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(runner.run(stop_apps))
            await runner.started.wait()
            saga_loop = tg.create_task(coordinator.run(stop_coordinator))
            try:
                hr = Publisher(transport, source="bus://hr")
                for hired in scenario.hires:
                    await hr.publish(hired)
                    approver = scenario.early_approvals.get(hired.employee_id)
                    if approver is not None:  # before the saga waits for it: kept early
                        await hr.publish(
                            PrivilegedAccessApproved(
                                employee_id=hired.employee_id, approver=approver
                            )
                        )
                for person in scenario.leavers:
                    await hr.publish(person)
                states = await _wait_for_the_end(hr, store, scenario, ids, started + timeout_s)
            except DemoTimeoutError as exc:
                late = exc  # raised once everything stopped: one error, not a group of them
            finally:
                # The coordinator first: the runner stops the transport it publishes on.
                stop_coordinator.set()
                await asyncio.wait([saga_loop])
                stop_apps.set()
    except BaseExceptionGroup as group:
        error = _first_bus_error(group)
        if error is None:
            raise
        raise error from group
    if late is not None:
        raise late
    elapsed = time.monotonic() - started
    for state in states:
        definition = catalog.get(state.name, state.version) or onboarding_v2
        text = format_timeline(state, story=story(definition, state), verbose=verbose)
        echo(text, out=out, end="\n\n")
    echo(format_table(states, now=utc_now()), out=out, end="\n\n")
    print(systems.report(), file=out)
    unexpected = [
        f"{s.saga_id} is {s.status.value}, expected {scenario.expected(s.saga_id).value}"
        for s in states
        if s.status != scenario.expected(s.saga_id)
    ]
    print(f"{summary(states)} in {elapsed:.2f}s", file=out)
    for problem in unexpected:
        print(f"unexpected: {problem}", file=out)
    return 1 if unexpected else 0


async def _wait_for_the_end(
    hr: Publisher, store: SagaStore, scenario: Scenario, ids: Sequence[str], deadline: float
) -> list[SagaState]:
    approved: set[str] = set()
    moved: set[str] = set()
    while True:
        states = []
        for saga_id in ids:
            stored = await store.load(saga_id)
            if stored is not None:
                states.append(stored.state)
        await _do_the_peoples_tasks(store, scenario)
        for s in states:
            waiting = s.steps.get("until_start_date")
            employee = s.data["employee_id"]
            if (
                waiting is not None
                and waiting.status == StepStatus.RUNNING
                and employee in scenario.moves
                and employee not in moved
            ):  # HR moves the start date while the saga waits for it: re-planned
                moved.add(employee)
                await hr.publish(
                    HireChanged(employee_id=employee, start_date=scenario.moves[employee])
                )
            employee = s.data["employee_id"]
            wait = s.steps.get("manager_approval")
            if (
                wait is not None
                and wait.status == StepStatus.RUNNING
                and employee in scenario.approvals
                and employee not in approved
            ):
                approved.add(employee)
                approval = PrivilegedAccessApproved(
                    employee_id=employee, approver=scenario.approvals[employee]
                )
                await hr.publish(approval)
        if len(states) == len(ids) and all(s.terminal for s in states):
            return states
        if time.monotonic() > deadline:
            raise DemoTimeoutError(still_running(ids, states))
        await asyncio.sleep(0.02)


def _form(scenario: Scenario, employee: str, step: str) -> dict[str, object] | None:
    """What the person the task ``step`` of ``employee`` is for submits, per the scenario
    (None: the scenario leaves it open)."""
    if step == "assign_desk" and employee in scenario.desks:
        return {"desk": scenario.desks[employee]}
    if step == "recover_equipment" and employee in scenario.equipment:
        return {"items": scenario.equipment[employee]}
    if step == "issue_equipment":
        return {"items": ["laptop", "badge"]}
    return None


async def _do_the_peoples_tasks(store: SagaStore, scenario: Scenario) -> None:
    """Complete every open task the scenario has an answer for, as its assignee (what
    ``bus tasks complete`` does): tasks of the demo's sagas and of their child sagas."""
    for row in await list_tasks(store):
        stored = await store.load(row.saga_id)
        if stored is None:
            continue
        form = _form(scenario, stored.state.data["employee_id"], row.step)
        if form is not None:
            await complete_task(store, row.id, form, row.assignee)


class DemoTimeoutError(ConfigError):
    """The demo's sagas did not all end within ``--timeout-s``."""


def still_running(ids: Sequence[str], states: Sequence[SagaState]) -> str:
    """What the demo still waits for, in one sentence: each live saga with its busy steps,
    then the hires whose saga never started.

    >>> still_running(["onboarding:e-1"], [])
    'the demo did not finish in time: not started: onboarding:e-1 (is the transport reachable? --log-level DEBUG shows every record)'
    """
    seen = {s.saga_id for s in states}
    busy = []
    for s in states:
        if s.terminal:
            continue
        steps = [n for n, st in s.steps.items() if st.status in _BUSY]
        busy.append(f"{s.saga_id} {s.status.value}" + (f" at {', '.join(steps)}" if steps else ""))
    parts = [f"still running: {'; '.join(busy)}"] if busy else []
    missing = [i for i in ids if i not in seen]
    if missing:
        parts.append(f"not started: {', '.join(missing)}")
    return (
        f"the demo did not finish in time: {'; '.join(parts)} "
        "(is the transport reachable? --log-level DEBUG shows every record)"
    )


_BUSY = {StepStatus.RUNNING, StepStatus.COMPENSATING}


def _first_bus_error(group: BaseExceptionGroup[BaseException]) -> BusError | None:
    """The first bus error in ``group`` (a task that failed to start or run), if any: the
    command line prints a bus error as one line, where a group prints as a traceback."""
    for leaf in _leaves(group):
        if isinstance(leaf, BusError):
            return leaf
    return None


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for e in error.exceptions for leaf in _leaves(e)]
    return [error]
