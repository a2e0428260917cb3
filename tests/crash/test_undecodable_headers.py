"""A record whose header name is not UTF-8 never stops a consumer (issue 16, item 1).

aiokafka decodes header names while it iterates a fetched batch and raised
``UnicodeDecodeError`` out of the worker's fetch loop: the app logged "stopped", its
partitions were never consumed again, a restart died the same way within 2 s, and the
process stayed up with ``/healthz`` 200. Now the record is read raw, dead-lettered as
``decode`` with its key and value untouched and its header names' bytes kept, and the
records around it (in the same batch too) are handled.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from bus import Record, TopicSpec, record_for
from bus.dead_letters import RAW_NAMES_HEADER
from bus.devbroker import DevBroker
from bus.encoding import encode
from bus.publisher import Publisher
from bus.transports.kafka import KafkaTransport
from bus.transports.memory import MemoryTransport
from tests.conftest import kafka_test_config, unique
from tests.fuzz.raw_batches import RawRecord, produce_raw
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]


def ping_record(topic: str, n: int, run: str) -> RawRecord:
    """A valid Ping of tests.fuzz.fuzz_app as raw bytes (CloudEvents binary mode)."""
    os.environ["FUZZ_RUN"] = run
    from tests.fuzz import fuzz_app

    publisher = Publisher(MemoryTransport(), source="/test")
    ping = fuzz_app.Ping(key=f"k-{n}", n=n)
    env = publisher.envelope(ping)
    headers, value = encode(env)
    return RawRecord(record_for(ping, env).key, value, tuple((k.encode(), v) for k, v in headers))


async def read_all(
    transport: KafkaTransport, topic: str, count: int, timeout_s: float
) -> list[Record]:
    """The first ``count`` records of ``topic`` (read from the start, no group)."""
    consumer = transport.consumer([topic], group=None)
    await consumer.start()
    out: list[Record] = []

    async def read() -> int:
        for records in (await consumer.fetch(max_records=500, timeout_s=0.2)).values():
            out.extend(records)
        return len(out)

    try:
        await wait_until(
            read, until=lambda n: n >= count, timeout_s=timeout_s,
            what=f"{count} records on {topic}", interval_s=0,
        )  # fmt: skip
    finally:
        await consumer.stop()
    return out


async def get(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status


async def test_a_header_name_that_is_not_utf8_is_dead_lettered_and_the_worker_goes_on(
    kafka_broker: DevBroker, tmp_path: Path
) -> None:
    run = unique("undecodable")
    pings, pongs = f"it.fuzz.pings.{run}", f"it.fuzz.pongs.{run}"
    transport = KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))
    await transport.start()
    await transport.ensure_topics(
        [TopicSpec(t, partitions=1) for t in (pings, pings + ".dlq", pongs)]
    )
    bad = RawRecord(b"bad-key", b'{"raw": "value"}', ((b"ce_\xff\xfe", b"x"), (b"ok", b"1")))
    # the bad record sits in the middle of a batch: the pings around it must be handled
    await produce_raw(
        kafka_broker.bootstrap_servers,
        pings,
        0,
        [
            [ping_record(pings, 0, run)],
            [ping_record(pings, 1, run), bad, ping_record(pings, 3, run)],
            [ping_record(pings, 4, run)],
        ],
    )
    env = {
        **os.environ,
        "FUZZ_RUN": run,
        "BUS_TRANSPORT": "kafka",
        "BUS_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "BUS_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "BUS_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "BUS_KAFKA_FETCH_MAX_WAIT_MS": "20",
        "BUS_HTTP_PORT": "0",
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(  # noqa: ASYNC220 (returns at once; the worker runs apart)
            [sys.executable, "-m", "bus", "run", "tests.fuzz.fuzz_app"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        handled = await read_all(transport, pongs, 4, timeout_s=60)
        [dead] = await read_all(transport, pings + ".dlq", 1, timeout_s=10)
        assert worker.poll() is None, log_path.read_text()[-3000:]
        url = re.search(r"serving /metrics /healthz /readyz on (\S+)", log_path.read_text())
        assert url is not None, log_path.read_text()[-3000:]
        assert await get(url.group(1) + "/healthz") == 200
        # still consuming after it: a record produced now is handled too
        await produce_raw(kafka_broker.bootstrap_servers, pings, 0, [[ping_record(pings, 5, run)]])
        handled = await read_all(transport, pongs, 5, timeout_s=30)
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
        await transport.stop()
    text = log_path.read_text(errors="replace")
    assert code == 0, text[-3000:]
    assert "Traceback" not in text
    assert sorted(orjson.loads(p.value or b"")["offset"] for p in handled) == [0, 1, 3, 4, 5]
    assert dead.header("bus_dlq_reason") == b"decode"
    assert dead.header("bus_dlq_offset") == b"2"
    assert (dead.key, dead.value) == (bad.key, bad.value)
    assert dead.header(RAW_NAMES_HEADER) == b"0:" + b"ce_\xff\xfe".hex().encode()
    assert dead.headers[0] == ("ce_\\xff\\xfe", b"x")
    assert dead.header("ok") == b"1"
