"""Poison and transient failures on the real broker, then the fix and ``bus dlq replay``.

Issue 6(c): 1,000 jobs, 50 always raise (poison), 50 raise twice then succeed
(transient), under 3 immediate tries + 3 delayed tiers (1 s, 2 s, 3 s via retry
topics). The app runs as a ``bus run`` subprocess (tests/crash/poison_app.py). Expected:
exactly 50 dead letters, each with every ``bus_dlq_*`` header and the original record
(key, value, ``ce_`` headers) intact; 950 jobs handled once; a poison job holds its
partition only for its immediate tries, never for the delayed tiers. Then the fix is
deployed (the process restarted with ``POISON_FIXED=1``) and ``bus dlq replay`` gives
exactly 50 more effects.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import pytest

from bus import OutgoingRecord, Publisher, Record, TopicPartition, record_for
from bus.devbroker import DevBroker
from bus.partitioning import partition_for_key
from bus.topics import desired_topics
from bus.transports.kafka import KafkaTransport
from tests.conftest import kafka_test_config, unique
from tests.markers import read_to_markers
from tests.waiting import wait_until

# the app module takes its topic names from the environment when imported (as the
# subprocess does): choose them before importing it
os.environ.setdefault("POISON_RUN", unique("poison"))
from tests.crash import poison_app
from tests.crash.poison_app import POLICY, Job, Kind

pytestmark = pytest.mark.kafka
log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
JOBS = Job.bus_topic
DLQ = JOBS + ".dlq"
EVENTS = 1000
POISON = frozenset(n for n in range(EVENTS) if n % 20 == 7)
TRANSIENT = frozenset(n for n in range(EVENTS) if n % 20 == 13)
#: Jobs are published this far apart (~4 s for all): a steady stream, not one batch.
SPACING_S = 0.004
#: Longest a job may wait after it was sent and the previous job of its partition had its
#: tries there (a few fetches on a loaded machine): far below the first delayed tier.
NEXT_RECORD_WITHIN_S = 0.5
#: The immediate tries of a failing job span at most the backoff before tries 2 and 3
#: (0.05 s and 0.1 s, each + up to 0.05 s jitter), plus slack for a loaded machine.
IMMEDIATE_BUDGET_S = POLICY.delay_s(1, 1.0) + POLICY.delay_s(2, 1.0) + 0.5
REASON_HEADERS = (
    "reason",
    "error_type",
    "error_message",
    "app",
    "handler",
    "attempts",
    "topic",
    "partition",
    "offset",
    "time",
)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def kind(n: int) -> Kind:
    return "poison" if n in POISON else "transient" if n in TRANSIENT else "ok"


def lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def spawn(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bus", "run", "tests.crash.poison_app", "--transport", "kafka"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


def bus_dlq(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bus", "dlq", *args, "--topic", JOBS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


async def publish_a_marker_per_partition(
    transport: KafkaTransport, publisher: Publisher
) -> set[int]:
    """One ``ok`` job on each partition of the jobs topic; their ``n`` (from ``EVENTS``).

    Once every marker is handled, each partition was consumed past whatever was on it
    before: what a test waits for instead of sleeping when it asserts nothing more came.
    """
    partitions = await transport.partitions_for(JOBS)
    keys: dict[int, str] = {}
    for i in itertools.count():
        keys.setdefault(partition_for_key(f"marker-{i}".encode(), partitions), f"marker-{i}")
        if len(keys) == partitions:
            break
    markers = {EVENTS + p: key for p, key in keys.items()}
    for n, key in markers.items():
        await publisher.publish(Job(key=key, n=n, kind="ok"))
    return set(markers)


async def read_topic(
    transport: KafkaTransport, topic: str, *, expected: int, timeout_s: float
) -> list[Record]:
    """The records of ``topic`` from the start, until at least ``expected`` arrived."""
    consumer = transport.consumer([topic], group=None)
    await consumer.start()
    got: list[Record] = []

    async def read() -> int:
        for records in (await consumer.fetch(max_records=1000, timeout_s=0.2)).values():
            got.extend(records)
        return len(got)

    try:
        await wait_until(
            read,
            until=lambda n: n >= expected,
            timeout_s=timeout_s,
            what=f"{expected} records on {topic}",
            interval_s=0,
        )
    finally:
        await consumer.stop()
    return got


async def publish_steadily(
    transport: KafkaTransport, publisher: Publisher
) -> tuple[dict[int, float], dict[int, OutgoingRecord], dict[int, TopicPartition], dict[int, int]]:
    """Send the jobs ``SPACING_S`` apart: (sent time, record, partition, offset) per job."""
    sent_at: dict[int, float] = {}
    records: dict[int, OutgoingRecord] = {}
    deliveries = {}
    start = time.monotonic()
    for n in range(EVENTS):
        wait = start + n * SPACING_S - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        job = Job(key=f"k{n % 40}", n=n, kind=kind(n))
        records[n] = record_for(job, publisher.envelope(job))
        deliveries[n] = await transport.send(records[n])
        sent_at[n] = time.time()
    metas = {n: await d for n, d in deliveries.items()}
    return (
        sent_at,
        records,
        {n: TopicPartition(m.topic, m.partition) for n, m in metas.items()},
        {n: m.offset for n, m in metas.items()},
    )


@pytest.mark.slow
async def test_poison_jobs_are_dead_lettered_transient_ones_handled_and_replay_after_the_fix(
    kafka_broker: DevBroker, tmp_path: Path
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    tries_file, effects_file = tmp_path / "tries.txt", tmp_path / "effects.txt"
    env = {
        "POISON_RUN": poison_app.RUN,
        "POISON_TRIES": str(tries_file),
        "POISON_EFFECTS": str(effects_file),
        "BUS_TRANSPORT": "kafka",
        "BUS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "BUS_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "BUS_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "BUS_KAFKA_REQUEST_TIMEOUT_MS": "15000",
        "BUS_KAFKA_FETCH_MAX_WAIT_MS": "20",
    }
    transport = KafkaTransport(kafka_test_config(bootstrap))
    await transport.start()
    await transport.ensure_topics(
        desired_topics([poison_app.app], partitions=4, replication_factor=1)
    )
    publisher = Publisher(transport, source="bus://warehouse")
    first = spawn(env, tmp_path / "first.log")
    fixed: subprocess.Popen[bytes] | None = None
    try:
        # a warm-up job: once it is handled the member has joined, so latency is handling
        await publisher.publish(Job(key="warm-up", n=-1, kind="ok"))
        await wait_until(
            lambda: len(lines(effects_file)),
            until=lambda n: n == 1,
            timeout_s=60,
            what="the warm-up job",
        )

        sent_at, records, partition_of, offset_of = await publish_steadily(transport, publisher)
        dead = await read_topic(transport, DLQ, expected=len(POISON), timeout_s=90)
        await wait_until(
            lambda: len(lines(effects_file)),
            until=lambda n: n >= 1 + EVENTS - len(POISON),
            timeout_s=30,
            what="950 effects",
        )
        # -- 950 handled, once each; each try where and when the policy says -----------------
        effects = Counter(int(n) for n, _, _ in lines(effects_file)[1:])
        assert effects == Counter(set(range(EVENTS)) - POISON)
        tries: dict[int, list[tuple[str, int, int, float]]] = defaultdict(list)
        for job, _, topic, partition, offset, at in lines(tries_file):
            tries[int(job)].append((topic, int(partition), int(offset), float(at)))
        retry_topics = [f"{poison_app.app.group}.retry.{t}s" for t in (1, 2, 3)]
        for n in range(EVENTS):
            topics = [t[0] for t in tries[n]]
            expected_topics = {
                "poison": [JOBS] * POLICY.max_attempts + retry_topics,
                "transient": [JOBS] * 3,
                "ok": [JOBS],
            }[kind(n)]
            assert topics == expected_topics, f"job {n} ({kind(n)}): tried on {topics}"
        for n in POISON:
            times = [t[3] for t in tries[n]]
            for tier, delay in enumerate(POLICY.tiers_s):
                waited = times[POLICY.max_attempts + tier] - times[POLICY.max_attempts + tier - 1]
                assert waited >= delay - 0.05, f"job {n} tier {delay}s came after {waited:.2f}s"

        # -- exactly 50 dead letters: every reason header, the original record intact --------
        assert len(dead) == len(POISON)
        by_id = {r.header("ce_id"): r for r in dead}
        assert len(by_id) == len(POISON)
        for n in POISON:
            original = records[n]
            letter = by_id[dict(original.headers)["ce_id"]]
            headers = dict(letter.headers)
            reasons = {
                k[len("bus_dlq_") :]: v.decode()
                for k, v in letter.headers
                if k.startswith("bus_dlq_")
            }
            assert sorted(reasons) == sorted(REASON_HEADERS)
            assert reasons["reason"] == "handler_failed"
            assert reasons["error_type"] == "tests.crash.poison_app.WarehouseClosedError"
            assert reasons["error_message"] == f"job {n}: warehouse closed"
            assert reasons["app"] == poison_app.app.name
            assert reasons["handler"] == "handle_job"
            assert reasons["attempts"] == str(POLICY.total_attempts) == "6"
            assert reasons["topic"] == JOBS
            assert int(reasons["partition"]) == partition_of[n].partition
            assert int(reasons["offset"]) == offset_of[n]
            dead_at = datetime.fromisoformat(reasons["time"]).timestamp()
            assert dead_at >= tries[n][-1][3] - 0.01
            assert dead_at - sent_at[n] >= sum(POLICY.tiers_s)
            assert (letter.key, letter.value) == (original.key, original.value)
            assert [h for h in letter.headers if not h[0].startswith("bus_")] == list(
                original.headers
            )
            assert any(k.startswith("ce_") for k in headers)
            assert not any(k.startswith("bus_retry_") for k in headers)

        # -- a partition waits for a failing job's immediate tries, never for its tiers -------
        # Chained over every partition: each job's first try starts as soon as it was sent
        # or the previous job of its partition finished its tries in the partition (its
        # immediate ones), whichever is later. A partition that waited for a delayed tier
        # would show a gap of a second or more.
        own_tries = {n: [t[3] for t in tries[n] if t[0] == JOBS] for n in range(EVENTS)}
        by_partition: dict[TopicPartition, list[int]] = defaultdict(list)
        for n in sorted(range(EVENTS), key=lambda n: offset_of[n]):
            by_partition[partition_of[n]].append(n)
        gaps = [
            own_tries[n][0] - max(sent_at[n], own_tries[previous][-1])
            for jobs in by_partition.values()
            for previous, n in itertools.pairwise(jobs)
        ]
        for n in POISON:
            jobs = by_partition[partition_of[n]]
            following = jobs[jobs.index(n) + 1] if n != jobs[-1] else None
            if following is not None:
                first_delayed = tries[n][POLICY.max_attempts][3]
                assert own_tries[following][0] < first_delayed, f"job {n}: waited for a tier"
        failing = sorted(own_tries[n][-1] - own_tries[n][0] for n in POISON | TRANSIENT)
        latencies = sorted(
            float(at) - sent_at[int(n)]
            for n, at, _ in lines(effects_file)[1:]
            if kind(int(n)) == "ok"
        )
        log.warning(
            "partition gaps: median %.1f ms, p99 %.1f ms, max %.1f ms (%d); immediate tries "
            "of a failing job span median %.0f ms, max %.0f ms; ok jobs sent-to-handled: "
            "median %.0f ms, p99 %.0f ms, max %.0f ms",
            statistics.median(gaps) * 1000,
            percentile(gaps, 0.99) * 1000,
            max(gaps) * 1000,
            len(gaps),
            statistics.median(failing) * 1000,
            failing[-1] * 1000,
            statistics.median(latencies) * 1000,
            percentile(latencies, 0.99) * 1000,
            latencies[-1] * 1000,
        )
        assert max(gaps) < NEXT_RECORD_WITHIN_S
        assert failing[-1] < IMMEDIATE_BUDGET_S

        # -- the fix: restart with poison jobs succeeding, replay the dead letters ------------
        assert stop(first) == 0
        fixed = spawn({**env, "POISON_FIXED": "1"}, tmp_path / "fixed.log")
        before = len(lines(effects_file))
        replayed = await asyncio.to_thread(bus_dlq, "replay", "--all", env=env)
        assert replayed.returncode == 0, replayed.stderr
        assert "replayed 50 dead letter(s); refused 0" in replayed.stdout
        await wait_until(
            lambda: len(lines(effects_file)),
            until=lambda n: n >= before + len(POISON),
            timeout_s=60,
            what="replays",
        )
        # a marker on every partition, after the replays: once each is handled, anything
        # more the replays caused would have been handled before it
        markers = await publish_a_marker_per_partition(transport, publisher)
        await wait_until(
            lambda: markers - {int(n) for n, _, _ in lines(effects_file)},
            until=lambda missing: not missing,
            timeout_s=60,
            what="a marker handled on every partition (missing shown)",
        )
        after = [line for line in lines(effects_file)[before:] if int(line[0]) not in markers]
        assert Counter(int(n) for n, _, _ in after) == Counter(POISON)
        assert {int(pid) for _, _, pid in after} == {fixed.pid}
        assert stop(fixed) == 0
        # both processes stopped gracefully (what they sent is acknowledged): read to the
        # end, no more dead letters than the 50, neither from the first run nor the fix
        every_letter = await read_to_markers(transport, DLQ, timeout_s=30)
        assert sorted(r.header("ce_id") for r in every_letter) == sorted(by_id)
    finally:
        for process in (first, fixed):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        await transport.stop()
