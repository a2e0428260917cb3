"""Idempotent ingestion: an event re-posted within a window is answered 202, not published.

The proof is the dedup store's unique key (``DedupKey("ingress", source, id)``), so it
holds across ingress replicas sharing one PostgreSQL database. Each event's key is
recorded before it is published, and marked ``sent`` once the broker acknowledged it. A
re-post then finds either

- a sent entry within ``window_s``: a duplicate; 202, nothing published;
- an entry being published by a request of this process: it waits for that one's
  outcome (a duplicate if it was published, published again if it failed);
- an unsent entry younger than ``lease_s`` from another replica: it is being published
  there; 503 with ``Retry-After`` (the caller's retry finds it sent, or stale);
- an unsent entry older than ``lease_s`` (its publisher failed or died): the re-posted
  event is published, same CloudEvents source and id, so nothing is lost;
- an entry older than the window: published again, as if new.

Writes are grouped: the requests that arrive while a write is under way share the next
one (one transaction, one commit, :meth:`~bus.dedup.base.DedupStore.record_new`), and the
``sent`` marks ride along in that same transaction: under load a request costs the store
part of one commit, not two. Marks that no claim picks up within ``mark_delay_s`` are
written on their own (until then this process knows them as published, and another
replica answers a re-post 503 as while the event is being published). While claims
arrive less than ``linger_s`` apart, a write waits up to that long after the previous
one's start, so a moderate rate still shares commits; ``max_writes`` transactions may run
at once (PostgreSQL, whose round trips overlap). The ingress never purges the store:
``bus run``'s dedup retention, or a store of its own, does.

Example::

    async with Idempotency(store, window_s=86400) as idempotency:
        todo = await idempotency.claim(claims)        # the records to publish, now ours
        try:
            ...publish todo...
        except BusError:
            idempotency.release(todo, published=False)
            raise
        idempotency.release(todo, published=True)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from bus.dedup.base import DedupEntry, DedupKey, DedupStore
from bus.errors import BusError
from bus.ingress.problems import Refusal, RefusedError
from bus.record import OutgoingRecord
from bus.stamping import utc_now

__all__ = ["INGRESS_HANDLER", "Claim", "Idempotency"]

#: The ``handler`` of the ingress's dedup keys.
INGRESS_HANDLER = "ingress"
log = logging.getLogger("bus.ingress")
#: Keys remembered as published (or failed) here, newest first out last.
_REMEMBERED = 100_000

Claim = tuple[DedupKey, OutgoingRecord]
_Waiter = tuple[list[Claim], "asyncio.Future[dict[DedupKey, DedupEntry]]"]


class Idempotency:
    """The grouped writer of one dedup store; lives in its ``async with`` block."""

    def __init__(
        self,
        store: DedupStore[Any],
        *,
        window_s: float,
        lease_s: float = 30.0,
        max_group: int = 5_000,
        mark_delay_s: float = 0.2,
        linger_s: float = 0.002,
        max_writes: int = 1,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.window_s = window_s
        #: Seconds an unsent entry is taken to be in flight at another replica.
        self.lease_s = lease_s
        #: Keys a request of this process is publishing -> that request.
        self._owners: dict[DedupKey, _Owner] = {}
        #: Keys this process failed to publish (their entries are unsent): publish at once.
        self._failed_here: OrderedDict[DedupKey, None] = OrderedDict()
        #: Keys this process published: duplicates, even before their sent mark is written.
        self._published_here: OrderedDict[DedupKey, None] = OrderedDict()
        self.max_group = max_group
        #: Seconds a sent mark waits for a claim's transaction to carry it.
        self.mark_delay_s = mark_delay_s
        #: Seconds a write waits after the start of the previous one, for more claims to
        #: share it (as a Kafka producer's linger), while claims arrive less than this
        #: apart: at a moderate rate each request would otherwise pay a commit of its own,
        #: and its records a produce request of their own. A client posting one request
        #: after another never waits.
        self.linger_s = linger_s
        self._last_write = float("-inf")
        #: Store transactions at once: more than one helps a store with a round trip per
        #: statement (PostgreSQL: the next group need not wait for the last one's commit).
        self._room = asyncio.Semaphore(max_writes)
        self._last_claim = float("-inf")
        self._claims_close = False
        self._clock = clock
        self._waiting: list[_Waiter] = []
        self._unmarked: list[DedupKey] = []
        #: When the oldest of ``_unmarked`` is written on its own (loop time).
        self._marks_due = 0.0
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
        """The claims to publish, now owned by the caller until :meth:`release`; the others
        are duplicates. :class:`RefusedError` (503) while another replica publishes one of
        them; a :class:`~bus.errors.StoreError` if the store fails."""
        firsts = dict(reversed(claims))  # an event given twice in a request counts once
        claims = [(key, firsts[key]) for key in dict.fromkeys(key for key, _ in claims)]
        keys = [key for key, _ in claims]
        while busy := {self._owners[k] for k in keys if k in self._owners}:
            # a request of this process is publishing them
            await asyncio.wait([owner.released() for owner in busy])
        mine = _Owner(len(keys))
        for key in keys:  # no await since the check: the keys are ours now
            self._owners[key] = mine
        try:
            todo = await self._decide(claims)
        except BaseException:
            self._release(keys, mine)
            raise
        taken = {key for key, _ in todo}
        self._release([k for k in keys if k not in taken], mine)
        return todo

    async def _decide(self, claims: Sequence[Claim]) -> list[Claim]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[DedupKey, DedupEntry]] = loop.create_future()
        now = loop.time()
        if now - self._last_claim < self.linger_s:
            self._claims_close = True
        self._last_claim = now
        self._waiting.append((list(claims), future))
        self._wake.set()
        before = await future
        now_ms = self._clock().timestamp() * 1000
        horizon_ms, stale_ms = now_ms - self.window_s * 1000, now_ms - self.lease_s * 1000
        todo: list[Claim] = []
        busy = 0
        for key, record in claims:
            entry = before.get(key)
            if entry is None:
                todo.append((key, record))
            elif not entry.sent and key not in self._published_here:
                if key in self._failed_here or entry.completed_at_ms < stale_ms:
                    todo.append((key, record))
                else:
                    busy += 1
            elif entry.completed_at_ms < horizon_ms:
                todo.append((key, record))
        if busy:
            raise RefusedError(
                Refusal(
                    503,
                    f"{busy} event(s) are being published by another request: retry",
                    retry_after_s=1.0,
                )
            )
        return todo

    def release(self, claims: Sequence[Claim], *, published: bool) -> None:
        """The caller is done with the claims :meth:`claim` gave it: ``published`` (their
        ``sent`` marks are written in the background) or not (the next claim of one of
        them publishes it again)."""
        keys = [key for key, _ in claims]
        if published:
            if not self._unmarked and keys:
                self._marks_due = asyncio.get_running_loop().time() + self.mark_delay_s
                self._wake.set()  # to start the timer; a claim before it carries them
            self._unmarked.extend(keys)
            _remember(self._published_here, keys, forget=self._failed_here)
        else:
            _remember(self._failed_here, keys, forget=self._published_here)
        owners = {self._owners.get(k) for k in keys} - {None}
        for owner in owners:
            assert owner is not None
            self._release(keys, owner)

    def _release(self, keys: Sequence[DedupKey], owner: _Owner) -> None:
        for key in keys:
            if self._owners.get(key) is owner:
                del self._owners[key]
                owner.left -= 1
        if owner.left <= 0 and owner.done is not None and not owner.done.done():
            owner.done.set_result(None)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as writes:
            while True:
                self._wake.clear()
                if self._waiting:
                    await self._room.acquire()  # at most max_writes transactions at once
                    group, marks = await self._next_group(loop)
                    writes.create_task(self._record(group, marks))
                elif not self._unmarked:
                    await self._wake.wait()
                elif (wait_s := self._marks_due - loop.time()) > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait_s):
                            await self._wake.wait()  # a claim: it carries the marks
                else:
                    await self._write_marks()

    async def _next_group(
        self, loop: asyncio.AbstractEventLoop
    ) -> tuple[list[_Waiter], list[DedupKey]]:
        """The claims of the next write (after the linger) and the marks it carries."""
        linger_s = self._last_write + self.linger_s - loop.time()
        if self._claims_close and linger_s > 0:
            await asyncio.sleep(linger_s)
        self._claims_close = False
        self._last_write = loop.time()
        group, self._waiting = self._waiting[: self.max_group], self._waiting[self.max_group :]
        marks, self._unmarked = self._unmarked, []
        return group, marks

    async def _write_marks(self) -> None:
        marks, self._unmarked = self._unmarked, []
        try:
            await self.store.mark_sent(marks)
        except BusError as exc:  # a lost mark costs a re-publish on a re-post, no more
            log.warning("ingress: %d sent mark(s) not written: %s", len(marks), exc)

    async def _record(self, group: list[_Waiter], marks: list[DedupKey]) -> None:
        # a key is owned by one request at a time (claim), so the group's keys are distinct
        entries = [claim for claims, _ in group for claim in claims]
        self.groups += 1
        self.claims += len(entries)
        try:
            # the keys only: a re-post of an event never acknowledged publishes its own
            # record (same source and id: the same event), so the first one's bytes need
            # not be stored; they were 3/4 of the row, and their encoding 5% of the CPU
            before = await self.store.record_new([(k, ()) for k, _ in entries], sent=marks)
        except asyncio.CancelledError:  # closing: the waiting requests end too
            for _, future in group:
                future.cancel()
            raise
        except Exception as exc:  # every waiter learns it (a 503), and the loop goes on
            self._unmarked[:0] = marks  # tried again with the next write
            if not isinstance(exc, BusError):
                log.exception("ingress: the dedup store failed unexpectedly")
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self._room.release()
        for claims, future in group:
            if not future.done():
                future.set_result({k: before[k] for k, _ in claims if k in before})


class _Owner:
    """A request of this process owning keys: how many it still owns, and the future a
    request waiting for one of them wants (made only then: most requests meet no other)."""

    __slots__ = ("done", "left")

    def __init__(self, left: int) -> None:
        self.left = left
        self.done: asyncio.Future[None] | None = None

    def released(self) -> asyncio.Future[None]:
        """Done once the request owns none of its keys any more."""
        if self.done is None:
            self.done = asyncio.get_running_loop().create_future()
            if self.left <= 0:
                self.done.set_result(None)
        return self.done


def _remember(
    keys_seen: OrderedDict[DedupKey, None],
    keys: Sequence[DedupKey],
    *,
    forget: OrderedDict[DedupKey, None],
) -> None:
    """Add ``keys`` to ``keys_seen`` (the newest 100,000 kept), dropping them from ``forget``.

    An OrderedDict: dropping the oldest is O(1). A dict's ``next(iter(d))`` walks past every
    slot deleted before it, so once full each key cost up to 270 us (a third of the
    ingress's CPU on batches, and the constant-rate run's collapse).
    """
    for key in keys:
        forget.pop(key, None)
        keys_seen[key] = None
        keys_seen.move_to_end(key)
    while len(keys_seen) > _REMEMBERED:
        keys_seen.popitem(last=False)
