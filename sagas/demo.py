"""The onboarding demo (the README's main command): several hires, end to end, one process.

``bus sagas demo`` runs the handler apps (identity, licensing, repositories,
notifications, payroll - simulated systems), the coordinator and an upstream HR system
on one transport and one saga store: by default the memory transport and a fresh SQLite
file, so no broker and no server. The scenario (``sagas/demo_hires.json``) has hires that
complete, one that waits for a manager's approval (granted when the saga asks), one the
payroll refuses mid-way (compensated: account, licenses, repositories and the manager's
note undone, last first) and one whose account the directory refuses (nothing to undo).
It prints each saga's timeline, a table and a summary; exit 0 when every saga ended as
the scenario expects.

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
from pathlib import Path
from typing import TextIO

import orjson

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
from handlers.hr.contracts import EmployeeHired, PrivilegedAccessApproved
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
from sagas.definitions.onboarding import onboarding
from sagas.state import SagaState, SagaStatus, StepStatus
from sagas.stores.base import SagaStore
from sagas.story import story
from sagas.timeline import format_table, format_timeline, summary
from sagas.versions import Catalog

__all__ = ["DEFAULT_SCENARIO", "DemoTimeoutError", "Scenario", "Systems", "load_scenario", "run_demo",
           "still_running"]  # fmt: skip

log = logging.getLogger("sagas.demo")

DEFAULT_SCENARIO = Path(__file__).with_name("demo_hires.json")


@dataclass(frozen=True)
class Scenario:
    """Hires to onboard and how the simulated world treats them."""

    hires: tuple[EmployeeHired, ...]
    #: employee id -> approver, sent when the saga waits for approval.
    approvals: dict[str, str] = field(default_factory=dict)
    #: employee id -> why payroll refuses the record.
    payroll_rejects: dict[str, str] = field(default_factory=dict)
    #: employee id -> why the directory refuses the account.
    identity_refuses: dict[str, str] = field(default_factory=dict)

    def with_suffix(self, suffix: str) -> Scenario:
        """The same scenario with ``suffix`` appended to every employee id."""
        if not suffix:
            return self
        hires = tuple(
            h.model_copy(update={"employee_id": h.employee_id + suffix}) for h in self.hires
        )
        return Scenario(
            hires,
            {k + suffix: v for k, v in self.approvals.items()},
            {k + suffix: v for k, v in self.payroll_rejects.items()},
            {k + suffix: v for k, v in self.identity_refuses.items()},
        )

    def expected(self, employee_id: str) -> SagaStatus:
        if employee_id in self.identity_refuses:
            return SagaStatus.FAILED
        if employee_id in self.payroll_rejects:
            return SagaStatus.COMPENSATED
        return SagaStatus.COMPLETED


def load_scenario(path: Path) -> Scenario:
    """Read a scenario file (see ``sagas/demo_hires.json``); errors name the file and field."""
    try:
        raw = orjson.loads(path.read_bytes())
        return Scenario(
            tuple(EmployeeHired.model_validate(h) for h in raw["hires"]),
            dict(raw.get("approvals", {})),
            _reasons(raw.get("payroll_rejects", {}), "payroll refuses the record"),
            _reasons(raw.get("identity_refuses", {}), "the directory refuses the account"),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the demo scenario {path}: {exc}") from exc


def _reasons(raw: object, default: str) -> dict[str, str]:
    """``{"e-1": "why"}``, or a list of ids (each with ``default`` as the reason)."""
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return dict.fromkeys(map(str, raw), default)
    raise TypeError(f"expected a list of employee ids or an object of reasons, not {raw!r}")


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
    coordinator = Coordinator(
        Catalog([onboarding]), store, transport, poll_interval_s=0.05, fault_point=fault_point
    )
    topics = {*coordinator.topics, *(t.bus_topic for t in onboarding.command_types())}
    runner = Runner(
        systems.apps(),
        transport,
        settings or WorkerSettings(commit_interval_s=0.05),
        # before any consumer subscribes: a Kafka consumer learns of new topics late
        ensure_topics=[TopicSpec(t, partitions=partitions) for t in sorted(topics)],
    )
    ids = [onboarding.saga_id_for(h) for h in scenario.hires]
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
        text = format_timeline(state, story=story(onboarding, state), verbose=verbose)
        echo(text, out=out, end="\n\n")
    echo(format_table(states, now=utc_now()), out=out, end="\n\n")
    print(systems.report(), file=out)
    unexpected = [
        f"{s.saga_id} is {s.status.value}, expected {scenario.expected(s.saga_id.split(':', 1)[1]).value}"
        for s in states
        if s.status != scenario.expected(s.saga_id.split(":", 1)[1])
    ]
    print(f"{summary(states)} in {elapsed:.2f}s", file=out)
    for problem in unexpected:
        print(f"unexpected: {problem}", file=out)
    return 1 if unexpected else 0


async def _wait_for_the_end(
    hr: Publisher, store: SagaStore, scenario: Scenario, ids: Sequence[str], deadline: float
) -> list[SagaState]:
    approved: set[str] = set()
    while True:
        states = []
        for saga_id in ids:
            stored = await store.load(saga_id)
            if stored is not None:
                states.append(stored.state)
        for s in states:
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
