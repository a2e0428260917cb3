"""Saga crash test (issue 7): the coordinator SIGKILLed at random moments loses nothing.

200 onboarding sagas (1 in 5 refused licenses at step 3, so compensation runs; 1 in 5
waiting on a 5 s approval deadline that fires; the rest complete), their hires published
over the kill window while ``bus sagas run`` is SIGKILLed 10 times at seeded random moments
and restarted; on PostgreSQL the server is also restarted once (``immediate``: crash-like),
under a running coordinator that must survive it. The simulated systems run
in their own process (tests/crash/saga_handlers.py) with a dedup store, their effects rows
of a SQLite file written in the dedup transaction.

Two malformed hires go in amid the others (bytes that are no CloudEvent, a hire whose data
is invalid): each must be dead-lettered by the coordinator with its reason, not skipped.

Pass: every saga terminal within 120 s after the last kill, with the status its hire
calls for (none both completed and compensated); every step effect and compensation
exactly once (per command id and per saga and type); every deadline fired; the store's
steps match the effects the systems recorded.

Both runs use Kafka (Tansu) between the processes: the systems keep their state in their
own process, which a SIGKILL of the coordinator must not touch.

Sizes: ``BUS_CRASH_SCALE=full`` (200 sagas, 10 kills); CI: 60 sagas, 5 kills::

    BUS_CRASH_SCALE=full .venv/bin/python -m pytest -s tests/crash/test_saga_crash.py
"""

from __future__ import annotations

import asyncio
import logging
import random
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus.devbroker import DevBroker
from tests.conftest import IN_CI
from tests.crash import saga_harness as h
from tests.postgres import PostgresServer
from tests.waiting import wait_until

pytestmark = [pytest.mark.crash, pytest.mark.kafka]
log = logging.getLogger(__name__)

SAGAS = h.scaled(200, 60)
KILLS = h.scaled(10, 5)
#: Hires are published over this many seconds.
WINDOW_S = h.scaled(30, 15)
#: Each coordinator is killed this long at most after it is up (seeded uniform).
MAX_UP_S = 3.0
SETTLE_S = 120.0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[DevBroker]:
    """A Tansu of this test's own: the onboarding topics have fixed names."""
    b = DevBroker(log_path=tmp_path / "tansu.log")
    b.start()
    yield b
    b.stop()


async def _run(
    broker: DevBroker,
    tmp_path: Path,
    store_url: str,
    *,
    seed: int,
    postgres: PostgresServer | None = None,
) -> dict[str, object]:
    rng = random.Random(seed)
    env = h.kafka_env(broker)
    effects_db = tmp_path / "effects.db"
    log_file = tmp_path / "processes.log"
    plan = h.hires(f"sc{seed}", SAGAS)
    by_id = {p.saga_id: p for p in plan}
    systems = h.spawn_systems(env, effects_db, log_file)
    started = 0

    def start_coordinator() -> tuple[subprocess.Popen[bytes], Path]:
        nonlocal started
        started += 1
        path = tmp_path / f"coordinator-{started}.log"
        return h.spawn(h.coordinator_args(store_url), env, path), path

    coordinator, coordinator_log = start_coordinator()
    pg_restart_at: float | None = None
    exits: list[int | None] = []
    kill_times: list[float] = []
    t0 = time.monotonic()

    malformed = h.malformed_hires(f"sc{seed}")

    async def publish_spread() -> None:
        for i in range(0, len(plan), 10):
            await h.publish(broker, [p.message for p in plan[i : i + 10]])
            if i == 10:  # amid the hires, under the kills: dead-lettered, not skipped
                await h.publish_records(broker, malformed)
            await asyncio.sleep(max(0.0, t0 + WINDOW_S * (i + 10) / len(plan) - time.monotonic()))

    async def kill_at_random_moments() -> None:
        # A moment is drawn after the coordinator is up (its "coordinator of" line): on a
        # loaded machine its start takes seconds, and a kill during the imports tests little.
        nonlocal coordinator, coordinator_log, pg_restart_at
        for _ in range(KILLS):
            await wait_until(
                lambda path=coordinator_log: "coordinator of" in path.read_text(errors="replace"),
                timeout_s=60.0,
                what="the coordinator up",
            )
            await asyncio.sleep(rng.uniform(0.0, MAX_UP_S))
            if postgres is not None and len(kill_times) == KILLS // 2:
                # under a running coordinator, which must ride it out (still up at its kill)
                pg_restart_at = time.monotonic() - t0
                await asyncio.to_thread(postgres.restart, "immediate")
                await asyncio.sleep(rng.uniform(0.0, MAX_UP_S))
            exits.append(coordinator.poll())  # None: it was running, as it should be
            h.kill(coordinator)
            kill_times.append(round(time.monotonic() - t0, 1))
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            coordinator, coordinator_log = start_coordinator()

    try:
        await asyncio.gather(publish_spread(), kill_at_random_moments())

        async def all_terminal() -> bool:
            states = await h.sagas(store_url)
            mine = [s for sid, s in states.items() if sid in by_id]
            return len(mine) == len(plan) and all(s.terminal for s in mine)

        settling = time.monotonic()
        await wait_until(
            all_terminal, timeout_s=SETTLE_S, what="every saga terminal", interval_s=1.0
        )
        settled_s = time.monotonic() - settling
        # late duplicates of replies or commands would show by then: wait until nothing
        # is in flight any more (a count), not for a while
        await h.wait_until_idle(broker, store_url, timeout_s=60)
        states = await h.sagas(store_url)
        rows = h.effects(effects_db)
        published = await h.published_commands(broker)
        letters = await h.dead_letters(broker, "hr.events")
    finally:
        h.stop(coordinator)
        h.stop(systems)
    assert all(e is None for e in exits), f"the coordinator had died before a kill: {exits}"

    # -- malformed triggers: each dead-lettered by the coordinator with its reason --------
    by_coordinator = {
        (r.value, dict(r.headers).get("bus_dlq_reason"))
        for r in letters
        if dict(r.headers).get("bus_dlq_app") == b"sagas"
    }
    expected = {(malformed[0].value, b"decode"), (malformed[1].value, b"invalid")}
    assert by_coordinator >= expected, f"not dead-lettered by the coordinator: {letters}"

    statuses = Counter(s.status.value for s in states.values())
    h.check_outcome(plan, states, rows)

    # -- deadlines: fired, none lost, none early ------------------------------------------
    waits = [states[p.saga_id] for p in plan if p.kind == "wait"]
    for s in waits:
        step = s.steps["manager_approval"]
        assert step.status == "failed", (s.saga_id, step)
        assert step.started_at is not None
        assert step.completed_at is None
        failed_at = next(
            e.at
            for e in s.history
            if e.step == "manager_approval" and e.event in {"failed", "timed_out"}
        )
        assert (failed_at - step.started_at).total_seconds() >= 5.0, s.saga_id

    figures = {
        "sagas": len(plan),
        "kills_at_s": kill_times,
        "statuses": dict(statuses),
        "effects": len(rows),
        "commands_published": sum(published.values()),
        "distinct_commands_published": len(published),
        "settled_after_last_kill_s": round(settled_s, 1),
        "total_s": round(time.monotonic() - t0, 1),
        "postgres_restart_at_s": None if pg_restart_at is None else round(pg_restart_at, 1),
    }
    log.warning("saga crash figures: %s", figures)
    return figures


async def test_sqlite_coordinator_killed_at_random_moments_loses_nothing(
    broker: DevBroker, tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    figures = await _run(broker, tmp_path, f"sqlite:{tmp_path / 'sagas.db'}", seed=7)
    record_property("figures", figures)


@pytest.mark.postgres
async def test_postgres_coordinator_killed_and_server_restarted_loses_nothing(
    broker: DevBroker,
    tmp_path: Path,
    postgres_server: PostgresServer,
    postgres_dsn: str,
    record_property: pytest.RecordProperty,
) -> None:
    if not postgres_server.can_restart:
        message = "an external PostgreSQL (BUS_TEST_POSTGRES_DSN) cannot be restarted"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    figures = await _run(broker, tmp_path, postgres_dsn, seed=11, postgres=postgres_server)
    record_property("figures", figures)
