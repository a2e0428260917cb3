"""Group commit: the saga updates of concurrent callers in one store transaction.

The Worker calls the coordinator's batch handler once per partition lane, several lanes
at a time; one transaction per call would cost the store a commit (and a thread hop or a
round trip) per partition. :class:`GroupCommit` lets the first caller write what every
caller has queued meanwhile in one :meth:`~sagas.stores.base.SagaStore.update_many`, and
hands each caller its own writes. If the shared write fails, each caller's updates are
written alone, so an error (a definition function that raises) reaches only the caller
whose input caused it, and the Worker isolates that input as usual.

A store fault (a retryable :class:`bus.BusError`) is no input's fault: the write is tried
again with backoff until the store answers (the callers' partitions wait), and counted.

Example::

    group = GroupCommit(store, on_conflict=count_conflict, fault=FaultInjector())
    writes = await group.write(items)       # with whatever other lanes queued meanwhile
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from bus import BusError
from sagas.outbox import FaultInjector
from sagas.stores.base import Change, SagaStore, StoredSaga, UnreadableSaga, Write

__all__ = ["GroupCommit"]

log = logging.getLogger("sagas.group_commit")

Items = Sequence[tuple[str, Change]]
_Waiting = tuple[Items, "asyncio.Future[list[Write | None]]"]
#: Longest pause between two tries of a failing store, in seconds.
MAX_BACKOFF_S = 5.0


class GroupCommit:
    """Writes queued ``(saga id, change)`` lists to ``store`` together."""

    def __init__(
        self,
        store: SagaStore,
        *,
        on_conflict: Callable[[str], None] | None = None,
        fault: FaultInjector | None = None,
    ) -> None:
        self.store = store
        self.on_conflict = on_conflict
        self.fault = fault or FaultInjector()
        self._queue: list[_Waiting] = []
        self._writing = False
        #: Store transactions made; writes tried again after a store fault.
        self.transactions = 0
        self.retries = 0

    async def write(self, items: Items) -> list[Write | None]:
        """``items``' writes, in order, once stored (with other callers' items, or alone)."""
        done: asyncio.Future[list[Write | None]] = asyncio.get_running_loop().create_future()
        self._queue.append((items, done))
        if not self._writing:
            self._writing = True
            group: list[_Waiting] = []
            try:
                while self._queue:
                    group, self._queue = self._queue, []
                    await self._write_group(group)
            finally:
                self._writing = False
                for _, waiting in group + self._queue:  # this caller was cancelled
                    if not waiting.done():
                        waiting.cancel()
                self._queue = []
        return await done

    async def _write_group(self, group: list[_Waiting]) -> None:
        try:
            writes = await self._write([item for items, _ in group for item in items])
        except Exception as exc:
            if len(group) == 1:
                group[0][1].set_exception(exc)
                return
            for items, done in group:  # each alone: the error goes to whom it belongs
                try:
                    done.set_result(await self._write(items))
                except Exception as alone:
                    done.set_exception(alone)
            return
        start = 0
        for items, done in group:
            done.set_result(writes[start : start + len(items)])
            start += len(items)

    async def _write(self, items: Items) -> list[Write | None]:
        """One :meth:`SagaStore.update_many`, tried again with backoff while the store
        fails; any other error is raised."""
        delay = 0.05
        while True:
            self.transactions += 1
            try:
                return await self.store.update_many(
                    self.fault_guarded(items), on_conflict=self.on_conflict
                )
            except BusError as exc:
                if not exc.retryable:
                    raise
                self.retries += 1
                log.warning("saga store failed, %d update(s) tried again in %.2fs: %s",
                            len(items), delay, exc)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)

    def fault_guarded(self, items: Items) -> Items:
        """``items``; with the ``before_commit`` fault point the last change ends the
        process if any of them wrote: inside the store's transaction (on SQLite the
        others' rows are written, uncommitted), so nothing of it commits."""
        if self.fault.point != "before_commit":
            return items
        wrote: list[bool] = []

        def guarded(change: Change, last: bool) -> Change:
            def run(stored: StoredSaga | UnreadableSaga | None) -> Write | None:
                write = change(stored)
                wrote.append(write is not None)
                if last and any(wrote):
                    self.fault("before_commit")
                return write

            return run

        return [(i, guarded(c, n == len(items) - 1)) for n, (i, c) in enumerate(items)]
