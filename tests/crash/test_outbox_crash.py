"""Outbox crash test (issue 7): the relay ended by ``os._exit`` at each of four points.

The issue's four points, as :data:`sagas.outbox.FAULT_POINTS`:

- before commit: ``before_commit`` (the coordinator's saga transaction never commits);
- after commit, before publish: ``after_commit_before_publish``;
- after the broker's ack, before marking sent: ``after_publish_before_mark``;
- after marking sent: ``after_mark_before_offset_commit``.

For each point, 50 times: one more hire is published and ``bus sagas run`` (SQLite store,
Tansu) is started with ``BUS_FAULT_POINT``; it must end with status 86 (each run re-reads
what the crashed ones left and dies at the point again). The simulated systems run all
along in their own process, with a dedup store. Then a coordinator without the fault
finishes every saga.

Pass: every command the store committed is published at least once (it reached its
system); none from a transaction that rolled back ever is (``before_commit``: while every
run crashed, the store holds nothing and the commands topics stay empty); every command's
effect is applied exactly once (dedup drops the re-published copies, counted on the
topics).

Sizes: ``BUS_CRASH_SCALE=full`` (50 crashes per point, 200 process exits); CI: 5 per point::

    BUS_CRASH_SCALE=full .venv/bin/python -m pytest -s tests/crash/test_outbox_crash.py
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from pathlib import Path

import pytest

from bus.devbroker import DevBroker
from sagas.outbox import FAULT_EXIT_CODE, FAULT_POINTS
from tests.crash import saga_harness as h
from tests.crash.coordinator_kills import broker
from tests.waiting import wait_until

__all__ = ["broker"]  # the fixture: a Tansu of this test's own

pytestmark = [pytest.mark.crash, pytest.mark.kafka]
log = logging.getLogger(__name__)

CRASHES = h.scaled(50, 5)
POINTS = [
    "before_commit",
    "after_commit_before_publish",
    "after_publish_before_mark",
    "after_mark_before_offset_commit",
]


@pytest.mark.parametrize("point", POINTS)
async def test_the_relay_crashed_at_a_point_publishes_every_committed_command_once(
    point: str, broker: DevBroker, tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    assert point in FAULT_POINTS
    env = h.kafka_env(broker)
    store_url = f"sqlite:{tmp_path / 'sagas.db'}"
    effects_db = tmp_path / "effects.db"
    plan = h.hires(f"ob-{point[:12]}", CRASHES, mixed=False)
    systems = h.spawn_systems(env, effects_db, tmp_path / "systems.log")
    t0 = time.monotonic()
    try:
        for n, hire in enumerate(plan):
            await h.publish(broker, [hire.message])
            run = h.spawn(
                h.coordinator_args(store_url),
                {**env, "BUS_FAULT_POINT": point},
                tmp_path / f"coordinator-{n}.log",
            )
            try:
                code = await asyncio.to_thread(run.wait, 90)
            except subprocess.TimeoutExpired:
                h.kill(run)
                code = None  # it never reached the point: reported below with its log
            text = (tmp_path / f"coordinator-{n}.log").read_text(errors="replace")
            assert code == FAULT_EXIT_CODE, f"run {n} ended {code}: {text[-2000:]}"
            assert f"injected crash at {point}" in text
        crashed_s = time.monotonic() - t0
        if point == "before_commit":
            # every transaction rolled back: nothing stored, nothing ever published. The
            # coordinators have exited, so neither can change any more; an effect needs a
            # published command, so with none published no effect can come later either
            assert await h.sagas(store_url) == {}
            assert await h.published_commands(broker) == {}
            assert h.effects(effects_db) == []
        final = h.spawn(h.coordinator_args(store_url), env, tmp_path / "coordinator-final.log")
        try:

            async def all_terminal() -> bool:
                states = await h.sagas(store_url)
                return len(states) == len(plan) and all(s.terminal for s in states.values())

            settling = time.monotonic()
            await wait_until(
                all_terminal, timeout_s=120.0, what="every saga terminal", interval_s=0.5
            )
            settled_s = time.monotonic() - settling
            # late duplicates of replies or commands would show by then: wait until nothing
            # is in flight any more (a count), not for a while
            await h.wait_until_idle(broker, store_url, timeout_s=60)
        finally:
            h.stop(final)
        states = await h.sagas(store_url)
        rows = h.effects(effects_db)
        published = await h.published_commands(broker)
    finally:
        h.stop(systems)

    # A command left unpublished past its 30 s reply timeout (the crash phase is long at
    # full size) is sent again as attempt 2: a new command, so it may add an effect.
    h.check_outcome(plan, states, rows, resends=True)
    sent = {cid for s in states.values() for st in s.steps.values() for cid in st.command_ids}
    assert set(published) == sent  # committed: published at least once; nothing else was
    if point == "after_publish_before_mark":  # acknowledged, not marked: sent again
        assert sum(published.values()) > len(published)
    figures = {
        "point": point,
        "crashes": len(plan),
        "crash_phase_s": round(crashed_s, 1),
        "settled_s": round(settled_s, 1),
        "commands": len(sent),
        "resent_after_timeout": sum(
            max(st.attempts - 1, 0) for s in states.values() for st in s.steps.values()
        ),
        "records_published": sum(published.values()),
        "republished_copies": sum(published.values()) - len(published),
        "effects": len(rows),
    }
    log.warning("outbox crash figures: %s", figures)
    record_property("figures", figures)
