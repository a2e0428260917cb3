"""Benchmark: a batch handler's records/s against a single-message handler doing the same work.

The work is what batch handlers exist for, a bulk database write: every message inserts
one row into a SQLite table. The two apps differ only in how they call the database:

- ``single``: ``@app.handler``, one ``INSERT`` + ``COMMIT`` per message;
- ``batch``: ``@app.batch_handler``, one ``executemany`` + one ``COMMIT`` per batch (a
  partition lane's run of consecutive records, up to ``--fetch-max-records``).

Same messages (``--records`` ~150-byte events over 1,000 keys), same table, same SQL
(``INSERT ... ON CONFLICT (seq) DO NOTHING``: idempotent under redelivery, as a bulk
writer behind at-least-once delivery must be), same durability. The database is the
project's own :class:`bus.sql.sqlite.SqliteDatabase` on a fresh temp file per run, not
bare ``sqlite3``: it is what a bus application writing to SQLite uses, and it is what a
handler shared by up to 16 concurrent lanes needs (one connection, calls on the loop's
thread, ``BEGIN IMMEDIATE`` under a write lock so the lanes' transactions never
interleave, WAL checkpoints off the loop). Durability: WAL with ``synchronous=NORMAL``
(its setting: a commit survives a crash of the process, not of the OS or power; no fsync
per commit); ``--synchronous FULL`` fsyncs the WAL at every commit instead.

Both run through the real :class:`bus.Worker` on the memory transport: the records are
preloaded on ``--partitions`` partitions of a fresh :class:`bus.MemoryBroker` (untimed),
then the clock runs from the worker's start until every record is handled (its row
committed) and every offset committed (polled every 1 ms; offsets are committed every
``--commit-interval`` s). Metrics and tracing stay on (the defaults). Rounds are
interleaved (single, batch, batch, single, ...) and medians reported; ``batch_per_single``
is the median of each round's own ratio. "CPU per record" is this process's CPU time
(every thread) over the timed window divided by the records: unlike the rates it hardly
moves when something else shares the cores. Everything runs on one event loop (SQLite's
WAL checkpoints on the database's own thread). Kafka is not measured: the two handlers
differ only in their database calls, and on Tansu the worker's group join would land in
the timed window (on Kafka a batch is what one fetch brought of a partition).
The last line of stdout is one JSON object with every figure.

Run::

    .venv/bin/python bench/batch.py [--records 50000] [--partitions 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from report import Row, print_table

from bus import App, Event, MemoryBroker, MemoryTransport, Publisher, Worker, WorkerSettings
from bus.sql.sqlite import SqliteDatabase

TOPIC = "bench.batch.rows"
SCHEMA = (
    "CREATE TABLE ledger (seq INTEGER PRIMARY KEY, account TEXT NOT NULL, "
    "amount_cents INTEGER NOT NULL, memo TEXT NOT NULL)"
)
INSERT = (
    "INSERT INTO ledger (seq, account, amount_cents, memo) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (seq) DO NOTHING"
)


class EntryPosted(Event, type="bench.batch.entry_posted.v1", topic=TOPIC, key="account"):
    """One ledger entry to store: one row."""

    seq: int
    account: str
    amount_cents: int
    memo: str


def row(e: EntryPosted) -> tuple[int, str, int, str]:
    return (e.seq, e.account, e.amount_cents, e.memo)


def single_app(db: SqliteDatabase) -> App:
    """One INSERT + COMMIT per message."""
    app = App("bench-batch-single")

    @app.handler
    async def store_entry(entry: EntryPosted) -> None:
        await db.write(lambda conn: conn.execute(INSERT, row(entry)))

    return app


def batch_app(db: SqliteDatabase, sizes: list[int]) -> App:
    """One executemany + COMMIT per batch; records each batch's size."""
    app = App("bench-batch-batch")

    @app.batch_handler
    async def store_entries(batch: list[EntryPosted]) -> None:
        sizes.append(len(batch))
        rows = [row(e) for e in batch]
        await db.write(lambda conn: conn.executemany(INSERT, rows))

    return app


def make_messages(n: int) -> list[EntryPosted]:
    return [
        EntryPosted(
            seq=i,
            account=f"account-{i % 1000:04d}",
            amount_cents=100 + (i * 37) % 90_000,
            memo=f"invoice {i:08d} settled by bank transfer",
        )
        for i in range(n)
    ]


@dataclass(slots=True)
class Run:
    per_s: float  # records / (worker start -> all handled and committed)
    elapsed_s: float
    handled_s: float  # worker start -> all handled (rows committed), offsets not yet
    cpu_us: float  # this process's CPU time (all threads) over elapsed_s, per record
    mean_batch: float | None  # batch handler only: records per call


async def wait_for(done: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.perf_counter() + timeout_s
    while not done():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


async def run_once(
    mode: str, messages: Sequence[EntryPosted], args: argparse.Namespace, tmp: Path, k: int
) -> Run:
    """One run on a fresh broker and database file; checks every row landed once."""
    n = len(messages)
    broker = MemoryBroker(default_partitions=args.partitions)
    broker.create_topic(TOPIC, args.partitions)
    async with Publisher(MemoryTransport(broker), source="bus://bench") as publisher:
        await publisher.publish_many(messages)
    sizes: list[int] = []
    async with SqliteDatabase(tmp / f"{mode}-{k}.db") as db:
        sync = args.synchronous
        await db.run(lambda conn: conn.execute(f"PRAGMA synchronous={sync}"))
        await db.write(lambda conn: conn.execute(SCHEMA))
        app = single_app(db) if mode == "single" else batch_app(db, sizes)
        settings = WorkerSettings(
            fetch_max_records=args.fetch_max_records, commit_interval_s=args.commit_interval
        )
        worker = Worker(app, MemoryTransport(broker), settings)
        stop = asyncio.Event()
        began, cpu = time.perf_counter(), time.process_time()
        task = asyncio.create_task(worker.run(stop))
        await wait_for(lambda: worker.stats.handled >= n, args.timeout, f"{n} handled")
        handled_s = time.perf_counter() - began
        committed = broker.group_committed
        await wait_for(lambda: sum(committed(app.group).values()) >= n, args.timeout, "commits")
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu
        stop.set()
        await task
        stored = await db.run(lambda conn: conn.execute("SELECT count(*) FROM ledger").fetchone())
    if stored[0] != n or worker.stats.handled != n:
        raise RuntimeError(f"{mode}: {stored[0]} rows, {worker.stats.handled} handled, not {n}")
    mean = sum(sizes) / len(sizes) if sizes else None
    return Run(n / elapsed, elapsed, handled_s, 1e6 * cpu / n, mean)


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def measure(args: argparse.Namespace) -> dict[str, list[Run]]:
    messages = make_messages(args.records)
    runs: dict[str, list[Run]] = {"single": [], "batch": []}
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        for k in range(args.rounds):
            order = ("single", "batch") if k % 2 == 0 else ("batch", "single")
            for mode in order:
                run = await run_once(mode, messages, args, Path(tmp), k)
                runs[mode].append(run)
                progress(f"round {k + 1}/{args.rounds} {mode}: {run.per_s:,.0f} records/s")
    return runs


def report(runs: dict[str, list[Run]], args: argparse.Namespace) -> dict[str, Any]:
    single, batch = runs["single"], runs["batch"]
    ratios = [b.per_s / s.per_s for b, s in zip(batch, single, strict=True)]
    means = [b.mean_batch or 0.0 for b in batch]
    rows = [
        Row("single handler (INSERT + COMMIT each)", [r.per_s for r in single], "records/s"),
        Row("batch handler (executemany + COMMIT)", [r.per_s for r in batch], "records/s"),
        Row("batch / single", ratios, "x"),
        Row("single: time to all handled", [r.handled_s for r in single], "s"),
        Row("batch: time to all handled", [r.handled_s for r in batch], "s"),
        Row("single: CPU per record", [r.cpu_us for r in single], "us"),
        Row("batch: CPU per record", [r.cpu_us for r in batch], "us"),
        Row("batch: mean batch size", means, "records/call"),
    ]
    print_table(rows)
    return {
        "benchmark": "batch",
        "batch_per_s": round(statistics.median(r.per_s for r in batch)),
        "single_per_s": round(statistics.median(r.per_s for r in single)),
        "batch_per_single": round(statistics.median(ratios), 2),
        "mean_batch_size": round(statistics.median(means), 1),
        "single_cpu_us_per_record": round(statistics.median(r.cpu_us for r in single), 1),
        "batch_cpu_us_per_record": round(statistics.median(r.cpu_us for r in batch), 1),
        "records": args.records,
        "partitions": args.partitions,
        "rounds": args.rounds,
        "fetch_max_records": args.fetch_max_records,
        "commit_interval_s": args.commit_interval,
        "transport": "memory",
        "database": f"sqlite WAL synchronous={args.synchronous}",
        "runs": {
            "batch_per_s": [round(r.per_s) for r in batch],
            "single_per_s": [round(r.per_s) for r in single],
            "batch_per_single": [round(x, 2) for x in ratios],
            "mean_batch_size": [round(x, 1) for x in means],
            "batch_handled_s": [round(r.handled_s, 3) for r in batch],
            "single_handled_s": [round(r.handled_s, 3) for r in single],
            "batch_elapsed_s": [round(r.elapsed_s, 3) for r in batch],
            "single_elapsed_s": [round(r.elapsed_s, 3) for r in single],
            "batch_cpu_us_per_record": [round(r.cpu_us, 1) for r in batch],
            "single_cpu_us_per_record": [round(r.cpu_us, 1) for r in single],
        },
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fetch-max-records", type=int, default=500)
    parser.add_argument("--commit-interval", type=float, default=0.01, help="seconds")
    parser.add_argument("--synchronous", choices=("NORMAL", "FULL"), default="NORMAL")
    parser.add_argument("--timeout", type=float, default=300.0, help="per run, seconds")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    result = report(asyncio.run(measure(args)), args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
