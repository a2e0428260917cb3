"""Issue 6a, the handler SIGKILL storm: handler processes killed at random while they work.

Keyed events (key, seq) on a 12-partition topic, 3 handler processes in one group, each
effect written to SQLite or PostgreSQL. A seeded loop SIGKILLs a random handler every
1-3 s and starts a replacement at once, until the planned number of kills. Then: nothing
lost; with dedup no effect twice, without dedup at least once; each key's effects in
order; everything done within 60 s after the last kill.

Sizes: ``BUS_CRASH_SCALE=full`` (10,000 events, 500 keys, 20 kills) or the CI default
(tests/crash/harness.py).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import pytest

from bus.devbroker import DevBroker
from bus.transports.kafka import KafkaTransport
from tests.conftest import kafka_test_config, unique
from tests.crash.harness import (
    STORM,
    EffectsDb,
    Fleet,
    Tail,
    check_effects,
    create_topics,
    handler_env,
    lost_by_partition,
    plan,
    publish_paced,
    read_done,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.crash, pytest.mark.kafka, pytest.mark.slow]

SEED = 6_1  # issue 6, part a
DRAIN_LIMIT_S = 60.0


@pytest.mark.parametrize(
    ("backend", "dedup"),
    [
        pytest.param("sqlite", True, id="sqlite-dedup"),
        pytest.param("postgres", True, id="postgres-dedup", marks=pytest.mark.postgres),
        pytest.param("sqlite", False, id="sqlite-at-least-once"),
        pytest.param("postgres", False, id="postgres-at-least-once", marks=pytest.mark.postgres),
    ],
)
async def test_sigkilled_handlers_lose_nothing_and_dedup_doubles_nothing(
    kafka_broker: DevBroker,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    backend: str,
    dedup: bool,
) -> None:
    size = STORM
    run = unique("storm")
    target = (
        request.getfixturevalue("postgres_dsn")
        if backend == "postgres"
        else str(tmp_path / "effects.db")
    )
    db = EffectsDb(target)
    await db.create()
    transport = KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))
    await transport.start()
    await create_topics(transport, run, size.partitions)

    rng = random.Random(SEED)
    intervals = [rng.uniform(1.0, 3.0) for _ in range(size.kills)]
    items = plan(size.events, size.keys)
    fleet = Fleet(handler_env(kafka_broker.bootstrap_servers, run, target, dedup=dedup), tmp_path)
    tail = Tail(db)
    restart_gaps: list[float] = []
    try:
        for _ in range(size.handlers):
            fleet.spawn()
        # publishing spans the storm, so every kill hits a group with work in hand
        publishing = asyncio.create_task(
            publish_paced(transport, run, items, duration_s=sum(intervals))
        )
        await wait_until(
            tail.distinct_count,
            timeout_s=60,
            what="a first effect: the group formed and handles",
            interval_s=0.25,
        )
        for interval in intervals:
            await asyncio.sleep(interval)
            victim = fleet.live[rng.randrange(len(fleet.live))]
            killed_at = time.monotonic()
            fleet.kill(victim)
            fleet.spawn()
            restart_gaps.append(time.monotonic() - killed_at)
            assert not fleet.crashed(), fleet.crashed()
        last_kill = time.monotonic()
        published_s = await publishing
        effects_before_drain = len(tail.distinct)
        try:
            await wait_until(
                tail.distinct_count,
                until=lambda n: n >= size.events,
                timeout_s=DRAIN_LIMIT_S * 2,
                what=f"{size.events} distinct effects",
                interval_s=0.25,
            )
            drained = True
        except AssertionError:
            drained = False  # reported with what is missing, below
        drain_s = time.monotonic() - last_kill
        crashed = fleet.crashed()
        await fleet.wait_started()
        codes = fleet.stop_all()
        failures = fleet.failures(codes)
        outputs = await read_done(transport, run, timeout_s=60)
    finally:
        fleet.stop_all()
        await transport.stop()
    await tail.poll()
    found = check_effects(items, tail.rows, dedup=dedup)
    result = {
        "test": f"kill-storm-{backend}-{'dedup' if dedup else 'at-least-once'}",
        "scale": size.__dict__,
        "kills": len(restart_gaps),
        "max_restart_gap_s": round(max(restart_gaps), 3),
        "publish_s": round(published_s, 1),
        "effects_at_last_kill": effects_before_drain,
        "done_s_after_last_kill": round(drain_s, 1),
        "effects": found.effects,
        "lost": len(found.lost),
        "duplicated_pairs": found.duplicated,
        "extra_effects": found.extra_effects,
        "disordered_keys": len(found.disordered),
        "lost_by_partition": lost_by_partition(found.lost, size.partitions),
        "outputs_distinct": len(outputs),
        "outputs_with_several_ids": sum(1 for ids in outputs.values() if len(ids) > 1),
    }
    print("crash-result", json.dumps(result))
    assert not crashed, crashed
    assert codes == [0] * size.handlers, failures
    assert drained, result
    assert len(restart_gaps) == size.kills
    assert max(restart_gaps) < 1.0, restart_gaps
    assert found.lost == [], f"{len(found.lost)} lost, e.g. {found.lost[:10]}"
    assert found.unknown == []
    assert found.disordered == {}, dict(list(found.disordered.items())[:5])
    if dedup:
        assert found.duplicated == 0, result
    assert drain_s <= DRAIN_LIMIT_S, result
    assert set(outputs) == set(items), f"{len(set(items) - set(outputs))} outputs missing"
    if dedup:  # re-sent outputs carry the recorded CloudEvents id
        assert result["outputs_with_several_ids"] == 0, result
