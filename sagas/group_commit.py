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

A lock wait that reached the store's lock timeout (:class:`bus.LockTimeoutError`: a row
held by another transaction, a replica stopped inside its own, say) is a fault of some
sagas only, not of the store: the shared write is not tried again as a whole. Each caller
writes its updates alone, out of the writer, so the callers whose sagas are free go on at
once and only the one whose saga is locked waits, trying again with backoff; later groups
do not queue behind it. A store call that took longer than :data:`SLOW_WRITE_S`, or gave up
on a lock, is logged with its saga ids and reported to ``on_wait``.

Example::

    group = GroupCommit(store, on_conflict=count_conflict, fault=FaultInjector())
    writes = await group.write(items)       # with whatever other lanes queued meanwhile
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from bus import BusError, LockTimeoutError
from sagas.outbox import FaultInjector
from sagas.stores.base import Change, Loaded, SagaStore, Write

__all__ = ["GroupCommit"]

log = logging.getLogger("sagas.group_commit")

Items = Sequence[tuple[str, Change]]
_Waiting = tuple[Items, "asyncio.Future[list[Write | None]]"]
#: Longest pause between two tries of a failing store, in seconds.
MAX_BACKOFF_S = 5.0
#: A store call longer than this (seconds) is logged and reported: a healthy one takes
#: milliseconds, so it waited, most likely for a row lock another replica held.
SLOW_WRITE_S = 2.0
#: Saga ids a log line names at most.
_IDS_LOGGED = 10


class GroupCommit:
    """Writes queued ``(saga id, change)`` lists to ``store`` together."""

    def __init__(
        self,
        store: SagaStore,
        *,
        on_conflict: Callable[[str], None] | None = None,
        fault: FaultInjector | None = None,
        on_wait: Callable[[str, float], None] | None = None,
    ) -> None:
        self.store = store
        self.on_conflict = on_conflict
        self.fault = fault or FaultInjector()
        #: Called with ("written" or "lock_timeout", seconds) after a slow store call.
        self.on_wait = on_wait
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
        try:
            return await done
        except LockTimeoutError:
            # A saga of the group is locked elsewhere: alone, out of the writer, so only
            # this caller's partition waits if the saga is one of its own.
            return await self._write(items, alone=True)

    async def _write_group(self, group: list[_Waiting]) -> None:
        try:
            writes = await self._write([item for items, _ in group for item in items])
        except LockTimeoutError as exc:
            for _, done in group:  # each caller writes alone (write() above)
                done.set_exception(exc)
            return
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

    async def _write(self, items: Items, *, alone: bool = False) -> list[Write | None]:
        """One :meth:`SagaStore.update_many`, tried again with backoff while the store
        fails; any other error is raised, and a lock timeout too unless ``alone``."""
        delay = 0.05
        while True:
            self.transactions += 1
            started = time.monotonic()
            try:
                writes = await self.store.update_many(
                    self.fault_guarded(items), on_conflict=self.on_conflict
                )
            except LockTimeoutError as exc:
                self._waited(items, "lock_timeout", time.monotonic() - started, exc)
                if not alone:
                    raise
                self.retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            except BusError as exc:
                if not exc.retryable:
                    raise
                self.retries += 1
                log.warning("saga store failed, %d update(s) tried again in %.2fs: %s",
                            len(items), delay, exc)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            waited = time.monotonic() - started
            if waited > SLOW_WRITE_S:
                self._waited(items, "written", waited)
            return writes

    def _waited(
        self, items: Items, outcome: str, seconds: float, exc: BaseException | None = None
    ) -> None:
        """Log and report a store call that waited ``seconds`` (``outcome``: written, or
        lock_timeout: gave up on a row lock)."""
        ids = sorted({saga_id for saga_id, _ in items})
        named = ", ".join(ids[:_IDS_LOGGED]) + (
            f" and {len(ids) - _IDS_LOGGED} more" if len(ids) > _IDS_LOGGED else ""
        )
        if exc is not None:
            log.warning(
                "saga store gave up waiting for a row lock after %.1fs, for one of sagas %s: "
                "another transaction (a stalled replica?) holds it; their partitions try "
                "again alone, the others go on: %s", seconds, named, exc,
            )  # fmt: skip
        else:
            log.warning(
                "saga store write of sagas %s took %.1fs: a row lock another replica held, "
                "or a slow database", named, seconds,
            )  # fmt: skip
        if self.on_wait is not None:
            self.on_wait(outcome, seconds)

    def fault_guarded(self, items: Items) -> Items:
        """``items``; with the ``before_commit`` fault point the last change ends the
        process if any of them wrote: inside the store's transaction (on SQLite the
        others' rows are written, uncommitted), so nothing of it commits."""
        if self.fault.point != "before_commit":
            return items
        wrote: list[bool] = []

        def guarded(change: Change, last: bool) -> Change:
            def run(stored: Loaded) -> Write | None:
                write = change(stored)
                wrote.append(write is not None)
                if last and any(wrote):
                    self.fault("before_commit")
                return write

            return run

        return [(i, guarded(c, n == len(items) - 1)) for n, (i, c) in enumerate(items)]
