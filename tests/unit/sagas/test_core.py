"""Examples of the core's rules: re-sends, duplicates, needs_attention, retry, versions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from bus import Command, ConfigError, Event, Registry
from sagas import (
    Cancel,
    Catalog,
    Compensation,
    Incoming,
    Retry,
    SagaDefinition,
    SagaState,
    SagaStatus,
    Step,
    StepStatus,
    TimerFired,
    Transition,
    command_id,
    decide,
    decide_versioned,
    start,
)

REG = Registry()
T0 = datetime(2026, 3, 1, tzinfo=UTC)


class Ordered(Event, type="test.core.ordered.v1", topic="t", key="order", registry=REG):
    order: str


class Reserve(Command, type="test.core.reserve.v1", topic="t", registry=REG):
    order: str


class Reserved(Event, type="test.core.reserved.v1", topic="t", registry=REG):
    pass


class Release(Command, type="test.core.release.v1", topic="t", registry=REG):
    order: str


class Released(Event, type="test.core.released.v1", topic="t", registry=REG):
    pass


class ReleaseFailed(Event, type="test.core.release-failed.v1", topic="t", registry=REG):
    pass


class Charge(Command, type="test.core.charge.v1", topic="t", registry=REG):
    order: str


class Charged(Event, type="test.core.charged.v1", topic="t", registry=REG):
    pass


class Declined(Event, type="test.core.declined.v1", topic="t", registry=REG):
    pass


class Order(BaseModel):
    order: str


def shop(version: int = 1) -> SagaDefinition:
    return SagaDefinition(
        name="shop",
        version=version,
        trigger=Ordered,
        correlation_key="order",
        data=Order,
        start=lambda e: Order(order=e.order),
        stages=[
            Step(
                "reserve",
                command=Reserve,
                success=Reserved,
                compensation=Compensation(
                    Release, success=Released, failure=ReleaseFailed, max_attempts=2
                ),
                timeout=timedelta(seconds=10),
                max_attempts=2,
            ),
            Step("charge", command=Charge, success=Charged, failure=Declined),
        ],
    )


SHOP = shop()


def msg(t: Transition, event: Event, mid: str) -> Incoming:
    return Incoming(event.bus_type, mid, t.state.saga_id, event)


def begun() -> Transition:
    return start(SHOP, Ordered(order="o-1"), message_id="m-0", now=T0)


def test_a_timeout_resends_with_a_new_deterministic_id_then_fails_the_step_and_undoes_it() -> None:
    t = begun()
    first = t.commands[0]
    assert first.id == command_id("shop:o-1", "reserve", "action", 1)
    (timer,) = t.timers_to_set
    assert timer.at == T0 + timedelta(seconds=10)
    t = decide(SHOP, t.state, TimerFired(timer.id), timer.at)
    (again,) = t.commands
    assert (again.attempt, again.message) == (2, first.message)
    assert again.id == command_id("shop:o-1", "reserve", "action", 2) != first.id
    t = decide(SHOP, t.state, TimerFired(t.timers_to_set[0].id), timer.at + timedelta(seconds=10))
    assert "no reply after 2 attempt(s)" in (t.state.reason or "")
    # out of attempts, yet one of them may have reserved: it is undone (uncertain)
    assert t.state.steps["reserve"].uncertain
    assert t.state.status == SagaStatus.COMPENSATING
    assert [c.message for c in t.commands] == [Release(order="o-1")]
    t = decide(SHOP, t.state, msg(t, Released(), "r-1"), timer.at + timedelta(seconds=11))
    assert t.state.status == SagaStatus.COMPENSATED
    assert ("failed", "reserve") in [(h.event, h.step) for h in t.state.history]


def test_a_reply_to_an_earlier_attempt_is_accepted_and_its_timer_superseded() -> None:
    t = begun()
    old_timer = t.timers_to_set[0].id
    t = decide(SHOP, t.state, TimerFired(old_timer), T0 + timedelta(seconds=10))
    t = decide(SHOP, t.state, msg(t, Reserved(), "r-1"), T0 + timedelta(seconds=11))
    assert [type(c.message) for c in t.commands] == [Charge]
    assert t.state.steps["reserve"].status == StepStatus.COMPLETED
    stale = decide(SHOP, t.state, TimerFired(old_timer), T0 + timedelta(seconds=20))
    assert not stale.changed


def test_duplicates_and_strangers_change_nothing() -> None:
    t = begun()
    t = decide(SHOP, t.state, msg(t, Reserved(), "r-1"), T0)
    for noise in [
        msg(t, Reserved(), "r-1"),  # the same message again
        msg(t, Reserved(), "r-2"),  # a second reply to a settled step
        msg(t, Released(), "r-3"),  # a compensation reply nobody asked for
        Incoming(Charged.bus_type, "r-4", "shop:other", Charged()),  # another saga's
    ]:
        again = decide(SHOP, t.state, noise, T0)
        assert again.state is t.state
        assert not again.changed


def test_a_compensation_that_keeps_failing_needs_attention_until_retried() -> None:
    t = begun()
    t = decide(SHOP, t.state, msg(t, Reserved(), "r-1"), T0)
    t = decide(SHOP, t.state, msg(t, Declined(), "r-2"), T0)
    assert [type(c.message) for c in t.commands] == [Release]
    t = decide(SHOP, t.state, msg(t, ReleaseFailed(), "r-3"), T0)
    assert [c.attempt for c in t.commands] == [2]
    t = decide(SHOP, t.state, msg(t, ReleaseFailed(), "r-4"), T0)
    assert t.state.status == SagaStatus.NEEDS_ATTENTION
    assert "compensation of step reserve failed after 2 attempt(s)" in (t.state.attention or "")
    assert not decide(SHOP, t.state, Cancel(), T0).changed
    t = decide(SHOP, t.state, Retry(), T0 + timedelta(hours=1))
    assert t.state.status == SagaStatus.COMPENSATING
    assert t.state.attention is None
    assert [(type(c.message), c.attempt) for c in t.commands] == [(Release, 3)]
    t = decide(SHOP, t.state, msg(t, Released(), "r-5"), T0 + timedelta(hours=1))
    assert t.state.status == SagaStatus.COMPENSATED
    assert [h.event for h in t.state.history].count("needs_attention") == 1


def test_cancel_compensates_what_completed() -> None:
    t = begun()
    t = decide(SHOP, t.state, msg(t, Reserved(), "r-1"), T0)
    t = decide(SHOP, t.state, Cancel("customer changed their mind"), T0)
    assert t.state.status == SagaStatus.COMPENSATING  # charge is still in flight
    t = decide(SHOP, t.state, msg(t, Charged(), "r-2"), T0)
    assert t.state.steps["charge"].status == StepStatus.COMPLETED  # no compensation: kept
    assert [type(c.message) for c in t.commands] == [Release]
    t = decide(SHOP, t.state, msg(t, Released(), "r-3"), T0)
    assert t.state.status == SagaStatus.CANCELLED
    assert t.state.reason == "customer changed their mind"


def test_the_state_round_trips_through_json_and_the_input_is_not_mutated() -> None:
    t = begun()
    before = SagaState.from_json(t.state.to_json())
    t2 = decide(SHOP, t.state, msg(t, Reserved(), "r-1"), T0)
    assert t.state == before
    assert SagaState.from_json(t2.state.to_json()) == t2.state


def test_decide_refuses_a_definition_of_another_version() -> None:
    t = begun()
    with pytest.raises(ConfigError, match="runs on 'shop' v1, not 'shop' v2"):
        decide(shop(2), t.state, Retry(), T0)


def test_an_instance_whose_version_is_gone_needs_attention_and_resumes_on_retry() -> None:
    t = begun()
    v2 = shop(2)
    only_v2 = Catalog([v2])
    parked = decide_versioned(only_v2, t.state, msg(t, Reserved(), "r-1"), T0)
    assert parked.state.status == SagaStatus.NEEDS_ATTENTION
    assert "'shop' v1 is not registered (registered versions: [2])" in (
        parked.state.attention or ""
    )
    assert not decide_versioned(only_v2, parked.state, Retry(), T0).changed
    both = Catalog([SHOP, v2])
    assert both.latest("shop") is v2
    assert both.triggered_by(Ordered.bus_type) == [v2]
    resumed = decide_versioned(both, parked.state, Retry(), T0 + timedelta(minutes=1))
    assert resumed.state.status == SagaStatus.RUNNING
    assert [(type(c.message), c.attempt) for c in resumed.commands] == [(Reserve, 2)]


def test_the_catalog_refuses_two_definitions_under_one_version() -> None:
    with pytest.raises(ConfigError, match="registered twice"):
        Catalog([SHOP, shop(1)])
