"""Issue 6d, rebalances and a zombie: members come and go, one freezes and comes back.

Keyed events on a 24-partition topic, 4 handler processes in one group writing effects
to PostgreSQL with dedup (the multi-process store). A seeded schedule adds or removes
(SIGTERM) a member every 2-4 s; half way, the busiest member is SIGSTOPped past its
session timeout, left frozen until the partitions it was working on are handled by
others, then SIGCONTed: it wakes up as a zombie with records in hand and races the new
owners. Then: nothing lost, no effect twice, each key's effects in order.

Not run on SQLite: a member frozen inside a write transaction holds the file's only
write lock, so every other member waits for the zombie (up to the busy timeout) instead
of taking over; that is SQLite's single-writer design, not something to test around.

A member is removed only once the group is Stable with every live member in it: Tansu
keeps a leader that leaves a group still forming (a join under way) as the leader of
every later generation, so no member gets an assignment again and the group stops for
minutes (docs/architecture.md, "Tansu"). Kafka elects a new leader; the test does not
ask Tansu for what it cannot do.

Sizes: ``BUS_CRASH_SCALE=full`` (20,000 events, 10 changes) or the CI default
(tests/crash/harness.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from bus.devbroker import DevBroker
from bus.transports.kafka import KafkaTransport
from tests.conftest import kafka_test_config, unique
from tests.crash.harness import (
    REBALANCE,
    EffectsDb,
    Feed,
    Fleet,
    Tail,
    check_effects,
    create_topics,
    handler_env,
    plan,
    read_done,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.crash, pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

SEED = 6_4  # issue 6, part d
ZOMBIE_BUDGET_S = 15.0  # planned time frozen (for the publishing pace)
MOVE_TIMEOUT_S = 30.0
# The burst is queued behind what the group has not handled yet: on a loaded machine
# (load 13-19 on 2 cores, the broker missing 2 s probes) the zombie took over 60 s to
# reach it. Polls re-read the whole effects table, so they are 0.1 s apart, not 0.01 s:
# back to back they took CPU from the handlers they wait for.
BURST_REACHED_TIMEOUT_S = 150.0
# The issue sets no time limit here; full size measured 76 s after publishing on a busy
# 2-core machine (20,000 events through PostgreSQL), so this only catches a stall.
DRAIN_LIMIT_S = 180.0
# a join on Tansu takes 2-3 s, more on a loaded machine (see group_settled)
SETTLE_TIMEOUT_S = 60.0
HOLDING = re.compile(rb"holding crash\.items\.[^\[\s]+\[(\d+)\]")


async def test_members_coming_going_and_a_zombie_lose_and_double_nothing(
    kafka_broker: DevBroker, tmp_path: Path, postgres_dsn: str
) -> None:
    size = REBALANCE
    run = unique("rebalance")
    db = EffectsDb(postgres_dsn)
    await db.create()
    transport = KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))
    await transport.start()
    await create_topics(transport, run, size.partitions)

    rng = random.Random(SEED)
    intervals = [rng.uniform(2.0, 4.0) for _ in range(size.changes)]
    items = plan(size.events, size.keys)
    fleet = Fleet(
        handler_env(kafka_broker.bootstrap_servers, run, postgres_dsn, dedup=True), tmp_path
    )
    tail = Tail(db)
    changes: list[str] = []
    removed_codes: list[int] = []
    zombie_report: dict[str, object] = {}
    try:
        for _ in range(size.consumers):
            fleet.spawn()
        burst = size.keys * 5
        feed = Feed(transport, run, items, hold_back=burst)
        publishing = asyncio.create_task(feed.paced(sum(intervals) + ZOMBIE_BUDGET_S))
        await wait_until(
            tail.distinct_count,
            timeout_s=60,
            what="a first effect: the group formed and handles",
            interval_s=0.25,
        )
        for n, interval in enumerate(intervals):
            await asyncio.sleep(interval)
            # alternate, so the group size stays within consumers +- 1
            if n % 2 == 0:
                fleet.spawn()
                changes.append("add")
            else:
                await fleet.wait_started()  # a SIGTERM before that is not a shutdown
                await group_settled(transport, run, len(fleet.live))
                leaving = fleet.live[rng.randrange(len(fleet.live))]
                removed_codes.append(await asyncio.to_thread(fleet.stop, leaving))
                changes.append("remove")
            assert not fleet.crashed(), fleet.crashed()
            if n == len(intervals) // 2 - 1:
                # the member just added joined: no rebalance pauses the burst it is frozen in
                await group_settled(transport, run, len(fleet.live))
                zombie_report = await freeze_and_wake_a_member(fleet, tail, feed, burst)
        published_s = await publishing
        started_drain = time.monotonic()
        await wait_until(
            tail.distinct_count,
            until=lambda n: n >= size.events,
            timeout_s=DRAIN_LIMIT_S,
            what=f"{size.events} distinct effects",
            interval_s=0.25,
        )
        drain_s = time.monotonic() - started_drain
        crashed = fleet.crashed()
        zombie_pid = zombie_report.get("pid")
        if isinstance(zombie_pid, int):
            zombie_report["its_already_handled_lines"] = fleet.grep(zombie_pid, "already handled")
            zombie_report["group_already_handled_lines"] = sum(
                fleet.grep(pid, "already handled") for pid in fleet.logs
            )
            frozen_at_id = zombie_report.pop("last_id_frozen")
            assert isinstance(frozen_at_id, int)
            zombie_report["effects_inserted_after_wake"] = sum(
                1 for e in tail.rows if e.pid == zombie_pid and e.id > frozen_at_id
            )
        await fleet.wait_started()
        codes = fleet.stop_all()
        outputs = await read_done(transport, run, timeout_s=60)
    finally:
        fleet.stop_all()
        await transport.stop()
    await tail.poll()
    found = check_effects(items, tail.rows, dedup=True)
    result = {
        "test": "rebalance-zombie-postgres-dedup",
        "scale": size.__dict__,
        "changes": changes,
        "zombie": zombie_report,
        "publish_s": round(published_s, 1),
        "done_s_after_publishing": round(drain_s, 1),
        "effects": found.effects,
        "effects_by_pid": len(Counter(e.pid for e in tail.rows)),
        "lost": len(found.lost),
        "duplicated_pairs": found.duplicated,
        "disordered_keys": len(found.disordered),
        "outputs_distinct": len(outputs),
        "outputs_with_several_ids": sum(1 for ids in outputs.values() if len(ids) > 1),
        "final_exit_codes": codes,
        "removed_exit_codes": removed_codes,
    }
    print("crash-result", json.dumps(result))
    assert not crashed, crashed
    assert removed_codes == [0] * len(removed_codes), removed_codes
    # Not asserted (yet): SIGTERMed together while Tansu stalls the group (a leader that
    # left a forming group stays leader: see the module docstring), members spend the
    # whole deadline before they reach leaving and ``bus run`` exits 1 after deadline +
    # 5 s. Nothing is lost (the checks above); the exit codes are in crash-result until
    # that shutdown path is fixed.
    assert len(changes) == size.changes
    # the zombie's partitions were taken over: a new owner's effect, or a new owner held
    # on the row lock of the transaction the zombie froze in (it wakes up racing it)
    assert zombie_report["moved"] or zombie_report["held_by_its_lock"], result
    assert zombie_report["burst_effects_before_freeze"] >= 3, result  # frozen while busy
    assert found.lost == [], f"{len(found.lost)} lost, e.g. {found.lost[:10]}"
    assert found.unknown == []
    assert found.duplicated == 0, result
    assert found.disordered == {}, dict(list(found.disordered.items())[:5])
    assert set(outputs) == set(items), f"{len(set(items) - set(outputs))} outputs missing"
    assert result["outputs_with_several_ids"] == 0, result


async def freeze_and_wake_a_member(
    fleet: Fleet, tail: Tail, feed: Feed, burst: int
) -> dict[str, object]:
    """SIGSTOP the member that handled most in the last second, right after a burst of
    records (so it is frozen with records in hand); SIGCONT it once others handle the
    partitions it was working on (it missed its heartbeats meanwhile)."""
    # First the group must handle again: after a member left it may still be rebalancing.
    await tail.poll()
    live = {p.pid: p for p in fleet.live}

    async def handled_in_the_next_second() -> Counter[int]:
        await asyncio.sleep(1.0)  # the observation is one second long
        return Counter(e.pid for e in await tail.poll())

    def handling(recent: Counter[int]) -> bool:
        caught_up = len(tail.distinct) == feed.next  # all published so far is handled
        return caught_up or sum(1 for pid in live if recent.get(pid)) >= 2

    recent = await wait_until(
        handled_in_the_next_second,
        until=handling,
        timeout_s=90,
        what="the group to handle again (effects per pid in the last second shown)",
        interval_s=0,
    )
    busiest = max(live, key=lambda pid: recent.get(pid, 0))
    zombie = live[busiest]
    # Frozen as soon as it is seen handling the burst: it has the rest of its share in hand.
    burst_items = set(feed.items[feed.next : feed.next + burst])
    bursting = asyncio.create_task(feed.burst(burst))
    seen = 0

    async def burst_effects_by_the_zombie() -> int:
        nonlocal seen
        new = await tail.poll()
        seen += sum(1 for e in new if e.pid == zombie.pid and (e.key, e.seq) in burst_items)
        return seen

    # on a timeout the test goes on: the report's burst_effects_before_freeze fails it
    with contextlib.suppress(AssertionError):
        await wait_until(
            burst_effects_by_the_zombie,
            until=lambda n: n >= 3,
            timeout_s=BURST_REACHED_TIMEOUT_S,
            what="the zombie to handle 3 records of the burst",
            interval_s=0.1,
        )
    zombie.send_signal(signal.SIGSTOP)
    # where each other member's log stood at the freeze: what they logged while it was frozen
    logged_before = {pid: fleet.logs[pid].stat().st_size for pid in live if pid != zombie.pid}
    await bursting
    stopped_at = time.monotonic()
    await asyncio.sleep(0.3)
    await tail.poll()
    last_id = tail.rows[-1].id if tail.rows else 0
    # the partitions it was working on: where its effect is the latest one
    latest: dict[int, int] = {}
    for e in tail.rows:
        latest[e.part] = e.pid
    its = {part for part, pid in latest.items() if pid == zombie.pid}
    moved: set[int] = set()

    async def moved_partitions() -> set[int]:
        for e in await tail.poll():
            if e.id > last_id and e.part in its and e.pid != zombie.pid:
                moved.add(e.part)
        return moved

    # A partition whose key the zombie froze inside a transaction cannot move on (the
    # new owner waits for the claimed row's lock until the zombie wakes), and the
    # zombie handles up to 16 partitions at once: "moved" means half of them. On a
    # timeout the zombie wakes anyway: the test asserts only that some partition was
    # taken over, by a new owner's effect or by a new owner held on the zombie's lock.
    with contextlib.suppress(AssertionError):
        await wait_until(
            moved_partitions,
            until=lambda done: bool(its) and len(done) >= max(1, len(its) // 2),
            timeout_s=MOVE_TIMEOUT_S - (time.monotonic() - stopped_at),
            what="half the zombie's partitions to move to others",
            interval_s=0.25,
        )
    frozen_s = time.monotonic() - stopped_at
    zombie.send_signal(signal.SIGCONT)
    return {
        "pid": zombie.pid,
        "burst_effects_before_freeze": seen,
        "log": fleet.logs[zombie.pid].name,
        "frozen_s": round(frozen_s, 1),
        "partitions": sorted(its),
        "moved": sorted(moved),
        "held_by_its_lock": sorted(held_on(fleet, logged_before) & its),
        "last_id_frozen": last_id,
    }


def held_on(fleet: Fleet, logged_before: dict[int, int]) -> set[int]:
    """Partitions a member held (its dedup store's lock wait ran out: another
    transaction holds the key's row) in what it logged since ``logged_before``."""
    held: set[int] = set()
    for pid, offset in logged_before.items():
        with open(fleet.logs[pid], "rb") as log:
            log.seek(offset)
            held.update(int(m) for m in HOLDING.findall(log.read()))
    return held


async def group_settled(transport: KafkaTransport, run: str, members: int) -> None:
    """Until the handlers' group is Stable with ``members`` members, so that a member
    removed next does not leave a forming group (see the module docstring)."""
    admin = await transport.admin()
    group = f"crash-effects-{run}"  # effects_app's app, whose name is its group

    async def state_and_members() -> tuple[str, int]:
        [response] = await admin.describe_consumer_groups([group])
        _, _, state, _, _, found, *_ = response.groups[0]
        return str(state), len(found)

    await wait_until(
        state_and_members,
        until=lambda seen: seen == ("Stable", members),
        timeout_s=SETTLE_TIMEOUT_S,
        what=f"group {group} Stable with {members} members (state, members shown)",
        interval_s=0.25,
    )
