"""Benchmark: completed onboarding sagas per second, end to end, beside DBOS and plain INSERTs.

Four measurements, interleaved round by round (the machine's 2 cores are shared and
noisy, so every ratio is taken within a round and the median reported):

- ``memory_sqlite``: the bus with the memory transport and a SQLite saga store (a fresh
  broker and file per round);
- ``memory_sqlite_v2``: the same on the grown onboarding (``onboarding_v2``: a desk task
  and an equipment child saga's task completed through the public task API, the start-date
  activation due at once; see ``sagas_bus``), reported per step beside v1
  (``per_step_v2_per_v1``: steps/s of v2 over v1, per round, median);
- ``kafka_postgres``: the bus on Kafka (a fresh Tansu broker per round,
  :class:`bus.devbroker.DevBroker`) with a PostgreSQL saga store (a fresh database per
  round);
- ``dbos``: DBOS Transact running the onboarding as a 4-step workflow whose steps write
  the same rows into the same PostgreSQL (``sagas_dbos``);
- ``inserts``: the store's limit - the same rows plus the saga's state row as plain
  INSERTs, one transaction per saga, asyncpg (``sagas_inserts``).

In the bus rounds, all handlers (identity, licensing, notifications, payroll; simulated
systems in memory) and the coordinator run in this one process; ``--sagas`` hires are
published at once and sagas/s = completed sagas / (first trigger published -> last saga
completed). p50/p99 saga duration is each saga's own ``updated_at - started_at``. "CPU per
saga" is this process's CPU time over the round divided by its sagas (the broker and
PostgreSQL run in processes of their own): unlike the rate, it hardly moves when something
else shares the cores, so it is the figure to compare changes by. Every
timed saga takes the 4-step path (create_account, assign_licenses, notify_manager,
create_payroll_record): no approval waits and no failures. DBOS and the INSERTs run
``--concurrency`` sagas in flight over ``--pool`` connections.

PostgreSQL: a throwaway server started here as the tests start theirs
(``tests/postgres.py``: fsync off, synchronous commits), shared by all three PostgreSQL
measurements; or ``BUS_TEST_POSTGRES_DSN``.

Run::

    .venv/bin/pip install dbos     # DBOS Transact, for this benchmark only (or '.[bench]')
    .venv/bin/python bench/sagas.py [--sagas 1000] [--repeats 3] [--only kafka_postgres dbos]

``--profile`` uses cProfile, which sees only the event loop's thread; the SQLite store
works on its own thread, so for memory + SQLite prefer py-spy (on PyPI)::

    .venv/bin/py-spy record --threads --format raw -o sagas.txt -- \
        .venv/bin/python bench/sagas.py --only memory_sqlite

The table goes to stdout, progress to stderr; the last line of stdout is one JSON object
with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import logging
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# This file is bench/sagas.py: with bench/ first on sys.path (as Python puts a script's
# directory), ``import sagas.coordinator`` would find this file instead of the package.
# So bench/ goes last, after the repository root, which also holds tests/postgres.py (the
# throwaway server; tests/ is not an installed package).
sys.path[:] = [x for x in sys.path if Path(x or ".").resolve() != HERE]
sys.path += [str(HERE.parent), str(HERE)]

import pydantic  # noqa: E402
import sagas_dbos  # noqa: E402
from report import Row, print_table  # noqa: E402
from sagas_bus import BusRound, bus_round  # noqa: E402
from sagas_inserts import create_schema, plain_inserts  # noqa: E402
from sagas_rows import Hire, hires, letters  # noqa: E402

from bus import MemoryBroker, MemoryTransport, WorkerSettings  # noqa: E402
from bus.config import BusConfig, KafkaConfig  # noqa: E402
from bus.devbroker import DevBroker  # noqa: E402
from bus.gc_tuning import tune_gc  # noqa: E402
from bus.transports.kafka import KafkaTransport  # noqa: E402
from sagas.stores.postgres import PostgresSagaStore  # noqa: E402
from sagas.stores.sqlite import SqliteSagaStore  # noqa: E402
from tests.postgres import DSN_VARIABLE, PostgresServer  # noqa: E402

KINDS = ("memory_sqlite", "memory_sqlite_v2", "kafka_postgres", "dbos", "inserts")
#: The bus's kinds (a BusRound each); v2 runs the grown onboarding.
BUS_KINDS = ("memory_sqlite", "memory_sqlite_v2", "kafka_postgres")
#: v2's hires start in the past: their account's activation on the start date is due at once.
V2_START_DATE = date(2020, 1, 6)
TARGET_MEMORY_SQLITE = 500.0
TARGET_KAFKA_POSTGRES = 300.0
TARGET_BUS_PER_DBOS = 3.0


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def p(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class Bench:
    """Everything one run shares: the PostgreSQL server, DBOS, round counters."""

    def __init__(self, args: argparse.Namespace, server: PostgresServer) -> None:
        self.args = args
        self.server = server
        self.rounds = 0
        self.tmp = Path(tempfile.mkdtemp(prefix="bus-bench-sagas-"))
        self.dbos: sagas_dbos.DbosOnboarding | None = None
        self.rows_dsn = ""
        self.profiler: cProfile.Profile | None = None

    def batch(self, n: int) -> tuple[Hire, list[Hire]]:
        """A warm-up hire and ``n`` timed ones, unique across the whole run."""
        self.rounds += 1
        people = hires(n + 1, letters(self.rounds + 26))
        return people[0], people[1:]

    def settings(self) -> WorkerSettings:
        return WorkerSettings()

    async def memory_sqlite(self, n: int) -> BusRound:
        warmup, timed = self.batch(n)
        transport = MemoryTransport(MemoryBroker(default_partitions=self.args.partitions))
        async with SqliteSagaStore(self.tmp / f"sagas-{self.rounds}.db") as store:
            return await self._bus(warmup, timed, store, transport)

    async def memory_sqlite_v2(self, n: int) -> BusRound:
        warmup, timed = self.batch(n)
        warmup = replace(warmup, start_date=V2_START_DATE)
        timed = [replace(h, start_date=V2_START_DATE) for h in timed]
        transport = MemoryTransport(MemoryBroker(default_partitions=self.args.partitions))
        async with SqliteSagaStore(self.tmp / f"sagas-{self.rounds}.db") as store:
            return await self._bus(warmup, timed, store, transport, v2=True)

    async def kafka_postgres(self, n: int) -> BusRound:
        warmup, timed = self.batch(n)
        dsn = self.server.create_database("bus_sagas")
        try:
            async with DevBroker() as broker, PostgresSagaStore(dsn) as store:
                config = KafkaConfig(
                    bootstrap_servers=broker.bootstrap_servers,
                    fetch_max_wait_ms=self.args.fetch_max_wait_ms,
                )
                return await self._bus(warmup, timed, store, KafkaTransport(config))
        finally:
            if self.server.can_restart:
                self.server.drop_database(dsn)

    async def _bus(
        self, warmup: Hire, timed: list[Hire], store: Any, transport: Any, *, v2: bool = False
    ) -> BusRound:
        run = bus_round(
            warmup,
            timed,
            store=store,
            transport=transport,
            settings=self.settings(),
            partitions=self.args.partitions,
            timeout_s=self.args.timeout_s,
            v2=v2,
        )
        if self.profiler is None:
            return await run
        self.profiler.enable()
        try:
            return await run
        finally:
            self.profiler.disable()

    async def start_dbos(self) -> None:
        self.rows_dsn = self.server.create_database("bench_rows")
        await create_schema(self.rows_dsn, "dbos_rows")
        self.dbos = sagas_dbos.DbosOnboarding(
            self.rows_dsn, "dbos_rows", pool=self.args.pool, direct=self.args.dbos_direct
        )
        await self.dbos.launch()

    async def dbos_round(self, n: int) -> tuple[float, list[float]]:
        if self.dbos is None:
            await self.start_dbos()
        assert self.dbos is not None
        _, timed = self.batch(n)
        return await self.dbos.run_round(timed, concurrency=self.args.concurrency)

    async def inserts(self, n: int) -> float:
        if not self.rows_dsn:
            self.rows_dsn = self.server.create_database("bench_rows")
        _, timed = self.batch(n)
        return await plain_inserts(
            self.rows_dsn,
            "plain_rows",
            timed,
            concurrency=self.args.concurrency,
            pool=self.args.pool,
        )


async def measure(args: argparse.Namespace, bench: Bench, kinds: list[str]) -> dict[str, Any]:
    n = args.sagas
    bus: dict[str, list[BusRound]] = {k: [] for k in BUS_KINDS}
    dbos_rate: list[float] = []
    dbos_durations: list[list[float]] = []
    insert_rate: list[float] = []
    cpu: dict[str, list[float]] = {k: [] for k in bus}
    t_begin = time.monotonic()

    async def one(kind: str, size: int, label: str) -> None:
        if kind in bus:
            cpu_before = time.process_time()
            r = await getattr(bench, kind)(size)
            cpu_ms = (time.process_time() - cpu_before) * 1000 / size
            if label not in ("warm", "profiled"):  # cProfile slows a round several-fold
                bus[kind].append(r)
                cpu[kind].append(cpu_ms)
            progress(
                f"{label} {kind}: {r.sagas_per_s:,.0f} sagas/s, {r.steps_per_s:,.0f} steps/s "
                f"({r.steps_per_saga} steps a saga; {r.sagas} in {r.elapsed_s:.2f}s; "
                f"{cpu_ms:.2f} ms of this process's CPU per saga; "
                f"first done after {r.first_done_s:.2f}s; p50 {p(r.durations, 0.5):.3f}s, "
                f"p99 {p(r.durations, 0.99):.3f}s; {r.records} records, "
                f"{r.conflicts} conflicts)"
            )
        elif kind == "dbos":
            rate, durations = await bench.dbos_round(size)
            if label != "warm":
                dbos_rate.append(rate)
                dbos_durations.append(durations)
            progress(
                f"{label} dbos: {rate:,.1f} workflows/s; p50 {p(durations, 0.5):.3f}s, "
                f"p99 {p(durations, 0.99):.3f}s"
            )
        else:
            rate = await bench.inserts(size)
            if label != "warm":
                insert_rate.append(rate)
            progress(f"{label} inserts: {rate:,.0f} sagas/s")

    if args.warmup_sagas > 0:
        for kind in kinds:
            await one(kind, args.warmup_sagas, "warm")
    for r in range(args.repeats):
        for kind in kinds:
            await one(kind, n, f"round {r + 1}/{args.repeats}")
    if args.profile:
        for kind in (k for k in kinds if k in bus):
            bench.profiler = cProfile.Profile()
            await one(kind, n, "profiled")
            profile_report(bench.profiler, f"{args.profile}.{kind}", n)
            bench.profiler = None
    return report(args, kinds, bus, cpu, dbos_rate, dbos_durations, insert_rate, t_begin)


def profile_report(profiler: cProfile.Profile, path: str, sagas: int, top: int = 30) -> None:
    """Dump to ``path``; print the top bus/, sagas/ and handlers/ functions (stderr), with
    their cost per saga."""
    profiler.dump_stats(path)
    for key, label in (("tottime", "own time"), ("cumulative", "cumulative")):
        buf = io.StringIO()
        stats = pstats.Stats(profiler, stream=buf)
        stats.sort_stats(key).print_stats(top)
        body = buf.getvalue()
        print(
            f"\n== top {top} functions by {label} ({path}; {sagas} sagas: divide by "
            f"{sagas} for a saga's share) ==",
            file=sys.stderr,
        )
        print(body[body.find("   ncalls") :], file=sys.stderr)


def _ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    return [x / y for x, y in zip(a, b, strict=False) if y > 0]


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _round(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


def report(
    args: argparse.Namespace,
    kinds: list[str],
    bus: dict[str, list[BusRound]],
    cpu: dict[str, list[float]],
    dbos_rate: list[float],
    dbos_durations: list[list[float]],
    insert_rate: list[float],
    t_begin: float,
) -> dict[str, Any]:
    rows: list[Row] = []
    out: dict[str, Any] = {"benchmark": "sagas", "sagas_per_round": args.sagas}
    rates: dict[str, list[float]] = {}
    for kind, runs in bus.items():
        if not runs:
            continue
        rates[kind] = [r.sagas_per_s for r in runs]
        p50 = [p(r.durations, 0.5) for r in runs]
        p99 = [p(r.durations, 0.99) for r in runs]
        steps = [r.steps_per_s for r in runs]
        per_step_cpu = [c / r.steps_per_saga for c, r in zip(cpu[kind], runs, strict=True)]
        rows += [
            Row(f"bus {kind} sagas/s", rates[kind], "sagas/s"),
            Row(f"bus {kind} steps/s ({runs[0].steps_per_saga} a saga)", steps, "steps/s"),
            Row(f"bus {kind} CPU per step (this process)", per_step_cpu, "ms"),
            Row(f"bus {kind} p50 saga duration", p50, "s"),
            Row(f"bus {kind} p99 saga duration", p99, "s"),
            Row(f"bus {kind} first saga done after", [r.first_done_s for r in runs], "s"),
            Row(f"bus {kind} CPU per saga (this process)", cpu[kind], "ms"),
        ]
        # CPU time, unlike the rate, hardly moves when other processes share the cores.
        out[f"cpu_ms_per_saga_{kind}"] = _round(statistics.median(cpu[kind]), 3)
        out[f"sagas_per_s_{kind}"] = _round(statistics.median(rates[kind]))
        out[f"steps_per_s_{kind}"] = _round(statistics.median(steps))
        out[f"steps_per_saga_{kind}"] = runs[0].steps_per_saga
        out[f"cpu_ms_per_step_{kind}"] = _round(statistics.median(per_step_cpu), 3)
        out[f"p50_saga_s_{kind}"] = _round(statistics.median(p50), 4)
        out[f"p99_saga_s_{kind}"] = _round(statistics.median(p99), 4)
        out[f"first_done_s_{kind}"] = _round(statistics.median(r.first_done_s for r in runs), 4)
        out[f"runs_sagas_per_s_{kind}"] = [round(x, 1) for x in rates[kind]]
        out[f"conflicts_{kind}"] = sum(r.conflicts for r in runs)
    if dbos_rate:
        d50 = [p(d, 0.5) for d in dbos_durations]
        d99 = [p(d, 0.99) for d in dbos_durations]
        rows += [
            Row("DBOS workflows/s", dbos_rate, "wf/s"),
            Row("DBOS p50 workflow duration", d50, "s"),
            Row("DBOS p99 workflow duration", d99, "s"),
        ]
        out["dbos_wf_per_s"] = _round(statistics.median(dbos_rate))
        out["p50_wf_s_dbos"] = _round(statistics.median(d50), 4)
        out["p99_wf_s_dbos"] = _round(statistics.median(d99), 4)
        out["runs_dbos_wf_per_s"] = [round(x, 1) for x in dbos_rate]
    if insert_rate:
        rows.append(Row("plain INSERTs (the store's limit)", insert_rate, "sagas/s"))
        out["inserts_sagas_per_s"] = _round(statistics.median(insert_rate))
        out["runs_inserts_sagas_per_s"] = [round(x, 1) for x in insert_rate]
    # Ratios per round (measured minutes apart at most), then their median.
    v1_steps = [r.steps_per_s for r in bus["memory_sqlite"]]
    pairs = {
        "per_step_v2_per_v1": ([r.steps_per_s for r in bus["memory_sqlite_v2"]], v1_steps),
        "bus_per_dbos": (rates.get("kafka_postgres", []), dbos_rate),
        "memory_sqlite_per_dbos": (rates.get("memory_sqlite", []), dbos_rate),
        "kafka_postgres_per_inserts": (rates.get("kafka_postgres", []), insert_rate),
        "dbos_per_inserts": (dbos_rate, insert_rate),
    }
    for name, (a, b) in pairs.items():
        ratios = _ratios(a, b)
        if ratios:
            rows.append(Row(name, ratios, "x"))
            out[name] = _round(statistics.median(ratios), 3)
    print()
    print_table(rows)
    print()
    targets = [
        ("sagas_per_s_memory_sqlite", TARGET_MEMORY_SQLITE, "sagas/s"),
        ("sagas_per_s_kafka_postgres", TARGET_KAFKA_POSTGRES, "sagas/s"),
        ("bus_per_dbos", TARGET_BUS_PER_DBOS, "x"),
    ]
    for key, target, unit in targets:
        value = out.get(key)
        verdict = "not measured" if value is None else ("MET" if value >= target else "NOT met")
        print(f"target {key} >= {target:g} {unit}: {verdict} ({value})")
        out[f"{key}_target"] = target
        out[f"{key}_met"] = None if value is None else value >= target
    for key in ("sagas_per_s_memory_sqlite", "sagas_per_s_kafka_postgres", "dbos_wf_per_s"):
        out.setdefault(key, None)
    out.setdefault("per_step_v2_per_v1", None)
    out.setdefault("bus_per_dbos", None)
    out.setdefault("p99_saga_s_kafka_postgres", None)
    out.update(
        {
            "kinds": kinds,
            "repeats": args.repeats,
            "warmup_sagas": args.warmup_sagas,
            "steps_per_saga": 4,
            "concurrency": args.concurrency,
            "pool": args.pool,
            "dbos_start": "direct call" if args.dbos_direct else "DBOS.start_workflow_async",
            "partitions": args.partitions,
            "fetch_max_wait_ms": args.fetch_max_wait_ms,
            "gc_young": args.gc_young,
            "total_s": round(time.monotonic() - t_begin, 1),
            "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "pydantic": pydantic.VERSION,
            "dbos": sagas_dbos.dbos_version,
        }
    )
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--sagas", type=int, default=1000, help="timed sagas per round (1000)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (3)")
    ap.add_argument("--warmup-sagas", type=int, default=100, help="untimed first round each (100)")
    ap.add_argument("--only", nargs="+", choices=KINDS, help="measure only these")
    ap.add_argument(
        "--concurrency", type=int, default=100, help="DBOS/INSERT sagas in flight (100)"
    )
    ap.add_argument("--pool", type=int, default=20, help="DBOS/INSERT connections (20)")
    ap.add_argument(
        "--dbos-direct",
        action="store_true",
        help="await each DBOS workflow function directly (default: DBOS.start_workflow_async)",
    )
    ap.add_argument("--partitions", type=int, default=3, help="per topic (3, as the demo)")
    ap.add_argument(
        "--fetch-max-wait-ms",
        type=int,
        default=10,
        help="Kafka consumers (10, as bench/pipeline.py: Tansu does not wake a waiting fetch)",
    )
    ap.add_argument("--timeout-s", type=float, default=300.0, help="longest round (300)")
    ap.add_argument(
        "--gc-young",
        type=int,
        default=BusConfig().gc_young,
        help="tune_gc as `bus sagas run` does (BUS_GC_YOUNG's default; 0: Python's GC settings)",
    )
    ap.add_argument(
        "--profile",
        metavar="PATH",
        help="cProfile one extra round of each bus kind (the event loop's thread only)",
    )
    args = ap.parse_args(argv)
    if min(args.sagas, args.repeats, args.concurrency, args.pool, args.partitions) <= 0:
        ap.error("--sagas, --repeats, --concurrency, --pool and --partitions must be positive")
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    kinds = [k for k in KINDS if not args.only or k in args.only]
    if "dbos" in kinds and not sagas_dbos.available():
        progress(sagas_dbos.DBOS_HINT + " (measuring the rest)")
        kinds.remove("dbos")
    external = os.environ.get(DSN_VARIABLE)
    server = PostgresServer.external(external) if external else PostgresServer.create()
    server.start()
    bench = Bench(args, server)
    try:
        progress(f"PostgreSQL {server.dsn}; measuring {', '.join(kinds)}")
        return await measure(args, bench, kinds)
    finally:
        if bench.dbos is not None:
            await bench.dbos.shutdown()
        server.destroy()
        shutil.rmtree(bench.tmp, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    tune_gc(args.gc_young)  # the whole process, DBOS and the INSERTs too, as in production
    result = asyncio.run(run(args))
    sys.stdout.flush()
    print(json.dumps(result))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
