"""The handler runtime end to end on the memory transport: outcomes, offsets, shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from bus import (
    App,
    Context,
    DedupKey,
    Event,
    MemoryBroker,
    MemoryDedupStore,
    MemoryTransport,
    OutgoingRecord,
    Publisher,
    RecordMetadata,
    RetryPolicy,
    Runner,
    TestBus,
    TopicPartition,
    TransportError,
    Worker,
    WorkerSettings,
    decode,
)
from bus.transports.memory import MemoryConsumer
from handlers.hr.contracts import EmployeeHired
from handlers.identity.contracts import IdentityAccountCreated
from handlers.identity.handler import build_app as identity_app
from handlers.identity.system import Directory
from handlers.licensing.contracts import LicenseAssigned
from handlers.licensing.handler import build_app as licensing_app
from handlers.licensing.system import LicenseManager
from handlers.notifications.contracts import ManagerNotified
from handlers.notifications.handler import build_app as notifications_app
from handlers.notifications.system import Mailer
from tests.waiting import wait_until

NO_WAIT = RetryPolicy(max_attempts=3, initial_delay_s=0, jitter_s=0)


class Ping(Event, type="it.runtime.ping.v1", topic="it.runtime.pings", key="key"):
    key: str
    n: int


class Pong(Event, type="it.runtime.pong.v1", topic="it.runtime.pongs", key="key"):
    key: str
    n: int


class Other(Event, type="it.runtime.other.v1", topic="it.runtime.pings", key="key"):
    key: str


def hire(i: int) -> EmployeeHired:
    return EmployeeHired(
        employee_id=f"e-{i}",
        full_name=f"Person {i}",
        department="engineering",
        manager_email="boss@example.com",
        start_date=date(2027, 1, 4),
    )


def chain() -> tuple[list[App], Directory, LicenseManager, Mailer]:
    directory, licenses, mailer = Directory(), LicenseManager(), Mailer()
    return (
        [identity_app(directory), licensing_app(licenses), notifications_app(mailer)],
        directory,
        licenses,
        mailer,
    )


async def test_a_hire_flows_through_three_handlers_keeping_its_correlation_id() -> None:
    apps, directory, _, mailer = chain()
    async with TestBus(*apps) as bus:
        meta = await bus.publish(hire(1))
        await bus.drain()
        [first] = [e for e in bus.envelopes(EmployeeHired) if e.subject == "e-1"]
        [account] = bus.envelopes(IdentityAccountCreated)
        [license_] = bus.envelopes(LicenseAssigned)
        [notified] = bus.envelopes(ManagerNotified)
    assert meta.topic == "hr.events"
    assert first.correlationid == first.id
    for env in (account, license_, notified):
        assert env.correlationid == first.id
    assert (account.causationid, license_.causationid, notified.causationid) == (
        first.id,
        account.id,
        license_.id,
    )
    assert account.source == "bus://identity"
    assert directory.accounts == {"e-1": "person"}
    assert mailer.sent == [
        ("boss@example.com", "person@example.com is ready with office, chat, code-hosting")
    ]


async def test_a_handler_may_return_several_messages_none_or_publish_through_ctx() -> None:
    app = App("it-multi", retry=NO_WAIT)

    @app.handler
    async def fan_out(ping: Ping, ctx: Context) -> list[Pong] | None:
        if ping.n == 0:
            return None
        ctx.publish(Pong(key=ping.key, n=-ping.n))
        return [Pong(key=ping.key, n=ping.n), Pong(key=ping.key, n=ping.n * 10)]

    async with TestBus(app) as bus:
        await bus.publish(Ping(key="a", n=0))
        await bus.publish(Ping(key="a", n=2))
        await bus.drain()
        assert sorted(p.n for p in bus.messages(Pong)) == [-2, 2, 20]


async def test_records_of_one_key_are_handled_in_order_and_each_exactly_once() -> None:
    seen: list[tuple[str, int]] = []
    app = App("it-order")

    @app.handler
    async def record(ping: Ping) -> None:
        seen.append((ping.key, ping.n))
        await asyncio.sleep(0)

    async with TestBus(app, partitions=4) as bus:
        await bus.publisher.publish_many(Ping(key=f"k{i % 13}", n=i) for i in range(1000))
        await bus.drain()
    assert Counter(seen).most_common(1)[0][1] == 1
    assert len(seen) == 1000
    for key in {k for k, _ in seen}:
        ns = [n for k, n in seen if k == key]
        assert ns == sorted(ns)


async def test_no_more_partitions_than_max_concurrency_are_handled_at_once() -> None:
    running = 0
    peak = 0
    app = App("it-bound")

    @app.handler
    async def slow(ping: Ping) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.002)
        running -= 1

    async with TestBus(app, partitions=6, settings=WorkerSettings(max_concurrency=2)) as bus:
        await bus.publisher.publish_many(Ping(key=f"k{i}", n=i) for i in range(120))
        await bus.drain()
    assert peak == 2


# -- nothing lost on bad input --------------------------------------------------------------
def dlq_headers(record_headers: object) -> dict[str, str]:
    return {k: v.decode() for k, v in record_headers if k.startswith("bus_dlq_")}  # type: ignore[attr-defined]


async def _bad_input(raw: OutgoingRecord) -> tuple[TestBus, dict[str, str]]:
    app = App("it-bad", retry=NO_WAIT)

    @app.handler
    async def handle(ping: Ping) -> Pong:
        return Pong(key=ping.key, n=ping.n)

    async with TestBus(app) as bus:
        await bus.transport.publish(raw)
        await bus.publish(Ping(key="after", n=1))  # the loop goes on after the bad record
        await bus.drain()
        [dead] = bus.dead_letters("it.runtime.pings")
        assert dead.value == raw.value
        assert dead.key == raw.key
        assert list(dead.headers[: len(raw.headers)]) == list(raw.headers)
        assert [p.key for p in bus.messages(Pong)] == ["after"]
        assert bus.broker.group_lag("it-bad", ["it.runtime.pings"]) == 0
        return bus, dlq_headers(dead.headers)


async def test_a_record_that_is_not_a_cloudevent_is_dead_lettered_with_the_reason() -> None:
    raw = OutgoingRecord(
        "it.runtime.pings", key=b"x", value=b"\x00garbage", headers=[("foo", b"bar")]
    )
    _, headers = await _bad_input(raw)
    assert headers["bus_dlq_reason"] == "decode"
    assert "ce_id" in headers["bus_dlq_error_message"]
    assert headers["bus_dlq_topic"] == "it.runtime.pings"
    assert headers["bus_dlq_app"] == "it-bad"
    assert {"bus_dlq_offset", "bus_dlq_partition", "bus_dlq_time", "bus_dlq_error_type"} <= set(
        headers
    )


async def test_a_cloudevent_of_an_unknown_type_is_dead_lettered() -> None:
    raw = OutgoingRecord(
        "it.runtime.pings",
        key=b"x",
        value=b"{}",
        headers=[
            ("ce_specversion", b"1.0"),
            ("ce_id", b"1"),
            ("ce_source", b"s"),
            ("ce_type", b"nobody.knows.v1"),
        ],
    )
    _, headers = await _bad_input(raw)
    assert headers["bus_dlq_reason"] == "unknown_type"
    assert "nobody.knows.v1" in headers["bus_dlq_error_message"]


async def test_a_payload_that_fails_validation_is_dead_lettered_naming_the_field() -> None:
    raw = OutgoingRecord(
        "it.runtime.pings",
        key=b"x",
        value=b'{"key": "x", "n": "not a number"}',
        headers=[
            ("ce_specversion", b"1.0"),
            ("ce_id", b"1"),
            ("ce_source", b"s"),
            ("ce_type", b"it.runtime.ping.v1"),
        ],
    )
    _, headers = await _bad_input(raw)
    assert headers["bus_dlq_reason"] == "invalid"
    assert "field 'n'" in headers["bus_dlq_error_message"]


async def test_an_invalid_payload_of_a_type_already_seen_is_dead_lettered_the_same_way() -> None:
    # the first record of a type is decoded and validated through from_json; later ones
    # of a plain handler through the validator called directly: the same dead letter
    app = App("it-bad-later", retry=NO_WAIT)

    @app.handler
    async def handle(ping: Ping) -> Pong:
        return Pong(key=ping.key, n=ping.n)

    async with TestBus(app) as bus:
        await bus.publish(Ping(key="before", n=1))
        await bus.drain()
        good = bus.records("it.runtime.pings")[-1]
        bad = OutgoingRecord(
            "it.runtime.pings",
            key=b"x",
            value=b'{"key": "x", "n": "not a number"}',
            headers=[(k, v) for k, v in good.headers if k != "ce_id"] + [("ce_id", b"bad-1")],
        )
        await bus.transport.publish(bad)
        await bus.publish(Ping(key="after", n=2))
        await bus.drain()
        [dead] = bus.dead_letters("it.runtime.pings")
        assert [p.key for p in bus.messages(Pong)] == ["before", "after"]
    assert dead.value == bad.value
    headers = dlq_headers(dead.headers)
    assert headers["bus_dlq_reason"] == "invalid"
    assert "field 'n'" in headers["bus_dlq_error_message"]
    assert headers["bus_dlq_error_type"] == "bus.errors.PayloadInvalidError"


async def test_a_registered_type_the_app_does_not_handle_is_skipped_not_dead_lettered() -> None:
    app = App("it-skip")

    @app.handler
    async def handle(ping: Ping) -> None:
        return None

    async with TestBus(app) as bus:
        await bus.publish(Other(key="o"))
        await bus.drain()
        assert bus.dead_letters("it.runtime.pings") == []
        assert bus.runner.workers[0].stats.skipped == 1


async def test_a_structured_mode_cloudevent_is_handled() -> None:
    got: list[int] = []
    app = App("it-structured")

    @app.handler
    async def handle(ping: Ping) -> None:
        got.append(ping.n)

    value = b'{"specversion":"1.0","id":"x1","source":"ext","type":"it.runtime.ping.v1","data":{"key":"k","n":7}}'
    async with TestBus(app) as bus:
        await bus.transport.publish(
            OutgoingRecord(
                "it.runtime.pings",
                key=b"k",
                value=value,
                headers=[("content-type", b"application/cloudevents+json")],
            )
        )
        await bus.drain()
    assert got == [7]


async def test_a_handler_that_keeps_failing_is_retried_then_dead_lettered_and_emits_nothing() -> (
    None
):
    calls = 0
    app = App("it-fail", retry=NO_WAIT)

    @app.handler
    async def broken(ping: Ping, ctx: Context) -> Pong:
        nonlocal calls
        calls += 1
        ctx.publish(Pong(key="leak", n=0))
        raise RuntimeError("downstream said no")

    async with TestBus(app) as bus:
        await bus.publish(Ping(key="k", n=1))
        await bus.drain()
        [dead] = bus.dead_letters("it.runtime.pings")
        assert bus.messages(Pong) == []
    headers = dlq_headers(dead.headers)
    assert calls == 3
    assert headers["bus_dlq_reason"] == "handler_failed"
    assert headers["bus_dlq_attempts"] == "3"
    assert headers["bus_dlq_handler"].endswith("broken")
    assert headers["bus_dlq_error_type"] == "builtins.RuntimeError"
    assert headers["bus_dlq_error_message"] == "downstream said no"
    assert decode(dead.headers, dead.value).type == "it.runtime.ping.v1"


async def test_a_transient_failure_is_retried_and_then_handled_once() -> None:
    failures = 2
    app = App("it-transient", retry=NO_WAIT)

    @app.handler
    async def flaky(ping: Ping) -> Pong:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionError("blip")
        return Pong(key=ping.key, n=ping.n)

    async with TestBus(app) as bus:
        await bus.publish(Ping(key="k", n=5))
        await bus.drain()
        assert [p.n for p in bus.messages(Pong)] == [5]
        assert bus.dead_letters("it.runtime.pings") == []
        assert bus.runner.workers[0].stats.retries == 2


async def test_a_permanent_error_is_dead_lettered_without_retries() -> None:
    calls = 0
    app = App("it-permanent", retry=RetryPolicy(max_attempts=5, permanent=(ValueError,)))

    @app.handler
    async def strict(ping: Ping) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bad business data")

    async with TestBus(app) as bus:
        await bus.publish(Ping(key="k", n=5))
        await bus.drain()
        [dead] = bus.dead_letters("it.runtime.pings")
    assert calls == 1
    assert dlq_headers(dead.headers)["bus_dlq_attempts"] == "1"


async def test_a_handler_returning_a_non_message_is_dead_lettered_with_a_clear_error() -> None:
    app = App("it-wrong-return", retry=NO_WAIT)

    @app.handler
    async def wrong(ping: Ping):  # type: ignore[no-untyped-def]
        return {"not": "a message"}

    async with TestBus(app) as bus:
        await bus.publish(Ping(key="k", n=5))
        await bus.drain()
        [dead] = bus.dead_letters("it.runtime.pings")
    assert "return a Message" in dlq_headers(dead.headers)["bus_dlq_error_message"]


# -- offsets follow acknowledgements ------------------------------------------------------
class HeldTransport(MemoryTransport):
    """Appends at once but acknowledges sends to ``held_topic`` only when released."""

    def __init__(self, broker: MemoryBroker, held_topic: str) -> None:
        super().__init__(broker)
        self.held_topic = held_topic
        self.held: list[asyncio.Future[RecordMetadata]] = []
        self.fail_first = False

    async def send(self, record: OutgoingRecord) -> asyncio.Future[RecordMetadata]:
        done = await super().send(record)
        if record.topic != self.held_topic:
            return done
        held: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        if self.fail_first:
            self.fail_first = False
            held.set_exception(TransportError("broker went away"))
        else:
            self.held.append(held)
            held.add_done_callback(lambda _: None)
            self._result = done.result()
        return held

    def release(self) -> None:
        for fut in self.held:
            if not fut.done():
                fut.set_result(self._result)


def echo_app(name: str) -> App:
    app = App(name)

    @app.handler
    async def echo(ping: Ping) -> Pong:
        return Pong(key=ping.key, n=ping.n)

    return app


async def _committed(broker: MemoryBroker, group: str) -> int:
    return sum(broker.group_committed(group).values())


async def test_an_offset_is_committed_only_after_emitted_messages_are_acknowledged() -> None:
    broker = MemoryBroker(default_partitions=1)
    transport = HeldTransport(broker, "it.runtime.pongs")
    await transport.start()
    await Publisher(transport, source="t").publish_many(Ping(key="k", n=i) for i in range(5))
    stop = asyncio.Event()
    worker = Worker(echo_app("it-held"), transport, WorkerSettings(commit_interval_s=0.01))
    task = asyncio.create_task(worker.run(stop))
    await wait_until(
        lambda: worker.stats.handled, until=lambda n: n == 5, timeout_s=2, what="5 handled"
    )
    # the commit loop came round a few times since, with the outputs still unacknowledged
    seen = worker.stats.commit_rounds
    await wait_until(
        lambda: worker.stats.commit_rounds - seen,
        until=lambda n: n >= 3,
        timeout_s=2,
        what="3 commit rounds",
    )
    assert worker.stats.handled == 5
    assert await _committed(broker, "it-held") == 0
    transport.release()
    await wait_until(
        lambda: _committed(broker, "it-held"),
        until=lambda n: n == 5,
        timeout_s=1,
        what="5 offsets committed",
        interval_s=0.01,
    )
    assert broker.group_committed("it-held") == {TopicPartition("it.runtime.pings", 0): 5}
    stop.set()
    await task


async def test_an_output_whose_send_failed_is_sent_again_before_its_offset_is_committed() -> None:
    broker = MemoryBroker(default_partitions=1)
    transport = HeldTransport(broker, "it.runtime.pongs")
    transport.fail_first = True
    await transport.start()
    await Publisher(transport, source="t").publish(Ping(key="k", n=1))
    stop = asyncio.Event()
    worker = Worker(echo_app("it-resend"), transport, WorkerSettings(commit_interval_s=0.01))
    task = asyncio.create_task(worker.run(stop))
    await wait_until(
        lambda: worker.stats.resent, timeout_s=2, what="the output re-sent", interval_s=0.01
    )
    assert worker.stats.resent == 1
    assert await _committed(broker, "it-resend") == 0
    transport.release()
    await wait_until(
        lambda: _committed(broker, "it-resend"),
        until=lambda n: n == 1,
        timeout_s=1,
        what="the offset committed",
        interval_s=0.01,
    )
    # the original and the re-sent copy carry the same CloudEvent id: deduplicable downstream
    ids = {decode(r.headers, r.value).id for r in broker.records("it.runtime.pongs")}
    assert len(ids) == 1
    stop.set()
    await task


# -- shutdown and restart -------------------------------------------------------------------
@pytest.mark.parametrize("stop_after", [1, 250, 1200])
async def test_shutdown_mid_stream_then_restart_handles_every_record_exactly_once(
    stop_after: int,
) -> None:
    broker = MemoryBroker(default_partitions=4)
    effects: list[int] = []

    def build() -> App:
        app = App("it-restart")

        @app.handler
        async def effect(ping: Ping) -> Pong:
            effects.append(ping.n)
            if ping.n % 50 == 0:
                await asyncio.sleep(0.001)  # let the stop land mid-batch
            return Pong(key=ping.key, n=ping.n)

        return app

    transport = MemoryTransport(broker)
    await transport.start()
    await Publisher(transport, source="t").publish_many(
        Ping(key=f"k{i % 37}", n=i) for i in range(2000)
    )

    stop = asyncio.Event()
    first = Worker(build(), transport, WorkerSettings(commit_interval_s=0.01))
    task = asyncio.create_task(first.run(stop))
    await wait_until(
        lambda: len(effects),
        until=lambda n: n >= stop_after,
        timeout_s=10,
        what=f"{stop_after} effects",
        interval_s=0,
    )
    stop.set()
    await task
    handled_first = len(effects)
    assert handled_first < 2000, "the stop landed mid-stream"
    assert sum(broker.group_committed("it-restart").values()) == handled_first

    stop = asyncio.Event()
    second = Worker(build(), transport, WorkerSettings(commit_interval_s=0.01))
    task = asyncio.create_task(second.run(stop))
    await wait_until(
        lambda: broker.group_lag("it-restart", ["it.runtime.pings"]),
        until=lambda lag: not lag,
        timeout_s=10,
        what="lag 0",
        interval_s=0.01,
    )
    stop.set()
    await task
    assert sorted(effects) == list(range(2000))
    pongs = [decode(r.headers, r.value) for r in broker.records("it.runtime.pongs")]
    assert len(pongs) == 2000


async def test_two_workers_of_one_app_split_the_partitions_and_handle_everything_once() -> None:
    broker = MemoryBroker(default_partitions=6)
    effects: list[tuple[int, int]] = []

    def build(worker_no: int) -> App:
        app = App("it-pair")

        @app.handler
        async def effect(ping: Ping) -> None:
            effects.append((worker_no, ping.n))
            await asyncio.sleep(0)

        return app

    transports = [MemoryTransport(broker), MemoryTransport(broker)]
    for t in transports:
        await t.start()
    stop = asyncio.Event()
    settings = WorkerSettings(commit_interval_s=0.01)
    workers = [Worker(build(i), t, settings) for i, t in enumerate(transports)]
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    await wait_until(
        lambda: [w.running for w in workers], until=all, timeout_s=5, what="both workers running"
    )
    await Publisher(transports[0], source="t").publish_many(
        Ping(key=f"k{i}", n=i) for i in range(600)
    )
    await wait_until(
        lambda: broker.group_lag("it-pair", ["it.runtime.pings"]),
        until=lambda lag: not lag,
        timeout_s=10,
        what="lag 0",
        interval_s=0.01,
    )
    stop.set()
    await asyncio.gather(*tasks)
    assert sorted(n for _, n in effects) == list(range(600))
    assert {w for w, _ in effects} == {0, 1}


# -- shutdown honours its budget ----------------------------------------------------------
class StuckStop(MemoryTransport):
    """A transport whose stop() never returns (a client stuck on a half-open connection)."""

    async def stop(self) -> None:
        await asyncio.sleep(3600)


async def test_a_transport_that_never_stops_does_not_hold_up_the_shutdown(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import bus.runner

    monkeypatch.setattr(bus.runner, "CLOSE_BUDGET_S", 0.3)
    runner = Runner([echo_app("stuck-stop")], StuckStop(MemoryBroker()))
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await asyncio.wait_for(runner.started.wait(), 5)
    stop.set()
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(task, 5)
    assert asyncio.get_running_loop().time() - started < 2.0
    assert "not closed within 0.3s" in caplog.text


class FailingPurge(MemoryDedupStore):
    async def purge(self, older_than: datetime) -> int:
        raise TransportError("database away")


async def test_the_runner_purges_dedup_completions_older_than_the_retention(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "bus.runner")
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    store = MemoryDedupStore(clock=lambda: now - timedelta(hours=2))
    await store.record(DedupKey("h", "/src", "old"))
    store.clock = lambda: now - timedelta(minutes=30)
    await store.record(DedupKey("h", "/src", "recent"))
    runner = Runner(
        [deduplicating_app("purged", store), deduplicating_app("unpurgeable", FailingPurge())],
        MemoryTransport(MemoryBroker()),
        dedup_retention_s=3600,
        dedup_purge_interval_s=0.05,
        clock=lambda: now,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await asyncio.wait_for(runner.started.wait(), 5)
    await wait_until(
        lambda: store.get(DedupKey("h", "/src", "old")),
        until=lambda got: got is None,
        timeout_s=1,
        what="the old completion purged",
        interval_s=0.01,
    )
    assert await store.get(DedupKey("h", "/src", "recent")) is not None
    # more rounds after a failed one: the failing store does not stop anything
    await wait_until(
        lambda: caplog.text.count("dedup purge of FailingPurge failed"),
        until=lambda n: n >= 3,
        timeout_s=5,
        what="three purge rounds",
    )
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert "dedup purge of FailingPurge failed" in caplog.text
    assert "1 completions before 2026-11-27T11:00:00+00:00 forgotten" in caplog.text


class CountedPurge(MemoryDedupStore):
    """Counts its purges (each forgets nothing, so the runner logs none of them)."""

    purges = 0

    async def purge(self, older_than: datetime) -> int:
        self.purges += 1
        return 0


async def test_no_purge_runs_without_a_retention(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "bus.runner")
    app = deduplicating_app("kept", FailingPurge())  # a purge would log its failure
    runner = Runner([app], MemoryTransport(MemoryBroker()), dedup_purge_interval_s=0.01)
    # the same schedule with a retention: once it purged a few times, so would the other
    counted = CountedPurge()
    control = Runner(
        [deduplicating_app("control", counted)],
        MemoryTransport(MemoryBroker()),
        dedup_retention_s=3600,
        dedup_purge_interval_s=0.01,
    )
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in (runner, control)]
    await asyncio.wait_for(runner.started.wait(), 5)
    await wait_until(
        lambda: counted.purges, until=lambda n: n >= 3, timeout_s=5, what="3 control purges"
    )
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert "dedup purge" not in caplog.text


def deduplicating_app(name: str, store: MemoryDedupStore) -> App:
    app = App(name, dedup=store)

    @app.handler
    async def echo(ping: Ping) -> Pong:
        return Pong(key=ping.key, n=ping.n)

    return app


class StuckCommitConsumer(MemoryConsumer):
    """A consumer whose commits hang once stopping began (aiokafka's during a rebalance)."""

    stuck = False

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if StuckCommitConsumer.stuck:
            await asyncio.sleep(3600)
        await super().commit(offsets)


class StuckCommit(MemoryTransport):
    def consumer(self, topics: Sequence[str], **kwargs: Any) -> MemoryConsumer:
        return StuckCommitConsumer(self.broker, topics, **kwargs)


async def test_a_commit_that_hangs_does_not_hold_up_the_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = MemoryBroker()
    transport = StuckCommit(broker)
    settings = WorkerSettings(shutdown_deadline_s=0.5, commit_interval_s=3600)
    runner = Runner([echo_app("stuck-commit")], transport, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await asyncio.wait_for(runner.started.wait(), 5)
    await Publisher(transport, source="/test").publish(Ping(key="k", n=1))
    await wait_until(
        lambda: broker.records("it.runtime.pongs"), timeout_s=5, what="the pong", interval_s=0.01
    )
    StuckCommitConsumer.stuck = True
    try:
        stop.set()
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(task, 5)
        assert asyncio.get_running_loop().time() - started < 2.0
    finally:
        StuckCommitConsumer.stuck = False
    assert "the last commit did not finish within the shutdown deadline" in caplog.text
    assert sum(broker.group_committed("stuck-commit").values()) == 0  # redelivered later
