"""Issue 16, item 4: a reply timeout must not beat the replies waiting on the topics.

A coordinator sends every job's command, then is down longer than the step timeout while
the replies land on its reply topic. The next coordinator's input path is slow at first
(a backlog, a stall: its first store write takes half a second). Before the fence, its
timers fired at once and re-sent all the commands with new ids while the replies waited
(the issue saw 181 steps run twice); now the due timers wait until the inputs on the
topics are applied, and then change nothing. On the memory transport and on Kafka
(Tansu), through the Worker (``Coordinator.run``). Counts, not sleeps: the test waits
until every saga completed; a re-send could only have come before that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from bus import (
    Command,
    Envelope,
    Event,
    TopicSpec,
    Transport,
    WorkerSettings,
    envelope_for,
    record_for,
)
from sagas import Catalog, SagaDefinition, SagaStatus, Step
from sagas.coordinator import Coordinator
from sagas.stores import MemorySagaStore, SagaWrite
from sagas.stores.base import Change
from tests.conftest import Cluster, unique
from tests.waiting import wait_until

_T = unique("fence")
JOBS = 30
TIMEOUT = timedelta(seconds=5)


class JobBegun(Event, type="fence.job.begun.v1", topic=f"{_T}.begun", key="job_id"):
    job_id: str


class DoWork(Command, type="fence.work.do.v1", topic=f"{_T}.commands", key="job_id"):
    job_id: str


class WorkDone(Event, type="fence.work.done.v1", topic=f"{_T}.replies", key="job_id"):
    job_id: str


class Job(BaseModel):
    job_id: str


def _job(event: JobBegun) -> Job:
    return Job(job_id=event.job_id)


jobs = SagaDefinition(
    name="fencejob",
    version=1,
    trigger=JobBegun,
    correlation_key="job_id",
    data=Job,
    start=_job,
    stages=[Step("work", command=DoWork, success=WorkDone, timeout=TIMEOUT, max_attempts=3)],
)


class SlowFirstWrite(MemorySagaStore):
    """The first write of consumed inputs takes half a second (a backlog, a stalled disk)."""

    slow = False

    async def update_many(
        self,
        items: Sequence[tuple[str, Change]],
        *,
        on_conflict: Callable[[str], None] | None = None,
    ) -> list[SagaWrite | None]:
        if self.slow:
            self.slow = False
            await asyncio.sleep(0.5)
        return await super().update_many(items, on_conflict=on_conflict)


async def _commands(transport: Transport, cluster: Cluster) -> list[str]:
    """The ids of every command on the command topic, read to its end."""
    reader = (await cluster.client()).consumer([DoWork.bus_topic], group=None)
    await reader.start()
    try:
        tps = [tp for tp in reader.assignment()]
        ends = await reader.end_offsets(tps)
        ids: list[str] = []
        seen = dict.fromkeys(tps, 0)
        while any(seen[tp] < ends[tp] for tp in tps):
            for tp, records in (await reader.fetch(max_records=500, timeout_s=0.2)).items():
                ids += [dict(r.headers)["ce_id"].decode() for r in records]
                seen[tp] = records[-1].offset + 1
        return ids
    finally:
        await reader.stop()


async def test_replies_waiting_while_the_coordinator_was_down_win_over_their_timeouts(
    cluster: Cluster,
) -> None:
    transport = await cluster.client()
    await transport.ensure_topics(
        [TopicSpec(m.bus_topic, partitions=3) for m in (JobBegun, DoWork, WorkDone)]
    )
    now = [datetime(2026, 3, 1, 9, 0, tzinfo=UTC)]
    store = SlowFirstWrite()
    group = unique("fence-sagas")
    settings = WorkerSettings(commit_interval_s=0.05, fetch_timeout_s=0.05)

    def coordinator() -> Coordinator:
        return Coordinator(
            Catalog([jobs]), store, transport, group=group, clock=lambda: now[0],
            settings=settings, poll_interval_s=0.05,
        )  # fmt: skip

    # 1. The first coordinator starts every job: one command each, then it goes down.
    first, stop = coordinator(), asyncio.Event()
    running = asyncio.create_task(first.run(stop))
    for i in range(JOBS):
        begun = JobBegun(job_id=f"j{i}")
        await transport.publish(record_for(begun, _envelope(begun, now[0])))
    await wait_until(
        lambda: first.relay.published, until=lambda n: n == JOBS, what="commands sent", timeout_s=30
    )
    stop.set()
    await running

    # 2. While it is down, every reply lands, in time; the down time outlasts the timeout.
    for i in range(JOBS):
        reply = WorkDone(job_id=f"j{i}")
        await transport.publish(record_for(reply, _envelope(reply, now[0], f"fencejob:j{i}")))
    now[0] += TIMEOUT * 10

    # 3. The next coordinator finds the due timers and the replies, its input path slow.
    store.slow = True
    second, stop = coordinator(), asyncio.Event()
    running = asyncio.create_task(second.run(stop))

    async def completed() -> int:
        loaded = [await store.load(f"fencejob:j{i}") for i in range(JOBS)]
        return sum(1 for s in loaded if s is not None and s.state.status == SagaStatus.COMPLETED)

    await wait_until(completed, until=lambda n: n == JOBS, what="every job completed", timeout_s=60)
    stop.set()
    await running

    stats = second.statistics()
    assert second.relay.published == 0, "a timeout re-sent a step whose reply was waiting"
    assert len(await _commands(transport, cluster)) == JOBS  # each step ran once
    assert stats.transitions == JOBS
    assert stats.fence_waits >= 1
    for i in range(JOBS):
        state = (await store.load(f"fencejob:j{i}")).state  # type: ignore[union-attr]
        assert state.steps["work"].attempts == 1


def _envelope(message: Event, at: datetime, saga_id: str | None = None) -> Envelope:
    return envelope_for(
        message, source="bus://fence-test", id=unique("id"), time=at, correlationid=saga_id
    )
