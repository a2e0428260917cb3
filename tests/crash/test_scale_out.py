"""Scale-out crash test: several handler processes and two coordinators, killed and added.

The onboarding sagas run on one Tansu broker and one PostgreSQL saga store with the
processes a scaled-out deployment has: several ``bus run`` processes of the simulated
systems' app (tests/crash/saga_handlers.py: every onboarding command, one consumer group,
effects idempotent by command id in the dedup transaction) and two coordinators
(``bus sagas run``), all plain processes. While the hires are published, a process is
SIGKILLed at seeded random moments (systems and coordinators in turn) and a new one is
added in its place, so every kill is also a join of a fresh member.

Tansu strands a group whose leader leaves while it is forming (docs/testing.md), so
before each kill both groups must be Stable with exactly the live members (each process
has its own client id): a kill lands on a settled fleet, as a deployment's would.

Pass: every saga terminal with the status its hire calls for, every command's effect
exactly once (per command id, and per saga and type), the store's steps match the
effects; then both groups' committed offsets reach the end offsets (lag 0) and the
outbox is empty.

Sizes: ``BUS_CRASH_SCALE=full`` 2,000 sagas, 3 systems processes, 8 kills; CI: 100 sagas,
2 systems processes, 4 kills::

    BUS_CRASH_SCALE=full .venv/bin/python -m pytest -s tests/crash/test_scale_out.py
"""

from __future__ import annotations

import asyncio
import logging
import random
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bus.devbroker import DevBroker
from bus.transports.kafka import KafkaTransport
from sagas.state import SagaState
from tests.conftest import kafka_test_config
from tests.crash import saga_harness as h
from tests.crash.saga_ledger import chains, ledger_findings
from tests.waiting import wait_until

pytestmark = [pytest.mark.crash, pytest.mark.kafka, pytest.mark.postgres]
log = logging.getLogger(__name__)

SAGAS = h.scaled(2000, 100)
SYSTEMS = h.scaled(3, 2)
COORDINATORS = 2
KILLS = h.scaled(8, 4)
#: Hires are published over this many seconds.
WINDOW_S = h.scaled(60.0, 20.0)
#: After a settled fleet, a kill comes this long at most later (seeded uniform).
MAX_WAIT_S = 2.0
STABLE_TIMEOUT_S = 90.0
SETTLE_S = h.scaled(900.0, 240.0)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[DevBroker]:
    """A Tansu of this test's own: the onboarding topics have fixed names."""
    b = DevBroker(log_path=tmp_path / "tansu.log")
    b.start()
    yield b
    b.stop()


@dataclass
class Fleet:
    """The live processes by client id (``systems-3``, ``coordinator-2``), and what they
    share: the broker settings, the store, the effects file."""

    env: dict[str, str]
    store_url: str
    effects: Path
    logs: Path
    live: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started: int = 0

    def add(self, role: str) -> str:
        self.started += 1
        name = f"{role}-{self.started}"
        env = {**self.env, "BUS_KAFKA_CLIENT_ID": name}
        log_file = self.logs / f"{name}.log"
        if role == "systems":
            self.live[name] = h.spawn_systems(env, self.effects, log_file)
        else:
            self.live[name] = h.spawn(h.coordinator_args(self.store_url), env, log_file)
        return name

    def members(self, role: str) -> list[str]:
        return sorted(n for n in self.live if n.startswith(f"{role}-"))

    def kill(self, name: str) -> int | None:
        """SIGKILL; what ``poll()`` said just before (None: it was running)."""
        process = self.live.pop(name)
        before = process.poll()
        h.kill(process)
        return before

    def stop_all(self) -> None:
        for process in self.live.values():
            h.stop(process)


def describe(state: SagaState, rows: list[tuple[str, str, str, int]]) -> dict[str, object]:
    employee = state.saga_id.removeprefix("onboarding:")
    return {
        "steps": {
            name: (st.status.value, st.attempts, st.compensation_attempts, st.command_ids)
            for name, st in state.steps.items()
        },
        "history": [(e.step, e.event, str(e.at)) for e in state.history],
        "effects": [r for r in rows if r[2] == employee],
    }


def resend_figures(states: dict[str, SagaState]) -> dict[str, object]:
    """How many commands were re-sent after a reply timeout (each absorbed by the systems'
    dedup through its idempotency key, which check_outcome verifies), and the slowest
    step from its first send to its reply: how close the run came to a step's timeout."""
    resent = sum(len(c.ids) - 1 for s in states.values() for c in chains(s))
    spans = [
        (st.completed_at - st.started_at).total_seconds()
        for s in states.values()
        for st in s.steps.values()
        if st.command_ids and st.completed_at is not None and st.started_at is not None
    ]
    return {"resent_after_timeout": resent, "slowest_step_s": round(max(spans, default=0.0), 1)}


GROUPS = {"systems": h.SYSTEMS_GROUP, "coordinator": h.COORDINATOR_GROUP}


async def fleet_settled(transport: KafkaTransport, fleet: Fleet) -> None:
    """Until each group is Stable with exactly its live processes as members."""
    admin = await transport.admin()

    async def seen() -> dict[str, tuple[str, list[str]]]:
        out = {}
        for role, group in GROUPS.items():
            [response] = await admin.describe_consumer_groups([group])
            _, _, state, _, _, found, *_ = response.groups[0]
            # a member id is the client id, "-" and a UUID (five dash-separated parts)
            names = sorted(str(m[0]).rsplit("-", 5)[0] for m in found)
            out[role] = (str(state), names)
        return out

    await wait_until(
        seen,
        until=lambda got: all(got[r] == ("Stable", fleet.members(r)) for r in GROUPS),
        timeout_s=STABLE_TIMEOUT_S,
        what=f"both groups Stable with the live members {sorted(fleet.live)} (seen shown)",
        interval_s=0.25,
    )


async def test_handlers_and_coordinators_killed_and_added_lose_and_double_nothing(
    broker: DevBroker,
    tmp_path: Path,
    postgres_dsn: str,
    record_property: pytest.RecordProperty,
) -> None:
    rng = random.Random(23)
    store_url = postgres_dsn
    fleet = Fleet(h.kafka_env(broker), store_url, tmp_path / "effects.db", tmp_path)
    plan = h.hires("so", SAGAS)
    by_id = {p.saga_id: p for p in plan}
    transport = KafkaTransport(kafka_test_config(broker.bootstrap_servers))
    await transport.start()
    for _ in range(SYSTEMS):
        fleet.add("systems")
    for _ in range(COORDINATORS):
        fleet.add("coordinator")
    kills: list[tuple[float, str, str]] = []
    before_kill: list[int | None] = []
    t0 = time.monotonic()

    async def publish_spread() -> None:
        step = max(10, len(plan) // 100)
        for i in range(0, len(plan), step):
            await h.publish(broker, [p.message for p in plan[i : i + step]])
            await asyncio.sleep(max(0.0, t0 + WINDOW_S * (i + step) / len(plan) - time.monotonic()))

    async def kill_and_add() -> None:
        for n in range(KILLS):
            role = "systems" if n % 2 == 0 else "coordinator"
            await fleet_settled(transport, fleet)
            await asyncio.sleep(rng.uniform(0.0, MAX_WAIT_S))
            victim = rng.choice(fleet.members(role))
            before_kill.append(fleet.kill(victim))
            added = fleet.add(role)
            kills.append((round(time.monotonic() - t0, 1), victim, added))

    try:
        # the first hires wait for no one: the groups form while they queue
        await asyncio.gather(publish_spread(), kill_and_add())
        published_s = time.monotonic() - t0

        async def terminal() -> int:
            states = await h.sagas(store_url)
            return sum(1 for sid, s in states.items() if sid in by_id and s.terminal)

        settling = time.monotonic()
        await wait_until(
            terminal,
            until=lambda n: n == len(plan),
            timeout_s=SETTLE_S,
            what=f"{len(plan)} sagas terminal (terminal count shown)",
            interval_s=1.0,
        )
        settled_s = time.monotonic() - settling
        # lag back to 0 on both groups and an empty outbox: late duplicates would be in
        await h.wait_until_idle(broker, store_url, timeout_s=120)
        lag = await h.activity(broker, store_url)
        states = await h.sagas(store_url)
        rows = h.effects(fleet.effects)
        published = await h.published_commands(broker)
        crashed = {n: p.returncode for n, p in fleet.live.items() if p.poll() is not None}
    finally:
        fleet.stop_all()
        await transport.stop()
    assert not crashed, f"processes died on their own: {crashed}"
    assert all(b is None for b in before_kill), f"a victim had died before its kill: {before_kill}"
    assert lag.systems_behind == lag.coordinator_behind == lag.outbox_backlog == 0, lag
    figures = {
        "sagas": len(plan),
        "systems_processes": SYSTEMS,
        "coordinators": COORDINATORS,
        "kills_at_s_victim_added": kills,
        "statuses": dict(Counter(s.status.value for sid, s in states.items() if sid in by_id)),
        "effects": len(rows),
        "commands_published": sum(published.values()),
        "distinct_commands_published": len(published),
        **resend_figures(states),
        "published_and_killed_s": round(published_s, 1),
        "settled_after_s": round(settled_s, 1),
        "total_s": round(time.monotonic() - t0, 1),
        "sagas_per_s": round(len(plan) / (time.monotonic() - t0), 1),
    }
    log.warning("scale-out figures: %s", figures)  # before the verdict: a failure needs them
    record_property("figures", figures)
    for sid in sorted({f.saga_id for f in ledger_findings(states, rows) if f.saga_id}):
        # what a failure below needs: the saga's sends, timeline and effects
        log.warning("store vs effects differ for %s: %r", sid, describe(states[sid], rows))
    h.check_outcome(plan, states, rows)
