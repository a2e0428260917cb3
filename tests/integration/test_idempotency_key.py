"""Issue 16, item 4: a re-send after a reply timeout carries the key of the attempt it
repeats, and a handler's dedup matches it.

The fence (tests/crash/test_timer_fence.py) keeps a timeout from beating a reply that is
on the topics. This covers what the fence cannot: the reply is late (the handler slow, or
its first attempt landed and the reply is still on its way) and the timeout re-sends.
The re-sent command has a new CloudEvents id but the same ``idempotencykey``, so a dedup
handler whose first attempt landed acknowledges it without running it again; one whose
first attempt was dead-lettered runs it.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from bus import (
    App,
    Command,
    Event,
    MemoryDedupStore,
    OutgoingRecord,
    PermanentError,
    RetryPolicy,
    TestBus,
    decode,
    envelope_for,
    record_for,
)
from sagas import (
    Compensation,
    Incoming,
    SagaDefinition,
    Step,
    TimerFired,
    Transition,
    command_id,
    decide,
    start,
)
from sagas.operations import outbox_entries

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
TIMEOUT = timedelta(seconds=30)


class Hired(Event, type="it.idem.hired.v1", topic="it.idem.hired", key="emp"):
    emp: str


class Provision(Command, type="it.idem.provision.v1", topic="it.idem.commands", key="emp"):
    emp: str


class Provisioned(Event, type="it.idem.provisioned.v1", topic="it.idem.events", key="emp"):
    emp: str


class Unprovision(Command, type="it.idem.unprovision.v1", topic="it.idem.commands", key="emp"):
    emp: str


class Unprovisioned(Event, type="it.idem.unprovisioned.v1", topic="it.idem.events", key="emp"):
    emp: str


class UnprovisionFailed(Event, type="it.idem.unprov_failed.v1", topic="it.idem.events", key="emp"):
    emp: str


class Notify(Command, type="it.idem.notify.v1", topic="it.idem.commands", key="emp"):
    emp: str


class Notified(Event, type="it.idem.notified.v1", topic="it.idem.events", key="emp"):
    emp: str


class NotifyFailed(Event, type="it.idem.notify_failed.v1", topic="it.idem.events", key="emp"):
    emp: str


class Data(BaseModel):
    emp: str


def _data(event: Hired) -> Data:
    return Data(emp=event.emp)


saga = SagaDefinition(
    name="idem",
    version=1,
    trigger=Hired,
    correlation_key="emp",
    data=Data,
    start=_data,
    stages=[
        Step(
            "provision",
            command=Provision,
            success=Provisioned,
            compensation=Compensation(
                Unprovision, success=Unprovisioned, failure=UnprovisionFailed, max_attempts=3
            ),
            timeout=TIMEOUT,
            max_attempts=3,
        ),
        Step("second", command=Notify, success=Notified, failure=NotifyFailed),
    ],
)


def _records(t: Transition) -> list[OutgoingRecord]:
    return [e.record for e in outbox_entries(t, now=T0, causation_id=None)]


def _timeout(t: Transition, step: str = "provision") -> Transition:
    timer = t.state.steps[step].timer_id
    assert timer is not None
    return decide(saga, t.state, TimerFired(timer), T0 + TIMEOUT)


def _first_and_resend() -> tuple[OutgoingRecord, OutgoingRecord, OutgoingRecord]:
    first = start(saga, Hired(emp="e-1"), message_id="m-1", now=T0)
    second = _timeout(first)
    third = _timeout(second)
    [a], [b], [c] = _records(first), _records(second), _records(third)
    return a, b, c


def test_a_resend_after_a_timeout_keeps_the_first_attempts_id_as_its_idempotency_key() -> None:
    first, again, third = (decode(r.headers, r.value) for r in _first_and_resend())
    first_id = command_id("idem:e-1", "provision", "action", 1)
    assert first.id == first_id
    assert "idempotencykey" not in first.extensions  # the first attempt's key is its id
    assert again.id == command_id("idem:e-1", "provision", "action", 2)
    assert third.id == command_id("idem:e-1", "provision", "action", 3)
    assert again.extensions["idempotencykey"] == first_id
    assert third.extensions["idempotencykey"] == first_id


def test_a_resend_after_a_failure_reply_asks_anew_with_its_own_key() -> None:
    t = start(saga, Hired(emp="e-2"), message_id="m-2", now=T0)
    done = Incoming(Provisioned.bus_type, "r-1", "idem:e-2", Provisioned(emp="e-2"))
    t = decide(saga, t.state, done, T0)
    failed = Incoming(NotifyFailed.bus_type, "r-2", "idem:e-2", NotifyFailed(emp="e-2"))
    t = decide(saga, t.state, failed, T0)  # step "second" fails: compensate "provision"
    [undo] = t.commands
    assert undo.key == undo.id
    nope = Incoming(UnprovisionFailed.bus_type, "r-3", "idem:e-2", UnprovisionFailed(emp="e-2"))
    t = decide(saga, t.state, nope, T0)  # the compensation failed: sent again, on purpose
    [undo_again] = t.commands
    assert undo_again.kind == "compensation"
    assert undo_again.attempt == 2
    assert undo_again.key == undo_again.id  # a dedup handler runs it again
    t = _timeout(t)  # no reply this time: the re-send repeats attempt 3 under attempt 2's key
    [undo_third] = t.commands
    assert undo_third.key == undo_again.id != undo_third.id


async def test_a_resend_whose_first_attempt_landed_is_not_applied_twice_by_a_dedup_handler() -> (
    None
):
    first, again, third = _first_and_resend()
    runs: Counter[str] = Counter()
    app = App("it-idem-landed", retry=RetryPolicy(max_attempts=1, initial_delay_s=0))

    @app.handler(dedup=MemoryDedupStore())
    async def provision(cmd: Provision) -> Provisioned:
        runs[cmd.emp] += 1
        return Provisioned(emp=cmd.emp)

    async with TestBus(app, partitions=1) as bus:
        await bus.transport.send(first)
        await bus.drain()  # it landed; its reply was late, so the saga timed out and re-sent
        await bus.transport.send(again)
        await bus.transport.send(third)
        await bus.drain()
        replies = bus.envelopes(Provisioned)
        stats = bus.runner.workers[0].stats
    assert runs == {"e-1": 1}
    assert (stats.handled, stats.duplicates) == (1, 2)
    assert len({r.id for r in replies}) == 1  # the first attempt's reply, nothing new


async def test_a_resend_whose_first_attempt_was_dead_lettered_runs() -> None:
    first, again, _ = _first_and_resend()
    runs: Counter[str] = Counter()
    app = App("it-idem-dlq", retry=RetryPolicy(max_attempts=1, initial_delay_s=0))

    @app.handler(dedup=MemoryDedupStore())
    async def provision(cmd: Provision) -> Provisioned:
        runs[cmd.emp] += 1
        if runs[cmd.emp] == 1:
            raise PermanentError("directory was read-only")
        return Provisioned(emp=cmd.emp)

    async with TestBus(app, partitions=1) as bus:
        await bus.transport.send(first)
        await bus.drain()
        await bus.transport.send(again)
        await bus.drain()
        replies = bus.envelopes(Provisioned)
        stats = bus.runner.workers[0].stats
    assert runs == {"e-1": 2}
    assert (stats.handled, stats.dead_lettered, stats.duplicates) == (1, 1, 0)
    assert len(replies) == 1


async def test_a_message_without_the_extension_is_deduplicated_by_its_id_as_before() -> None:
    runs: Counter[str] = Counter()
    app = App("it-idem-plain", retry=RetryPolicy(max_attempts=1, initial_delay_s=0))

    @app.handler(dedup=MemoryDedupStore())
    async def provision(cmd: Provision) -> None:
        runs[cmd.emp] += 1

    cmd = Provision(emp="e-3")
    env = envelope_for(cmd, source="bus://sagas/idem", id="c-1", time=T0)
    async with TestBus(app, partitions=1) as bus:
        await bus.transport.send(record_for(cmd, env))
        await bus.transport.send(record_for(cmd, env._replace(id="c-2")))  # another message
        await bus.transport.send(record_for(cmd, env))  # a copy
        await bus.drain()
    assert runs == {"e-3": 2}
