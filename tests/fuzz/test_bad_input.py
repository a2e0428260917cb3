"""Bad input never kills a consumer: every record is handled or dead-lettered with a reason.

Two tests share the corpus of :mod:`tests.fuzz.corpus`:

- in process, on the memory transport, hypothesis picks kinds and seeds (and made-up
  records) and shrinks any failure to one record;
- on the real broker (Tansu), ``BUS_FUZZ_RECORDS`` garbage records (default 5,000 in CI)
  with one valid control per hundred are produced onto the topic of a ``bus run`` worker
  process; the counts must add up when read back, and the worker's memory (RSS) may grow
  by less than 50 MB over the run: from its RSS once the first outputs appear (started,
  joined, warmed up) to its RSS once every record is accounted for. The peak and the RSS
  by tenth of the run are reported: they rise and fall with what is in flight (huge
  records, fetch and send buffers) and show no upward trend. The full size (100,000
  garbage records, 1,000 controls)::

      BUS_FUZZ_RECORDS=100000 .venv/bin/python -m pytest tests/fuzz -q -s -k flood
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import Delivery, OutgoingRecord, Record, TestBus, TopicSpec, WorkerSettings
from bus.dead_letters import DROPPED_HEADER
from bus.devbroker import DevBroker
from bus.transports.kafka import KafkaTransport
from tests.conftest import kafka_test_config, unique
from tests.fuzz import fuzz_app
from tests.fuzz.corpus import Sample, arbitrary_records, corpus, samples
from tests.markers import read_to_markers
from tests.waiting import wait_until

REASONS = {"decode", "unknown_type", "invalid"}


@settings(
    max_examples=int(os.environ.get("BUS_FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(samples() | arbitrary_records(), min_size=1, max_size=8))
async def test_every_record_is_handled_or_dead_lettered_with_a_reason(
    batch: list[Sample],
) -> None:
    async with TestBus(fuzz_app.app, partitions=1, settings=WorkerSettings()) as bus:
        for s in batch:
            await bus.transport.publish(
                OutgoingRecord(fuzz_app.PINGS, s.key, s.value, s.headers, partition=0)
            )
        await bus.drain(timeout_s=10)
        worker = bus.runner.workers[0]
        assert worker.running, "the worker died"
        dead = bus.dead_letters(fuzz_app.PINGS)
        pongs = bus.records(fuzz_app.PONGS) if fuzz_app.PONGS in bus.broker.topics() else []
    assert len(dead) + len(pongs) == len(batch)
    handled = {int(orjson_loads(p.value)["offset"]) for p in pongs}
    dead_offsets = {int(d.header("bus_dlq_offset") or b"-1") for d in dead}
    assert handled | dead_offsets == set(range(len(batch)))
    for offset, s in enumerate(batch):
        if s.kind == "arbitrary":
            continue
        assert (offset in handled) == s.valid, f"{s.kind} record {s} was {'not ' * s.valid}handled"
    for d in dead:
        assert (d.header("bus_dlq_reason") or b"").decode() in REASONS


def orjson_loads(value: bytes | None) -> dict[str, object]:
    doc = orjson.loads(value or b"{}")
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize(
    ("key", "value", "headers", "dropped"),
    [
        (b"k", b"x" * 9_990, (), b"value=9990"),  # the reason headers push it over
        (b"k", b"{}", (("x-big", b"h" * 9_900),), b"value=2 key=1 headers=9905"),
    ],
)
async def test_a_record_too_large_to_dead_letter_whole_is_dead_lettered_without_it(
    key: bytes, value: bytes, headers: tuple[tuple[str, bytes], ...], dropped: bytes
) -> None:
    """Found by the fuzz test's huge records: the dead letter (record + reason headers) was
    over the size limit, the send raised, and the worker died on it at every restart."""
    async with TestBus(fuzz_app.app, partitions=1) as bus:
        bus.broker.max_record_bytes = 10_000
        await bus.transport.publish(OutgoingRecord(fuzz_app.PINGS, key, value, headers))
        ping = fuzz_app.Ping(key="k-1", n=1)
        await bus.publish(ping)
        await bus.drain(timeout_s=10)
        assert bus.runner.workers[0].running
        [dead] = bus.dead_letters(fuzz_app.PINGS)
        [pong] = bus.records(fuzz_app.PONGS)
    assert dead.header(DROPPED_HEADER) == dropped
    assert dead.value is None
    assert dead.header("bus_dlq_reason") == b"decode"
    assert dead.header("bus_dlq_offset") == b"0"
    assert orjson_loads(pong.value)["offset"] == 1


# -- the broker run ---------------------------------------------------------------------
FUZZ_RECORDS = int(os.environ.get("BUS_FUZZ_RECORDS", "5000"))
FUZZ_SEED = int(os.environ.get("BUS_FUZZ_SEED", "20261127"))
MAX_RSS_GROWTH_BYTES = 50 * 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


@dataclass
class Produced:
    """Where each record landed, and what it was."""

    kinds: dict[tuple[int, int], tuple[str, bool]] = field(default_factory=dict)
    invalid: int = 0
    controls: int = 0


async def produce(transport: KafkaTransport, topic: str, samples: Iterable[Sample]) -> Produced:
    out = Produced()
    window: list[tuple[Sample, Delivery]] = []

    async def settle() -> None:
        for s, delivery in window:
            meta = await delivery
            out.kinds[(meta.partition, meta.offset)] = (s.kind, s.valid)
        window.clear()

    for s in samples:
        record = OutgoingRecord(topic, s.key, s.value, s.headers)
        window.append((s, await transport.send(record)))
        if s.valid:
            out.controls += 1
        else:
            out.invalid += 1
        if len(window) >= 2000:
            await settle()
    await settle()
    return out


@pytest.mark.kafka
@pytest.mark.slow
async def test_a_worker_survives_a_flood_of_bad_records_on_kafka(
    kafka_broker: DevBroker, tmp_path: Path
) -> None:
    invalid, controls = FUZZ_RECORDS, max(10, FUZZ_RECORDS // 100)
    run = unique("fuzz")
    env = {
        **os.environ,
        "FUZZ_RUN": run,
        "BUS_TRANSPORT": "kafka",
        "BUS_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "BUS_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "BUS_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "BUS_KAFKA_FETCH_MAX_WAIT_MS": "20",
    }
    pings, pongs = f"it.fuzz.pings.{run}", f"it.fuzz.pongs.{run}"
    transport = KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))
    await transport.start()
    await transport.ensure_topics(
        [TopicSpec(t, partitions=3) for t in (pings, pings + ".dlq", pongs)]
    )
    log_path = tmp_path / "worker.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        worker = subprocess.Popen(  # noqa: ASYNC220 (returns at once; the worker runs apart)
            [sys.executable, "-m", "bus", "run", "tests.fuzz.fuzz_app"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    rss_at_start = 0
    rss_at_end = 0
    peak = [0]
    baseline: list[int] = []

    seen = [0]  # records read back so far
    timeline: dict[int, float] = {}  # tenth of the run -> RSS in MB when it was reached

    async def sample_rss() -> None:
        total = invalid + controls
        while worker.poll() is None:
            rss = rss_bytes(worker.pid)
            peak[0] = max(peak[0], rss)
            timeline.setdefault(10 * seen[0] // total, round(rss / 2**20, 1))
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample_rss())
    try:

        def consuming() -> bool:
            assert worker.poll() is None, log_path.read_text()
            return b"consuming" in log_path.read_bytes()

        await wait_until(consuming, timeout_s=60, what="the worker to consume", interval_s=0.1)
        rss_at_start = rss_bytes(worker.pid)
        producing = asyncio.create_task(
            produce(transport, pings, corpus(FUZZ_SEED, invalid, controls))
        )
        dead, handled = await read_back(
            transport,
            pings + ".dlq",
            pongs,
            expected=invalid + controls,
            timeout_s=120 + (invalid + controls) / 200,
            worker=worker,
            producing=producing,
            seen=seen,
            on_first=lambda: baseline.append(rss_bytes(worker.pid)),
        )
        produced = await producing
        assert worker.poll() is None, "the worker died:\n" + log_path.read_text()[-3000:]
        rss_at_end = rss_bytes(worker.pid)
        peak[0] = max(peak[0], rss_at_end)
        sampler.cancel()
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
        # stopped (gracefully if code is 0): what it sent is acknowledged, so reading both
        # topics to end markers shows every copy, a late duplicate included
        dead = await read_to_markers(transport, pings + ".dlq", timeout_s=60)
        handled = [
            orjson_loads(r.value) for r in await read_to_markers(transport, pongs, timeout_s=60)
        ]
    finally:
        sampler.cancel()
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        await transport.stop()
    elapsed = time.monotonic() - started
    text = log_path.read_text(errors="replace")
    assert code == 0, text[-3000:]
    assert "Traceback" not in text

    # the counts add up: handled + dead-lettered = produced, each record exactly once
    assert (produced.invalid, produced.controls) == (invalid, controls)
    assert len(produced.kinds) == invalid + controls
    dead_at = [
        (int(d.header("bus_dlq_partition") or -1), int(d.header("bus_dlq_offset") or -1))
        for d in dead
    ]
    handled_at = [(int(p["partition"]), int(p["offset"])) for p in handled]
    assert len(set(dead_at)) == len(dead_at), "a record was dead-lettered twice"
    assert len(set(handled_at)) == len(handled_at), "a record was handled twice"
    assert set(dead_at) | set(handled_at) == set(produced.kinds)
    assert len(dead_at) + len(handled_at) == invalid + controls
    for at in handled_at:
        kind, valid = produced.kinds[at]
        assert valid, f"a {kind} record was handled"
    reasons: Counter[tuple[str, str]] = Counter()
    for d, at in zip(dead, dead_at, strict=True):
        kind, valid = produced.kinds[at]
        assert not valid, f"a control was dead-lettered: {d.headers}"
        reason = (d.header("bus_dlq_reason") or b"").decode()
        assert reason in REASONS
        assert d.header("bus_dlq_error_message")
        reasons[(kind, reason)] += 1
    start = baseline[0] if baseline else rss_at_start
    growth = rss_at_end - start
    report = {
        "records": invalid + controls,
        "invalid": invalid,
        "controls": controls,
        "dead_lettered": len(dead_at),
        "handled": len(handled_at),
        "seconds": round(elapsed, 1),
        "rss_start_mb": round(rss_at_start / 2**20, 1),
        "rss_baseline_mb": round(start / 2**20, 1),
        "rss_peak_mb": round(peak[0] / 2**20, 1),
        "rss_end_mb": round(rss_at_end / 2**20, 1),
        "rss_growth_mb": round(growth / 2**20, 1),
        "rss_peak_growth_mb": round((peak[0] - start) / 2**20, 1),
        "rss_mb_by_tenth_done": timeline,
        "by_kind_and_reason": {f"{k}/{r}": n for (k, r), n in sorted(reasons.items())},
    }
    print(
        "\nfuzz run:",
        orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode(),
    )
    assert growth < MAX_RSS_GROWTH_BYTES, report


async def read_back(
    transport: KafkaTransport,
    dlq: str,
    pongs: str,
    *,
    expected: int,
    timeout_s: float,
    worker: subprocess.Popen[bytes],
    producing: asyncio.Task[Produced],
    seen: list[int],
    on_first: Callable[[], None],
) -> tuple[list[Record], list[dict[str, object]]]:
    """Dead letters and handled pongs, until they add up to ``expected`` (duplicates are
    counted after the worker stopped, by :func:`tests.markers.read_to_markers`)."""
    consumer = transport.consumer([dlq, pongs], group=None)
    await consumer.start()
    dead: list[Record] = []
    handled: list[dict[str, object]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and worker.poll() is None:
            if producing.done() and producing.exception() is not None:
                await producing  # raises: the corpus could not be produced
            for tp, records in (await consumer.fetch(max_records=5000, timeout_s=0.2)).items():
                if not dead and not handled and records:
                    on_first()
                if tp.topic == dlq:
                    dead.extend(records)
                else:
                    handled.extend(orjson_loads(r.value) for r in records)
            seen[0] = len(dead) + len(handled)
            if len(dead) + len(handled) >= expected:
                break
    finally:
        await consumer.stop()
    assert len(dead) + len(handled) >= expected, (
        f"only {len(dead)} dead-lettered + {len(handled)} handled of {expected} within "
        f"{timeout_s:.0f}s"
    )
    return dead, handled
