"""Sagas that adapt, through the coordinator on SQLite and PostgreSQL, across restarts.

Each test runs a saga in the test kit (memory transport, virtual clock) on a durable store,
stops the kit part-way (a coordinator restart: only the store is kept) and finishes the
saga on a new kit over the same database.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta

from pydantic import BaseModel

from bus import Command, Event, Metrics
from sagas import (
    Choice,
    Compensation,
    Deadline,
    Delay,
    SagaStatus,
    Step,
    Update,
    Wait,
)
from sagas.metrics import SagaMetrics
from sagas.stores import SagaQuery, SagaStore
from sagas.testing import SagaTestKit
from tests.integration.hiring import (
    REG,
    T0,
    Close,
    Closed,
    Hired,
    Open,
    Opened,
    hiring_flow,
    open_account,
    open_store,
)

__all__ = ["open_store"]  # the fixture, parametrized over SQLite and PostgreSQL


class Approved(Event, type="test.adapt.approved.v1", topic="adapt.events", key="who", registry=REG):
    who: str


class Person(BaseModel):
    who: str
    country: str = "us"


def person(e: Hired) -> Person:
    return Person(who=e.who, country=e.country)


OPEN = open_account(timeout=timedelta(seconds=30), max_attempts=2)

EARLY = hiring_flow(
    "adapt_early",
    Person,
    person,
    [OPEN, Wait("approval", event=Approved, deadline=timedelta(days=1))],
)


async def test_an_approval_before_its_wait_survives_a_restart_and_completes_it(
    open_store: Callable[[], SagaStore],
) -> None:
    saga = "adapt_early:ada"
    async with SagaTestKit(EARLY, store=open_store(), start=T0) as kit:
        await kit.publish(Hired(who="ada"))
        await kit.drain()
        await kit.publish(Approved(who="ada"))
        await kit.publish(Approved(who="ada"))  # another one: kept as well (its own id)
        await kit.drain()
        state = await kit.state(saga)
        assert len(state.early) == 2
        assert state.steps["approval"].status == "pending"
    async with SagaTestKit(EARLY, store=open_store(), start=T0) as kit:
        await kit.reply(Opened(), saga_id=saga)
        await kit.drain()
        assert await kit.status(saga) == SagaStatus.COMPLETED
        events = [e for e, step in await kit.timeline(saga) if step == "approval"]
        assert events == [
            "kept_early",
            "kept_early",
            "waiting",
            "superseded",
            "applied_early",
            "completed",
        ]


UNSURE = hiring_flow("adapt_unsure", Person, person, [OPEN])


async def test_a_step_out_of_attempts_is_undone_and_its_late_reply_noted_after_a_restart(
    open_store: Callable[[], SagaStore],
) -> None:
    saga = "adapt_unsure:ada"
    async with SagaTestKit(UNSURE, store=open_store(), start=T0) as kit:
        await kit.publish(Hired(who="ada"))
        await kit.drain()
        await kit.advance(timedelta(seconds=30))  # re-sent
        await kit.advance(timedelta(seconds=30))  # given up: uncertain, so undone
        assert kit.commands() == [Open(who="ada"), Open(who="ada"), Close(who="ada")]
        await kit.reply(Closed(), saga_id=saga)
        await kit.drain()
        assert await kit.status(saga) == SagaStatus.COMPENSATED
    async with SagaTestKit(UNSURE, store=open_store(), start=T0) as kit:
        await kit.reply(Opened(), saga_id=saga)  # the first attempt did land, late
        await kit.drain()
        state = await kit.state(saga)
        assert state.status == SagaStatus.COMPENSATED
        assert (state.history[-1].event, state.history[-1].step) == ("late_reply", "open")


class PayDe(Command, type="test.adapt.pay-de.v1", topic="adapt.commands", key="who", registry=REG):
    who: str


class PaidDe(Event, type="test.adapt.paid-de.v1", topic="adapt.events", registry=REG):
    pass


class UnpayDe(
    Command, type="test.adapt.unpay-de.v1", topic="adapt.commands", key="who", registry=REG
):
    who: str


class UnpaidDe(Event, type="test.adapt.unpaid-de.v1", topic="adapt.events", registry=REG):
    pass


class PayUs(Command, type="test.adapt.pay-us.v1", topic="adapt.commands", key="who", registry=REG):
    who: str


class PaidUs(Event, type="test.adapt.paid-us.v1", topic="adapt.events", registry=REG):
    pass


class Notify(Command, type="test.adapt.notify.v1", topic="adapt.commands", key="who", registry=REG):
    who: str


class Refused(Event, type="test.adapt.refused.v1", topic="adapt.events", registry=REG):
    pass


class Notified(Event, type="test.adapt.notified.v1", topic="adapt.events", registry=REG):
    pass


def payroll_country(data: Person) -> str:
    return data.country


BRANCHED = hiring_flow(
    "adapt_branch",
    Person,
    person,
    [
        OPEN,
        Choice(
            "payroll",
            by=payroll_country,
            branches={
                "de": [
                    Step(
                        "pay_de",
                        command=PayDe,
                        success=PaidDe,
                        compensation=Compensation(UnpayDe, success=UnpaidDe),
                    )
                ],
                "us": [Step("pay_us", command=PayUs, success=PaidUs)],
            },
        ),
        Step("notify", command=Notify, success=Notified, failure=Refused),
    ],
)


async def test_a_choice_takes_its_branch_across_a_restart_and_undoes_only_that_path(
    open_store: Callable[[], SagaStore],
) -> None:
    saga = "adapt_branch:bo"
    async with SagaTestKit(BRANCHED, store=open_store(), start=T0) as kit:
        await kit.publish(Hired(who="bo", country="de"))
        await kit.drain()
        await kit.reply(Opened(), saga_id=saga)
        await kit.drain()
        assert kit.commands() == [Open(who="bo"), PayDe(who="bo")]
    async with SagaTestKit(BRANCHED, store=open_store(), start=T0) as kit:
        await kit.reply(PaidDe(), saga_id=saga)
        await kit.drain()
        await kit.reply(Refused(), saga_id=saga)
        await kit.drain()
        await kit.reply(UnpaidDe(), saga_id=saga)
        await kit.drain()
        await kit.reply(Closed(), saga_id=saga)
        await kit.drain()
        assert kit.commands() == [Notify(who="bo"), UnpayDe(who="bo"), Close(who="bo")]
        state = await kit.state(saga)
        assert state.status == SagaStatus.COMPENSATED
        assert state.branches == {"payroll": "de"}
        assert state.steps["pay_us"].status == "skipped"
        assert ("branch", "payroll") in await kit.timeline(saga)


class Dated(BaseModel):
    who: str
    country: str = "us"
    start_day: int = 20  # day of May 2026


def dated(e: Hired) -> Dated:
    return Dated(who=e.who, country=e.country)


def five_days_before_start(data: Dated, now: datetime) -> datetime:
    return datetime.combine(datetime(2026, 5, data.start_day).date(), time(9), UTC) - timedelta(
        days=5
    )


def start_day_morning(data: Dated, now: datetime) -> datetime:
    return datetime.combine(datetime(2026, 5, data.start_day).date(), time(8), UTC)


TIMED = hiring_flow(
    "adapt_timed",
    Dated,
    dated,
    [
        Delay("week_before", until=five_days_before_start),
        Step("open", command=Open, success=Opened),
        Step("notify", command=Notify, success=Notified, not_before=start_day_morning),
    ],
)


async def test_a_delay_and_a_held_step_fire_on_time_across_restarts(
    open_store: Callable[[], SagaStore],
) -> None:
    saga = "adapt_timed:cy"
    async with SagaTestKit(TIMED, store=open_store(), start=T0) as kit:
        await kit.publish(Hired(who="cy"))
        await kit.drain()
        await kit.advance(timedelta(days=10))  # May 14, 09:00: a day early
        assert kit.commands() == []
    # restarted on May 15, 09:00: the stored timer is due
    async with SagaTestKit(TIMED, store=open_store(), start=T0 + timedelta(days=11)) as kit:
        await kit.drain()
        assert kit.commands() == [Open(who="cy")]
        await kit.reply(Opened(), saga_id=saga)
        await kit.drain()
        state = await kit.state(saga)
        assert state.steps["notify"].status == "running"
        assert state.steps["notify"].attempts == 0  # held until the start day
        await kit.advance(timedelta(days=4, hours=22, minutes=59))
        assert kit.commands() == [Open(who="cy")]
    async with SagaTestKit(TIMED, store=open_store(), start=T0 + timedelta(days=16)) as kit:
        await kit.drain()  # May 20, 09:00: past 08:00
        assert kit.commands() == [Notify(who="cy")]
        await kit.reply(Notified(), saga_id=saga)
        await kit.drain()
        assert await kit.status(saga) == SagaStatus.COMPLETED


class Escalate(
    Command, type="test.adapt.escalate.v1", topic="adapt.commands", key="who", registry=REG
):
    who: str


def start_day_nine(data: Dated, now: datetime) -> datetime:
    return datetime.combine(datetime(2026, 5, data.start_day).date(), time(9), UTC)


DEADLINED = hiring_flow(
    "adapt_deadline",
    Dated,
    dated,
    [Wait("approval", event=Approved, deadline=timedelta(days=30))],
    deadline=Deadline(at=start_day_nine, escalate=Escalate),
)


async def test_a_late_saga_escalates_once_is_listed_late_and_counted_across_a_restart(
    open_store: Callable[[], SagaStore],
) -> None:
    saga = "adapt_deadline:di"
    async with SagaTestKit(DEADLINED, store=open_store(), start=T0) as kit:
        await kit.publish(Hired(who="di"))
        await kit.drain()
        assert not (await kit.state(saga)).late
    metrics = Metrics()
    later = T0 + timedelta(days=16)  # May 20, 09:00: the deadline is due
    observer = SagaMetrics(metrics)
    async with SagaTestKit(DEADLINED, store=open_store(), start=later, observer=observer) as kit:
        await kit.drain()
        await kit.advance(timedelta(hours=1))  # nothing more: escalated once
        assert kit.commands() == [Escalate(who="di")]
        [listed] = await kit.store.list_sagas(SagaQuery(name="adapt_deadline"))
        assert listed.to_dict(history=False)["late"] is True  # bus sagas list --json
        assert listed.status == SagaStatus.RUNNING  # not told to compensate: goes on
        assert metrics.sample("bus_sagas_late_total", {"saga": "adapt_deadline"}) == 1
        await kit.publish(Approved(who="di"))
        await kit.drain()
        state = await kit.state(saga)
        assert (state.status, state.late) == (SagaStatus.COMPLETED, True)


class Moved(Event, type="test.adapt.moved.v1", topic="adapt.events", key="who", registry=REG):
    who: str
    country: str | None = None
    start_day: int | None = None


def apply_move(data: Dated, moved: Moved) -> Dated:
    return data.model_copy(update=moved.model_dump(exclude_none=True, exclude={"who"}))


def country_changed(old: Dated, new: Dated) -> bool:
    return old.country != new.country


CHANGING = hiring_flow(
    "adapt_change",
    Dated,
    dated,
    [
        open_account(rerun_on=country_changed),
        Delay("week_before", until=five_days_before_start),
        Step("notify", command=Notify, success=Notified),
    ],
    on_update=[Update(Moved, apply=apply_move)],
)


async def test_an_update_reruns_a_step_and_moves_a_delay_across_restarts(
    open_store: Callable[[], SagaStore],
) -> None:
    saga = "adapt_change:ed"
    async with SagaTestKit(CHANGING, store=open_store(), start=T0) as kit:
        await kit.publish(Hired(who="ed"))
        await kit.drain()
        await kit.reply(Opened(), saga_id=saga)
        await kit.drain()
        await kit.publish(Moved(who="ed", country="de", start_day=25))
        await kit.drain()
        assert kit.commands() == [Open(who="ed"), Close(who="ed")]
    async with SagaTestKit(CHANGING, store=open_store(), start=T0) as kit:
        await kit.reply(Closed(), saga_id=saga)
        await kit.drain()
        await kit.reply(Opened(), saga_id=saga)
        await kit.drain()
        assert kit.commands() == [Open(who="ed")]
        await kit.advance(timedelta(days=11))  # May 15: the old time, moved to May 20
        assert kit.commands() == [Open(who="ed")]
        state = await kit.state(saga)
        assert state.steps["week_before"].status == "running"
        timeline = await kit.timeline(saga)
        assert ("updated", None) in timeline
        assert ("replanned", "week_before") in timeline
        assert ("rerun", "open") in timeline
    # restarted on May 20, 09:00: the moved timer is due
    async with SagaTestKit(CHANGING, store=open_store(), start=T0 + timedelta(days=16)) as kit:
        await kit.drain()
        assert kit.commands() == [Notify(who="ed")]
        await kit.reply(Notified(), saga_id=saga)
        await kit.drain()
        state = await kit.state(saga)
        assert state.status == SagaStatus.COMPLETED
        assert state.data["country"] == "de"
