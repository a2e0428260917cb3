"""The onboarding definition against the real handlers, on the memory transport.

A minimal shell stands in for the coordinator: it publishes the core's commands with their
ids and the saga id as correlationid, and feeds the replies (matched by correlationid)
back to the core. This proves the contracts, the handlers and the definition fit.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from bus import TestBus, decode, default_registry, envelope_for, record_for
from handlers.hr.contracts import EmployeeHired
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
from sagas import Incoming, SagaState, SagaStatus, Transition, decide, start
from sagas.definitions.onboarding import onboarding

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
REPLY_TOPICS = [
    "identity.events",
    "licensing.events",
    "notifications.events",
    "payroll.events",
    "repositories.events",
]


class World:
    def __init__(self) -> None:
        self.directory = Directory()
        self.licenses = LicenseManager()
        self.mailer = Mailer()
        self.payroll = Payroll()
        self.host = CodeHost()
        self.apps = [
            identity_commands(self.directory),
            licensing_commands(self.licenses),
            notification_commands(self.mailer),
            payroll_app(self.payroll),
            repositories_app(self.host),
        ]


async def run_saga(bus: TestBus, hired: EmployeeHired) -> SagaState:
    t = start(onboarding, hired, message_id="hire-" + hired.employee_id, now=NOW)
    seen: set[str] = set()
    for _ in range(20):
        await publish(bus, t)
        await bus.drain()
        replies = [
            env
            for topic in REPLY_TOPICS
            if topic in bus.broker.topics()
            for env in (decode(r.headers, r.value) for r in bus.broker.records(topic))
            if env.correlationid == t.state.saga_id and env.id not in seen
        ]
        if not replies:
            return t.state
        for env in replies:
            seen.add(env.id)
            message = default_registry.model_for(env.type).model_validate_json(env.data)
            t = decide(
                onboarding, t.state, Incoming(env.type, env.id, t.state.saga_id, message), NOW
            )
            await publish(bus, t)
    return t.state


async def publish(bus: TestBus, t: Transition) -> None:
    for cmd in t.commands:
        env = envelope_for(
            cmd.message, source="bus://saga/onboarding", id=cmd.id, time=NOW,
            correlationid=t.state.saga_id,
        )  # fmt: skip
        await bus.transport.publish(record_for(cmd.message, env))


def hire(employee_id: str, **kw: object) -> EmployeeHired:
    fields: dict[str, object] = {
        "employee_id": employee_id,
        "full_name": f"Person {employee_id}",
        "department": "engineering",
        "manager_email": "boss@example.com",
        "start_date": date(2026, 12, 7),
    }
    fields.update(kw)
    return EmployeeHired.model_validate(fields)


async def test_an_engineer_is_onboarded_by_the_handlers() -> None:
    w = World()
    async with TestBus(*w.apps) as bus:
        state = await run_saga(bus, hire("e-1"))
    assert state.status == SagaStatus.COMPLETED
    assert "e-1" in w.directory.accounts
    assert w.host.grants == {w.directory.accounts["e-1"]: ["platform", "web", "infra"]}
    assert list(w.payroll.records) == ["e-1"]
    assert len(w.mailer.sent) == 1


async def test_a_payroll_refusal_is_undone_in_every_system() -> None:
    w = World()
    w.payroll.reject.add("e-2")
    async with TestBus(*w.apps) as bus:
        state = await run_saga(bus, hire("e-2"))
    assert state.status == SagaStatus.COMPENSATED
    assert w.directory.accounts == {}
    assert w.licenses.assigned == {}
    assert w.host.grants == {}
    welcome, called_off = (text for _, text in w.mailer.sent)
    assert welcome.startswith("Person e-2 starts on 2026-12-07")
    assert called_off.startswith("the onboarding of Person e-2 was called off")
