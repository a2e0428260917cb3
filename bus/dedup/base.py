"""What a dedup store is: the key, what it records, and the Protocol every backend meets.

A handler opted into deduplication runs at most once per CloudEvent: the key is the
handler's name plus the CloudEvents identity (``source`` + ``id``; an id is unique per
source only). Dedup is per handler because two handlers of one group each need their run.
What a store records is the handler's *outputs* as transport records (topic, key bytes,
value bytes, headers), so a redelivery after a crash re-sends the very same records,
CloudEvents ids included, instead of running the handler again: downstream sees a
duplicate it can recognise, never a new message.

Backends: :class:`~bus.dedup.memory.MemoryDedupStore` (bounded, tests and single process),
:class:`~bus.dedup.sqlite.SqliteDedupStore` (embedded default, one file),
:class:`~bus.dedup.postgres.PostgresDedupStore` (several processes). One contract suite
(``tests/contract/test_dedup_store.py``) runs against all three.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import NamedTuple, Protocol, TypeVar, runtime_checkable

from bus.errors import DuplicateMessageError
from bus.record import OutgoingRecord

__all__ = [
    "IDEMPOTENCY_KEY",
    "DedupEntry",
    "DedupKey",
    "DedupStore",
    "DedupTransaction",
    "duplicate_error",
]

#: The CloudEvents extension naming the effect a message asks for, across re-sends: a
#: message that carries it is deduplicated by it instead of by its ``id``. Its value is the
#: id of an earlier message of the same ``source`` asking for the same effect (the saga
#: coordinator's re-send after a reply timeout carries its first attempt's id).
IDEMPOTENCY_KEY = "idempotencykey"

ConnectionT_co = TypeVar("ConnectionT_co", covariant=True)


class DedupKey(NamedTuple):
    """Which handler saw which CloudEvent.

    Example::

        DedupKey(handler="provision_mailbox", source="/hr", id="01890a5d-ac96-7abc-...")
    """

    #: The handler's name (as its App knows it); dedup is per handler.
    handler: str
    #: The CloudEvents ``source`` of the consumed message.
    source: str
    #: The CloudEvents ``id`` of the consumed message (unique per source only), or its
    #: ``idempotencykey`` extension when it carries one (:data:`IDEMPOTENCY_KEY`).
    id: str


class DedupEntry(NamedTuple):
    """What a store recorded when a handler completed a message."""

    key: DedupKey
    #: The records the handler emitted, in order, byte for byte (re-sent on redelivery).
    outputs: tuple[OutgoingRecord, ...]
    #: When the completion was recorded, in milliseconds since the epoch (store's clock).
    completed_at_ms: int
    #: Whether every output is known to be acknowledged by the transport (then a
    #: redelivery re-sends nothing; until then it re-sends the outputs, same ids).
    sent: bool = False


def duplicate_error(key: DedupKey) -> DuplicateMessageError:
    """The error every store raises for a key already recorded."""
    return DuplicateMessageError(
        f"handler {key.handler!r} already completed message id {key.id!r} from source "
        f"{key.source!r}; acknowledge it (re-sending the recorded outputs) instead of "
        "running the handler again",
        key=key,
    )


@runtime_checkable
class DedupTransaction(Protocol[ConnectionT_co]):
    """A transaction the handler's own effect and the dedup record commit in together.

    ``connection`` is the backend's connection inside the transaction: a ``sqlite3``
    connection (use it through ``await tx.run(fn)`` - it lives on the store's thread), an
    ``asyncpg`` connection, or for the memory store a dict of staged writes merged into
    ``store.data`` on commit.
    """

    @property
    def key(self) -> DedupKey: ...

    @property
    def connection(self) -> ConnectionT_co: ...

    def complete(self, outputs: Iterable[OutgoingRecord]) -> None:
        """Set the outputs recorded at commit (none unless called)."""
        ...


@runtime_checkable
class DedupStore(Protocol[ConnectionT_co]):
    """Remembers which (handler, source, id) completed, and with which outputs.

    Every operation is safe from many tasks at once; a store is opened once (it applies its
    schema migrations) and closed at shutdown, or used as ``async with store:``.

    Example::

        async with SqliteDedupStore("bus.db") as store:
            key = DedupKey("provision", event.source, event.id)
            done = await store.get(key)
            if done is not None:
                resend(done.outputs)              # same records, same CloudEvents ids
            else:
                async with store.transaction(key) as tx:
                    await tx.run(lambda db: db.execute("INSERT INTO mailboxes ..."))
                    tx.complete(outputs)          # recorded with the effect, atomically
    """

    async def open(self) -> None:
        """Connect and bring the schema up to date (idempotent)."""
        ...

    async def close(self) -> None:
        """Release connections and threads (idempotent)."""
        ...

    async def get(self, key: DedupKey) -> DedupEntry | None:
        """The completion recorded for ``key``, or None if the handler has not completed it."""
        ...

    async def record(self, key: DedupKey, outputs: Iterable[OutgoingRecord] = ()) -> DedupEntry:
        """Record that the handler completed ``key`` with ``outputs``.

        Raises :class:`~bus.errors.DuplicateMessageError` if ``key`` is already recorded.
        """
        ...

    def transaction(
        self, key: DedupKey
    ) -> AbstractAsyncContextManager[DedupTransaction[ConnectionT_co]]:
        """A transaction for the handler's effect; the dedup record joins it on commit.

        Entering waits for a concurrent transaction on the same key to end, then raises
        :class:`~bus.errors.DuplicateMessageError` if the key is recorded. Leaving the block
        normally commits the effect and the record together; an exception rolls back both
        and propagates. Two processes racing on one key cannot both commit: the database's
        unique key decides, and the loser gets ``DuplicateMessageError`` with its effect
        rolled back.
        """
        ...

    async def record_new(
        self,
        entries: Sequence[tuple[DedupKey, Sequence[OutgoingRecord]]],
        *,
        sent: Sequence[DedupKey] = (),
    ) -> dict[DedupKey, DedupEntry]:
        """Record every key of ``entries`` not recorded yet, all in one transaction; the
        entries recorded *before* (the duplicates), by key. A key given twice counts once.

        For callers that complete many messages at once (the HTTP ingress groups the
        requests that arrive together): one round trip and one commit instead of one per
        key. A concurrent transaction holding one of the keys is waited for, as by
        :meth:`record`. The keys of ``sent`` are marked sent in the same transaction, after
        the entries are read (as :meth:`mark_sent` would, without a commit of their own).
        """
        ...

    async def mark_sent(self, keys: Sequence[DedupKey]) -> None:
        """Note that the outputs of ``keys`` are all acknowledged (unknown keys: ignored)."""
        ...

    async def purge(self, older_than: datetime) -> int:
        """Forget completions recorded before ``older_than``; how many were removed."""
        ...
