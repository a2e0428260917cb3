"""``Worker.fence()`` / ``behind()``: how far the group handled its input (bus.progress)."""

from __future__ import annotations

import asyncio

from bus import (
    App,
    Event,
    MemoryBroker,
    MemoryTransport,
    OutgoingRecord,
    Publisher,
    Worker,
    WorkerSettings,
    record_for,
)
from tests.waiting import wait_until

TOPIC = "it.progress.jobs"


class Job(Event, type="it.progress.job.v1", topic=TOPIC, key="key"):
    key: str


async def test_a_worker_is_behind_a_fence_until_it_and_its_peers_handled_up_to_it() -> None:
    broker = MemoryBroker(default_partitions=2)
    transport = MemoryTransport(broker)
    await transport.start()
    gate = asyncio.Event()
    app = App("it-progress")
    handled: list[str] = []

    @app.handler
    async def work(job: Job) -> None:
        if job.key.startswith("slow"):
            await gate.wait()
        handled.append(job.key)

    settings = WorkerSettings(commit_interval_s=0.02, fetch_timeout_s=0.02)
    a, b = Worker(app, transport, settings), Worker(app, transport, settings)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in (a, b)]
    await wait_until(lambda: len(a.handled_offsets()) + len(b.handled_offsets()),
                     until=lambda n: n == 2, timeout_s=10, what="partitions split")  # fmt: skip
    [slow_tp] = b.handled_offsets()
    [fast_tp] = a.handled_offsets()
    publisher = Publisher(transport, source="bus://test")
    for key, tp in (("slow-1", slow_tp), ("fast-1", fast_tp), ("fast-2", fast_tp)):
        job = Job(key=key)
        rec = record_for(job, publisher.envelope(job))
        await transport.publish(OutgoingRecord(rec.topic, rec.key, rec.value, rec.headers,
                                               partition=tp.partition))  # fmt: skip

    fence = await a.fence()
    assert fence.ends == {slow_tp: 1, fast_tp: 2}
    # a's own partition by its progress; b's (not a's) by the group's committed offset
    await wait_until(lambda: a.behind(fence), until=lambda late: list(late) == [slow_tp],
                     timeout_s=10, what="a handled its own partition")  # fmt: skip
    assert a.handled_offsets() == {fast_tp: 2}
    assert (await a.behind(fence))[slow_tp] == (0, 1)
    gate.set()
    await wait_until(lambda: a.behind(fence), until=lambda late: not late, timeout_s=10,
                     what="b handled and committed past the fence")  # fmt: skip
    assert sorted(handled) == ["fast-1", "fast-2", "slow-1"]
    assert await b.behind(fence) == {}
    stop.set()
    await asyncio.gather(*tasks)
    await transport.stop()
