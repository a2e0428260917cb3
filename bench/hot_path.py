"""Benchmark: the worker's per-record cost without a broker, for instruction counts.

``Pipeline.process`` (the worker's record path) runs over N preloaded pipeline records (the ~1.1 KB orders of
``pipeline.py``, real binary-mode CloudEvents) with a transport whose ``send`` returns a
pending future, as Kafka's does, in runs of 500 (a lane's); after each run the futures are resolved and the
partition settled, as acks would arrive. Three variants:

bus
    the worker as it runs by default;
bus_nometrics
    ``WorkerSettings(metrics=False)``: what the metrics cost;
floor
    what any pipeline must do per record (``model_validate_json``, the handler,
    ``to_json``, one send), so ``bus - floor`` is what the bus itself costs.

Wall-clock time on a shared machine is noise; CPU instructions are not. ``--callgrind``
runs each variant under valgrind twice (1 and 3 passes) and reports instructions per
record, ``(Ir(3 passes) - Ir(1 pass)) / (2 * records)``, which leaves out start-up::

    python bench/hot_path.py --callgrind            # ~2 minutes on 2 cores
    python bench/hot_path.py                        # CPU time per pass instead

By hand, one variant: ``valgrind --tool=callgrind --callgrind-out-file=/dev/null python
bench/hot_path.py --records 1000 --passes P --variant V`` for P in 1, 3. Under valgrind a
record takes about a millisecond, so what is remembered per millisecond (the formatted
time, the id's time prefix) is redone for nearly every record: the figures overstate
those parts a little. The valgrind runs use ``PYTHONHASHSEED=0`` (set it for runs by hand
too): with a random seed the same code measured 257k-263k instructions per record.
After set-up the collector is tuned as ``bus run`` tunes it (``--gc-young``, 50,000 by
default; 0 keeps Python's settings, under which the bus's share of collections is
larger than in a deployed handler).

Output: a table (measurement, median, min, max, unit), then as the last stdout line one
JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipeline_common import bus_models, order_fields, price
from report import Row, print_table

from bus import App, Worker, WorkerSettings
from bus.config import BusConfig
from bus.gc_tuning import tune_gc
from bus.ids import new_id
from bus.offsets import OffsetTracker
from bus.pipeline import Pipeline
from bus.publisher import envelope_for, record_for
from bus.record import OutgoingRecord, Record, TopicPartition
from bus.stamping import utc_now

MODELS = bus_models("bench.hot.in", "bench.hot.out")


async def price_order(event: Any) -> Any:
    return price(event, MODELS.priced)


price_order.__annotations__ = {"event": MODELS.placed, "return": MODELS.priced}


class PendingTransport:
    """Only ``send``: a future per record, resolved by the benchmark (a broker's ack)."""

    name = "pending"

    def __init__(self) -> None:
        self.futures: list[asyncio.Future[None]] = []

    async def send(self, record: OutgoingRecord) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future

    def ack_all(self) -> None:
        for future in self.futures:
            future.set_result(None)
        self.futures.clear()


def records(n: int) -> list[Record]:
    now = utc_now()
    out = []
    for i in range(n):
        message = MODELS.placed(**order_fields(i))
        env = envelope_for(message, source="bus://bench", id=new_id(), time=now)
        r = record_for(message, env)
        out.append(Record("bench.hot.in", 0, i, r.key, r.value, tuple(r.headers), 0))
    return out


VARIANTS = ("bus", "bus_nometrics", "floor")


async def run(
    n: int, passes: int, floor: bool, metrics: bool = True, gc_young: int = 0
) -> list[float]:
    """CPU seconds per record of each pass."""
    app = App("bench-hot", group="bench-hot", registry=MODELS.registry, source="bus://bench")
    app.handler(price_order)
    transport = PendingTransport()
    settings = WorkerSettings(metrics=metrics)
    worker = Worker(app, transport, settings)  # type: ignore[arg-type]  # only send is used
    pipeline = Pipeline(app, worker.outcomes, worker._completions, worker._stamp, tracing_on=False)
    tp = TopicPartition("bench.hot.in", 0)
    batch = records(n)
    placed = MODELS.placed
    tune_gc(gc_young)  # the collector as `bus run` sets it (0: Python's settings)
    per_pass = []
    for _ in range(passes):
        tracker = worker.outcomes.tracker = OffsetTracker()
        start = time.process_time()
        for i in range(0, len(batch), 500):  # a lane's run of records, then their acks
            chunk = batch[i : i + 500]
            if floor:
                for record in chunk:
                    out = await price_order(placed.model_validate_json(record.value or b""))
                    await transport.send(OutgoingRecord("t", None, out.to_json()))
            else:
                await pipeline.process(deque(chunk), tp, len(chunk))
            transport.ack_all()
            tracker.advance(tp)
        transport.ack_all()
        per_pass.append((time.process_time() - start) / n)
    return per_pass


def cpu_rows(args: argparse.Namespace, variants: list[str]) -> list[Row]:
    rows = []
    for v in variants:
        per_pass = asyncio.run(
            run(args.records, args.passes, v == "floor", v != "bus_nometrics", args.gc_young)
        )
        rows.append(Row(f"{v} cpu", [x * 1e6 for x in per_pass], "us/record"))
    by = {r.name.split()[0]: r for r in rows}
    if "bus" in by and "floor" in by:
        own = [b - f for b, f in zip(by["bus"].values, by["floor"].values, strict=True)]
        rows.append(Row("bus own cpu (bus - floor)", own, "us/record"))
    return rows


_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def instructions(variant: str, records: int, passes: int, gc_young: int) -> int:
    """Instructions of one run of ``variant`` under callgrind."""
    cmd = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, os.path.abspath(__file__),
        "--variant", variant, "--records", str(records), "--passes", str(passes),
        "--gc-young", str(gc_young),
    ]  # fmt: skip
    # a fixed hash seed: with a random one, dict and set layouts (and so probe counts and
    # collisions) differ per run, and the same code measured 257k-263k instr/record in
    # three runs; with seed 0, two runs differed by 64
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise SystemExit(f"no callgrind total in: {done.stderr[-500:]}")
    return int(found.group(1))


def callgrind_rows(args: argparse.Namespace, variants: list[str]) -> list[Row]:
    """Instructions per record of each variant: (Ir(3 passes) - Ir(1 pass)) / (2 records)."""
    runs = [(v, p) for v in variants for p in (1, 3)]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        totals = list(
            pool.map(lambda vp: instructions(vp[0], args.records, vp[1], args.gc_young), runs)
        )
    ir = dict(zip(runs, totals, strict=True))
    per = {v: (ir[(v, 3)] - ir[(v, 1)]) / (2 * args.records) for v in variants}
    rows = [Row(f"{v} instructions", [per[v]], "instr/record") for v in variants]
    if "bus" in per and "floor" in per:
        rows.append(Row("bus own (bus - floor)", [per["bus"] - per["floor"]], "instr/record"))
    if "bus" in per and "bus_nometrics" in per:
        rows.append(
            Row(
                "metrics (bus - bus_nometrics)", [per["bus"] - per["bus_nometrics"]], "instr/record"
            )
        )
    return rows


def _key(row: Row) -> str:
    return re.sub(r"[^a-z0-9]+", "_", f"{row.name} {row.unit}".lower()).strip("_")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=None, help="20000; 1000 with --callgrind")
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--variant", choices=VARIANTS, action="append", help="repeatable; default all")
    p.add_argument("--floor", action="store_true", help="same as --variant floor")
    p.add_argument("--no-metrics", action="store_true", help="same as --variant bus_nometrics")
    p.add_argument("--callgrind", action="store_true", help="instructions per record (valgrind)")
    p.add_argument("--jobs", type=int, default=2, help="valgrind runs at once (--callgrind)")
    p.add_argument(
        "--gc-young",
        type=int,
        default=BusConfig().gc_young,
        help="bus.gc_tuning.tune_gc(N) after set-up, as `bus run` does (0: Python's settings)",
    )
    args = p.parse_args(argv)
    variants = list(args.variant or [])
    variants += ["floor"] * args.floor + ["bus_nometrics"] * args.no_metrics
    variants = [v for v in VARIANTS if v in variants] or list(VARIANTS)
    if args.records is None:
        args.records = 1000 if args.callgrind else 20_000
    rows = callgrind_rows(args, variants) if args.callgrind else cpu_rows(args, variants)
    print_table(rows)
    result: dict[str, Any] = {
        "records": args.records,
        "mode": "callgrind" if args.callgrind else "cpu",
        "gc_young": args.gc_young,
    }
    if not args.callgrind:
        result["passes"] = args.passes
    for row in rows:
        result[_key(row)] = round(row.mid, 3 if row.unit == "us/record" else 0)
        if len(row.values) > 1:
            result[_key(row) + "_per_pass"] = [round(x, 3) for x in row.values]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
