"""The worker's side of deduplication: run a try in the store's transaction, answer a
message completed before, and tell the store when a completion's outputs are all sent.

A completion row holds the handler's outputs (exact records), because a crash after the
commit but before the outputs' acks would otherwise lose them: a redelivery re-sends them
(same ids) unless the row says ``sent``. ``sent`` is set in batches from the commit loop
(:meth:`Completions.mark_sent`) once every output of a completion is acknowledged; a lost
update only costs a harmless re-send. Until then the worker keeps the key in memory
(``in_flight``): a copy arriving meanwhile sends nothing, because this worker already
tracks those outputs and re-sends a refused one itself.

Example (the pipeline, for a route with ``dedup=store``)::

    done = await completions.done_before(route, env)
    if done is None:
        records = await completions.run_in_transaction(route, env, ctx, attempt)
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

from bus.context import Context
from bus.dedup.base import IDEMPOTENCY_KEY, DedupEntry, DedupKey, DedupStore
from bus.envelope import Envelope
from bus.errors import BusError, StoreError
from bus.outcomes import Outcomes
from bus.record import OutgoingRecord, Record
from bus.routing import Route
from bus.transports.base import Delivery

__all__ = ["Completions", "StoreFaultError"]

log = logging.getLogger("bus.worker")


def key_of(route: Route, env: Envelope) -> DedupKey:
    """A message's completion key for ``route``: handler, CloudEvents source, and the
    ``idempotencykey`` extension when the message carries one (a re-send that must match
    the attempt it repeats), else its id."""
    return DedupKey(route.name, env.source, env.extensions.get(IDEMPOTENCY_KEY) or env.id)


class StoreFaultError(Exception):
    """The dedup store failed in bus's own work (reading a completion, opening or committing
    the transaction), not in the handler: the worker keeps the record, holds its lane and
    tries again after a backoff, instead of counting a handler failure (dead letters).

    Internal to the worker (it never leaves bus): ``error`` is the store's StoreError,
    ``record`` the record to try again (set by the pipeline).
    """

    def __init__(self, error: StoreError, handler: str) -> None:
        super().__init__(f"dedup store of {handler} failed: {error}")
        self.error = error
        self.handler = handler
        self.record: Record | None = None


class Completions:
    """Completions of one worker's deduplicated handlers (see the module docstring)."""

    def __init__(self, outcomes: Outcomes) -> None:
        self._outcomes = outcomes
        #: Completions whose outputs are in flight: marked sent once all are acknowledged.
        self._unsent: deque[tuple[DedupStore[Any], DedupKey, list[Delivery]]] = deque()
        #: The keys in ``_unsent``: outputs this worker sent and tracks until acknowledged.
        self._unsent_keys: Counter[DedupKey] = Counter()

    async def done_before(self, route: Route, env: Envelope) -> DedupEntry | None:
        """The completion of this message by ``route``, if its store has one."""
        assert route.dedup is not None
        try:
            return await route.dedup.get(key_of(route, env))
        except StoreError as exc:
            raise StoreFaultError(exc, route.name) from exc

    async def run_in_transaction(
        self,
        route: Route,
        env: Envelope,
        ctx: Context,
        attempt: Callable[[], Awaitable[list[OutgoingRecord]]],
    ) -> list[OutgoingRecord]:
        """One try inside the store's transaction: its effect and the completion row (with
        the outputs) commit together, or not at all."""
        assert route.dedup is not None
        in_handler = False
        try:
            async with route.dedup.transaction(key_of(route, env)) as tx:
                ctx.use_transaction(tx)
                try:
                    records = await attempt()
                except BaseException:
                    in_handler = True  # the handler's failure, even if it was a StoreError
                    raise
                finally:
                    ctx.use_transaction(None)
                tx.complete(records)
        except StoreError as exc:
            if in_handler:
                raise
            raise StoreFaultError(exc, route.name) from exc
        return records

    def track(self, route: Route, env: Envelope, acks: list[Delivery]) -> None:
        """A completion's outputs were sent: mark it sent once ``acks`` all succeed."""
        assert route.dedup is not None
        self._track(route.dedup, key_of(route, env), acks)

    def _track(self, store: DedupStore[Any], key: DedupKey, acks: list[Delivery]) -> None:
        self._unsent.append((store, key, acks))
        self._unsent_keys[key] += 1

    async def lost_race(self, record: Record, route: Route, env: Envelope) -> None:
        """Another consumer committed this message's completion first: take its result."""
        done = await self.done_before(route, env)
        if done is None:  # recorded, then purged meanwhile: nothing left to re-send
            done = DedupEntry(key_of(route, env), (), 0, sent=True)
        await self.already_done(record, route, done)

    async def already_done(self, record: Record, route: Route, done: DedupEntry) -> None:
        """A message the handler completed before: acknowledged without running it again.

        Its recorded outputs are sent again (same records, same CloudEvents ids) unless
        they are known to be acknowledged, in case the earlier run died before that.
        Outputs this worker sent and still tracks are not sent again either.
        """
        o = self._outcomes
        in_flight = self._unsent_keys[done.key] > 0
        outputs = () if done.sent or in_flight else done.outputs
        acks = [await o.transport.send(r) for r in outputs]
        o.stats.duplicates += 1
        if o.metrics is not None:
            o.metrics.handler_stats(o.app.name, route.topic, route.name).duplicates += 1
        o.tracker.add(record.topic_partition, record.offset, acks, outputs)
        if acks and route.dedup is not None:
            self._track(route.dedup, done.key, acks)
        log.info(
            "app %s: %s already handled %s[%d]@%d (dedup); re-sent %d output(s)",
            o.app.name, route.name, record.topic, record.partition, record.offset,
            len(outputs), extra=o.log_fields(record, route.name),
        )  # fmt: skip

    async def mark_sent(self) -> None:
        """Tell dedup stores which completions' outputs are all acknowledged (in order)."""
        ready: dict[int, tuple[DedupStore[Any], list[DedupKey]]] = {}
        unsent = self._unsent
        popped: list[DedupKey] = []
        while unsent and all(a.done() for a in unsent[0][2]):
            store, key, acks = unsent.popleft()
            popped.append(key)
            if all(a.exception() is None for a in acks):  # failed ones are re-sent: unknown
                ready.setdefault(id(store), (store, []))[1].append(key)
        try:
            for store, keys in ready.values():
                try:
                    await store.mark_sent(keys)
                except BusError as exc:  # only an optimisation: a redelivery re-sends
                    log.warning(
                        "app %s: could not mark outputs sent: %s", self._outcomes.app.name, exc
                    )
        finally:
            # only now: until the store says "sent", a copy must see them as in flight here
            for key in popped:
                self._unsent_keys[key] -= 1
                if not self._unsent_keys[key]:
                    del self._unsent_keys[key]
