"""Committing a worker's offsets: only the settled prefix, failed sends sent again first.

A record is settled when its outcome's sends are all acknowledged
(:class:`~bus.offsets.OffsetTracker`). Every ``commit_interval_s`` (and on revoke and at
stop) the committer re-sends outputs whose acknowledgement failed (same record, same
CloudEvents id: downstream deduplication recognises the copy), tells dedup stores which
completions are sent, and commits what settled.

Example::

    committer = Committer(outcomes, completions, interval_s=0.5)
    committer.consumer = consumer
    await committer.commit()
"""

from __future__ import annotations

import asyncio
import logging
import time

from bus.dedup.completions import Completions
from bus.errors import CommitFailedError
from bus.outcomes import Outcomes
from bus.record import TopicPartition
from bus.transports.base import Consumer

__all__ = ["Committer"]

log = logging.getLogger("bus.worker")


class Committer:
    """Commits one worker's settled offsets (see the module docstring)."""

    def __init__(self, outcomes: Outcomes, completions: Completions, *, interval_s: float) -> None:
        self._outcomes = outcomes
        self._completions = completions
        self.interval_s = interval_s
        self.consumer: Consumer | None = None

    async def loop(self) -> None:
        """Commit every ``interval_s`` until cancelled; a rebalance's refusal is logged."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.commit()
            except CommitFailedError as exc:
                log.warning("app %s: commit failed (rebalance): %s", self._outcomes.app.name, exc)

    async def commit(self, only: frozenset[TopicPartition] | None = None) -> None:
        """Re-send failed outputs, mark completions sent, commit the settled offsets (of
        ``only``, when given)."""
        o = self._outcomes
        o.stats.commit_rounds += 1
        await self.resend_failed()
        await self._completions.mark_sent()
        offsets = o.tracker.committable()
        if only is not None:
            offsets = {tp: n for tp, n in offsets.items() if tp in only}
        if not offsets or self.consumer is None:
            return
        started = time.perf_counter()
        await self.consumer.commit(offsets)
        if o.metrics is not None:
            o.metrics.committed(o.app.name, offsets, time.perf_counter() - started)
        o.tracker.committed(offsets)
        o.stats.commits += 1

    async def final_commit(self, deadline: float) -> None:
        """Commit what is settled, within the deadline (at least half a second).

        During a rebalance aiokafka's commit waits for the group (its commit lock is held
        while the broker holds the join; a kill-storm run saw 22 s), which overran the
        deadline and failed the shutdown. What is not committed is redelivered to the
        partition's next owner: at-least-once holds, and dedup drops the copies.
        """
        try:
            async with asyncio.timeout(max(0.5, deadline - time.monotonic())):
                await self.commit()
        except CommitFailedError:
            pass
        except TimeoutError:
            log.warning(
                "app %s: the last commit did not finish within the shutdown deadline (a "
                "rebalance under way?); records handled since the previous commit will be "
                "redelivered",
                self._outcomes.app.name,
            )

    async def resend_failed(self) -> None:
        """Send again every output whose acknowledgement failed, swapping in the new ack."""
        o = self._outcomes
        failed = o.tracker.advance()
        if failed:  # one line per round: an outage fails hundreds of sends at once
            log.warning(
                "app %s: %d send(s) failed (first: to %s, %r); sending them again",
                o.app.name, len(failed), failed[0].record.topic, failed[0].error,
            )  # fmt: skip
        for unacked in failed:
            ack = await o.transport.send(unacked.record)
            o.tracker.replace_ack(unacked.tp, unacked.offset, unacked.index, ack)
            o.stats.resent += 1

    async def await_acks(self, tp: TopicPartition | None, deadline: float) -> None:
        """Until the deadline, wait for the acks of ``tp`` (or all), re-sending failures."""
        tracker = self._outcomes.tracker
        while tracker.in_flight(tp) and time.monotonic() < deadline:
            await self.resend_failed()
            if tracker.in_flight(tp):
                await asyncio.sleep(0.005)
