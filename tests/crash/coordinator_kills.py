"""The harness the saga crash tests share (test_saga_crash.py, test_saga_stage_crash.py):
a Tansu of the test's own, hires published over a window, ``bus sagas run`` SIGKILLed at
seeded random moments after it is up and started again, and the wait for every saga to
end and for nothing to be in flight any more.

Example::

    coordinators = Coordinators(h.coordinator_args(store_url), env, tmp_path)
    try:
        await asyncio.gather(
            publish_spread(broker, messages, WINDOW_S, 10, t0),
            coordinators.kill_at_random_moments(KILLS, rng, MAX_UP_S, t0),
        )
        await settle(broker, store_url, saga_ids, SETTLE_S)
    finally:
        coordinators.stop()
    coordinators.check_alive_at_each_kill()
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from pathlib import Path

import pytest

from bus.devbroker import DevBroker
from handlers.hr.contracts import EmployeeHired
from tests.crash import saga_harness as h
from tests.waiting import wait_until


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[DevBroker]:
    """A Tansu of this test's own: the onboarding topics have fixed names."""
    b = DevBroker(log_path=tmp_path / "tansu.log")
    b.start()
    yield b
    b.stop()


class Coordinators:
    """``bus sagas run ARGS``, one process at a time, started again after each kill; the
    n-th one logs to ``coordinator-<n>.log`` in ``directory``."""

    def __init__(self, args: list[str], env: dict[str, str], directory: Path) -> None:
        self._args, self._env, self._directory = args, env, directory
        self._started = 0
        #: What ``poll()`` said just before each kill (None: running, as it should be).
        self.exits: list[int | None] = []
        #: Seconds after the ``t0`` given to :meth:`kill_at_random_moments`, one per kill.
        self.kill_times: list[float] = []
        self.process, self.log = self._start()

    def _start(self) -> tuple[subprocess.Popen[bytes], Path]:
        self._started += 1
        path = self._directory / f"coordinator-{self._started}.log"
        return h.spawn(self._args, self._env, path), path

    async def kill_at_random_moments(
        self,
        kills: int,
        rng: random.Random,
        max_up_s: float,
        t0: float,
        *,
        before_kill: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """SIGKILL the coordinator ``kills`` times, each at most ``max_up_s`` (seeded
        uniform) after it is up, ``before_kill`` awaited just before each kill, and start
        another within a second."""
        # A moment is drawn after the coordinator is up (its "coordinator of" line): on a
        # loaded machine its start takes seconds, and a kill during the imports tests little.
        for _ in range(kills):
            await wait_until(
                lambda path=self.log: "coordinator of" in path.read_text(errors="replace"),
                timeout_s=60.0,
                what="the coordinator up",
            )
            await asyncio.sleep(rng.uniform(0.0, max_up_s))
            if before_kill is not None:
                await before_kill()
            self.exits.append(self.process.poll())
            h.kill(self.process)
            self.kill_times.append(round(time.monotonic() - t0, 1))
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            self.process, self.log = self._start()

    def stop(self) -> None:
        h.stop(self.process)

    def check_alive_at_each_kill(self) -> None:
        exits = self.exits
        assert all(e is None for e in exits), f"the coordinator had died before a kill: {exits}"


async def publish_spread(
    broker: DevBroker,
    messages: Sequence[EmployeeHired],
    window_s: float,
    chunk: int,
    t0: float,
    *,
    after_chunk: Callable[[int], Awaitable[None]] | None = None,
) -> None:
    """Publish ``messages`` ``chunk`` at a time, evenly over ``window_s`` from ``t0``;
    ``after_chunk(i)`` awaited after the chunk starting at ``i``."""
    for i in range(0, len(messages), chunk):
        await h.publish(broker, messages[i : i + chunk])
        if after_chunk is not None:
            await after_chunk(i)
        await asyncio.sleep(
            max(0.0, t0 + window_s * (i + chunk) / len(messages) - time.monotonic())
        )


async def settle(
    broker: DevBroker, store_url: str, saga_ids: Collection[str], timeout_s: float
) -> float:
    """Wait until every saga of ``saga_ids`` is terminal, then until nothing is in flight;
    the seconds the first wait took."""

    async def all_terminal() -> bool:
        mine = [s for sid, s in (await h.sagas(store_url)).items() if sid in saga_ids]
        return len(mine) == len(saga_ids) and all(s.terminal for s in mine)

    settling = time.monotonic()
    await wait_until(all_terminal, timeout_s=timeout_s, what="every saga terminal", interval_s=1.0)
    settled_s = time.monotonic() - settling
    # late duplicates of replies or commands would show by then: wait until nothing is in
    # flight any more (a count), not for a while
    await h.wait_until_idle(broker, store_url, timeout_s=60)
    return settled_s
