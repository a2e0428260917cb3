"""Benchmark: what deduplication costs per message on each dedup store.

For every backend (memory, SQLite in a temp dir, PostgreSQL) it times, over ``--ops``
distinct keys each:

- ``get miss``: ``store.get(key)`` of an absent key (what every first delivery pays);
- ``record``: ``store.record(key, outputs)`` one after another (one task);
- ``record x16``: the same from 16 concurrent tasks (one process, several partitions);
- ``tx+effect``: ``async with store.transaction(key)`` with one effect row inserted.

Outputs are one 300-byte record with 8 headers (a typical emitted event). PostgreSQL is the
server named by ``--postgres-dsn`` / ``BUS_TEST_POSTGRES_DSN``, or a throwaway one started
with tests/postgres.py (fsync off: the figures are CPU and round trips, not disk). The last
line of stdout is one JSON object with every figure: the settings, the median of
``--repeats`` per figure, and under ``runs`` each round's value.

Run::

    python bench/dedup_store.py [--ops 2000] [--repeats 3] [--postgres-dsn DSN]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from report import Row, print_table

from bus import DedupKey, MemoryDedupStore, OutgoingRecord, PostgresDedupStore, SqliteDedupStore

ROOT = str(Path(__file__).resolve().parents[1])
OUTPUT = OutgoingRecord(
    "it.commands",
    b"employee-00042",
    b"x" * 300,
    tuple((f"ce_h{i}", b"v" * 20) for i in range(8)),
)


@asynccontextmanager
async def postgres_dsn(given: str | None) -> AsyncIterator[str]:
    if given:
        yield given
        return
    sys.path.insert(0, ROOT)
    from tests.postgres import PostgresServer

    server = PostgresServer.create()
    try:
        server.start()
        yield server.create_database("bench")
    finally:
        server.destroy()


async def rate(ops: int, fn: Callable[[int], Awaitable[Any]], tasks: int = 1) -> float:
    """Operations per second of ``fn(i)`` for i in range(ops), spread over ``tasks``."""

    async def worker(start: int) -> None:
        for i in range(start, ops, tasks):
            await fn(i)

    began = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in range(tasks)))
    return ops / (time.perf_counter() - began)


async def measure(name: str, store: Any, ops: int, run: int, effect: Any) -> dict[str, float]:
    def k(kind: str, i: int) -> DedupKey:
        return DedupKey("bench", f"/{name}/{run}/{kind}", str(i))

    async def tx(i: int) -> None:
        async with store.transaction(k("tx", i)) as t:
            await effect(t, f"{run}-{i}")
            t.complete([OUTPUT])

    return {
        "get miss": await rate(ops, lambda i: store.get(k("miss", i))),
        "record": await rate(ops, lambda i: store.record(k("rec", i), [OUTPUT])),
        "record x16": await rate(ops, lambda i: store.record(k("rec16", i), [OUTPUT]), tasks=16),
        "tx+effect": await rate(ops, tx),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres-dsn", default=os.environ.get("BUS_TEST_POSTGRES_DSN"))
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {}

    def add(backend: str, figures: dict[str, float]) -> None:
        for op, value in figures.items():
            results.setdefault(f"{backend} {op}", {}).setdefault("v", []).append(value)

    async def memory_effect(t: Any, label: str) -> None:
        t.connection[label] = True

    async def sqlite_effect(t: Any, label: str) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO effects VALUES (?)", (label,))

        await t.run(insert)

    async def postgres_effect(t: Any, label: str) -> None:
        await t.connection.execute("INSERT INTO effects VALUES ($1)", label)

    with tempfile.TemporaryDirectory() as tmp:
        async with (
            postgres_dsn(args.postgres_dsn) as dsn,
            SqliteDedupStore(Path(tmp) / "bench.db") as sqlite_store,
            PostgresDedupStore(dsn, max_connections=16) as pg_store,
        ):
            await sqlite_store.database.run(
                lambda c: c.execute("CREATE TABLE effects (label TEXT PRIMARY KEY)")
            )
            await pg_store.database.pool.execute(
                "CREATE TABLE IF NOT EXISTS effects (label TEXT PRIMARY KEY)"
            )
            for run in range(args.repeats):
                memory = MemoryDedupStore(max_entries=10 * args.ops)
                add("memory", await measure("memory", memory, args.ops, run, memory_effect))
                add("sqlite", await measure("sqlite", sqlite_store, args.ops, run, sqlite_effect))
                add("postgres", await measure("pg", pg_store, args.ops, run, postgres_effect))
    rows = [Row(name, r["v"], "ops/s") for name, r in results.items()]
    print_table(rows)
    print(json.dumps(summary(rows, args)))


def summary(rows: list[Row], args: argparse.Namespace) -> dict[str, Any]:
    """Every figure for the last line: the run's settings, each median, each round."""
    out: dict[str, Any] = {"benchmark": "dedup_store", "ops": args.ops, "repeats": args.repeats}
    runs: dict[str, list[float]] = {}
    for row in rows:
        key = row.name.replace("+", "_").replace(" ", "_") + "_ops_per_s"
        out[key] = round(row.mid)
        runs[key] = [round(v) for v in row.values]
    out["runs"] = runs
    return out


if __name__ == "__main__":
    asyncio.run(main())
