"""Benchmark: how throughput grows with handler processes, partitions and coordinator
replicas, every part a real process (the figures behind docs/scaling.md).

Two parts, each of rounds interleaved (the order reversed every repeat, since the 2
cores are shared and noisy):

handlers (``bench/scale_handlers.py``)
    A topic of ``--partitions`` (12) partitions pre-filled with ``--events`` events,
    drained by 1, 2 and 4 ``bus run bench.scale_app:app`` processes in one consumer
    group; then the same with ``--sweep-processes`` (2) processes on fewer partitions
    (``--sweep-partitions``, 3 and 6). The handler (``bench/scale_app.py``) does
    ``--work-rounds`` SHA-256 rounds of CPU work (about 0.13 ms per 100 here) and waits
    ``--io-ms`` on the event loop, as a call to a SaaS API would. events/s from the moment
    every process owns its partitions to lag 0, and CPU per event (handlers, broker).
sagas (``bench/scale_sagas.py``)
    ``--sagas`` onboardings (v1, the 4-step path) through one ``bus run`` process of the
    five handler apps and 1, then 2, ``bus sagas run`` coordinators on one throwaway
    PostgreSQL (``tests/postgres.py``: fsync off, synchronous commits): sagas/s, steps/s,
    and where the time goes: CPU per saga of the coordinators, PostgreSQL (postmaster and
    backends), the broker and the handlers; PostgreSQL write transactions, WAL bytes and
    rows per saga, connections.

Every process is started by this script and stopped by its pid when its round ends
(and asked by the kernel to die with this script); every round has a timeout
(``--timeout-s``). Process logs go to ``--log-dir`` (a temp directory, removed unless
given).

Run::

    .venv/bin/python bench/scale.py            # full run (about 6 minutes on 2 cores)
    .venv/bin/python bench/scale.py --quick    # smoke run (1-1.5 minutes)
    .venv/bin/python bench/scale.py --only sagas --sagas 1000

Output: progress on stderr; on stdout a table (measurement, median, min, max, unit)
and, as the last line, one JSON object with every figure and ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# bench/ holds sagas.py: first on sys.path it would shadow the sagas package (see
# bench/sagas.py); the repository root (tests/postgres.py) and bench/ go last.
sys.path[:] = [x for x in sys.path if Path(x or ".").resolve() != HERE]
sys.path += [str(HERE.parent), str(HERE)]

from report import print_table  # noqa: E402
from scale_app import work  # noqa: E402
from scale_handlers import KAFKA_ENV, HandlerRound, Workload, handler_round  # noqa: E402
from scale_report import Report  # noqa: E402
from scale_sagas import SagaRound, p, saga_round  # noqa: E402

from tests.postgres import DSN_VARIABLE, PostgresServer  # noqa: E402

PARTS = ("handlers", "sagas")


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def interleaved(configs: Sequence[Any], repeats: int) -> list[Any]:
    """``configs`` ``repeats`` times, every other pass reversed (1 2 4 4 2 1 ...)."""
    order: list[Any] = []
    for r in range(repeats):
        order += list(configs) if r % 2 == 0 else list(reversed(configs))
    return order


async def measure_handlers(
    args: argparse.Namespace, log_dir: Path
) -> dict[tuple[int, int], list[HandlerRound]]:
    workload = Workload(args.events, args.work_rounds, args.io_ms, args.timeout_s, args.idle_s)
    configs = [(k, args.partitions) for k in args.processes]
    configs += [(args.sweep_processes, q) for q in args.sweep_partitions if q != args.partitions]
    runs: dict[tuple[int, int], list[HandlerRound]] = {c: [] for c in configs}
    for k, q in interleaved(configs, args.repeats):
        r = await handler_round(workload, processes=k, partitions=q, log_dir=log_dir)
        runs[(k, q)].append(r)
        progress(
            f"handlers {k} process(es), {q} partitions: {r.ev_per_s:,.0f} ev/s "
            f"({r.timed_events} in {r.window_s:.2f}s; ready after {r.ready_s:.1f}s; cold "
            f"{r.cold_ev_per_s:,.0f} ev/s); CPU per event: handlers "
            f"{r.cpu_ms_per_event('handlers'):.3f} ms, broker {r.cpu_ms_per_event('broker'):.3f} "
            f"ms, this process {r.cpu_ms_per_event('bench'):.3f} ms; other work "
            f"{r.other_cores:.2f} cores; idle: handlers {r.idle_handler_cores:.3f}, broker "
            f"{r.idle_broker_cores:.3f} cores"
        )
    return runs


async def measure_sagas(args: argparse.Namespace, log_dir: Path) -> dict[int, list[SagaRound]]:
    external = os.environ.get(DSN_VARIABLE)
    server = PostgresServer.external(external) if external else PostgresServer.create()
    server.start()
    runs: dict[int, list[SagaRound]] = {k: [] for k in args.replicas}
    try:
        for k in interleaved(args.replicas, args.repeats):
            r = await saga_round(
                server,
                replicas=k,
                sagas=args.sagas,
                partitions=args.saga_partitions,
                timeout_s=args.timeout_s,
                log_dir=log_dir,
            )
            runs[k].append(r)
            cpu = ", ".join(
                f"{n} {1000 * r.per_saga(v):.2f}" for n, v in r.cpu_s.items() if n != "machine"
            )
            progress(
                f"sagas, {k} coordinator(s): {r.sagas_per_s:,.0f} sagas/s, {r.steps_per_s:,.0f} "
                f"steps/s ({r.sagas} in {r.window_s:.2f}s); CPU ms per saga: {cpu}; "
                f"{r.per_saga(r.write_xacts):.2f} write transactions and "
                f"{r.per_saga(r.wal_bytes) / 1024:.1f} KiB WAL per saga; {r.connections} "
                f"connections; p50/p99 saga {p(r.durations_s, 0.5):.2f}/"
                f"{p(r.durations_s, 0.99):.2f}s"
            )
    finally:
        server.destroy()
    return runs


def work_ms(rounds: int, calls: int = 300) -> float:
    """CPU milliseconds of the handler's own work per event (this process, in line)."""
    started = time.process_time()
    for i in range(calls):
        work(i, rounds)
    return 1000 * (time.process_time() - started) / calls


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu_model": model, "python": platform.python_version()}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    log_dir = (
        Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="bus-bench-scale-"))
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {
        "benchmark": "scale",
        **machine(),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }
    out["work_ms_per_event"] = round(work_ms(args.work_rounds), 3)
    report = Report(out)
    KAFKA_ENV["BUS_KAFKA_FETCH_MAX_WAIT_MS"] = str(args.fetch_max_wait_ms)
    t0 = time.monotonic()
    try:
        if "handlers" in args.parts:
            runs = await measure_handlers(args, log_dir)
            report.handlers(runs, args.partitions, args.io_ms)
        if "sagas" in args.parts:
            report.sagas(await measure_sagas(args, log_dir))
    finally:
        if not args.log_dir:
            shutil.rmtree(log_dir, ignore_errors=True)
    print()
    print_table(report.rows)
    out.update(
        {
            "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
            "total_s": round(time.monotonic() - t0, 1),
            "settings": {k: v for k, v in vars(args).items() if k not in ("log_dir",)},
        }
    )
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add: Callable[..., Any] = ap.add_argument
    add("--quick", action="store_true", help="small smoke run: fewer events and sagas, 1 repeat")
    add("--only", nargs="+", choices=PARTS, dest="parts", default=list(PARTS))
    add("--repeats", type=int, default=2, help="interleaved rounds of each configuration (2)")
    add("--events", type=int, default=6000, help="events per handler round (6000)")
    add("--work-rounds", type=int, default=1500, help="SHA-256 rounds per event (1500, ~2 ms)")
    add("--io-ms", type=float, default=10.0, help="the modelled SaaS call's wait (10 ms)")
    add("--partitions", type=int, default=12, help="partitions of the input topic (12)")
    add("--processes", type=int, nargs="+", default=[1, 2, 4], help="handler processes (1 2 4)")
    add("--sweep-partitions", type=int, nargs="*", default=[3, 6], help="fewer partitions (3 6)")
    add("--sweep-processes", type=int, default=2, help="processes of the partition sweep (2)")
    add("--sagas", type=int, default=2000, help="onboardings per saga round (2000)")
    add("--replicas", type=int, nargs="+", default=[1, 2], help="coordinator replicas (1 2)")
    add(
        "--saga-partitions",
        type=int,
        default=6,
        help="partitions of the saga topics (6, as deploy/)",
    )
    add("--idle-s", type=float, default=3.0, help="idle time measured after each handler round (3)")
    add("--fetch-max-wait-ms", type=int, default=10, help="BUS_KAFKA_FETCH_MAX_WAIT_MS (10: Tansu)")
    add("--timeout-s", type=float, default=180.0, help="longest round (180)")
    add("--log-dir", help="keep the processes' logs here")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.events, args.sagas = 1, 1000, 100
        args.sweep_partitions = []
    if (
        min(args.repeats, args.events, args.sagas, args.partitions, *args.processes, *args.replicas)
        <= 0
    ):
        ap.error("counts must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    sys.stdout.flush()
    print(json.dumps(result))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
