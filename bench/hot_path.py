"""Benchmark: the worker's per-record cost without a broker, for instruction counts.

``Worker._process`` runs over N preloaded pipeline records (the ~1.1 KB orders of
``pipeline.py``, real binary-mode CloudEvents) with a transport whose ``send`` returns a
pending future, as Kafka's does; every 500 records the futures are resolved and the
partition settled, as acks would arrive. ``--floor`` runs instead what any pipeline must
do per record (``model_validate_json``, the handler, ``to_json``, one send), so the
difference is what the bus itself costs.

Wall-clock time on a shared machine is noise; CPU instructions are not. Per-record
instructions are the difference of two runs under callgrind (1 and 3 passes)::

    for p in 1 3; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python bench/hot_path.py --records 1000 --passes $p [--floor]; done
    # (Ir(3) - Ir(1)) / 2000 = instructions per record

Without valgrind it prints the best CPU time per record of ``--passes`` passes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from pipeline_common import bus_models, order_fields, price

from bus import App, Worker
from bus.envelope import utc_now
from bus.ids import new_id
from bus.offsets import OffsetTracker
from bus.publisher import envelope_for, record_for
from bus.record import OutgoingRecord, Record, TopicPartition

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


async def run(n: int, passes: int, floor: bool) -> float:
    app = App("bench-hot", group="bench-hot", registry=MODELS.registry, source="bus://bench")
    app.handler(price_order)
    transport = PendingTransport()
    worker = Worker(app, transport)  # type: ignore[arg-type]  # only send is used
    tp = TopicPartition("bench.hot.in", 0)
    batch = records(n)
    placed = MODELS.placed
    best = float("inf")
    for _ in range(passes):
        worker._tracker = OffsetTracker()
        start = time.process_time()
        for i, record in enumerate(batch):
            if floor:
                out = await price_order(placed.model_validate_json(record.value or b""))
                await transport.send(OutgoingRecord("t", None, out.to_json()))
            else:
                await worker._process(record, tp)
            if i % 500 == 499:
                transport.ack_all()
                worker._tracker.settle(tp)
        transport.ack_all()
        best = min(best, time.process_time() - start)
    return best / n


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=20_000)
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--floor", action="store_true", help="the pipeline without the bus")
    args = p.parse_args(argv)
    per_record = asyncio.run(run(args.records, args.passes, args.floor))
    print(f"{per_record * 1e6:.2f} us CPU per record (best of {args.passes})", file=sys.stderr)


if __name__ == "__main__":
    main()
