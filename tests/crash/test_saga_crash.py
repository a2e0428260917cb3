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
import time
from collections import Counter
from pathlib import Path

import pytest

from bus.devbroker import DevBroker
from tests.conftest import IN_CI
from tests.crash import saga_harness as h
from tests.crash.coordinator_kills import Coordinators, broker, publish_spread, settle
from tests.postgres import PostgresServer

__all__ = ["broker"]  # the fixture: a Tansu of this test's own
pytestmark = [pytest.mark.crash, pytest.mark.kafka]
log = logging.getLogger(__name__)

SAGAS = h.scaled(200, 60)
KILLS = h.scaled(10, 5)
#: Hires are published over this many seconds.
WINDOW_S = h.scaled(30, 15)
#: Each coordinator is killed this long at most after it is up (seeded uniform).
MAX_UP_S = 3.0
SETTLE_S = 120.0


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
    plan = h.hires(f"sc{seed}", SAGAS)
    systems = h.spawn_systems(env, effects_db, tmp_path / "processes.log")
    coordinators = Coordinators(h.coordinator_args(store_url), env, tmp_path)
    pg_restart_at: float | None = None
    t0 = time.monotonic()

    malformed = h.malformed_hires(f"sc{seed}")

    async def amid_the_hires(i: int) -> None:
        if i == 10:  # amid the hires, under the kills: dead-lettered, not skipped
            await h.publish_records(broker, malformed)

    async def restart_postgres_once() -> None:
        nonlocal pg_restart_at
        if postgres is not None and len(coordinators.kill_times) == KILLS // 2:
            # under a running coordinator, which must ride it out (still up at its kill)
            pg_restart_at = time.monotonic() - t0
            await asyncio.to_thread(postgres.restart, "immediate")
            await asyncio.sleep(rng.uniform(0.0, MAX_UP_S))

    try:
        await asyncio.gather(
            publish_spread(
                broker, [p.message for p in plan], WINDOW_S, 10, t0, after_chunk=amid_the_hires
            ),
            coordinators.kill_at_random_moments(
                KILLS, rng, MAX_UP_S, t0, before_kill=restart_postgres_once
            ),
        )
        settled_s = await settle(broker, store_url, {p.saga_id for p in plan}, SETTLE_S)
        states = await h.sagas(store_url)
        rows = h.effects(effects_db)
        published = await h.published_commands(broker)
        letters = await h.dead_letters(broker, "hr.events")
    finally:
        coordinators.stop()
        h.stop(systems)
    coordinators.check_alive_at_each_kill()

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
        "kills_at_s": coordinators.kill_times,
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
