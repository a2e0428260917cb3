"""Idempotent ingestion: an event re-posted within a window is answered 202, not published.

The proof is the dedup store's unique key (``DedupKey("ingress", source, id)``), so it
holds across ingress replicas sharing one PostgreSQL database. Each event is recorded
*with its record* before it is published, and marked ``sent`` once the broker acknowledged
it. A re-post then finds either

- a sent entry within ``window_s``: a duplicate; 202, nothing published;
- an entry not (yet) sent - the first attempt failed (503), the process died before the
  acknowledgement, or it is still in flight: the *recorded* record is published again,
  same CloudEvents id, so nothing is lost and a duplicate downstream carries the same id;
- an entry older than the window: published again, as if new.

Writes are grouped: the requests that arrive while a write is under way share the next
one (one transaction, one commit, :meth:`~bus.dedup.base.DedupStore.record_new`), and the
``sent`` marks are written in batches in the background. The ingress never purges the
store: ``bus run``'s dedup retention, or a store of its own, does.

Example::

    async with Idempotency(store, window_s=86400) as idempotency:
        todo = await idempotency.claim(records)      # the records to publish
        ...publish todo...
        idempotency.sent([key for key, _ in todo])
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from bus.dedup.base import DedupEntry, DedupKey, DedupStore
from bus.errors import BusError
from bus.record import OutgoingRecord
from bus.stamping import utc_now

__all__ = ["INGRESS_HANDLER", "Claim", "Idempotency"]

#: The ``handler`` of the ingress's dedup keys.
INGRESS_HANDLER = "ingress"
log = logging.getLogger("bus.ingress")

Claim = tuple[DedupKey, OutgoingRecord]
_Waiter = tuple[list[Claim], "asyncio.Future[dict[DedupKey, DedupEntry]]"]


class Idempotency:
    """The grouped writer of one dedup store; lives in its ``async with`` block."""

    def __init__(
        self,
        store: DedupStore[Any],
        *,
        window_s: float,
        max_group: int = 5_000,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.window_s = window_s
        self.max_group = max_group
        self._clock = clock
        self._waiting: list[_Waiter] = []
        self._unmarked: list[DedupKey] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Store transactions run, and claims they carried (claims / groups = grouping).
        self.groups = 0
        self.claims = 0

    async def __aenter__(self) -> Idempotency:
        self._task = asyncio.create_task(self._write_loop(), name="ingress-idempotency")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._unmarked:
            with contextlib.suppress(BusError):
                await self.store.mark_sent(self._unmarked)
        for _, future in self._waiting:
            if not future.done():
                future.cancel()

    async def claim(self, claims: Sequence[Claim]) -> list[Claim]:
        """Record ``claims``; the records to publish (new ones, and recorded ones not sent
        or outside the window). A :class:`~bus.errors.StoreError` if the store fails."""
        future: asyncio.Future[dict[DedupKey, DedupEntry]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting.append((list(claims), future))
        self._wake.set()
        before = await future
        horizon_ms = int(self._clock().timestamp() * 1000 - self.window_s * 1000)
        todo: list[Claim] = []
        for key, record in claims:
            entry = before.get(key)
            if entry is None:
                todo.append((key, record))
            elif not entry.sent and entry.outputs:
                todo.append((key, entry.outputs[0]))  # the first attempt's exact record
            elif entry.completed_at_ms < horizon_ms:
                todo.append((key, record))
        return todo

    def sent(self, keys: Sequence[DedupKey]) -> None:
        """Note (in the background) that ``keys``' records are acknowledged."""
        self._unmarked.extend(keys)
        self._wake.set()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                group, self._waiting = (
                    self._waiting[: self.max_group],
                    self._waiting[self.max_group :],
                )
                await self._record(group)
            if self._unmarked:
                keys, self._unmarked = self._unmarked, []
                try:
                    await self.store.mark_sent(keys)
                except BusError as exc:  # a lost mark costs a re-publish on a re-post, no more
                    log.warning("ingress: %d sent mark(s) not written: %s", len(keys), exc)

    async def _record(self, group: list[_Waiter]) -> None:
        entries: list[Claim] = []
        seen: dict[DedupKey, OutgoingRecord] = {}
        repeated: list[dict[DedupKey, DedupEntry]] = []
        for claims, _ in group:
            # a key two requests of this group carry: the later one sees the first's claim,
            # unsent (both publish the same record: nothing lost, one id downstream)
            again: dict[DedupKey, DedupEntry] = {}
            for key, record in claims:
                if key in seen:
                    again[key] = DedupEntry(key, (seen[key],), 0, sent=False)
                else:
                    seen[key] = record
                    entries.append((key, record))
            repeated.append(again)
        self.groups += 1
        self.claims += len(entries)
        try:
            before = await self.store.record_new([(k, (r,)) for k, r in entries])
        except Exception as exc:  # every waiter learns it (a 503), and the loop goes on
            if not isinstance(exc, BusError):
                log.exception("ingress: the dedup store failed unexpectedly")
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        for (claims, future), again in zip(group, repeated, strict=True):
            if not future.done():
                mine = {k: before[k] for k, _ in claims if k in before}
                future.set_result({**again, **mine})
