"""Header fuzzing on the real broker: names and values as arbitrary bytes never stop a
consumer (issue 16).

Every record carries a valid Ping (so only its headers decide its fate) and headers drawn
from: names that are not UTF-8, names and values of random bytes, empty names, null
values, repeated ``ce_*`` attributes and plain duplicates, and now and then thousands of
headers. A tenth are clean controls, which must be handled. Written raw
(:mod:`tests.fuzz.raw_batches`: no Kafka client writes a non-UTF-8 name) onto 3
partitions of a ``bus run`` worker's topic; the worker must stay alive and exit 0, and
handled + dead-lettered must equal produced, each record exactly once. ``BUS_FUZZ_RECORDS``
sets the size (CI: 2,000); the full run is 100,000::

    BUS_FUZZ_RECORDS=100000 .venv/bin/python -m pytest tests/fuzz -q -s -k header
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from bus import TopicSpec
from bus.devbroker import DevBroker
from bus.transports.kafka import KafkaTransport
from tests.conftest import kafka_test_config, unique
from tests.fuzz.raw_batches import RawRecord, produce_raw
from tests.markers import read_to_markers
from tests.waiting import wait_until

RECORDS = int(os.environ.get("BUS_FUZZ_HEADER_RECORDS", os.environ.get("BUS_FUZZ_RECORDS", "2000")))
SEED = int(os.environ.get("BUS_FUZZ_SEED", "20261127"))
PARTITIONS = 3
BATCH = 250
ROOT = Path(__file__).resolve().parents[2]
ATTRIBUTES = [b"ce_specversion", b"ce_id", b"ce_source", b"ce_type", b"ce_time", b"content-type"]


def ping(n: int) -> tuple[bytes, bytes, list[tuple[bytes, bytes | None]]]:
    headers: list[tuple[bytes, bytes | None]] = [
        (b"ce_specversion", b"1.0"),
        (b"ce_id", f"id-{n}".encode()),
        (b"ce_source", b"/fuzz"),
        (b"ce_type", b"it.fuzz.ping.v1"),
        (b"content-type", b"application/json"),
    ]
    return f"k-{n}".encode(), orjson.dumps({"key": f"k-{n}", "n": n}), headers


def fuzzed(rng: random.Random, n: int) -> tuple[RawRecord, bool]:
    """A Ping with fuzzed headers, and whether it is a clean control."""
    key, value, headers = ping(n)
    if rng.random() < 0.1:
        return RawRecord(key, value, headers), True
    for _ in range(rng.choice((1, 1, 2, 3, 8))):
        kind = rng.randrange(7)
        if kind == 0:  # a name that is not UTF-8
            name = rng.choice((b"\xff", b"ce_\xc3", b"x\x80y", b"\xed\xa0\x80")) + rng.randbytes(2)
            headers.append((name, rng.randbytes(rng.randrange(8))))
        elif kind == 1:  # random bytes for name and value
            headers.append((rng.randbytes(rng.randrange(1, 12)), rng.randbytes(rng.randrange(32))))
        elif kind == 2:  # an empty name, maybe a null value
            headers.append((b"", rng.choice((None, b"", b"v"))))
        elif kind == 3:  # a CloudEvents attribute again (ambiguous)
            headers.append((rng.choice(ATTRIBUTES), rng.randbytes(4)))
        elif kind == 4:  # a plain duplicate
            headers.append(headers[rng.randrange(len(headers))])
        elif kind == 5:  # a value that is not UTF-8 on an attribute
            headers[rng.randrange(len(headers))] = (b"ce_source", b"\xff\xfe")
        elif rng.random() < 0.05:  # thousands of headers
            headers += [(f"x-{i}".encode(), b"v") for i in range(rng.choice((1000, 5000)))]
    rng.shuffle(headers)
    return RawRecord(key, value, headers), False


async def outputs_so_far(
    transport: KafkaTransport, topics: list[str], expected: int, timeout_s: float,
    worker: subprocess.Popen[bytes],
) -> int:  # fmt: skip
    """Wait until ``topics`` hold ``expected`` records in all (the worker must stay up)."""
    consumer = transport.consumer(topics, group=None)
    await consumer.start()
    seen = [0]

    async def count() -> int:
        assert worker.poll() is None, "the worker died"
        for records in (await consumer.fetch(max_records=5000, timeout_s=0.2)).values():
            seen[0] += len(records)
        return seen[0]

    try:
        return await wait_until(
            count, until=lambda n: n >= expected, timeout_s=timeout_s,
            what=f"{expected} outputs and dead letters", interval_s=0,
        )  # fmt: skip
    finally:
        await consumer.stop()


@pytest.mark.kafka
@pytest.mark.slow
async def test_a_worker_survives_fuzzed_header_names_and_values_on_kafka(
    kafka_broker: DevBroker, tmp_path: Path
) -> None:
    run = unique("hfuzz")
    pings, pongs = f"it.fuzz.pings.{run}", f"it.fuzz.pongs.{run}"
    transport = KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))
    await transport.start()
    await transport.ensure_topics(
        [TopicSpec(t, partitions=PARTITIONS) for t in (pings, pings + ".dlq", pongs)]
    )
    rng = random.Random(SEED)
    controls: set[tuple[int, int]] = set()
    by_partition: list[list[RawRecord]] = [[] for _ in range(PARTITIONS)]
    for n in range(RECORDS):
        record, clean = fuzzed(rng, n)
        p = n % PARTITIONS
        if clean:
            controls.add((p, len(by_partition[p])))
        by_partition[p].append(record)
    env = {
        **os.environ,
        "FUZZ_RUN": run,
        "BUS_TRANSPORT": "kafka",
        "BUS_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "BUS_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "BUS_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "BUS_KAFKA_FETCH_MAX_WAIT_MS": "20",
    }
    log_path = tmp_path / "worker.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        worker = subprocess.Popen(  # noqa: ASYNC220 (returns at once; the worker runs apart)
            [sys.executable, "-m", "bus", "run", "tests.fuzz.fuzz_app"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        for p, records in enumerate(by_partition):  # offsets 0.. in order, per partition
            batches = [records[i : i + BATCH] for i in range(0, len(records), BATCH)]
            await produce_raw(kafka_broker.bootstrap_servers, pings, p, batches)
        await outputs_so_far(
            transport, [pings + ".dlq", pongs], RECORDS, 120 + RECORDS / 100, worker
        )
        assert worker.poll() is None, "the worker died:\n" + log_path.read_text()[-3000:]
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
    try:  # stopped gracefully: a late duplicate is on the topics by now, before the markers
        got = {
            t: await read_to_markers(transport, t, timeout_s=120) for t in (pings + ".dlq", pongs)
        }
    finally:
        await transport.stop()
    text = log_path.read_text(errors="replace")
    assert code == 0, text[-3000:]
    assert "Traceback" not in text
    dead_at = [
        (int(d.header("bus_dlq_partition") or -1), int(d.header("bus_dlq_offset") or -1))
        for d in got[pings + ".dlq"]
    ]
    handled_at = [
        (int(v["partition"]), int(v["offset"]))
        for v in (orjson.loads(r.value or b"{}") for r in got[pongs])
    ]
    produced = {(p, o) for p, records in enumerate(by_partition) for o in range(len(records))}
    assert len(set(dead_at)) == len(dead_at), "a record was dead-lettered twice"
    assert len(set(handled_at)) == len(handled_at), "a record was handled twice"
    assert set(dead_at) | set(handled_at) == produced
    assert len(dead_at) + len(handled_at) == RECORDS
    assert controls <= set(handled_at)
    reasons = {(d.header("bus_dlq_reason") or b"").decode() for d in got[pings + ".dlq"]}
    assert reasons <= {"decode"}, reasons
    print(
        f"\nheader fuzz: {RECORDS} records, {len(handled_at)} handled, {len(dead_at)} "
        f"dead-lettered, {len(controls)} controls, {time.monotonic() - started:.1f}s"
    )
