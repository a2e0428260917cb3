"""bus.offsets.OffsetTracker: commit only the contiguous prefix of fully acked records."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.offsets import OffsetTracker, Unacked
from bus.record import OutgoingRecord, TopicPartition

TP = TopicPartition("orders", 0)
TP2 = TopicPartition("orders", 1)


class FakeAck:
    """An ack with the future-like surface the tracker reads: done() and exception()."""

    def __init__(self) -> None:
        self._done = False
        self._error: BaseException | None = None

    @classmethod
    def ok(cls) -> FakeAck:
        ack = cls()
        ack.succeed()
        return ack

    @classmethod
    def failed(cls, error: BaseException | None = None) -> FakeAck:
        ack = cls()
        ack.fail(error or RuntimeError("send failed"))
        return ack

    def succeed(self) -> None:
        self._done = True

    def fail(self, error: BaseException) -> None:
        self._done = True
        self._error = error

    def done(self) -> bool:
        return self._done

    def exception(self) -> BaseException | None:
        if not self._done:  # like asyncio.Future: asking a pending future is a bug
            raise asyncio.InvalidStateError("exception() on a pending ack")
        return self._error

    @property
    def succeeded(self) -> bool:
        return self._done and self._error is None


def out(tp: TopicPartition, offset: int, index: int) -> OutgoingRecord:
    return OutgoingRecord(topic="out", key=None, value=f"{tp}:{offset}:{index}".encode())


# --- the prefix property -----------------------------------------------------------


@dataclass
class Rec:
    offset: int
    acks: list[FakeAck] = field(default_factory=list)

    @property
    def settled(self) -> bool:
        return all(a.succeeded for a in self.acks)


# Per partition: a list of (gap to the previous offset, number of outputs).
plans = st.lists(
    st.tuples(st.integers(min_value=1, max_value=3), st.integers(min_value=0, max_value=3)),
    max_size=8,
)


def prefix_end(recs: list[Rec]) -> int | None:
    """One past the last record of the run of settled records from the start (None: empty)."""
    end = None
    for rec in recs:
        if not rec.settled:
            break
        end = rec.offset + 1
    return end


def head(recs: list[Rec]) -> Rec | None:
    for rec in recs:
        if not rec.settled:
            return rec
    return None


@settings(max_examples=150)
@given(st.data(), plans, plans, st.integers(min_value=0, max_value=1000))
def test_settled_offset_is_one_past_the_longest_fully_acked_prefix(
    data: st.DataObject, plan1: list[tuple[int, int]], plan2: list[tuple[int, int]], base: int
) -> None:
    tracker = OffsetTracker()
    plan = {TP: plan1, TP2: plan2}
    recs: dict[TopicPartition, list[Rec]] = {TP: [], TP2: []}
    next_offset = {TP: base, TP2: base}

    def check_never_past() -> None:
        settled = tracker.committable()
        for tp in (TP, TP2):
            expected = prefix_end(recs[tp])
            if expected is None:
                assert tp not in settled
            elif tp in settled:
                assert settled[tp] <= expected
            unsettled = head(recs[tp])
            if unsettled is not None and tp in settled:
                assert settled[tp] <= unsettled.offset  # never past an unacked record

    def settle_and_check() -> None:
        failures = tracker.advance()
        settled = tracker.committable()
        expected_failures = set()
        for tp in (TP, TP2):
            expected = prefix_end(recs[tp])
            assert settled.get(tp) == expected
            first = head(recs[tp])
            assert tracker.in_flight(tp) == (
                0 if first is None else len(recs[tp]) - recs[tp].index(first)
            )
            if first is not None and any(a.done() and not a.succeeded for a in first.acks):
                # a failed head: its failures and every one behind it
                for rec in recs[tp][recs[tp].index(first) :]:
                    for i, ack in enumerate(rec.acks):
                        if ack.done() and not ack.succeeded:
                            expected_failures.add((tp, rec.offset, i))
        assert {(f.tp, f.offset, f.index) for f in failures} == expected_failures
        for f in failures:
            assert f.record == out(f.tp, f.offset, f.index)
            assert isinstance(f.error, RuntimeError)

    for _ in range(60):
        actions: list[tuple[str, TopicPartition | None, int, int]] = [("settle", None, 0, 0)]
        for tp in (TP, TP2):
            if len(recs[tp]) < len(plan[tp]):
                actions.append(("add", tp, 0, 0))
            for r, rec in enumerate(recs[tp]):
                for a, ack in enumerate(rec.acks):
                    if not ack.done():
                        actions.append(("resolve", tp, r, a))
                    elif not ack.succeeded:
                        actions.append(("resend", tp, r, a))
        kind, tp_, r, a = data.draw(st.sampled_from(actions))
        if kind == "settle":
            settle_and_check()
            continue
        assert tp_ is not None
        tp = tp_
        if kind == "add":
            gap, n_acks = plan[tp][len(recs[tp])]
            offset = next_offset[tp] + gap - 1
            next_offset[tp] = offset + 1
            rec = Rec(offset, [FakeAck() for _ in range(n_acks)])
            recs[tp].append(rec)
            tracker.add(tp, offset, rec.acks, [out(tp, offset, i) for i in range(n_acks)])
        elif kind == "resolve":
            ack = recs[tp][r].acks[a]
            if data.draw(st.booleans()):
                ack.succeed()
            else:
                ack.fail(RuntimeError("broker said no"))
        else:  # resend: a new pending ack replaces the failed one
            fresh = FakeAck()
            recs[tp][r].acks[a] = fresh
            tracker.replace_ack(tp, recs[tp][r].offset, a, fresh)
        check_never_past()

    # Everything eventually goes through: the whole partition settles.
    for tp in (TP, TP2):
        while len(recs[tp]) < len(plan[tp]):
            gap, n_acks = plan[tp][len(recs[tp])]
            offset = next_offset[tp] + gap - 1
            next_offset[tp] = offset + 1
            rec = Rec(offset, [FakeAck() for _ in range(n_acks)])
            recs[tp].append(rec)
            tracker.add(tp, offset, rec.acks, [out(tp, offset, i) for i in range(n_acks)])
        for rec in recs[tp]:
            for a, ack in enumerate(rec.acks):
                if not ack.done():
                    ack.succeed()
                elif not ack.succeeded:
                    fresh = FakeAck.ok()
                    rec.acks[a] = fresh
                    tracker.replace_ack(tp, rec.offset, a, fresh)
    assert tracker.advance() == []
    for tp in (TP, TP2):
        assert tracker.committable().get(tp) == (recs[tp][-1].offset + 1 if recs[tp] else None)
        assert tracker.in_flight(tp) == 0
    assert tracker.in_flight() == 0


@given(st.lists(st.booleans(), min_size=1, max_size=20), st.integers(min_value=0, max_value=20))
def test_settled_never_passes_the_first_unacked_record(acked: list[bool], base: int) -> None:
    tracker = OffsetTracker()
    acks = [FakeAck.ok() if done else FakeAck() for done in acked]
    for i, ack in enumerate(acks):
        tracker.add(TP, base + i, [ack], [out(TP, base + i, 0)])
    assert tracker.advance() == []
    prefix = next((i for i, done in enumerate(acked) if not done), len(acked))
    if prefix == 0:
        assert TP not in tracker.committable()
    else:
        assert tracker.committable()[TP] == base + prefix
    assert tracker.in_flight(TP) == len(acked) - prefix


# --- failed sends ------------------------------------------------------------------


def test_failed_ack_is_reported_and_blocks_until_replaced() -> None:
    tracker = OffsetTracker()
    error = RuntimeError("timed out")
    tracker.add(TP, 10, [FakeAck.ok(), FakeAck.failed(error)], [out(TP, 10, 0), out(TP, 10, 1)])
    tracker.add(TP, 11, [FakeAck.ok()], [out(TP, 11, 0)])

    failures = tracker.advance()
    assert failures == [Unacked(TP, 10, 1, out(TP, 10, 1), error)]
    assert TP not in tracker.committable()
    assert tracker.in_flight(TP) == 2

    # Still failed: reported again on every settle, still blocking.
    assert len(tracker.advance()) == 1
    assert TP not in tracker.committable()

    resent = FakeAck()
    tracker.replace_ack(TP, 10, 1, resent)
    assert tracker.advance() == []
    assert TP not in tracker.committable()  # the re-send is in flight

    resent.succeed()
    assert tracker.advance() == []
    assert tracker.committable() == {TP: 12}
    assert tracker.in_flight(TP) == 0


def test_failed_ack_in_one_partition_does_not_block_another() -> None:
    tracker = OffsetTracker()
    tracker.add(TP, 0, [FakeAck.failed()], [out(TP, 0, 0)])
    tracker.add(TP2, 0, [FakeAck.ok()], [out(TP2, 0, 0)])
    failures = tracker.advance()
    assert [(f.tp, f.offset) for f in failures] == [(TP, 0)]
    assert tracker.committable() == {TP2: 1}


def test_every_failed_output_of_the_head_record_is_reported() -> None:
    tracker = OffsetTracker()
    acks = [FakeAck.failed(), FakeAck(), FakeAck.failed()]
    tracker.add(TP, 3, acks, [out(TP, 3, i) for i in range(3)])
    assert [f.index for f in tracker.advance()] == [0, 2]


def test_once_the_head_failed_every_failed_output_behind_it_is_reported() -> None:
    tracker = OffsetTracker()
    tracker.add(TP, 0, [FakeAck.failed()], [out(TP, 0, 0)])
    tracker.add(TP, 1, [FakeAck()], [out(TP, 1, 0)])  # still in flight: not asked
    tracker.add(TP, 2, [FakeAck.ok(), FakeAck.failed()], [out(TP, 2, 0), out(TP, 2, 1)])
    assert [(f.offset, f.index) for f in tracker.advance()] == [(0, 0), (2, 1)]
    assert TP not in tracker.committable()


def test_failures_behind_a_pending_head_wait_until_it_is_done() -> None:
    tracker = OffsetTracker()
    head = FakeAck()
    tracker.add(TP, 0, [head], [out(TP, 0, 0)])
    tracker.add(TP, 1, [FakeAck.failed()], [out(TP, 1, 0)])
    assert tracker.advance() == []  # the common case stays a look at the head only
    head.succeed()
    assert [f.offset for f in tracker.advance()] == [1]
    assert tracker.committable() == {TP: 1}


def test_replace_ack_for_an_unknown_offset_is_a_no_op() -> None:
    tracker = OffsetTracker()
    tracker.add(TP, 5, [FakeAck()], [out(TP, 5, 0)])
    tracker.replace_ack(TP, 99, 0, FakeAck.ok())
    tracker.replace_ack(TP2, 5, 0, FakeAck.ok())
    assert tracker.advance() == []
    assert tracker.committable() == {}


def test_pending_acks_are_never_asked_for_their_exception() -> None:
    tracker = OffsetTracker()
    tracker.add(TP, 0, [FakeAck(), FakeAck.ok()], [out(TP, 0, 0), out(TP, 0, 1)])
    assert tracker.advance() == []  # FakeAck.exception() raises if called while pending


async def test_asyncio_futures_work_as_acks() -> None:
    loop = asyncio.get_running_loop()
    ok: asyncio.Future[None] = loop.create_future()
    bad: asyncio.Future[None] = loop.create_future()
    tracker = OffsetTracker()
    tracker.add(TP, 0, [ok], [out(TP, 0, 0)])
    tracker.add(TP, 1, [bad], [out(TP, 1, 0)])
    assert tracker.advance() == []
    ok.set_result(None)
    error = ConnectionError("gone")
    bad.set_exception(error)
    failures = tracker.advance()
    assert tracker.committable() == {TP: 1}
    assert [(f.offset, f.error) for f in failures] == [(1, error)]


# --- records without outputs -------------------------------------------------------


def test_record_without_acks_settles_immediately_when_nothing_is_pending() -> None:
    tracker = OffsetTracker()
    tracker.add(TP, 41)
    assert tracker.committable() == {TP: 42}  # no settle() needed
    assert tracker.in_flight(TP) == 0


def test_record_without_acks_waits_behind_a_pending_record() -> None:
    tracker = OffsetTracker()
    first = FakeAck()
    tracker.add(TP, 0, [first], [out(TP, 0, 0)])
    tracker.add(TP, 1)
    assert TP not in tracker.committable()
    assert tracker.advance() == []
    assert TP not in tracker.committable()
    assert tracker.in_flight(TP) == 2
    first.succeed()
    tracker.advance()
    assert tracker.committable() == {TP: 2}


def test_record_without_acks_settles_immediately_once_the_queue_has_drained() -> None:
    tracker = OffsetTracker()
    tracker.add(TP, 0, [FakeAck.ok()], [out(TP, 0, 0)])
    tracker.advance()
    assert tracker.committable() == {TP: 1}
    tracker.add(TP, 1)
    assert tracker.committable() == {TP: 2}


def test_record_without_acks_is_not_blocked_by_another_partition() -> None:
    tracker = OffsetTracker()
    tracker.add(TP2, 0, [FakeAck()], [out(TP2, 0, 0)])
    tracker.add(TP, 7)
    assert tracker.committable() == {TP: 8}


# --- forget / committed / in_flight ------------------------------------------------


def test_forget_drops_pending_and_settled_state_of_the_partition() -> None:
    tracker = OffsetTracker()
    tracker.add(TP, 0)
    tracker.add(TP, 1, [FakeAck()], [out(TP, 1, 0)])
    tracker.add(TP2, 0)
    tracker.forget(TP)
    assert tracker.committable() == {TP2: 1}
    assert tracker.in_flight(TP) == 0
    assert tracker.in_flight() == 0
    assert tracker.advance() == []
    # Reassigned later: starts clean.
    tracker.add(TP, 5)
    assert tracker.committable()[TP] == 6


def test_forget_of_unknown_partition_is_harmless() -> None:
    tracker = OffsetTracker()
    tracker.forget(TP)
    assert tracker.committable() == {}


def test_committed_removes_only_equal_offsets() -> None:
    tracker = OffsetTracker()
    tracker.add(TP, 9)
    tracker.add(TP2, 19)
    tracker.committed({TP: 10, TP2: 5, TopicPartition("other", 0): 3})
    assert tracker.committable() == {TP2: 20}


def test_committed_then_newer_settle_reports_the_newer_offset() -> None:
    tracker = OffsetTracker()
    tracker.add(TP, 0)
    tracker.committed(tracker.committable())
    assert tracker.committable() == {}
    assert tracker.advance() == []
    assert tracker.committable() == {}  # nothing new: nothing to commit again
    tracker.add(TP, 1)
    assert tracker.committable() == {TP: 2}


def test_committed_of_a_stale_offset_keeps_the_newer_one() -> None:
    tracker = OffsetTracker()
    tracker.add(TP, 0)
    stale = tracker.committable()
    tracker.add(TP, 1)
    tracker.committed(stale)
    assert tracker.committable() == {TP: 2}


def test_settled_returns_a_copy() -> None:
    tracker = OffsetTracker()
    tracker.add(TP, 0)
    tracker.committable().clear()
    assert tracker.committable() == {TP: 1}


def test_in_flight_counts_per_partition_and_in_total() -> None:
    tracker = OffsetTracker()
    tracker.add(TP, 0, [FakeAck()], [out(TP, 0, 0)])
    tracker.add(TP, 1)
    tracker.add(TP2, 0, [FakeAck()], [out(TP2, 0, 0)])
    assert tracker.in_flight(TP) == 2
    assert tracker.in_flight(TP2) == 1
    assert tracker.in_flight(TopicPartition("x", 0)) == 0
    assert tracker.in_flight() == 3


@pytest.mark.parametrize("n_acks", [1, 2, 5])
def test_record_settles_only_when_all_its_acks_are_done(n_acks: int) -> None:
    tracker = OffsetTracker()
    acks = [FakeAck() for _ in range(n_acks)]
    tracker.add(TP, 0, acks, [out(TP, 0, i) for i in range(n_acks)])
    for ack in acks:
        assert tracker.advance() == []
        assert TP not in tracker.committable()
        ack.succeed()
    tracker.advance()
    assert tracker.committable() == {TP: 1}
