"""Benchmark: what deduplication costs per message on each dedup store.

For every backend (memory, SQLite in a temp dir, PostgreSQL) it times, over ``--ops``
distinct keys each:

- ``get miss``: ``store.get(key)`` of an absent key (what every first delivery pays);
- ``record``: ``store.record(key, outputs)`` one after another (one task);
- ``record x16``: the same from 16 concurrent tasks (one process, several partitions);
- ``tx+effect``: ``async with store.transaction(key)`` with one effect row inserted;
- ``ingress xN``: the HTTP ingress's grouped writer (:class:`bus.ingress.idempotency.
  Idempotency`): N concurrent requests of one event each claim, then release as published
  (the sent marks ride in the next group's transaction), so a figure is events/s through
  ``record_new``; ``ingress 100 x16``: 16 concurrent batches of 100 events. Beside each,
  ``events/group`` (how many events one transaction carried) and the benchmark process's
  CPU per event (for PostgreSQL the client's share only).

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
from bus.ingress.idempotency import Idempotency

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
        **await grouped(store, ops, f"/{name}/{run}"),
    }


async def grouped(store: Any, ops: int, source: str) -> dict[str, float]:
    """The ingress's grouped writer: events/s, events per transaction, CPU per event."""
    found: dict[str, float] = {}
    for label, tasks, batch in (("x1", 1, 1), ("x64", 64, 1), ("100 x16", 16, 100)):
        async with Idempotency(store, window_s=3600) as idempotency:
            cpu = time.process_time()
            requests = max(ops // batch, tasks)
            post = posting(idempotency, f"{source}/{label}", batch)
            per_s = batch * await rate(requests, post, tasks=tasks)
            cpu_us = 1e6 * (time.process_time() - cpu) / (requests * batch)
            found[f"ingress {label}"] = per_s
            found[f"ingress {label} events/group"] = idempotency.claims / idempotency.groups
            found[f"ingress {label} cpu us/event"] = cpu_us
    return found


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
    rows = [Row(name, r["v"], unit_of(name)) for name, r in results.items()]
    print_table(rows)
    print(json.dumps(summary(rows, args)))


def posting(idempotency: Idempotency, source: str, batch: int) -> Callable[[int], Awaitable[None]]:
    """Request ``i``: claim ``batch`` new events, then release them as published."""

    async def post(i: int) -> None:
        keys = [DedupKey("ingress", source, f"{i}.{n}") for n in range(batch)]
        todo = await idempotency.claim([(key, OUTPUT) for key in keys])
        idempotency.release(todo, published=True)

    return post


def unit_of(name: str) -> str:
    for suffix in ("events/group", "cpu us/event"):
        if name.endswith(suffix):
            return suffix.split()[-1]
    return "events/s" if " ingress " in f" {name} " else "ops/s"


def summary(rows: list[Row], args: argparse.Namespace) -> dict[str, Any]:
    """Every figure for the last line: the run's settings, each median, each round."""
    out: dict[str, Any] = {"benchmark": "dedup_store", "ops": args.ops, "repeats": args.repeats}
    runs: dict[str, list[float]] = {}
    for row in rows:
        unit = {"ops/s": "ops_per_s", "events/s": "events_per_s"}.get(row.unit, "")
        name = row.name.replace("+", "_").replace("/", "_per_").replace(" ", "_")
        key = f"{name}_{unit}" if unit else name
        out[key] = round(row.mid)
        runs[key] = [round(v) for v in row.values]
    out["runs"] = runs
    return out


if __name__ == "__main__":
    asyncio.run(main())
