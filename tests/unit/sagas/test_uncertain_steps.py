"""A step out of attempts may have taken effect: it is compensated, and a late reply noted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from bus import Command, Event, Registry
from sagas import (
    Compensation,
    Incoming,
    SagaDefinition,
    SagaState,
    SagaStatus,
    Step,
    TimerFired,
    Transition,
    decide,
    start,
)

REG = Registry()
T0 = datetime(2026, 3, 1, tzinfo=UTC)


class Ordered(Event, type="test.unsure.ordered.v1", topic="t", key="order", registry=REG):
    order: str


def _family(name: str) -> tuple[type[Command], type[Event], type[Command], type[Event]]:
    def make(base: type, suffix: str) -> type:
        return type(
            f"{name.title()}{suffix}",
            (base,),
            {"__module__": __name__, "__annotations__": {"order": str}, "order": "x"},
            type=f"test.unsure.{name}.{suffix.lower()}.v1",
            topic="t",
            registry=REG,
        )

    return make(Command, "Do"), make(Event, "Done"), make(Command, "Undo"), make(Event, "Undone")


RESERVE, RESERVED, RELEASE, RELEASED = _family("reserve")
CHARGE, CHARGED, REFUND, REFUNDED = _family("charge")


class Order(BaseModel):
    order: str


FLOW = SagaDefinition(
    name="unsure",
    version=1,
    trigger=Ordered,
    correlation_key="order",
    data=Order,
    start=lambda e: Order(order=e.order),
    stages=[
        Step(
            "reserve",
            command=RESERVE,
            success=RESERVED,
            compensation=Compensation(RELEASE, success=RELEASED),
        ),
        Step(
            "charge",
            command=CHARGE,
            success=CHARGED,
            compensation=Compensation(REFUND, success=REFUNDED),
            timeout=timedelta(seconds=10),
            max_attempts=2,
        ),
    ],
)


def _reply(t: Transition, cls: type[Event], message_id: str) -> Incoming:
    return Incoming(cls.bus_type, message_id, t.state.saga_id, cls(order="o-1"))


def _charge_given_up() -> Transition:
    t = start(FLOW, Ordered(order="o-1"), message_id="m-0", now=T0)
    t = decide(FLOW, t.state, _reply(t, RESERVED, "r-1"), T0)
    for k in (1, 2):
        (timer,) = t.timers_to_set
        t = decide(FLOW, t.state, TimerFired(timer.id), T0 + timedelta(seconds=10 * k))
    return t


def test_a_step_out_of_attempts_is_undone_first_then_the_ones_before_it() -> None:
    t = _charge_given_up()
    assert t.state.steps["charge"].uncertain
    assert [c.message.bus_type for c in t.commands] == [REFUND.bus_type]
    t = decide(FLOW, t.state, _reply(t, REFUNDED, "u-1"), T0 + timedelta(seconds=21))
    assert [c.message.bus_type for c in t.commands] == [RELEASE.bus_type]
    t = decide(FLOW, t.state, _reply(t, RELEASED, "u-2"), T0 + timedelta(seconds=22))
    assert t.state.status == SagaStatus.COMPENSATED


def _ended() -> SagaState:
    t = _charge_given_up()
    t = decide(FLOW, t.state, _reply(t, REFUNDED, "u-1"), T0 + timedelta(seconds=21))
    return decide(FLOW, t.state, _reply(t, RELEASED, "u-2"), T0 + timedelta(seconds=22)).state


def test_a_late_success_after_the_saga_ended_is_noted_in_the_timeline_and_decides_nothing() -> None:
    ended = _ended()
    late = Incoming(CHARGED.bus_type, "late-1", ended.saga_id, CHARGED(order="o-1"))
    t = decide(FLOW, ended, late, T0 + timedelta(minutes=5))
    assert t.changed
    assert not t.commands
    assert t.state.status == SagaStatus.COMPENSATED
    assert t.state.updated_at == ended.updated_at  # the saga's own progress did not move
    last = t.state.history[-1]
    assert (last.event, last.step) == ("late_reply", "charge")
    assert "took effect after all; its compensation undoes it" in last.detail
    again = decide(FLOW, t.state, late, T0 + timedelta(minutes=6))
    assert not again.changed  # the same reply again: noted once


def test_a_late_reply_while_its_compensation_is_in_flight_is_noted_too() -> None:
    t = _charge_given_up()
    late = _reply(t, CHARGED, "late-1")
    t = decide(FLOW, t.state, late, T0 + timedelta(seconds=20, milliseconds=5))
    assert t.state.status == SagaStatus.COMPENSATING
    assert t.state.history[-1].event == "late_reply"
    t = decide(FLOW, t.state, _reply(t, REFUNDED, "u-1"), T0 + timedelta(seconds=21))
    assert [c.message.bus_type for c in t.commands] == [RELEASE.bus_type]
