"""The probe of ``bench/pipeline.py``: a separate process that reads the output topic.

It runs outside the measured process so that counting outputs (and, for latency, producing
the paced input) costs the pipeline under test no CPU. Two modes:

``count``
    Read the output topic from the beginning until ``--expect`` distinct outputs (by
    ``seq``) were read; report when the last one was read (``time.monotonic()``, which is
    system-wide on Linux, so the parent compares it with its own clock).
``latency``
    Publish OrderPlaced events with bus's :class:`~bus.Publisher` (real CloudEvents) at
    ``--rate`` per second for ``--seconds``, each stamped with ``time.time_ns()`` in its
    payload (``sent_ns``); read the output topic and record ``now - sent_ns`` per output.

Protocol on stdout: ``ready`` once assigned (and, for latency, connected); latency mode
then waits for ``go`` on stdin; the last line is one JSON object with the result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from pipeline_common import PARTITIONS, ClientSettings, bus_models, order_fields

from bus import Publisher, RecordMetadata
from bus.transports.kafka import KafkaTransport


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _commands() -> asyncio.Queue[str]:
    """Lines from stdin (``go``, ``stop``), read by a daemon thread so exit never waits on it."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        with contextlib.suppress(RuntimeError):  # the loop may be closed by the time of EOF
            for line in sys.stdin:
                loop.call_soon_threadsafe(queue.put_nowait, line.strip())
            loop.call_soon_threadsafe(queue.put_nowait, "eof")

    threading.Thread(target=read, name="probe-stdin", daemon=True).start()
    return queue


async def _reader(settings: ClientSettings, topic: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        **settings.consumer_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    for tp in tps:  # resolve the start positions now, not on the first fetch
        await consumer.position(tp)
    return consumer


async def count(args: argparse.Namespace, settings: ClientSettings) -> dict[str, Any]:
    """Read until ``--expect`` distinct outputs, a ``stop`` line, the deadline or a stall."""
    commands = _commands()
    consumer = await _reader(settings, args.topic)
    seen: set[int] = set()
    records = 0
    t_first: float | None = None
    t_last: float | None = None
    _say("ready")
    t_ready = time.monotonic()
    deadline = t_ready + args.deadline_s
    try:
        while len(seen) < args.expect:
            batches = await consumer.getmany(
                timeout_ms=settings.poll_timeout_ms, max_records=10_000
            )
            now = time.monotonic()
            before = len(seen)
            for messages in batches.values():
                records += len(messages)
                for m in messages:
                    seen.add(orjson.loads(m.value)["seq"])
            if len(seen) > before:
                t_last = now
                if t_first is None:
                    t_first = now
            if now > deadline or not commands.empty():
                break
            if t_last is not None and now - t_last > args.idle_s:
                break
    finally:
        await consumer.stop()
    return {
        "distinct": len(seen),
        "records": records,
        "t_ready": t_ready,
        "t_first": t_first,
        "t_last": t_last,
        "complete": len(seen) >= args.expect,
        "cpu_total_s": time.process_time(),
    }


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _dump(path: str, sent_ns: list[int], latencies_ms: dict[int, float]) -> None:
    lines = (f"{i} {t} {latencies_ms.get(i, math.nan):.3f}\n" for i, t in enumerate(sent_ns))
    Path(path).write_text("".join(lines))


async def latency(args: argparse.Namespace, settings: ClientSettings) -> dict[str, Any]:
    models = bus_models(args.in_topic, args.out_topic)
    transport = KafkaTransport(settings.kafka_config("bench-probe"))
    publisher = Publisher(transport, source="bus://bench-probe")
    await transport.start()
    await transport.partitions_for(args.in_topic)  # metadata before the first timed send
    consumer = await _reader(settings, args.out_topic)
    total = int(args.rate * args.seconds)
    latencies_ms: dict[int, float] = {}
    sent_ns: list[int] = []
    acks: list[asyncio.Task[RecordMetadata]] = []
    commands = _commands()
    _say("ready")
    await commands.get()  # "go"

    async def produce() -> None:
        t0 = time.monotonic()
        for i in range(total):
            delay = t0 + i / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            stamp = time.time_ns()
            message = models.placed(**order_fields(i, stamp))
            sent_ns.append(stamp)
            acks.append(asyncio.create_task(publisher.publish(message)))

    producing = asyncio.create_task(produce())
    t_start = time.monotonic()
    deadline = t_start + args.seconds + args.drain_s
    try:
        while len(latencies_ms) < total and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=settings.poll_timeout_ms)
            now_ns = time.time_ns()
            for messages in batches.values():
                for m in messages:
                    out = orjson.loads(m.value)
                    latencies_ms.setdefault(out["seq"], (now_ns - out["sent_ns"]) / 1e6)
    finally:
        producing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producing
        await asyncio.gather(*acks, return_exceptions=True)
        await consumer.stop()
        await transport.stop()
    # An event never read counts with what it had waited by the end: a lower bound, so a
    # pipeline that falls behind cannot look better by dropping its slowest events.
    end_ns = time.time_ns()
    missing = [(end_ns - t) / 1e6 for i, t in enumerate(sent_ns) if i not in latencies_ms]
    values = sorted([*latencies_ms.values(), *missing])
    if args.dump:  # after the measurement: blocking is harmless here
        _dump(args.dump, sent_ns, latencies_ms)
    return {
        "sent": len(acks),
        "received": len(latencies_ms),
        "missing": len(missing),
        "p50_ms": _percentile(values, 50),
        "p90_ms": _percentile(values, 90),
        "p99_ms": _percentile(values, 99),
        "max_ms": values[-1] if values else math.nan,
        "mean_ms": sum(values) / len(values) if values else math.nan,
        "elapsed_s": time.monotonic() - t_start,
        "cpu_total_s": time.process_time(),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description="output reader of bench/pipeline.py")
    parser.add_argument("mode", choices=("count", "latency"))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--fetch-max-wait-ms", type=int, required=True)
    parser.add_argument("--linger-ms", type=int, default=5, help="latency: the producer's")
    parser.add_argument("--topic", help="count: the output topic")
    parser.add_argument("--expect", type=int, default=0, help="count: distinct outputs to read")
    parser.add_argument("--deadline-s", type=float, default=300.0, help="count: longest run")
    parser.add_argument("--idle-s", type=float, default=30.0, help="count: give up when stalled")
    parser.add_argument("--in-topic", help="latency: where to publish")
    parser.add_argument("--out-topic", help="latency: what to read")
    parser.add_argument("--rate", type=float, default=500.0, help="latency: events per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="latency: how long to send")
    parser.add_argument("--drain-s", type=float, default=10.0, help="latency: wait for stragglers")
    parser.add_argument("--dump", help="latency: write 'seq sent_ns latency_ms' lines here")
    args = parser.parse_args()
    settings = ClientSettings(
        args.bootstrap, fetch_max_wait_ms=args.fetch_max_wait_ms, linger_ms=args.linger_ms
    )
    if args.mode == "count":
        result = await count(args, settings)
    else:
        result = await latency(args, settings)
    _say(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
