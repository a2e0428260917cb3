"""Delayed retries through retry topics, end to end on the memory transport."""

from __future__ import annotations

import logging
import time
from collections import Counter

import pytest

from bus import App, Event, PermanentError, RetryPolicy, TestBus, WorkerSettings

TOPIC = "it.retrytopics.jobs"


class Job(Event, type="it.retrytopics.job.v1", topic=TOPIC, key="key"):
    key: str
    n: int


class Done(Event, type="it.retrytopics.done.v1", topic="it.retrytopics.done", key="key"):
    key: str
    n: int


def policy(**overrides: object) -> RetryPolicy:
    base: dict[str, object] = {
        "max_attempts": 3,
        "initial_delay_s": 0,
        "jitter_s": 0,
        "tiers_s": (0.2, 0.4),
    }
    return RetryPolicy(**{**base, **overrides})  # type: ignore[arg-type]


def headers_of(record_headers: tuple[tuple[str, bytes], ...]) -> dict[str, str]:
    return {k: v.decode() for k, v in record_headers}


async def test_a_record_that_keeps_failing_goes_through_every_tier_then_to_the_dead_letter_topic() -> (
    None
):
    calls: list[float] = []
    app = App("it-retry-tiers", retry=policy())

    @app.handler
    async def always_fails(job: Job) -> None:
        calls.append(time.monotonic())
        raise ConnectionError("downstream away")

    async with TestBus(app, partitions=1) as bus:
        await bus.publish(Job(key="k", n=1))
        await bus.drain()
        [dead] = bus.dead_letters(TOPIC)
        [original] = bus.records(TOPIC)
        assert [r.topic for r in bus.records("it-retry-tiers.retry.200ms")] == [
            "it-retry-tiers.retry.200ms"
        ]
        assert len(bus.records("it-retry-tiers.retry.400ms")) == 1
        stats = bus.runner.workers[0].stats
    assert len(calls) == 5  # 3 immediate + 2 delayed
    assert calls[3] - calls[2] >= 0.19
    assert calls[4] - calls[3] >= 0.39
    headers = headers_of(dead.headers)
    assert headers["bus_dlq_reason"] == "handler_failed"
    assert headers["bus_dlq_attempts"] == "5"
    # the dead letter points at the original record, not at a retry topic
    assert headers["bus_dlq_topic"] == TOPIC
    assert headers["bus_dlq_offset"] == str(original.offset)
    # original key, value and ce_ headers untouched; no retry bookkeeping left behind
    assert dead.key == original.key
    assert dead.value == original.value
    assert [h for h in dead.headers if not h[0].startswith("bus_")] == list(original.headers)
    assert not any(k.startswith("bus_retry_") for k, _ in dead.headers)
    assert (stats.delayed, stats.dead_lettered, stats.handled) == (2, 1, 0)


async def test_a_transient_failure_succeeds_in_a_later_tier_and_emits_once() -> None:
    failures = Counter[int]()
    app = App("it-retry-transient", retry=policy())

    @app.handler
    async def flaky(job: Job) -> Done:
        if failures[job.n] < 4:  # the 3 immediate tries and the first tier fail
            failures[job.n] += 1
            raise TimeoutError("slow downstream")
        return Done(key=job.key, n=job.n)

    async with TestBus(app, partitions=1) as bus:
        await bus.publish(Job(key="k", n=7))
        await bus.drain()
        assert [d.n for d in bus.messages(Done)] == [7]
        assert bus.dead_letters(TOPIC) == []


async def test_a_delayed_retry_does_not_block_its_partition() -> None:
    handled: list[int] = []
    app = App("it-retry-nonblocking", retry=policy(tiers_s=(0.5,)))

    @app.handler
    async def first_fails_once(job: Job) -> None:
        if job.n == 0 and handled.count(-1) < 3:
            handled.append(-1)
            raise ConnectionError("blip")
        handled.append(job.n)

    async with TestBus(app, partitions=1) as bus:
        for n in range(5):
            await bus.publish(Job(key="same-key", n=n))
        await bus.drain()
    # records 1..4 of the same key did not wait for record 0's delayed retry
    assert [n for n in handled if n >= 0] == [1, 2, 3, 4, 0]


async def test_blocking_tiers_keep_per_key_order() -> None:
    handled: list[int] = []
    app = App("it-retry-blocking", retry=policy(tiers_s=(0.2,), blocking=True))

    @app.handler
    async def first_fails_three_times(job: Job) -> None:
        if job.n == 0 and handled.count(-1) < 3:
            handled.append(-1)
            raise ConnectionError("blip")
        handled.append(job.n)

    async with TestBus(app, partitions=1) as bus:
        for n in range(3):
            await bus.publish(Job(key="same-key", n=n))
        await bus.drain()
        assert app.retry_topics == ()
        assert bus.runner.workers[0].stats.delayed == 0
    assert [n for n in handled if n >= 0] == [0, 1, 2]


async def test_a_permanent_error_skips_every_retry() -> None:
    calls = 0
    app = App("it-retry-permanent", retry=policy())

    @app.handler
    async def rejects(job: Job) -> None:
        nonlocal calls
        calls += 1
        raise PermanentError("employee record is incomplete")

    async with TestBus(app, partitions=1) as bus:
        await bus.publish(Job(key="k", n=1))
        await bus.drain()
        [dead] = bus.dead_letters(TOPIC)
    assert calls == 1
    headers = headers_of(dead.headers)
    assert headers["bus_dlq_reason"] == "permanent_error"
    assert headers["bus_dlq_attempts"] == "1"


async def test_errors_outside_retry_on_are_not_retried() -> None:
    calls = 0
    app = App("it-retry-on", retry=policy(retry_on=(ConnectionError,)))

    @app.handler
    async def wrong_data(job: Job) -> None:
        nonlocal calls
        calls += 1
        raise KeyError("missing field")

    async with TestBus(app, partitions=1) as bus:
        await bus.publish(Job(key="k", n=1))
        await bus.drain()
        [dead] = bus.dead_letters(TOPIC)
    assert calls == 1
    assert headers_of(dead.headers)["bus_dlq_reason"] == "permanent_error"


async def test_handler_policy_overrides_the_app_policy_and_retry_topics_are_consumed() -> None:
    app = App("it-retry-perhandler", retry=RetryPolicy(max_attempts=1))

    @app.handler(retry=policy(tiers_s=(1.0, 60.0)))
    async def declared(job: Job) -> None:
        return None

    assert app.retry_topics == ("it-retry-perhandler.retry.1s", "it-retry-perhandler.retry.1m")
    assert set(app.retry_topics) < set(app.topics)


async def test_many_failing_records_are_all_accounted_for() -> None:
    fail = {n for n in range(40) if n % 4 == 0}
    done: list[int] = []
    app = App("it-retry-many", retry=policy(tiers_s=(0.05, 0.1)))

    @app.handler
    async def some_fail(job: Job) -> Done:
        if job.n in fail:
            raise ConnectionError("no")
        done.append(job.n)
        return Done(key=job.key, n=job.n)

    async with TestBus(app, partitions=3, settings=WorkerSettings(max_concurrency=2)) as bus:
        for n in range(40):
            await bus.publish(Job(key=f"k{n % 7}", n=n))
        await bus.drain()
        dead = bus.dead_letters(TOPIC)
        stats = bus.runner.workers[0].stats
    assert sorted(done) == sorted(set(range(40)) - fail)
    assert len(dead) == len(fail)
    assert stats.handled + stats.dead_lettered == 40
    assert stats.delayed == 2 * len(fail)


async def test_failure_log_lines_carry_the_message_fields(caplog: pytest.LogCaptureFixture) -> None:
    app = App("it-retry-logs", retry=policy(tiers_s=(0.05,)))

    @app.handler
    async def fails(job: Job) -> None:
        raise ConnectionError("down")

    caplog.set_level(logging.INFO, logger="bus.worker")
    async with TestBus(app, partitions=1) as bus:
        await bus.publish(Job(key="k", n=1), correlationid="corr-1")
        await bus.drain()
        [sent] = bus.envelopes(Job)
    lines = [r for r in caplog.records if r.name == "bus.worker" and r.levelno >= logging.WARNING]
    assert len(lines) >= 3  # to the tier, out of tries, dead-lettered
    for line in lines:
        assert getattr(line, "message_id", None) == sent.id
        assert getattr(line, "correlation_id", None) == "corr-1"
        assert getattr(line, "message_type", None) == Job.bus_type
        assert getattr(line, "handler", None) == "fails"
