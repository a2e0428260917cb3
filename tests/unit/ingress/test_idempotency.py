"""Idempotency's decisions on the memory dedup store: duplicates, failures, leases, windows."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from bus import DedupEntry, DedupKey, MemoryDedupStore, OutgoingRecord
from bus.ingress import idempotency
from bus.ingress.idempotency import Idempotency
from bus.ingress.problems import RefusedError


@dataclass
class Clock:
    now: datetime = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def claim(id_: str, value: bytes = b"{}") -> tuple[DedupKey, OutgoingRecord]:
    return DedupKey("ingress", "/s", id_), OutgoingRecord("t", None, value, ())


async def test_a_published_event_is_a_duplicate_and_one_given_twice_counts_once() -> None:
    async with Idempotency(MemoryDedupStore(), window_s=60) as idem:
        todo = await idem.claim([claim("a"), claim("b"), claim("a", b"2")])
        assert todo == [claim("a"), claim("b")]
        idem.release(todo, published=True)
        assert await idem.claim([claim("a"), claim("c")]) == [claim("c")]


async def test_a_request_waits_for_the_same_event_in_flight_here_and_learns_its_outcome() -> None:
    async with Idempotency(MemoryDedupStore(), window_s=60) as idem:
        first = await idem.claim([claim("a", b"first")])
        second = asyncio.create_task(idem.claim([claim("a", b"second")]))
        await asyncio.sleep(0)  # it runs up to its wait for the first request
        idem.release(first, published=False)  # failed: the waiter publishes its own
        assert await second == [claim("a", b"second")]
        idem.release(await second, published=True)
        assert await idem.claim([claim("a")]) == []


async def test_an_unsent_entry_of_another_replica_is_busy_until_its_lease_ends() -> None:
    clock = Clock()
    store = MemoryDedupStore(clock=clock)
    async with (
        Idempotency(store, window_s=600, lease_s=30, clock=clock) as other,
        Idempotency(store, window_s=600, lease_s=30, clock=clock) as idem,
    ):
        await other.claim([claim("a", b"other's")])  # never released: it died
        with pytest.raises(RefusedError) as raised:
            await idem.claim([claim("a"), claim("b")])
        assert raised.value.refusal.status == 503
        clock.now += timedelta(seconds=31)  # abandoned: the re-post is published
        assert await idem.claim([claim("a", b"again"), claim("b")]) == [
            claim("a", b"again"),
            claim("b"),
        ]


async def test_an_event_older_than_the_window_is_published_again() -> None:
    clock = Clock()
    async with Idempotency(MemoryDedupStore(clock=clock), window_s=60, clock=clock) as idem:
        idem.release(await idem.claim([claim("a")]), published=True)
        clock.now += timedelta(seconds=61)
        assert await idem.claim([claim("a")]) == [claim("a")]


async def test_concurrent_requests_share_store_transactions() -> None:
    async with Idempotency(MemoryDedupStore(), window_s=60) as idem:
        results = await asyncio.gather(*(idem.claim([claim(str(n))]) for n in range(50)))
        assert sum(len(r) for r in results) == 50
        assert idem.claims == 50
        assert idem.groups < 5


@dataclass
class CountingStore(MemoryDedupStore):
    """A memory store that remembers how each sent mark was written."""

    marks_with_records: list[list[DedupKey]] = field(default_factory=list)
    marks_alone: list[list[DedupKey]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    async def record_new(
        self,
        entries: Sequence[tuple[DedupKey, Sequence[OutgoingRecord]]],
        *,
        sent: Sequence[DedupKey] = (),
    ) -> dict[DedupKey, DedupEntry]:
        self.marks_with_records.append(list(sent))
        return await super().record_new(entries, sent=sent)

    async def mark_sent(self, keys: Sequence[DedupKey]) -> None:
        self.marks_alone.append(list(keys))
        await super().mark_sent(keys)


async def test_sent_marks_are_written_in_the_next_claims_transaction() -> None:
    store = CountingStore()
    async with Idempotency(store, window_s=60, mark_delay_s=3600) as idem:
        idem.release(await idem.claim([claim("a"), claim("b")]), published=True)
        idem.release(await idem.claim([claim("c")]), published=False)
        await idem.claim([claim("d")])
        assert store.marks_with_records == [[], [claim("a")[0], claim("b")[0]], []]
        entry = await store.get(claim("a")[0])
        assert entry is not None
        assert entry.sent
        assert store.marks_alone == []


async def test_sent_marks_no_claim_carries_are_written_alone_after_the_delay() -> None:
    store = CountingStore()
    async with Idempotency(store, window_s=60, mark_delay_s=0.01) as idem:
        idem.release(await idem.claim([claim("a")]), published=True)
        async with asyncio.timeout(5):
            while not store.marks_alone:
                await asyncio.sleep(0.005)
        assert store.marks_alone == [[claim("a")[0]]]
        entry = await store.get(claim("a")[0])
        assert entry is not None
        assert entry.sent


def test_remembered_keys_drop_the_oldest_first_and_a_key_seen_again_is_newest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(idempotency, "_REMEMBERED", 3)
    seen: OrderedDict[DedupKey, None] = OrderedDict()
    failed: OrderedDict[DedupKey, None] = OrderedDict([(claim("c")[0], None)])
    keys = [claim(k)[0] for k in "abcd"]
    idempotency._remember(seen, keys[:3], forget=failed)
    idempotency._remember(seen, [keys[0], keys[3]], forget=failed)
    assert list(seen) == [keys[2], keys[0], keys[3]]
    assert not failed


async def test_the_store_keeps_each_events_key_not_its_record() -> None:
    store = MemoryDedupStore()
    async with Idempotency(store, window_s=60) as idem:
        idem.release(await idem.claim([claim("a", b"a large body")]), published=True)
    entry = await store.get(DedupKey("ingress", "/s", "a"))
    assert entry is not None
    assert entry.sent
    assert entry.outputs == ()
