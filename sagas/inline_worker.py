"""The coordinator's worker run in line: a Worker of its batch handler alone, as a task that
:meth:`Coordinator.step <sagas.coordinator.Coordinator.step>` lets work until it is idle
(the test kit drives sagas that way, the lifespan tasks' work done in line by ``tick``).

Example::

    inline = InlineWorker(worker, transport, group="sagas")
    await inline.until_idle(timeout_s=30.0)
    inline.finished()          # records finished (handled, dead-lettered, ...) so far
    await inline.stop()
"""

from __future__ import annotations

import asyncio

from bus import ConfigError, MemoryTransport, Transport, Worker

__all__ = ["InlineWorker"]


class InlineWorker:
    """``worker`` running as a task until :meth:`stop`; ``transport`` and ``group``: what it
    consumes (on the memory transport idle also means every record committed)."""

    def __init__(self, worker: Worker, transport: Transport, *, group: str) -> None:
        self.worker, self.transport, self.group = worker, transport, group
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(worker.run(self._stop), name=f"{group}-worker")

    async def stop(self) -> None:
        self._stop.set()
        await self._task

    def finished(self) -> int:
        """Records the worker finished: handled, dead-lettered, skipped or delayed."""
        s = self.worker.stats
        return s.handled + s.dead_lettered + s.skipped + s.delayed

    async def until_idle(self, timeout_s: float) -> None:
        """Until the worker is idle twice in a row (on the memory transport: with every
        record committed), or raise TimeoutError."""
        worker, task = self.worker, self._task
        loop = asyncio.get_running_loop()
        deadline, streak = loop.time() + timeout_s, 0
        while streak < 2:
            if task.done():
                await task
                raise ConfigError("the coordinator's worker stopped")
            if loop.time() > deadline:
                raise TimeoutError(f"the coordinator was still busy after {timeout_s}s")
            await asyncio.sleep(0.002)
            idle = worker.running and worker.idle()
            if idle and isinstance(self.transport, MemoryTransport):
                idle = self.transport.broker.group_lag(self.group, worker.app.topics) == 0
            streak = streak + 1 if idle else 0
