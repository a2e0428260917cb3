"""The store's limit for ``bench/sagas.py``: a saga's rows as plain INSERTs (shared).

One transaction per saga (account, licenses, note, payroll record, saga state), asyncpg,
``concurrency`` sagas in flight over a pool of as many connections (capped by ``pool``).
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
from sagas_rows import (
    DDL,
    INSERT_ACCOUNT,
    INSERT_LICENSES,
    INSERT_NOTIFICATION,
    INSERT_PAYROLL,
    INSERT_SAGA,
    Hire,
)


async def create_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(DDL.format(schema=schema))
    finally:
        await conn.close()


async def plain_inserts(
    dsn: str, schema: str, hires: list[Hire], *, concurrency: int, pool: int
) -> float:
    """Insert every hire's rows; sagas per second (wall time of the inserts only)."""
    await create_schema(dsn, schema)
    sql = [
        s.format(schema=schema)
        for s in (INSERT_ACCOUNT, INSERT_LICENSES, INSERT_NOTIFICATION, INSERT_PAYROLL, INSERT_SAGA)
    ]
    async with asyncpg.create_pool(dsn, min_size=pool, max_size=pool) as conns:
        gate = asyncio.Semaphore(concurrency)

        async def one(h: Hire) -> None:
            async with gate, conns.acquire() as conn, conn.transaction():
                await conn.execute(sql[0], h.employee_id, h.login, h.email)
                await conn.execute(sql[1], h.employee_id, h.email, h.products)
                await conn.execute(sql[2], h.employee_id, h.manager_email, h.note)
                await conn.execute(sql[3], h.employee_id, h.payroll_id, h.full_name, h.start_date)
                await conn.execute(
                    sql[4], f"onboarding:{h.employee_id}", "completed", h.saga_state()
                )

        started = time.monotonic()
        await asyncio.gather(*(one(h) for h in hires))
        elapsed = time.monotonic() - started
    return len(hires) / elapsed
