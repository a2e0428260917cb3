"""Tasks survive coordinator crashes: ``bus sagas run`` SIGKILLed while tasks are open.

Sagas reach a task each (its row written with their state); the coordinator is SIGKILLed
at seeded random moments and restarted, while the tasks are completed through the store
(:func:`sagas.tasks.complete_task`, as ``bus tasks complete`` does) - some while it is
down, some just before a kill, all after they went overdue (their due timers fired). A completion is a row change
and a request in one transaction, so no kill may lose or double one.

Pass: every saga completes, its task completed exactly once (one ``completed`` line, the
data applied, the row completed by its actor), overdue once, and no request left.

Sizes: ``BUS_CRASH_SCALE=full`` (60 sagas, 6 kills); CI: 16 sagas, 3 kills.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from bus.devbroker import DevBroker
from sagas.stores import SagaStore, store_from_url
from sagas.tasks import complete_task, list_tasks
from tests.crash import saga_harness as h
from tests.crash.coordinator_kills import broker
from tests.waiting import wait_until

__all__ = ["broker"]  # the fixture: a Tansu of this test's own

pytestmark = [pytest.mark.crash, pytest.mark.kafka]

SAGAS = h.scaled(60, 16)
KILLS = h.scaled(6, 3)
DEFINITIONS = "tests.crash.task_definitions"


async def _open_store(url: str) -> SagaStore:
    store = store_from_url(url)
    await store.open()
    return store


async def test_tasks_completed_around_coordinator_kills_complete_each_saga_once(
    broker: DevBroker, tmp_path: Path
) -> None:
    rng = random.Random(11)
    url = f"sqlite:{tmp_path / 'sagas.db'}"
    env = h.kafka_env(broker)
    args = ["sagas", "run", "-d", DEFINITIONS, "--store", url, "--transport", "kafka"]
    started = 0

    def start() -> tuple[subprocess.Popen[bytes], Path]:
        nonlocal started
        started += 1
        log = tmp_path / f"coordinator-{started}.log"
        return h.spawn(args, env, log), log

    async def up(log: Path) -> None:
        await wait_until(
            lambda: "coordinator of" in log.read_text(errors="replace"),
            timeout_s=60.0,
            what="the coordinator up",
        )

    plan = h.hires("tk", SAGAS, mixed=False)
    ids = {f"desk:{p.message.employee_id}" for p in plan}
    coordinator, log = start()
    store = await _open_store(url)
    try:
        await up(log)
        await h.publish(broker, [p.message for p in plan])

        async def all_open() -> bool:
            return len(await list_tasks(store, limit=10_000)) == SAGAS

        await wait_until(all_open, timeout_s=120.0, what="every task open", interval_s=0.5)

        async def overdue() -> bool:  # their due timers fired: completed overdue, later
            return len(await list_tasks(store, status="overdue", limit=10_000)) == SAGAS

        await wait_until(overdue, timeout_s=60.0, what="every task overdue", interval_s=0.5)
        todo = [t.id for t in await list_tasks(store, limit=10_000)]
        rng.shuffle(todo)
        batches = [todo[i::KILLS] for i in range(KILLS)]
        for batch in batches:
            half = len(batch) // 2
            for task_id in batch[:half]:  # while it runs, then it is killed
                await complete_task(store, task_id, {"desk": f"D-{task_id[:6]}"}, "boss")
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            h.kill(coordinator)
            for task_id in batch[half:]:  # while it is down
                await complete_task(store, task_id, {"desk": f"D-{task_id[:6]}"}, "boss")
            coordinator, log = start()
            await up(log)

        async def all_completed() -> bool:
            states = await h.sagas(url)
            return all(sid in states and states[sid].status == "completed" for sid in ids)

        await wait_until(all_completed, timeout_s=120.0, what="every saga completed", interval_s=1)
        states = await h.sagas(url)
        rows = await list_tasks(store, status=None, limit=10_000)
        pending = await store.pending_requests(limit=10)
    finally:
        h.stop(coordinator)
        await store.close()

    assert pending == []
    assert len(rows) == SAGAS
    for row in rows:
        assert (row.status, row.completed_by) == ("completed", "boss"), row
        s = states[row.saga_id]
        events = Counter(e.event for e in s.history if e.step == "assign_desk")
        assert events["task_opened"] == 1, s.history
        assert events["completed"] == 1, s.history
        assert events["overdue"] == 1, s.history
        assert s.data["desk"] == f"D-{row.id[:6]}"
