"""Stage crash tests: the coordinator SIGKILLed while sagas sit in a time-based stage.

Each scenario runs hires through a definition whose sagas spend seconds in one kind of
stage, publishes them over a window while ``bus sagas run`` is SIGKILLed at seeded random
moments (after it is up) and restarted, and checks that every saga still ends as it must,
every command took effect once, and the stage held as long as it had to. The simulated
systems run in their own process (tests/crash/saga_handlers.py), over Kafka (Tansu).

Scenarios (``SCENARIOS``): ``delay`` - every hire is held 3-5 s by a ``Delay`` before its
account is created, so kills land while delays are pending; ``child`` - after the account,
a child saga (a 3-5 s delay, then the manager told) runs to its end, so kills land while
children run and while their start and end reports are on the bus. A scenario is a
:class:`Scenario`: its definitions module, its saga name, the stage to check and the
commands each saga must have had carried out; a stage to come (a human task) adds its own.

Sizes: ``BUS_CRASH_SCALE=full`` (100 sagas, 8 kills); CI: 30 sagas, 4 kills::

    BUS_CRASH_SCALE=full .venv/bin/python -m pytest -s tests/crash/test_saga_stage_crash.py
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from bus.devbroker import DevBroker
from handlers.identity.contracts import CreateAccount
from handlers.notifications.contracts import NotifyManager
from sagas.state import SagaState
from tests.crash import saga_harness as h
from tests.crash.coordinator_kills import Coordinators, broker, publish_spread, settle

__all__ = ["broker"]  # the fixture: a Tansu of this test's own
pytestmark = [pytest.mark.crash, pytest.mark.kafka]
log = logging.getLogger(__name__)

SAGAS = h.scaled(100, 30)
KILLS = h.scaled(8, 4)
WINDOW_S = h.scaled(20, 10)
MAX_UP_S = 3.0
SETTLE_S = 120.0


def _held_long_enough(state: SagaState, states: Mapping[str, SagaState]) -> None:
    """The delay completed no earlier than the time it was set for."""
    step = state.steps["settle_in"]
    assert step.status == "completed", (state.saga_id, step)
    waiting = next(e for e in state.history if e.step == "settle_in" and e.event == "waiting")
    until = datetime.fromisoformat(waiting.detail.split()[1])
    done = next(e for e in state.history if e.step == "settle_in" and e.event == "completed")
    assert done.at >= until, (state.saga_id, done.at, until)
    assert done.detail == "the time came", (state.saga_id, done.detail)


def _child_ran_to_its_end(state: SagaState, states: Mapping[str, SagaState]) -> None:
    """The parent's step completed on its child's end; the child, linked to its parent,
    completed after its delay."""
    assert state.steps["welcome"].status == "completed", (state.saga_id, state.steps)
    child = states[f"welcome:{state.saga_id}/welcome"]
    assert (child.status, child.parent_id) == ("completed", state.saga_id), child.saga_id
    _held_long_enough(child, states)


@dataclass(frozen=True)
class Scenario:
    """Sagas that spend a while in one kind of stage, and what each must end with."""

    #: The module ``bus sagas run -d`` loads.
    definitions: str
    #: Its saga's name (saga ids are ``<saga>:<employee id>``).
    saga: str
    #: Checks the stage under test on an ended saga.
    check_stage: Callable[[SagaState, Mapping[str, SagaState]], None]
    #: Command types each saga must have had carried out once.
    effects: tuple[str, ...]


SCENARIOS = {
    "delay": Scenario(
        "tests.crash.saga_stage_definitions",
        "timed_onboarding",
        _held_long_enough,
        (CreateAccount.bus_type, NotifyManager.bus_type),
    ),
    "child": Scenario(
        "tests.crash.saga_child_definitions",
        "parent_onboarding",
        _child_ran_to_its_end,
        (CreateAccount.bus_type, NotifyManager.bus_type),
    ),
}


async def _run(
    broker: DevBroker, tmp_path: Path, store_url: str, scenario: Scenario, *, seed: int
) -> dict[str, object]:
    rng = random.Random(seed)
    env = h.kafka_env(broker)
    effects_db = tmp_path / "effects.db"
    plan = h.hires(f"st{seed}", SAGAS, mixed=False)
    saga_ids = {f"{scenario.saga}:{p.message.employee_id}" for p in plan}
    systems = h.spawn_systems(env, effects_db, tmp_path / "systems.log")
    args = h.coordinator_args(store_url, scenario.definitions)
    coordinators = Coordinators(args, env, tmp_path)
    t0 = time.monotonic()
    try:
        await asyncio.gather(
            publish_spread(broker, [p.message for p in plan], WINDOW_S, 5, t0),
            coordinators.kill_at_random_moments(KILLS, rng, MAX_UP_S, t0),
        )
        await settle(broker, store_url, saga_ids, SETTLE_S)
        states = await h.sagas(store_url)
        rows = h.effects(effects_db)
    finally:
        coordinators.stop()
        h.stop(systems)
    coordinators.check_alive_at_each_kill()
    done = Counter((kind, employee, ok) for _, kind, employee, ok in rows)
    for p in plan:
        state = states[f"{scenario.saga}:{p.message.employee_id}"]
        assert state.status == "completed", (state.saga_id, state.status, state.reason)
        scenario.check_stage(state, states)
        for kind in scenario.effects:
            assert done[(kind, p.message.employee_id, 1)] == 1, (state.saga_id, kind)
    assert sum(done.values()) == len(plan) * len(scenario.effects), "an unexpected effect"
    figures = {"sagas": len(plan), "kills_at_s": coordinators.kill_times, "effects": len(rows)}
    log.warning("saga stage crash figures: %s", figures)
    return figures


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_sqlite_coordinator_killed_in_a_stage_loses_nothing(
    broker: DevBroker, tmp_path: Path, name: str
) -> None:
    await _run(broker, tmp_path, f"sqlite:{tmp_path / 'sagas.db'}", SCENARIOS[name], seed=21)


@pytest.mark.postgres
@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_postgres_coordinator_killed_in_a_stage_loses_nothing(
    broker: DevBroker, tmp_path: Path, postgres_dsn: str, name: str
) -> None:
    await _run(broker, tmp_path, postgres_dsn, SCENARIOS[name], seed=23)
