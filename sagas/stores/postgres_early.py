"""Early inputs on PostgreSQL, outside a batch: a keep, a start's check, the reads, the purge.

A batch locks its sagas' ids and reads their kept inputs itself
(:func:`sagas.stores.postgres_batch.lock_and_load`); a single write - ``save``, and
``update`` by revision - takes the same per-id lock here, so a keep and a start of one saga
never pass each other: a keep finds the saga started (a conflict: it is decided on it), a
start finds an input kept since it loaded (a conflict: it starts again with it).

Example::

    async with database.transaction() as conn:
        if not await keep(conn, write):
            raise revision_conflict(write)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sagas.early import EarlyInput
from sagas.stores.early_rows import (
    EXISTS_PG,
    KEEP_PG,
    LIST_ONE_PG,
    LIST_PG,
    LOCK_PG,
    OF_SAGAS_PG,
    OTHERS_PG,
    PURGE_PG,
    early_from_row,
    early_row,
)
from sagas.stores.rows import to_ms
from sagas.stores.writes import KeepEarly, Loaded, SagaWrite, Unstarted

__all__ = ["inputs", "keep", "may_start", "purge", "unstarted"]


async def keep(conn: Any, write: KeepEarly) -> bool:
    """Keep the input unless its saga exists (False: nothing written), in ``conn``'s
    transaction."""
    await conn.execute(LOCK_PG, [write.saga_id])
    if await conn.fetchrow(EXISTS_PG, write.saga_id) is not None:
        return False
    await conn.execute(KEEP_PG, *early_row(write.input))
    return True


async def may_start(conn: Any, write: SagaWrite) -> bool:
    """Before a new saga's insert: lock its id; False if an input was kept for it that its
    start did not apply (it must be decided again with it)."""
    s = write.state
    await conn.execute(LOCK_PG, [s.saga_id])
    return int(await conn.fetchval(OTHERS_PG, s.saga_id, list(write.early_done))) == 0


async def unstarted(conn: Any, saga_id: str, stored: Loaded) -> Loaded:
    """``stored``, or for a saga not there the inputs kept for it (if any)."""
    if stored is not None:
        return stored
    rows = await conn.fetch(OF_SAGAS_PG, [saga_id])
    return Unstarted(saga_id, tuple(early_from_row(tuple(r)) for r in rows)) if rows else None


async def inputs(conn: Any, saga_id: str | None, limit: int) -> list[EarlyInput]:
    rows = await (
        conn.fetch(LIST_PG, limit) if saga_id is None else conn.fetch(LIST_ONE_PG, saga_id, limit)
    )
    return [early_from_row(tuple(r)) for r in rows]


async def purge(conn: Any, older_than: datetime) -> int:
    status = await conn.execute(PURGE_PG, to_ms(older_than))
    return int(status.split()[-1])  # "DELETE <n>"
