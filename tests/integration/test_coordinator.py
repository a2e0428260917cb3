"""The coordinator on the memory transport: onboarding end to end with the real handlers.

The test kit runs the coordinator, the handler apps and a virtual clock; a few tests drive
a Coordinator by hand on a SQLite store to show what a restart resumes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from bus import (
    ConfigError,
    MemoryBroker,
    MemoryTransport,
    Metrics,
    OutgoingRecord,
    Publisher,
    StoreError,
    decode,
    encode,
)
from handlers.hr.contracts import EmployeeHired, HireWithdrawn, PrivilegedAccessApproved
from handlers.identity.contracts import (
    CreateAccount,
    DeprovisionAccount,
    IdentityAccountDeprovisioned,
    IdentityAccountProvisioned,
)
from sagas import Cancel, Catalog, SagaDefinition, SagaStatus, Step, command_id
from sagas.coordinator import Coordinator, request_action
from sagas.definitions.onboarding import onboarding
from sagas.metrics import SagaMetrics
from sagas.stores import MemorySagaStore, SagaStore, SagaWrite, SqliteSagaStore, StoredSaga
from sagas.stores.base import Change
from sagas.testing import SagaTestKit
from tests.integration.test_onboarding_handlers import World, hire
from tests.waiting import wait_until


def admin(employee_id: str) -> EmployeeHired:
    return hire(employee_id, role="admin", department="sales")


async def test_an_engineer_is_onboarded_and_every_command_carries_saga_ids() -> None:
    w = World()
    async with SagaTestKit(onboarding, apps=w.apps) as kit:
        await kit.publish(hire("e-1"))
        await kit.drain()
        assert await kit.status("onboarding:e-1") == SagaStatus.COMPLETED
        sent = kit.sent("onboarding:e-1")
        assert [s.envelope.type for s in sent] == [
            "identity.account.create.v1",
            "licensing.licenses.assign.v1",
            "repositories.access.grant.v1",
            "notifications.manager.notify.v1",
            "payroll.record.create.v1",
        ]
        first = sent[0].envelope
        assert first.id == command_id("onboarding:e-1", "create_account", "action", 1)
        assert first.correlationid == "onboarding:e-1"
        assert first.source == "bus://sagas/onboarding"
        trigger_id = (await kit.state("onboarding:e-1")).trigger_id
        assert first.causationid == trigger_id
        assert first.time == kit.clock()
    assert list(w.payroll.records) == ["e-1"]
    assert w.host.grants == {"person.e": ["platform", "web", "infra"]}


async def test_a_failure_mid_way_is_compensated_in_every_system() -> None:
    w = World()
    w.payroll.reject.add("e-2")
    async with SagaTestKit(onboarding, apps=w.apps) as kit:
        await kit.publish(hire("e-2"))
        await kit.drain()
        state = await kit.state("onboarding:e-2")
    assert state.status == SagaStatus.COMPENSATED
    assert "create_payroll_record failed" in (state.reason or "")
    assert w.directory.accounts == {}
    assert w.licenses.assigned == {}
    assert w.host.grants == {}


async def test_a_privileged_hire_waits_for_approval_then_continues() -> None:
    w = World()
    async with SagaTestKit(onboarding, apps=w.apps) as kit:
        await kit.publish(admin("a-1"))
        await kit.drain()
        state = await kit.state("onboarding:a-1")
        assert state.steps["manager_approval"].status == "running"
        await kit.advance(timedelta(days=2))  # within the 3-day deadline
        await kit.publish(PrivilegedAccessApproved(employee_id="a-1", approver="boss"))
        await kit.drain()
        state = await kit.state("onboarding:a-1")
    assert state.status == SagaStatus.COMPLETED
    assert state.data["approved_by"] == "boss"
    assert state.steps["manager_approval"].completed_at == datetime(2026, 1, 7, 9, tzinfo=UTC)


async def test_an_approval_deadline_that_passes_undoes_the_account() -> None:
    w = World()
    async with SagaTestKit(onboarding, apps=w.apps) as kit:
        await kit.publish(admin("a-2"))
        await kit.drain()
        await kit.advance(timedelta(days=3))
        state = await kit.state("onboarding:a-2")
        counts = await kit.store.counts()
    assert state.status == SagaStatus.COMPENSATED
    assert w.directory.accounts == {}
    assert counts["timers"] == 0
    assert counts["outbox"] == 0


async def test_a_reply_that_never_comes_is_resent_then_fails_the_step_and_undoes_it() -> None:
    async with SagaTestKit(onboarding) as kit:  # no handlers: nobody answers
        await kit.publish(hire("e-3"))
        await kit.drain()
        for _ in range(3):
            await kit.advance(timedelta(seconds=30))
        ids = [s.envelope.id for s in kit.sent("onboarding:e-3")]
        # out of attempts, an account may exist after all (uncertain): it is deprovisioned
        assert ids == [
            command_id("onboarding:e-3", "create_account", "action", n) for n in (1, 2, 3)
        ] + [command_id("onboarding:e-3", "create_account", "compensation", 1)]
        state = await kit.state("onboarding:e-3")
        assert state.status == SagaStatus.COMPENSATING
        assert state.steps["create_account"].uncertain
        assert "no reply after 3 attempt(s)" in (state.reason or "")


async def test_a_cancel_request_compensates_what_completed() -> None:
    w = World()
    async with SagaTestKit(onboarding, apps=w.apps) as kit:
        await kit.publish(admin("a-3"))
        await kit.drain()
        await kit.cancel("onboarding:a-3", "hire called off by phone")
        assert (await kit.store.counts())["requests"] == 1
        await kit.drain()
        state = await kit.state("onboarding:a-3")
        with pytest.raises(ConfigError, match="only a running saga"):
            await kit.cancel("onboarding:a-3")
        assert (await kit.store.counts())["requests"] == 0
    assert state.status == SagaStatus.CANCELLED
    assert kit.command_types("onboarding:a-3")[-1] == DeprovisionAccount.bus_type
    assert w.directory.accounts == {}


async def test_a_hire_withdrawn_event_cancels_by_its_correlation_key() -> None:
    w = World()
    async with SagaTestKit(onboarding, apps=w.apps) as kit:
        await kit.publish(admin("a-4"))
        await kit.drain()
        await kit.publish(HireWithdrawn(employee_id="a-4", reason="declined"))
        await kit.drain()
        assert await kit.status("onboarding:a-4") == SagaStatus.CANCELLED


async def test_a_stuck_compensation_needs_attention_until_retried() -> None:
    async with SagaTestKit(onboarding) as kit:  # the test plays identity
        await kit.publish(admin("a-5"))
        await kit.drain()
        provisioned = IdentityAccountProvisioned(employee_id="a-5", login="a5", email="a5@x.io")
        await kit.reply(provisioned, saga_id="onboarding:a-5")
        await kit.drain()
        await kit.cancel("onboarding:a-5")
        await kit.drain()
        with pytest.raises(ConfigError, match="needs_attention"):
            await kit.retry("onboarding:a-5")
        for _ in range(3):  # nobody deprovisions: the compensation runs out of attempts
            await kit.advance(timedelta(minutes=1))
        state = await kit.state("onboarding:a-5")
        assert state.status == SagaStatus.NEEDS_ATTENTION
        await kit.retry("onboarding:a-5", "identity is back")
        await kit.drain()
        [*_, last] = kit.commands(DeprovisionAccount, saga_id="onboarding:a-5")
        assert last == DeprovisionAccount(employee_id="a-5")
        assert len(kit.commands(DeprovisionAccount)) == 4
        assert await kit.status("onboarding:a-5") == SagaStatus.COMPENSATING
        await kit.reply(IdentityAccountDeprovisioned(employee_id="a-5"), saga_id="onboarding:a-5")
        await kit.drain()
        assert await kit.status("onboarding:a-5") == SagaStatus.CANCELLED


async def test_redelivered_triggers_and_replies_change_nothing() -> None:
    w = World()
    async with SagaTestKit(onboarding, apps=w.apps) as kit:
        hired = hire("e-4")
        await kit.publish(hired)
        await kit.drain()
        before = await kit.state("onboarding:e-4")
        # the same CloudEvents again (a producer retry), then a fresh copy of the trigger
        for topic in ("identity.events", "hr.events"):
            for r in kit.broker.records(topic):
                await kit.transport.publish(OutgoingRecord(r.topic, r.key, r.value, r.headers))
        await kit.publish(hired)
        await kit.drain()
        after = await kit.state("onboarding:e-4")
    assert after == before
    assert len(kit.commands(CreateAccount)) == 1


async def _coordinator(store: SagaStore, transport: MemoryTransport) -> Coordinator:
    c = Coordinator(Catalog([onboarding]), store, transport, poll_interval_s=0)
    await c.start()
    return c


async def test_a_restart_after_the_state_commit_publishes_what_was_stored(tmp_path: Path) -> None:
    broker = MemoryBroker(default_partitions=3)
    transport = MemoryTransport(broker)
    await transport.start()
    await Publisher(transport, source="bus://hr").publish(hire("e-5"))
    async with SqliteSagaStore(tmp_path / "sagas.db") as store:
        first = Coordinator(Catalog([onboarding]), store, transport)
        # the first coordinator stores the saga and its command, then dies: no publish,
        # no offset commit
        for record in broker.records("hr.events"):
            await first.handle_record(record)
        assert "identity.commands" not in broker.topics()
    async with SqliteSagaStore(tmp_path / "sagas.db") as store:
        second = await _coordinator(store, transport)
        assert await second.step() == 2  # the trigger again (ignored) + 1 published
        [record] = broker.records("identity.commands")
        assert decode(record.headers, record.value).id == command_id(
            "onboarding:e-5", "create_account", "action", 1
        )
        stored = await store.load("onboarding:e-5")
        assert stored is not None
        assert stored.revision == 1
        assert await second.step() == 0  # offsets committed: nothing comes back
        await second.stop()
    await transport.stop()


class _RacingStore(MemorySagaStore):
    """Another replica saves the saga between this one's load and save, once."""

    def __init__(self) -> None:
        super().__init__()
        self.race: Coordinator | None = None

    async def load(self, saga_id: str) -> StoredSaga | None:
        stored = await super().load(saga_id)
        race, self.race = self.race, None
        if race is not None and stored is not None:
            await race.apply(saga_id, Cancel("the other replica"))
        return stored


async def test_a_revision_conflict_decides_again_on_the_fresh_state() -> None:
    store = _RacingStore()
    transport = MemoryTransport(MemoryBroker())
    await transport.start()
    await Publisher(transport, source="bus://hr").publish(hire("e-6"))
    mine = await _coordinator(store, transport)
    other = Coordinator(Catalog([onboarding]), store, transport)
    await mine.step()
    store.race = other
    t = await mine.apply("onboarding:e-6", Cancel("this replica"))
    assert t is None  # re-decided on the cancelled state: nothing left to do
    assert mine.stats.conflicts == 1
    stored = await store.load("onboarding:e-6")
    assert stored is not None
    assert stored.state.reason == "the other replica"
    await mine.stop()
    await transport.stop()


async def test_operator_requests_name_a_saga_that_exists() -> None:
    store = MemorySagaStore()
    with pytest.raises(ConfigError, match="no saga 'onboarding:zz'"):
        await request_action(store, "onboarding:zz", "cancel", reason="x")


def test_the_coordinator_consumes_the_topics_of_its_sagas() -> None:
    c = Coordinator(Catalog([onboarding]), MemorySagaStore(), MemoryTransport(MemoryBroker()))
    assert c.topics == [
        "hr.events",
        "identity.events",
        "licensing.events",
        "notifications.events",
        "payroll.events",
        "repositories.events",
    ]


async def test_the_coordinator_reports_to_bus_metrics() -> None:
    w = World()
    w.payroll.reject.add("e-7")
    metrics = Metrics()
    async with SagaTestKit(onboarding, apps=w.apps, observer=SagaMetrics(metrics)) as kit:
        await kit.publish(hire("e-7"))
        await kit.publish(admin("a-7"))
        await kit.drain()
        await kit.advance(timedelta(days=3))  # a-7's approval never comes
    saga = {"saga": "onboarding"}
    assert metrics.sample("bus_sagas_started_total", saga) == 2
    assert metrics.sample("bus_sagas_finished_total", saga | {"status": "compensated"}) == 2
    assert metrics.sample("bus_saga_timeouts_total", saga | {"step": "manager_approval"}) == 1
    failed = saga | {"step": "create_payroll_record", "outcome": "failed"}
    assert metrics.sample("bus_saga_step_duration_seconds_count", failed) == 1
    waited = saga | {"step": "manager_approval", "outcome": "timed_out"}
    assert metrics.sample("bus_saga_step_duration_seconds_sum", waited) == 3 * 24 * 3600


async def test_compensations_are_their_own_outcome_in_the_step_durations() -> None:
    """An undo is not a second success of the step: 'succeeded' counts forward steps only."""
    w = World()
    w.payroll.reject.add("e-9")
    metrics = Metrics()
    async with SagaTestKit(onboarding, apps=w.apps, observer=SagaMetrics(metrics)) as kit:
        await kit.publish(hire("e-9"))
        await kit.drain()
    account = {"saga": "onboarding", "step": "create_account"}
    count = "bus_saga_step_duration_seconds_count"
    assert metrics.sample(count, account | {"outcome": "succeeded"}) == 1
    assert metrics.sample(count, account | {"outcome": "compensated"}) == 1


async def test_the_gauges_show_the_backlog_and_the_unfinished_sagas() -> None:
    metrics = Metrics()
    async with SagaTestKit(onboarding, observer=SagaMetrics(metrics)) as kit:  # nobody answers
        await kit.publish(hire("e-8"))
        await kit.drain()
        await kit.advance(timedelta(seconds=10))
        await kit.coordinator.report_gauges()
    running = {"saga": "onboarding", "state": "running"}
    assert metrics.sample("bus_sagas_active", running) == 1
    assert metrics.sample("bus_saga_oldest_active_age_seconds", {"saga": "onboarding"}) == 10
    assert metrics.sample("bus_outbox_backlog", {"store": "memory"}) == 0


class _Hire(BaseModel):
    employee_id: str
    full_name: str


def _build_account(data: _Hire) -> CreateAccount:
    if data.employee_id == "boom":
        raise RuntimeError("a bug in the saga's build function")
    return CreateAccount(employee_id=data.employee_id, full_name=data.full_name)


fragile = SagaDefinition(
    name="fragile",
    version=1,
    trigger=EmployeeHired,
    correlation_key="employee_id",
    data=_Hire,
    start=lambda hired: _Hire(employee_id=hired.employee_id, full_name=hired.full_name),
    stages=[
        Step(
            "create_account",
            command=CreateAccount,
            build=_build_account,
            success=IdentityAccountProvisioned,
        )
    ],
)


async def test_a_bug_in_a_definition_dead_letters_its_record_and_the_others_go_on() -> None:
    async with SagaTestKit(fragile) as kit:
        await kit.publish(hire("boom"))
        await kit.publish(hire("e-9"))
        await kit.drain()
        [letter] = kit.broker.records("hr.events.dlq")
        headers = dict(letter.headers)
        assert headers["bus_dlq_reason"] == b"handler_failed"
        assert decode(letter.headers, letter.value).subject == "boom"
        assert await kit.store.load("fragile:boom") is None
        assert await kit.status("fragile:e-9") == SagaStatus.RUNNING


class _FlakyStore(MemorySagaStore):
    """The database fails twice (the batch, then the record alone), then works."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 2

    async def update(self, saga_id: str, change: Change, **kw: Any) -> SagaWrite | None:
        if self.failures:
            self.failures -= 1
            raise StoreError("database restarting")
        return await super().update(saga_id, change, **kw)


async def test_a_store_fault_reads_the_record_again_instead_of_losing_it() -> None:
    async with SagaTestKit(onboarding, store=_FlakyStore()) as kit:
        await kit.publish(hire("e-10"))
        await kit.drain()
        assert await kit.status("onboarding:e-10") == SagaStatus.RUNNING
        assert len(kit.commands(CreateAccount)) == 1
        assert kit.store.failures == 0  # type: ignore[attr-defined]


class _UnpurgeableStore(MemorySagaStore):
    async def purge_finished(self, older_than: datetime) -> int:
        raise StoreError("database away")


async def test_run_purges_ended_sagas_past_the_retention_and_survives_a_failing_purge(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "sagas")
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    store = MemorySagaStore()
    async with SagaTestKit(onboarding, store=store, start=now - timedelta(days=40)) as kit:
        await kit.publish(hire("e-old"))  # starts, stays running: never purged
        await kit.drain()
        await kit.publish(hire("e-ended"))
        await kit.drain()
    ended = await store.load("onboarding:e-ended")
    assert ended is not None
    await store.save(
        SagaWrite(dataclasses.replace(ended.state, status=SagaStatus.COMPLETED), ended.revision)
    )
    for s, retention in ((store, 30 * 86400.0), (_UnpurgeableStore(), 1.0)):
        # started: the sagas' reply timeouts are long due, so the relay publishes at once
        transport = MemoryTransport(MemoryBroker())
        await transport.start()
        c = Coordinator(
            Catalog([onboarding]),
            s,
            transport,
            clock=lambda: now,
            retention_s=retention,
            purge_interval_s=0.02,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(c.run(stop))

        async def purged_or_failed_twice(s: MemorySagaStore = s) -> bool:
            if isinstance(s, _UnpurgeableStore):  # a purge after the failed one: it survived
                return caplog.text.count("purge of ended sagas failed") >= 2
            return await store.load("onboarding:e-ended") is None

        await wait_until(
            purged_or_failed_twice,
            timeout_s=10,
            what=f"a purge (or two failed ones) with {type(s).__name__}",
            interval_s=0.01,
        )
        assert not task.done()
        stop.set()
        await asyncio.wait_for(task, 10)
    assert await store.load("onboarding:e-ended") is None
    assert await store.load("onboarding:e-old") is not None
    assert "purged 1 sagas that ended before 2026-10-28T12:00:00+00:00" in caplog.text
    assert "purge of ended sagas failed" in caplog.text


UPSTREAM = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
ONBOARDING_TOPICS = [
    "hr.events",
    "identity.commands",
    "identity.events",
    "licensing.commands",
    "licensing.events",
    "notifications.commands",
    "notifications.events",
    "payroll.commands",
    "payroll.events",
    "repositories.commands",
    "repositories.events",
]


def _trace_id(traceparent: str | None) -> str:
    assert traceparent is not None
    return traceparent.split("-")[1]


async def test_every_command_carries_the_trace_of_its_cause_so_one_onboarding_is_one_trace() -> (
    None
):
    w = World()
    async with SagaTestKit(onboarding, apps=w.apps) as kit:
        await kit.publish(hire("e-11"), traceparent=UPSTREAM)
        await kit.drain()
        assert await kit.status("onboarding:e-11") == SagaStatus.COMPLETED
        sent = kit.sent("onboarding:e-11")
        records = [r for t in ONBOARDING_TOPICS for r in kit.broker.records(t)]
    assert len(sent) == 5
    traces = {_trace_id(decode(r.headers, r.value).traceparent) for r in records}
    assert traces == {"ab" * 16}  # the hire, every command, every reply
    spans = {s.envelope.traceparent for s in sent}
    assert len(spans) == 5  # a span id per command


async def test_a_saga_triggered_without_a_trace_gets_one_that_timers_keep() -> None:
    async with SagaTestKit(onboarding) as kit:  # nobody answers: the timeout re-sends
        await kit.publish(hire("e-12"))
        await kit.drain()
        await kit.advance(timedelta(seconds=30))
        sent = kit.sent("onboarding:e-12")
    assert [s.envelope.type for s in sent] == [CreateAccount.bus_type] * 2
    assert len({_trace_id(s.envelope.traceparent) for s in sent}) == 1


async def test_bus_trace_of_a_saga_shows_its_trigger_commands_and_replies() -> None:
    from bus.trace import build_tree, read_hops, render

    w = World()
    async with SagaTestKit(onboarding, apps=w.apps) as kit:
        hired = hire("e-13")
        await kit.publish(hired)
        await kit.drain()
        hops = await read_hops(
            kit.transport, ONBOARDING_TOPICS, "onboarding:e-13", idle_fetches=1,
            fetch_timeout_s=0.05,
        )  # fmt: skip
    [root] = build_tree(hops)
    assert root.hop.type == EmployeeHired.bus_type
    lines = render([root])
    assert len(lines) == 1 + 5 + 5  # the hire, five commands, five replies: one tree
    assert "identity.account.create.v1" in lines[1]


async def test_malformed_triggers_are_dead_lettered_with_their_reason_not_skipped() -> None:
    async with SagaTestKit(onboarding) as kit:
        env = kit.publisher.envelope(hire("e-14"))
        headers, _ = encode(env)
        await kit.transport.publish(OutgoingRecord("hr.events", b"k", b"\xffnot an event", ()))
        await kit.transport.publish(
            OutgoingRecord("hr.events", b"k", b'{"employee_id": 42}', tuple(headers))
        )
        await kit.publish(hire("e-15"))
        await kit.drain()
        letters = kit.broker.records("hr.events.dlq")
        assert await kit.status("onboarding:e-15") == SagaStatus.RUNNING
    reasons = sorted(dict(r.headers)["bus_dlq_reason"] for r in letters)
    assert reasons == [b"decode", b"invalid"]
    assert all(dict(r.headers)["bus_dlq_app"] == b"sagas" for r in letters)
