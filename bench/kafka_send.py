"""Benchmark: CPU per record of ``KafkaTransport.send`` against aiokafka's public ``send``.

The bus's outputs (the ~1.2 KB priced orders of ``pipeline.py`` with their nine
CloudEvents headers, keyed over 6 partitions) are sent to a Tansu broker started for the
run, ``--records`` at a time, the two ways interleaved for ``--repeats`` rounds:

aiokafka
    ``AIOKafkaProducer.send(topic, value, key, partition, headers)`` on a producer with
    the transport's settings: what the transport did for every record until 2026-11-27;
bus
    ``KafkaTransport.send(record)``, which appends to aiokafka's record accumulator itself
    for a topic whose partitions are known (``transports/kafka_append.py``, ``direct_appender``),
    and picks the partition from the key as aiokafka's default partitioner would.

CPU time of this process per record while sending (``time.process_time``; the broker is
another process), acknowledgements awaited after each round. aiokafka's sender task runs
whenever a full batch makes the loop wait, so its work on the batches is in both figures.
The records are the same objects in both: only the path differs::

    python bench/kafka_send.py            # ~10 s

Output: a table (measurement, median, min, max, unit), then as the last stdout line one
JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from pipeline_common import bus_models, order_fields, price
from report import Row, print_table

from bus.config import KafkaConfig
from bus.devbroker import DevBroker
from bus.gc_tuning import tune_gc
from bus.partitioning import partition_for_key
from bus.publisher import child_record
from bus.record import OutgoingRecord
from bus.stamping import stamp
from bus.transports.base import TopicSpec
from bus.transports.kafka import KafkaTransport

PARTITIONS = 6
MODELS = bus_models("bench.send.in", "bench.send.out")


def outputs(n: int) -> list[OutgoingRecord]:
    """``n`` distinct emitted records, as the worker builds them from a parent's headers."""
    out = []
    for i in range(n):
        priced = price(MODELS.placed(**order_fields(i)), MODELS.priced)
        parent = f"0193a5c4-1b2c-7d3e-8f40-{i:012x}".encode()
        out.append(child_record(priced, "bus://bench", stamp(), parent, parent, None))
    return out


async def send_round(transport: KafkaTransport, records: list[OutgoingRecord], kind: str) -> float:
    """CPU seconds per record of sending ``records`` one way; acks awaited after."""
    producer = transport._producer
    assert producer is not None
    acks: list[Any] = []
    start = time.process_time()
    if kind == "bus":
        send = transport.send
        for r in records:
            acks.append(await send(r))
    else:
        aio_send = producer.send
        for r in records:
            assert r.key is not None
            partition = partition_for_key(r.key, PARTITIONS)  # cached in both: not measured
            acks.append(await aio_send(r.topic, r.value, r.key, partition, None, r.headers))
    elapsed = time.process_time() - start
    await asyncio.gather(*acks)
    return elapsed / len(records)


async def measure(args: argparse.Namespace) -> list[Row]:
    async with DevBroker() as broker:
        config = KafkaConfig(bootstrap_servers=broker.bootstrap_servers, client_id="bench-send")
        transport = KafkaTransport(config)
        await transport.start()
        try:
            topic = MODELS.priced.bus_topic
            await transport.ensure_topics([TopicSpec(topic, partitions=PARTITIONS)])
            records = outputs(args.records)
            for r in records[: PARTITIONS * 50]:  # metadata known, batches warm
                await transport.publish(r)
            tune_gc(args.gc_young)
            per: dict[str, list[float]] = {"aiokafka": [], "bus": []}
            for i in range(args.repeats):
                order = ("aiokafka", "bus") if i % 2 == 0 else ("bus", "aiokafka")
                for kind in order:
                    per[kind].append(await send_round(transport, records, kind))
        finally:
            await transport.stop()
    rows = [Row(f"{k} send cpu", [x * 1e6 for x in v], "us/record") for k, v in per.items()]
    saved = [a - b for a, b in zip(rows[0].values, rows[1].values, strict=True)]
    rows.append(Row("saved per record (aiokafka - bus)", saved, "us/record"))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=20_000, help="records per round (20000)")
    p.add_argument("--repeats", type=int, default=8, help="rounds of each, interleaved (8)")
    p.add_argument("--gc-young", type=int, default=50_000, help="tune_gc as bus run does")
    args = p.parse_args()
    rows = asyncio.run(measure(args))
    print_table(rows)
    result: dict[str, Any] = {"records": args.records, "repeats": args.repeats}
    for row in rows:
        key = row.name.split(" (")[0].replace(" ", "_") + "_us_per_record"
        result[key] = round(row.mid, 3)
        result[key + "_per_round"] = [round(x, 3) for x in row.values]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
