"""The in-memory dedup store: bounded, one process, no database.

For tests and for single-process apps whose effects live in memory too. It forgets
everything on restart, so across restarts it deduplicates nothing: use SQLite or
PostgreSQL when redeliveries after a crash matter.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from types import TracebackType
from typing import Any

from bus.dedup.base import DedupEntry, DedupKey, duplicate_error
from bus.errors import ConfigError
from bus.record import OutgoingRecord
from bus.stamping import utc_now

__all__ = ["MemoryDedupStore", "MemoryTransaction"]


def _millis(when: datetime) -> int:
    return int(when.timestamp() * 1000)


class MemoryTransaction:
    """Staged effect writes (``connection``) and outputs, applied only on commit."""

    __slots__ = ("_key", "_staged", "outputs")

    def __init__(self, key: DedupKey) -> None:
        self._key = key
        self._staged: dict[Hashable, Any] = {}
        self.outputs: tuple[OutgoingRecord, ...] = ()

    @property
    def key(self) -> DedupKey:
        return self._key

    @property
    def connection(self) -> dict[Hashable, Any]:
        """Writes to merge into ``store.data`` on commit (discarded on rollback)."""
        return self._staged

    def complete(self, outputs: Iterable[OutgoingRecord]) -> None:
        self.outputs = tuple(outputs)


class MemoryDedupStore:
    """The newest ``max_entries`` completions, oldest evicted first.

    ``data`` is a dict standing in for the database of a handler whose effect is in memory:
    writes staged in ``tx.connection`` land in it together with the dedup record.

    Example::

        store = MemoryDedupStore(max_entries=10_000)
        async with store.transaction(DedupKey("h", "/hr", "id-1")) as tx:
            tx.connection["mailbox:u-1"] = "created"
            tx.complete(outputs)
        store.data["mailbox:u-1"]      # "created"
    """

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], datetime] = utc_now
    ) -> None:
        if max_entries < 1:
            raise ConfigError(f"MemoryDedupStore max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self.clock = clock
        #: The committed effect writes of transactional handlers.
        self.data: dict[Hashable, Any] = {}
        # Insertion order is completion order, so eviction and purge pop from the front.
        self._done: OrderedDict[DedupKey, DedupEntry] = OrderedDict()
        # Keys inside an open transaction; a second transaction on one waits for the first.
        self._claims: dict[DedupKey, asyncio.Event] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> MemoryDedupStore:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __len__(self) -> int:
        return len(self._done)

    async def get(self, key: DedupKey) -> DedupEntry | None:
        return self._done.get(key)

    async def record(self, key: DedupKey, outputs: Iterable[OutgoingRecord] = ()) -> DedupEntry:
        # Like a database's unique key: wait for an open transaction on the key to end.
        while (claim := self._claims.get(key)) is not None:
            await claim.wait()
        if key in self._done:
            raise duplicate_error(key)
        return self._insert(key, tuple(outputs))

    def _insert(self, key: DedupKey, outputs: tuple[OutgoingRecord, ...]) -> DedupEntry:
        completion = DedupEntry(key, outputs, _millis(self.clock()))
        self._done[key] = completion
        while len(self._done) > self.max_entries:
            self._done.popitem(last=False)
        return completion

    async def record_new(
        self,
        entries: Sequence[tuple[DedupKey, Sequence[OutgoingRecord]]],
        *,
        sent: Sequence[DedupKey] = (),
    ) -> dict[DedupKey, DedupEntry]:
        for key, _ in entries:
            while (claim := self._claims.get(key)) is not None:
                await claim.wait()
        before: dict[DedupKey, DedupEntry] = {}
        seen: set[DedupKey] = set()
        # no await from here on: the keys are checked and recorded as one step
        for key, outputs in entries:
            if key in seen:
                continue
            seen.add(key)
            found = self._done.get(key)
            if found is None:
                self._insert(key, tuple(outputs))
            else:
                before[key] = found
        self._mark(sent)
        return before

    @asynccontextmanager
    async def transaction(self, key: DedupKey) -> AsyncIterator[MemoryTransaction]:
        while (claim := self._claims.get(key)) is not None:
            await claim.wait()
        if key in self._done:
            raise duplicate_error(key)
        released = self._claims[key] = asyncio.Event()
        try:
            tx = MemoryTransaction(key)
            yield tx
            # No await between these lines: the effect and the record land together.
            self.data.update(tx.connection)
            self._insert(key, tx.outputs)
        finally:
            del self._claims[key]
            released.set()

    async def mark_sent(self, keys: Sequence[DedupKey]) -> None:
        self._mark(keys)

    def _mark(self, keys: Sequence[DedupKey]) -> None:
        for key in keys:
            entry = self._done.get(key)
            if entry is not None:
                self._done[key] = entry._replace(sent=True)

    async def purge(self, older_than: datetime) -> int:
        limit = _millis(older_than)
        old = [key for key, done in self._done.items() if done.completed_at_ms < limit]
        for key in old:
            del self._done[key]
        return len(old)
