"""A lane lets the event loop run between records when its handler never awaits: slow
synchronous work must not hold SIGTERM, /healthz and the other lanes for a whole run."""

from __future__ import annotations

import asyncio
import time

from bus import App, Event, MemoryBroker, MemoryTransport, Publisher, Worker
from tests.waiting import wait_until


class Chore(Event, type="it.turns.chore.v1", topic="it.turns.chores", key="key"):
    key: str


async def test_a_lane_of_handlers_that_never_await_still_lets_the_loop_run() -> None:
    broker = MemoryBroker(default_partitions=1)
    transport = MemoryTransport(broker)
    await transport.start()
    app = App("it-turns")
    handled: list[str] = []

    @app.handler
    async def chore(c: Chore) -> None:
        time.sleep(0.01)  # noqa: ASYNC251 - the blocking handler under test: no await
        handled.append(c.key)

    total = 60
    await Publisher(transport, source="t").publish_many([Chore(key="k") for _ in range(total)])
    seen: list[int] = []
    probing = True

    async def probe() -> None:  # what a SIGTERM handler or /healthz would see meanwhile
        while probing:
            seen.append(len(handled))
            await asyncio.sleep(0)

    stop = asyncio.Event()
    prober = asyncio.create_task(probe())
    task = asyncio.create_task(Worker(app, transport).run(stop))
    await wait_until(lambda: len(handled) == total, timeout_s=30, what="every chore handled")
    probing = False
    stop.set()
    await asyncio.gather(task, prober)
    await transport.stop()
    between = sorted({n for n in seen if 0 < n < total})
    assert len(between) >= 3, f"the loop ran only at counts {sorted(set(seen))}"
