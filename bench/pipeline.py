"""Benchmark: one consume -> parse -> validate -> produce -> commit pipeline on a real broker,
written three ways: raw aiokafka, a bus handler, and a FastStream subscriber.

Run::

    python bench/pipeline.py                      # full run (~7 minutes on 2 cores)
    python bench/pipeline.py --events 5000 --repeats 1 --latency-seconds 5   # quick look
    python bench/pipeline.py --only bus --no-latency --repeats 1 --py-spy /tmp/spy

It starts a Tansu broker (:class:`bus.devbroker.DevBroker`, memory storage) and measures,
interleaved, alternating the order each round (raw, bus, bus_nometrics, faststream, then
faststream, bus_nometrics, bus, raw, ...):

throughput
    ``--events`` ~1.1 KB nested JSON orders are preloaded (untimed) onto a fresh 6-partition
    input topic by :class:`bus.Publisher` (real binary-mode CloudEvents: ``ce_*`` headers,
    the value is the JSON payload, so all three parse the same value bytes). The pipeline
    then reads each order, validates it into a pydantic model, computes the total, and
    produces an OrderPriced event (keyed by order id) to a fresh output topic, committing
    input offsets only after the outputs were acknowledged. A separate probe process
    (``bench/pipeline_probe.py``) reads the output topic and counts distinct outputs;
    ``ev_per_s = outputs read / (last output read - partitions assigned)``. The group join
    (Tansu holds it ~2 s) is reported separately as ``join``. A run still going after
    ``--max-seconds`` (FastStream's, at a few hundred events per second) is cut there: its
    rate is the outputs read by then over the time, a steady-state rate all the same.
latency
    The probe publishes orders with bus's Publisher at ``--rate`` per second for
    ``--latency-seconds``, each stamped with ``time.time_ns()`` in its payload, and reads
    the output topic: end-to-end latency = read time - stamp (p50/p99 over every event of
    a run; the median over ``--latency-repeats`` interleaved runs is reported). Four runs,
    not two: a run's p99 is its 100 slowest events, set by host and broker stalls, and
    the same code's p99 spread over 42-78 ms in four runs (raw's over 47-80).

The three pipelines:

raw
    One AIOKafkaConsumer/AIOKafkaProducer: ``getmany`` batches, ``orjson.loads`` +
    ``model_validate``, ``send`` without awaiting each (futures collected), and the batch's
    commit chained after its acks in a background task, so the next batch is processed
    while the previous one is acknowledged and committed (commits stay in order). It sends
    the output value and key only, no headers, while the bus must send the CloudEvents
    binding's headers (8 ``ce_*``/``content-type`` headers, ~250 B per record: about 2 us
    more per record in aiokafka's record builder alone, and more bytes for the broker and
    the probe). Its partition comes from aiokafka's default partitioner (murmur2 in Python
    per record); the bus computes the same partition from its cached murmur2. Both
    differences are part of what the ratio measures.
bus
    An :class:`bus.App` with one handler returning the output event, run by
    :class:`bus.Worker` on :class:`bus.transports.kafka.KafkaTransport`.
bus_nometrics
    The same with ``WorkerSettings(metrics=False)``: ``metrics_cost_pct`` = 1 - bus /
    bus_nometrics, what the Prometheus metrics cost (target under 5%).
faststream
    ``KafkaBroker`` with a ``@broker.subscriber`` / ``@broker.publisher`` pair and a
    pydantic-typed argument, started in-process. Settings: ``max_workers=6`` (= partitions)
    with ``ack_policy=AckPolicy.NACK_ON_ERROR`` -- FastStream's documented at-least-once
    concurrent mode ("concurrent between topic partitions and sequential within a
    partition ... maximum concurrency is achieved when the number of workers equals the
    number of partitions"), and ``logger=None`` (its documented switch for the default
    per-message access log). FastStream is not a dependency of this project: install it
    for the benchmark only, ``pip install 'faststream[kafka]'``.

All three get the same client settings (``ClientSettings``): fetch_max_wait_ms (10 ms),
500 records per poll, a 100 ms poll timeout, linger_ms=5, 256 KiB batches, acks=all,
1 MiB partition fetches, session_timeout_ms=3000, heartbeat_interval_ms=1000,
request_timeout_ms=15000. Every run gets fresh topics (created with 6 partitions) and a
fresh consumer group; an untimed warm-up run of each pipeline comes first.

Known Tansu behaviour the benchmark works around: end_offsets()/seek_to_end() are wrong
(outputs are counted by reading them); a waiting fetch is not woken by new data (hence a
low fetch_max_wait_ms); auto-created topics get 4 partitions (topics are created with 6).

Everything measured runs in this process on one asyncio loop (one core); the broker and
the probe run in their own processes. The CPU each of them used in the timed window is
reported, and so is the CPU of everything else on the machine: before each run the
benchmark waits (bounded) until other processes leave the CPU alone, since another
benchmark or test run on a 2-core machine skews every figure. An event the latency probe
never read counts with the time it had waited (a lower bound), so a pipeline that cannot
keep up does not look better by losing its slowest events.

Output: progress on stderr; on stdout a header, a table (measurement, median, min, max,
unit) and, as the last line, one JSON object with every figure, the targets (bus/raw >=
0.8, bus/faststream >= 5, bus p99 <= raw p99 + 5 ms) and whether they were met.
``--py-spy PREFIX`` adds one profiled run of each pipeline (py-spy attached to this process
for that run only; ``bench/pipeline_spy.py`` summarises the collapsed stacks).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import gc
import itertools
import json
import logging
import math
import os
import platform
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiokafka
import orjson
import pydantic
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

try:  # optional, for this benchmark only (never a project dependency)
    from faststream import AckPolicy
    from faststream.__about__ import __version__ as faststream_version
    from faststream.kafka import KafkaBroker, KafkaResponse
except ImportError:
    faststream_version: str | None = None  # type: ignore[no-redef]

from pipeline_common import (
    PARTITIONS,
    ClientSettings,
    OrderPlaced,
    OrderPriced,
    bus_models,
    order_fields,
    price,
)
from pipeline_spy import summarize
from report import Row, print_table, profile_report

from bus import App, Publisher, TopicPartition, Worker, WorkerSettings
from bus.config import BusConfig
from bus.devbroker import DevBroker
from bus.gc_tuning import tune_gc
from bus.transports.kafka import KafkaTransport

KINDS = ("raw", "bus", "bus_nometrics", "faststream")
#: Pipelines whose latency is measured (bus_nometrics only answers "what do metrics cost").
LATENCY_KINDS = ("raw", "bus", "faststream")
TARGET_BUS_PER_RAW = 0.8
TARGET_BUS_PER_FASTSTREAM = 5.0
TARGET_P99_MARGIN_MS = 5.0
FASTSTREAM_HINT = (
    "FastStream is not installed; for this benchmark only: pip install 'faststream[kafka]'"
)
PROBE = Path(__file__).resolve().parent / "pipeline_probe.py"

_names = itertools.count()


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- assignment tracking (the timed window starts when all partitions are owned) ------------
class Assignment:
    """Partitions owned by the members of one pipeline; ``complete`` once all are owned."""

    def __init__(self, topic: str) -> None:
        self.expected = frozenset((topic, p) for p in range(PARTITIONS))
        self.owned: collections.Counter[tuple[str, int]] = collections.Counter()
        self.complete = asyncio.Event()
        self.at: float | None = None
        self.rebalances = 0

    def assigned(self, tps: Iterable[tuple[str, int]]) -> None:
        self.owned.update((tp[0], tp[1]) for tp in tps)
        if self.at is None and self.expected <= set(+self.owned):
            self.at = time.monotonic()
            self.complete.set()
        elif self.at is not None:
            self.rebalances += 1

    def revoked(self, tps: Iterable[tuple[str, int]]) -> None:
        self.owned.subtract((tp[0], tp[1]) for tp in tps)


class _AioListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, assignment: Assignment) -> None:
        self.assignment = assignment

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.assignment.revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.assignment.assigned(assigned)


class Pipeline(Protocol):
    assignment: Assignment

    async def start(self) -> None:
        """Connect and join the group (returns before the join completes)."""

    async def stop(self) -> None:
        """Finish in-flight work, commit, leave the group, disconnect."""


@dataclass(frozen=True, slots=True)
class Topics:
    source: str
    sink: str
    group: str


# -- (a) raw aiokafka ------------------------------------------------------------------------
class RawPipeline:
    """getmany -> orjson.loads -> model_validate -> price -> send (futures) -> commit after acks."""

    def __init__(self, settings: ClientSettings, topics: Topics, *, parse: str) -> None:
        self.settings = settings
        self.topics = topics
        self.assignment = Assignment(topics.source)
        self._validate_json = parse == "pydantic"
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        s = self.settings
        self._producer = AIOKafkaProducer(**s.producer_kwargs())
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            **s.consumer_kwargs(),
            group_id=self.topics.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await self._consumer.start()
        self._consumer.subscribe([self.topics.source], listener=_AioListener(self.assignment))
        self._task = asyncio.create_task(self._run(self._consumer, self._producer))

    async def _run(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        s = self.settings
        sink = self.topics.sink
        to_json = OrderPriced.__pydantic_serializer__.to_json
        validate_json = OrderPlaced.model_validate_json
        validate = OrderPlaced.model_validate
        loads = orjson.loads
        by_json = self._validate_json
        settling: collections.deque[asyncio.Task[None]] = collections.deque()
        while not self._stop.is_set():
            batches = await consumer.getmany(
                timeout_ms=s.poll_timeout_ms, max_records=s.max_records
            )
            if not batches:
                continue
            acks: list[asyncio.Future[Any]] = []
            offsets: dict[KafkaTopicPartition, int] = {}
            for tp, messages in batches.items():
                for m in messages:
                    order = validate_json(m.value) if by_json else validate(loads(m.value))
                    out = price(order, OrderPriced)
                    acks.append(await producer.send(sink, to_json(out), key=m.key))
                offsets[tp] = messages[-1].offset + 1
            previous = settling[-1] if settling else None
            settling.append(asyncio.create_task(self._settle(consumer, previous, acks, offsets)))
            while settling and settling[0].done():
                settling.popleft().result()
            if len(settling) > 4:  # bound what is in flight
                await settling.popleft()
        for task in settling:
            await task

    @staticmethod
    async def _settle(
        consumer: AIOKafkaConsumer,
        previous: asyncio.Task[None] | None,
        acks: list[asyncio.Future[Any]],
        offsets: dict[KafkaTopicPartition, int],
    ) -> None:
        await asyncio.gather(*acks)
        if previous is not None:
            await previous  # commits in batch order
        await consumer.commit(offsets)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()


# -- (b) bus -----------------------------------------------------------------------------------
class _TimedWorker(Worker):
    """A bus Worker that also tells the benchmark when its partitions were assigned."""

    assignment: Assignment

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        await super().on_partitions_assigned(assigned)
        self.assignment.assigned(assigned)

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        await super().on_partitions_revoked(revoked)
        self.assignment.revoked(revoked)


def bus_app(topics: Topics) -> App:
    """One App, one handler: OrderPlaced -> OrderPriced (the bus classes of these topics)."""
    models = bus_models(topics.source, topics.sink)
    placed, priced = models.placed, models.priced

    async def price_order(event: Any) -> Any:
        return price(event, priced)

    price_order.__annotations__ = {"event": placed, "return": priced}
    app = App(
        f"bench-{topics.group}", group=topics.group, registry=models.registry, source="bus://bench"
    )
    app.handler(price_order)
    return app


class BusPipeline:
    """bus.Worker running the App on a KafkaTransport with the shared settings."""

    def __init__(self, settings: ClientSettings, topics: Topics, *, metrics: bool = True) -> None:
        self.settings = settings
        self.topics = topics
        self.assignment = Assignment(topics.source)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.transport = KafkaTransport(settings.kafka_config("bench-bus"))
        self.worker = _TimedWorker(
            bus_app(topics),
            self.transport,
            WorkerSettings(
                fetch_max_records=settings.max_records,
                fetch_timeout_s=settings.poll_timeout_ms / 1000,
                offset_reset="earliest",
                metrics=metrics,
            ),
        )
        self.worker.assignment = self.assignment

    async def start(self) -> None:
        await self.transport.start()
        self._task = asyncio.create_task(self.worker.run(self._stop))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        await self.transport.stop()


# -- (c) FastStream ----------------------------------------------------------------------------
def faststream_available() -> bool:
    return faststream_version is not None


class FastStreamPipeline:
    """KafkaBroker + @subscriber/@publisher, max_workers=partitions, NACK_ON_ERROR, no logger."""

    def __init__(
        self,
        settings: ClientSettings,
        topics: Topics,
        *,
        max_workers: int,
        ack_policy: str,
        debug: bool,
    ) -> None:
        s = settings
        self.assignment = Assignment(topics.source)
        producer = s.producer_kwargs()
        self.broker = KafkaBroker(
            s.bootstrap_servers,
            client_id="bench-faststream",
            request_timeout_ms=producer["request_timeout_ms"],
            acks=producer["acks"],
            linger_ms=producer["linger_ms"],
            max_batch_size=producer["max_batch_size"],
            max_request_size=producer["max_request_size"],
            enable_idempotence=False,
            # FastStream's documented switch for its per-message access log; --faststream-debug
            # keeps it (errors in the handler are otherwise silent and retried forever).
            logger=logging.getLogger("faststream") if debug else None,
        )
        consumer = s.consumer_kwargs()

        @self.broker.subscriber(
            topics.source,
            group_id=topics.group,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=consumer["fetch_max_wait_ms"],
            max_partition_fetch_bytes=consumer["max_partition_fetch_bytes"],
            session_timeout_ms=consumer["session_timeout_ms"],
            heartbeat_interval_ms=consumer["heartbeat_interval_ms"],
            max_poll_records=s.max_records,
            max_workers=max_workers,
            ack_policy=AckPolicy[ack_policy.upper()],
            listener=_AioListener(self.assignment),
        )
        @self.broker.publisher(topics.sink)
        async def price_order(order: OrderPlaced) -> KafkaResponse:
            return KafkaResponse(price(order, OrderPriced), key=order.order_id.encode())

    async def start(self) -> None:
        await self.broker.start()

    async def stop(self) -> None:
        await self.broker.stop()


# -- the probe process ---------------------------------------------------------------------
class Probe:
    """``bench/pipeline_probe.py`` as a child process (see its docstring)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        #: CPU seconds the probe had used when it gave its result (it exits right after).
        self.cpu_total_s = math.nan

    @classmethod
    async def start(cls, *args: str, timeout_s: float = 60.0) -> Probe:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(PROBE),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        probe = cls(process)
        line = await probe._line(timeout_s)
        if line != "ready":
            raise RuntimeError(f"probe did not start (said {line!r})")
        return probe

    async def _line(self, timeout_s: float) -> str:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
        if not raw:
            code = await self.process.wait()
            raise RuntimeError(f"probe exited with code {code}")
        return raw.decode().strip()

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")

    def stop(self) -> None:
        """Ask a count probe to report what it has read so far."""
        assert self.process.stdin is not None
        self.process.stdin.write(b"stop\n")

    async def result(self, timeout_s: float) -> dict[str, Any]:
        try:
            line = await self._line(timeout_s)
            await asyncio.wait_for(self.process.wait(), 30)
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
        result: dict[str, Any] = json.loads(line)
        self.cpu_total_s = float(result.get("cpu_total_s", math.nan))
        return result


# -- CPU accounting and profilers -----------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` (this process when None)."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def calibrate() -> float:
    """Milliseconds of a fixed pure-Python workload: how fast this core is right now.

    The host's CPU speed drifts (a shared VM): the same work, GC included, has been seen
    to take 1.7x longer in one run than in the next with nothing else running here.
    """
    t0 = time.perf_counter()
    total = 0
    for i in range(300_000):
        total += i * i % 7
    return (time.perf_counter() - t0) * 1e3


class GcPauses:
    """Garbage-collector pauses in this process while installed (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.total_s = [0.0, 0.0, 0.0]
        self.max_s = [0.0, 0.0, 0.0]
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        took = time.perf_counter() - self._t0
        gen = info["generation"]
        self.count[gen] += 1
        self.total_s[gen] += took
        self.max_s[gen] = max(self.max_s[gen], took)

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self)

    def summary(self) -> str:
        return ", ".join(
            f"gen{g} {self.count[g]}x {self.total_s[g] * 1e3:.0f} ms (max {self.max_s[g] * 1e3:.1f})"
            for g in range(3)
            if self.count[g]
        )


def machine_busy_seconds() -> float:
    """CPU seconds all processes on this machine used since boot (from /proc/stat)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return math.nan
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICK  # without guest time (already in user)


@dataclass(slots=True)
class CpuWindow:
    """CPU used over one timed window by the measured process, the broker, the probe, and
    everything else on the machine (other work competing for the 2 cores)."""

    wall_s: float = 0.0
    main_s: float = 0.0
    broker_s: float = 0.0
    probe_s: float = 0.0
    other_s: float = 0.0
    gc: GcPauses = field(default_factory=GcPauses)
    #: calibrate() just before the run (ms; lower is a faster core)
    calibration_ms: float = math.nan

    def pct(self, what: str) -> float:
        return 100 * float(getattr(self, f"{what}_s")) / self.wall_s if self.wall_s else math.nan


class PySpy:
    """``py-spy record`` attached to this process for one pipeline run (collapsed stacks)."""

    def __init__(self, process: asyncio.subprocess.Process, path: str) -> None:
        self.process = process
        self.path = path

    @classmethod
    async def attach(cls, path: str, rate: int, *, native: bool = False) -> PySpy:
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        process = await asyncio.create_subprocess_exec(
            exe,
            "record",
            *(["--native"] if native else []),
            "--pid",
            str(os.getpid()),
            "--rate",
            str(rate),
            # blocking (py-spy's default) pauses the process for each sample: slower, but
            # --nonblocking samples torn stacks (frames of one call under another) here
            "--format",
            "raw",
            "--output",
            path,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.sleep(1.0)  # attached and sampling before the timed window opens
        if process.returncode is not None:
            raise RuntimeError(f"py-spy exited at once ({process.returncode}); is it installed?")
        return cls(process, path)

    async def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        await asyncio.wait_for(self.process.wait(), 60)


# -- measurements --------------------------------------------------------------------------
@dataclass(slots=True)
class Throughput:
    kind: str
    events: int
    outputs: int
    join_s: float
    elapsed_s: float
    preload_s: float
    rebalances: int
    complete: bool
    cpu: CpuWindow

    @property
    def ev_per_s(self) -> float:
        return self.outputs / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(slots=True)
class Latency:
    kind: str
    sent: int
    received: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    join_s: float
    cpu: CpuWindow


@dataclass(slots=True)
class Bench:
    args: argparse.Namespace
    settings: ClientSettings
    admin: AIOKafkaAdminClient
    run_id: str
    broker_pid: int | None = None
    profiler: cProfile.Profile | None = None
    spy_path: str | None = None
    #: seconds spent waiting for other processes to leave the CPU alone (all measurements)
    quiet_waited_s: float = 0.0
    deleted_ok: bool = True
    notes: list[str] = field(default_factory=list)

    def topics(self, kind: str, what: str) -> Topics:
        stem = f"pl-{self.run_id}-{kind}-{what}-{next(_names)}"
        return Topics(source=f"{stem}.in", sink=f"{stem}.out", group=f"{stem}-g")

    def pipeline(self, kind: str, topics: Topics) -> Pipeline:
        if kind == "raw":
            return RawPipeline(self.settings, topics, parse=self.args.raw_parse)
        if kind == "bus":
            return BusPipeline(self.settings, topics)
        if kind == "bus_nometrics":
            return BusPipeline(self.settings, topics, metrics=False)
        return FastStreamPipeline(
            self.settings,
            topics,
            max_workers=self.args.faststream_max_workers,
            ack_policy=self.args.faststream_ack_policy,
            debug=self.args.faststream_debug,
        )

    async def create_topics(self, topics: Topics) -> None:
        new = [NewTopic(t, PARTITIONS, 1) for t in (topics.source, topics.sink)]
        await self.admin.create_topics(new)
        for topic in (topics.source, topics.sink):  # wait until the metadata shows all 6
            for _ in range(100):
                partitions = await _partitions(self.admin, topic)
                if partitions == PARTITIONS:
                    break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError(f"topic {topic} has {partitions} partitions, not {PARTITIONS}")

    async def delete_topics(self, topics: Topics) -> None:
        if not self.deleted_ok:
            return
        try:
            await self.admin.delete_topics([topics.source, topics.sink])
        except Exception as exc:  # the broker may not support it; memory then grows
            self.deleted_ok = False
            self.notes.append(f"delete_topics failed ({exc!r}); topics kept")

    async def preload(self, topics: Topics, n: int) -> float:
        """Publish ``n`` orders as CloudEvents with bus's Publisher; seconds it took."""
        placed = bus_models(topics.source, topics.sink).placed
        transport = KafkaTransport(self.settings.kafka_config("bench-preload"))
        t0 = time.perf_counter()
        async with Publisher(transport, source="bus://bench-preload") as publisher:
            for start in range(0, n, 5000):
                await publisher.publish_many(
                    placed(**order_fields(i)) for i in range(start, min(n, start + 5000))
                )
        return time.perf_counter() - t0

    async def run_pipeline(
        self, kind: str, topics: Topics, probe: Probe, until_done: Callable[[], Awaitable[Any]]
    ) -> tuple[Pipeline, float, CpuWindow]:
        """Start the pipeline, wait for its assignment, run ``until_done``.

        Returns the pipeline, its join seconds (start -> all partitions assigned) and the CPU
        the three processes used while ``until_done`` ran (the timed window).
        """
        pipeline = self.pipeline(kind, topics)
        pids = (None, self.broker_pid, probe.process.pid)
        await self.wait_quiet(pids)
        spy = None
        if self.spy_path:
            spy = await PySpy.attach(
                self.spy_path, self.args.py_spy_rate, native=self.args.py_spy_native
            )
        cpu = CpuWindow(calibration_ms=calibrate())
        gc.collect()
        # All three alike, as `bus run` does for a deployed handler (0: Python's settings).
        tune_gc(self.args.gc_young)
        t_start = time.monotonic()
        if self.profiler is not None:
            self.profiler.enable()
        try:
            await pipeline.start()
            await asyncio.wait_for(pipeline.assignment.complete.wait(), 60)
            before = [cpu_seconds(p) for p in pids]
            busy_before = machine_busy_seconds()
            t0 = time.monotonic()
            with cpu.gc:
                await until_done()
            cpu.wall_s = time.monotonic() - t0
            cpu.main_s, cpu.broker_s = (
                cpu_seconds(p) - b for p, b in zip(pids[:2], before[:2], strict=True)
            )
            # the probe has exited by now: its result carries its CPU total
            cpu.probe_s = probe.cpu_total_s - before[2]
            cpu.other_s = max(
                0.0,
                machine_busy_seconds() - busy_before - cpu.main_s - cpu.broker_s - cpu.probe_s,
            )
        finally:
            if self.profiler is not None:
                self.profiler.disable()
            if spy is not None:
                await spy.stop()
            await pipeline.stop()
            gc.unfreeze()
        assert pipeline.assignment.at is not None
        return pipeline, pipeline.assignment.at - t_start, cpu

    async def wait_quiet(self, pids: Sequence[int | None]) -> None:
        """Wait until other processes use less than --quiet-cores and the broker is idle.

        Other work on this 2-core machine (another benchmark, a test run) would compete with
        the measured process, the broker and the probe, and the broker may still be busy
        with the previous run (FastStream's runs keep it at most of a core). Each wait is
        bounded, and so is the run's total (--quiet-budget-s): the benchmark never stalls.
        """
        a = self.args
        t0 = time.monotonic()
        while self.quiet_waited_s < a.quiet_budget_s:
            busy0 = machine_busy_seconds()
            own0 = [cpu_seconds(p) for p in pids]
            await asyncio.sleep(0.5)
            own = [cpu_seconds(p) - c for p, c in zip(pids, own0, strict=True)]
            other = machine_busy_seconds() - busy0 - sum(own)
            broker = own[1] if len(own) > 1 and own[1] == own[1] else 0.0
            quiet = other / 0.5 < a.quiet_cores and broker / 0.5 < 0.15
            if quiet or time.monotonic() - t0 > a.quiet_wait_s:
                break
            self.quiet_waited_s += 0.5
        waited = time.monotonic() - t0 - 0.5
        if waited > 0.2:
            progress(f"waited {waited:.1f}s for the CPU to be free (other processes, broker)")

    async def throughput(self, kind: str, n: int, label: str = "tp") -> Throughput:
        topics = self.topics(kind, label)
        await self.create_topics(topics)
        preload_s = await self.preload(topics, n)
        a = self.args
        probe = await Probe.start(
            "count",
            f"--bootstrap={self.settings.bootstrap_servers}",
            f"--fetch-max-wait-ms={self.settings.fetch_max_wait_ms}",
            f"--topic={topics.sink}",
            f"--expect={n}",
            f"--deadline-s={a.max_seconds + 90}",
            f"--idle-s={a.idle_seconds}",
        )
        result: dict[str, Any] = {}

        async def until_done() -> None:
            reading = asyncio.ensure_future(probe.result(a.max_seconds + 120))
            done, _ = await asyncio.wait({reading}, timeout=a.max_seconds)
            if not done:  # capped: the rate is what was read until now
                probe.stop()
            result.update(await reading)

        pipeline, join_s, cpu = await self.run_pipeline(kind, topics, probe, until_done)
        await self.delete_topics(topics)
        assert pipeline.assignment.at is not None
        t_last = result["t_last"] if result["t_last"] is not None else time.monotonic()
        return Throughput(
            kind=kind,
            events=n,
            outputs=int(result["distinct"]),
            join_s=join_s,
            elapsed_s=t_last - pipeline.assignment.at,
            preload_s=preload_s,
            rebalances=pipeline.assignment.rebalances,
            complete=bool(result["complete"]),
            cpu=cpu,
        )

    async def latency(self, kind: str) -> Latency:
        topics = self.topics(kind, "lat")
        await self.create_topics(topics)
        a = self.args
        probe = await Probe.start(
            "latency",
            f"--bootstrap={self.settings.bootstrap_servers}",
            f"--fetch-max-wait-ms={self.settings.fetch_max_wait_ms}",
            f"--linger-ms={self.settings.linger_ms}",
            f"--in-topic={topics.source}",
            f"--out-topic={topics.sink}",
            f"--rate={a.rate}",
            f"--seconds={a.latency_seconds}",
            *([f"--dump={a.latency_dump}.{kind}.txt"] if a.latency_dump else []),
        )
        result: dict[str, Any] = {}

        async def until_done() -> None:
            probe.go()
            result.update(await probe.result(a.latency_seconds + 60))

        _, join_s, cpu = await self.run_pipeline(kind, topics, probe, until_done)
        await self.delete_topics(topics)
        return Latency(
            kind=kind,
            sent=int(result["sent"]),
            received=int(result["received"]),
            p50_ms=float(result["p50_ms"]),
            p90_ms=float(result["p90_ms"]),
            p99_ms=float(result["p99_ms"]),
            max_ms=float(result["max_ms"]),
            mean_ms=float(result["mean_ms"]),
            join_s=join_s,
            cpu=cpu,
        )


async def _partitions(admin: AIOKafkaAdminClient, topic: str) -> int:
    described = await admin.describe_topics([topic])
    for entry in described:
        if entry.get("topic") == topic and not entry.get("error_code"):
            return len(entry.get("partitions") or ())
    return 0


# -- reporting -------------------------------------------------------------------------------
def _r(x: float, digits: int = 1) -> float | None:
    return None if x != x else round(x, digits)


# -- main ------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--events", type=int, default=50_000, help="preloaded events per run (50000)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved throughput rounds (3)")
    p.add_argument("--latency-seconds", type=float, default=20.0, help="latency run length (20)")
    p.add_argument("--rate", type=float, default=500.0, help="latency input rate, ev/s (500)")
    p.add_argument("--latency-repeats", type=int, default=4, help="interleaved latency rounds (4)")
    p.add_argument("--fetch-max-wait-ms", type=int, default=10, help="all consumers (10)")
    p.add_argument("--linger-ms", type=int, default=5, help="all producers (5, bus's default)")
    p.add_argument("--warmup-events", type=int, default=2000, help="untimed first run each (2000)")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=40.0,
        help="cap of one throughput run after assignment; a capped run's rate is the outputs "
        "read so far / time (40; only a pipeline slower than events/40 s is capped)",
    )
    p.add_argument("--idle-seconds", type=float, default=20.0, help="stalled-run cutoff (20)")
    p.add_argument(
        "--only", choices=KINDS, action="append", help="measure only this pipeline (repeatable)"
    )
    p.add_argument("--no-latency", action="store_true", help="skip the latency runs")
    p.add_argument(
        "--latency-dump", metavar="PREFIX", help="write each event's latency to PREFIX.<kind>.txt"
    )
    p.add_argument(
        "--raw-parse",
        choices=("orjson", "pydantic"),
        default="orjson",
        help="raw: orjson.loads + model_validate (default) or model_validate_json",
    )
    p.add_argument("--faststream-max-workers", type=int, default=PARTITIONS, help="(6)")
    p.add_argument(
        "--faststream-ack-policy",
        choices=("nack_on_error", "ack", "ack_first"),
        default="nack_on_error",
        help="nack_on_error (default; at-least-once, in order per partition, like the others) "
        "or ack_first (auto-commit, at-most-once; with max_workers > 1 not in order)",
    )
    p.add_argument(
        "--faststream-debug", action="store_true", help="keep FastStream's logger (errors)"
    )
    p.add_argument(
        "--gc-young",
        type=int,
        default=BusConfig().gc_young,
        help="before each run, for all three: bus.gc_tuning.tune_gc(N) as `bus run` does "
        "(freeze the heap so far, young collections every N allocations; 0: Python's settings)",
    )
    p.add_argument("--profile", metavar="PATH", help="cProfile one extra bus run to PATH")
    p.add_argument(
        "--py-spy",
        metavar="PREFIX",
        help="after the measurements, one extra throughput run of each pipeline under py-spy "
        "(attached to this process for the run only): PREFIX.<pipeline>.txt, summary on stderr",
    )
    p.add_argument("--py-spy-rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument(
        "--py-spy-native",
        action="store_true",
        help="py-spy --native: C frames too (shows the garbage collector's own share)",
    )
    p.add_argument("--broker-log", metavar="PATH", help="Tansu's log file")
    p.add_argument(
        "--quiet-cores",
        type=float,
        default=0.3,
        help="before each run, wait while other processes use more CPU than this (0.3 cores)",
    )
    p.add_argument("--quiet-wait-s", type=float, default=20.0, help="longest such wait (20)")
    p.add_argument("--quiet-budget-s", type=float, default=120.0, help="total wait cap (120)")
    args = p.parse_args(argv)
    if min(args.events, args.repeats, args.rate, args.latency_seconds, args.latency_repeats) <= 0:
        p.error("--events, --repeats, --rate, --latency-* must be positive")
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    kinds = [k for k in KINDS if not args.only or k in args.only]
    if "faststream" in kinds and not faststream_available():
        progress(FASTSTREAM_HINT + " (measuring raw and bus only)")
        kinds.remove("faststream")
    async with DevBroker(log_path=Path(args.broker_log) if args.broker_log else None) as broker:
        return await measure(args, kinds, broker)


async def measure(args: argparse.Namespace, kinds: list[str], broker: DevBroker) -> dict[str, Any]:
    """Every measurement on ``broker``; the report's JSON object."""
    settings = ClientSettings(
        broker.bootstrap_servers, fetch_max_wait_ms=args.fetch_max_wait_ms, linger_ms=args.linger_ms
    )
    admin = AIOKafkaAdminClient(
        bootstrap_servers=broker.bootstrap_servers, request_timeout_ms=15_000
    )
    await admin.start()
    bench = Bench(args, settings, admin, run_id=f"{os.getpid()}")
    bench.broker_pid = broker.process.pid if broker.process is not None else None
    n = args.events
    t_begin = time.monotonic()
    throughput: dict[str, list[Throughput]] = {k: [] for k in kinds}
    latency: dict[str, list[Latency]] = {}
    warmup: dict[str, Throughput] = {}
    try:
        progress(f"broker {broker.bootstrap_servers}; pipelines {', '.join(kinds)}")
        if args.warmup_events > 0:
            for kind in kinds:
                warmup[kind] = await bench.throughput(kind, args.warmup_events, "warm")
                progress(f"warm-up {kind}: {warmup[kind].ev_per_s:,.0f} ev/s (not counted)")
        for r in range(args.repeats):
            # forward, then backward: the machine's speed drifts within a round (CPU clocks
            # ramp up), and a fixed order would hand that drift to whoever runs last
            for kind in kinds if r % 2 == 0 else kinds[::-1]:
                m = await bench.throughput(kind, n)
                throughput[kind].append(m)
                progress(
                    f"round {r + 1}/{args.repeats} {kind}: {m.ev_per_s:,.0f} ev/s "
                    f"({m.outputs:,}/{n:,} outputs in {m.elapsed_s:.2f}s; join {m.join_s:.2f}s; "
                    f"preload {m.preload_s:.1f}s; CPU % of a core: measured "
                    f"{m.cpu.pct('main'):.0f}, broker {m.cpu.pct('broker'):.0f}, probe "
                    f"{m.cpu.pct('probe'):.0f}, other processes {m.cpu.pct('other'):.0f}; "
                    f"GC {m.cpu.gc.summary()}; calibration {m.cpu.calibration_ms:.1f} ms)"
                )
        for r in range(0 if args.no_latency else args.latency_repeats):
            for kind in (k for k in kinds if k in LATENCY_KINDS):
                lat = await bench.latency(kind)
                latency.setdefault(kind, []).append(lat)
                progress(
                    f"latency {r + 1}/{args.latency_repeats} {kind}: p50 {lat.p50_ms:.1f} ms, "
                    f"p99 {lat.p99_ms:.1f} ms "
                    f"({lat.received}/{lat.sent} received; other processes "
                    f"{lat.cpu.pct('other'):.0f}% of a core; GC {lat.cpu.gc.summary()})"
                )
        if args.profile and "bus" in kinds:
            profiler = bench.profiler = cProfile.Profile()
            m = await bench.throughput("bus", n, "prof")
            bench.profiler = None
            progress(f"profiled bus run: {m.ev_per_s:,.0f} ev/s (under cProfile)")
            profile_report(profiler, args.profile)
        if args.py_spy:
            for kind in kinds:
                bench.spy_path = f"{args.py_spy}.{kind}.txt"
                m = await bench.throughput(kind, n, "spy")
                progress(f"py-spy {kind} run: {m.ev_per_s:,.0f} ev/s -> {bench.spy_path}")
                print(
                    summarize(bench.spy_path, events=m.outputs, rate=args.py_spy_rate),
                    file=sys.stderr,
                )
            bench.spy_path = None
    finally:
        await admin.close()
    return report(args, kinds, throughput, latency, warmup, bench, time.monotonic() - t_begin)


def report(
    args: argparse.Namespace,
    kinds: list[str],
    throughput: dict[str, list[Throughput]],
    latency: dict[str, list[Latency]],
    warmup: dict[str, Throughput],
    bench: Bench,
    total_s: float,
) -> dict[str, Any]:
    rate = {k: [m.ev_per_s for m in throughput[k]] for k in kinds}
    med = {k: statistics.median(rate[k]) for k in kinds}
    rows: list[Row] = []
    for k in kinds:
        rows.append(Row(f"{k} throughput", rate[k], "ev/s"))
    for k in kinds:
        rows.append(Row(f"{k} per event", [1e6 / x for x in rate[k]], "us/ev", 1e6 / med[k]))
    for k in kinds:
        rows.append(Row(f"{k} join (not timed)", [m.join_s for m in throughput[k]], "s"))
    for k in kinds:
        for what, label in (
            ("main", "measured process"),
            ("broker", "broker"),
            ("probe", "probe"),
            ("other", "other processes"),
        ):
            values = [m.cpu.pct(what) for m in throughput[k]]
            rows.append(Row(f"{k} CPU, {label}", values, "% of a core"))
    ratios: dict[str, list[float]] = {}
    if "bus" in kinds and "raw" in kinds:
        ratios["bus_per_raw"] = [b / r for b, r in zip(rate["bus"], rate["raw"], strict=True)]
        rows.append(Row("bus / raw", ratios["bus_per_raw"], "x", med["bus"] / med["raw"]))
        rows.append(
            Row(
                "bus overhead vs raw",
                [1e6 / b - 1e6 / r for b, r in zip(rate["bus"], rate["raw"], strict=True)],
                "us/ev",
                1e6 / med["bus"] - 1e6 / med["raw"],
            )
        )
    if "bus" in kinds and "bus_nometrics" in kinds:
        ratios["metrics_cost"] = [
            1 - b / n for b, n in zip(rate["bus"], rate["bus_nometrics"], strict=True)
        ]
        rows.append(
            Row(
                "metrics cost (1 - on/off)",
                [100 * x for x in ratios["metrics_cost"]],
                "%",
                100 * (1 - med["bus"] / med["bus_nometrics"]),
            )
        )
    if "bus" in kinds and "faststream" in kinds:
        ratios["bus_per_faststream"] = [
            b / f for b, f in zip(rate["bus"], rate["faststream"], strict=True)
        ]
        rows.append(
            Row(
                "bus / faststream",
                ratios["bus_per_faststream"],
                "x",
                med["bus"] / med["faststream"],
            )
        )
    for k in kinds:
        if k in latency:
            runs = latency[k]
            rows.append(Row(f"{k} latency p50", [x.p50_ms for x in runs], "ms"))
            rows.append(Row(f"{k} latency p99", [x.p99_ms for x in runs], "ms"))
            rows.append(Row(f"{k} latency max", [x.max_ms for x in runs], "ms"))
    preloads = [m.preload_s for k in kinds for m in throughput[k]]
    rows.append(Row("preload (bus.Publisher, untimed)", preloads, "s"))

    print(
        f"pipeline benchmark: {args.events:,} events x {args.repeats} interleaved rounds, "
        f"{PARTITIONS} partitions, ~{len(OrderPlaced(**order_fields(0)).model_dump_json())} B "
        f"payloads; latency {args.rate:g} ev/s for {args.latency_seconds:g} s"
    )
    print(
        f"client settings (all three): fetch_max_wait_ms={bench.settings.fetch_max_wait_ms}, "
        f"max_records={bench.settings.max_records}, poll_timeout_ms="
        f"{bench.settings.poll_timeout_ms}, linger_ms={bench.settings.linger_ms}, "
        f"max_batch_bytes={bench.settings.max_batch_bytes}, acks={bench.settings.acks}; "
        f"faststream: max_workers={args.faststream_max_workers}, "
        f"ack_policy={args.faststream_ack_policy.upper()}, logger=None; raw parse: "
        + ("orjson.loads + model_validate" if args.raw_parse == "orjson" else "model_validate_json")
    )
    print(
        f"measured process: one asyncio loop; broker (Tansu) and probe in other processes; "
        f"{os.cpu_count()} CPUs; Python {platform.python_version()}, aiokafka "
        f"{aiokafka.__version__}, pydantic {pydantic.VERSION}"
    )
    print()
    print_table(rows)
    print()
    incomplete = [
        f"{m.kind}: {m.outputs}/{m.events}" for k in kinds for m in throughput[k] if not m.complete
    ]
    if incomplete:
        print("capped/incomplete runs (rate = outputs read / time): " + "; ".join(incomplete))
    for k, runs in latency.items():
        if med[k] < args.rate:
            lost = sum(x.sent - x.received for x in runs)
            bench.notes.append(
                f"{k} sustains {med[k]:,.0f} ev/s < the offered {args.rate:g} ev/s: its latency "
                "is a queue growing through the run"
                + (f" ({lost} events never read, counted as lower bounds)" if lost else "")
            )
    windows = [m.cpu for k in kinds for m in throughput[k]]
    windows += [x.cpu for runs in latency.values() for x in runs]
    busy = [w for w in windows if w.pct("other") > 100 * args.quiet_cores]
    if busy:
        bench.notes.append(
            f"{len(busy)} of {len(windows)} timed windows had other processes above "
            f"{args.quiet_cores:g} cores (up to {max(w.pct('other') for w in busy):.0f}% of a "
            "core): their figures are less reliable"
        )
    if bench.quiet_waited_s:
        bench.notes.append(
            f"waited {bench.quiet_waited_s:.1f}s in all for the CPU to be free before runs"
        )
    for note in bench.notes:
        print("note: " + note)

    out: dict[str, Any] = {
        "benchmark": "pipeline",
        "events": args.events,
        "repeats": args.repeats,
        "partitions": PARTITIONS,
        "rate_ev_per_s": args.rate,
        "latency_seconds": args.latency_seconds,
        "latency_repeats": 0 if args.no_latency else args.latency_repeats,
        "fetch_max_wait_ms": bench.settings.fetch_max_wait_ms,
        "max_records": bench.settings.max_records,
        "linger_ms": bench.settings.linger_ms,
        "max_batch_bytes": bench.settings.max_batch_bytes,
        "acks": bench.settings.acks,
        "raw_parse": args.raw_parse,
        "gc_young": args.gc_young,
        "faststream_max_workers": args.faststream_max_workers,
        "faststream_ack_policy": args.faststream_ack_policy.upper(),
        "pipelines": kinds,
    }
    for k in kinds:
        out[f"{k}_ev_per_s"] = round(med[k], 1)
        out[f"{k}_ev_per_s_min"] = round(min(rate[k]), 1)
        out[f"{k}_ev_per_s_max"] = round(max(rate[k]), 1)
        out[f"{k}_us_per_ev"] = round(1e6 / med[k], 2)
        out[f"{k}_join_s"] = round(statistics.median(m.join_s for m in throughput[k]), 3)
        out[f"{k}_complete"] = all(m.complete for m in throughput[k])
        out[f"{k}_rebalances_after_join"] = sum(m.rebalances for m in throughput[k])
        for what in ("main", "broker", "probe", "other"):
            out[f"{k}_cpu_{what}_pct"] = _r(
                statistics.median(m.cpu.pct(what) for m in throughput[k]), 1
            )
        if k in warmup:
            out[f"{k}_warmup_ev_per_s"] = round(warmup[k].ev_per_s, 1)
    if "bus" in kinds and "raw" in kinds:
        out["bus_per_raw"] = round(med["bus"] / med["raw"], 3)
        out["bus_overhead_us_per_ev"] = round(1e6 / med["bus"] - 1e6 / med["raw"], 2)
        out["bus_per_raw_target"] = TARGET_BUS_PER_RAW
        out["bus_per_raw_ok"] = out["bus_per_raw"] >= TARGET_BUS_PER_RAW
    if "bus" in kinds and "bus_nometrics" in kinds:
        out["metrics_cost_pct"] = round(100 * (1 - med["bus"] / med["bus_nometrics"]), 2)
        out["metrics_cost_target_pct"] = 5.0
        out["metrics_cost_ok"] = out["metrics_cost_pct"] < 5.0
    if "bus" in kinds and "faststream" in kinds:
        out["bus_per_faststream"] = round(med["bus"] / med["faststream"], 3)
        out["bus_per_faststream_target"] = TARGET_BUS_PER_FASTSTREAM
        out["bus_per_faststream_ok"] = out["bus_per_faststream"] >= TARGET_BUS_PER_FASTSTREAM
    lat_med: dict[str, dict[str, float]] = {}
    for k, runs in latency.items():
        lat_med[k] = {
            q: statistics.median(getattr(x, f"{q}_ms") for x in runs)
            for q in ("p50", "p90", "p99", "max", "mean")
        }
        for q, v in lat_med[k].items():
            out[f"{q}_ms_{k}"] = _r(v, 2)
        out[f"latency_sent_{k}"] = sum(x.sent for x in runs)
        out[f"latency_received_{k}"] = sum(x.received for x in runs)
        out[f"latency_other_cpu_pct_{k}"] = _r(max(x.cpu.pct("other") for x in runs), 1)
        out[f"latency_gc_gen2_count_{k}"] = sum(x.cpu.gc.count[2] for x in runs)
        out[f"latency_gc_max_pause_ms_{k}"] = round(max(max(x.cpu.gc.max_s) for x in runs) * 1e3, 2)
    if "bus" in lat_med and "raw" in lat_med:
        limit = lat_med["raw"]["p99"] + TARGET_P99_MARGIN_MS
        out["p99_ms_bus_target"] = _r(limit, 2)
        out["p99_bus_ok"] = lat_med["bus"]["p99"] <= limit
    out["runs"] = {f"{k}_ev_per_s": [round(x, 1) for x in rate[k]] for k in kinds} | {
        f"{k}_join_s": [round(m.join_s, 3) for m in throughput[k]] for k in kinds
    }
    out["runs"] |= {name: [round(x, 3) for x in v] for name, v in ratios.items()}
    for k in kinds:
        out["runs"][f"{k}_cpu_other_pct"] = [_r(m.cpu.pct("other"), 1) for m in throughput[k]]
        out["runs"][f"{k}_calibration_ms"] = [_r(m.cpu.calibration_ms, 2) for m in throughput[k]]
        out["runs"][f"{k}_gc_ms"] = [round(sum(m.cpu.gc.total_s) * 1e3, 1) for m in throughput[k]]
    for k, runs in latency.items():
        out["runs"][f"p50_ms_{k}"] = [_r(x.p50_ms, 2) for x in runs]
        out["runs"][f"p99_ms_{k}"] = [_r(x.p99_ms, 2) for x in runs]
    out["preload_s_median"] = round(statistics.median(preloads), 2)
    out["total_s"] = round(total_s, 1)
    out["quiet_waited_s"] = round(bench.quiet_waited_s, 1)
    out["python"] = platform.python_version()
    out["aiokafka"] = aiokafka.__version__
    out["pydantic"] = pydantic.VERSION
    if "faststream" in kinds:
        out["faststream"] = faststream_version
    out["notes"] = bench.notes
    # every headline key is always there (None when not measured: --only, --no-latency,
    # FastStream not installed), so readers of the JSON need no special cases
    headline = ["bus_per_raw", "bus_per_faststream", "bus_per_raw_ok", "bus_per_faststream_ok"]
    headline += ["p99_bus_ok", "p99_ms_bus_target"]
    headline += [f"{k}_ev_per_s" for k in KINDS]
    headline += [f"p{q}_ms_{k}" for k in KINDS for q in (50, 99)]
    for key in headline:
        out.setdefault(key, None)
    out.setdefault("bus_per_raw_target", TARGET_BUS_PER_RAW)
    out.setdefault("bus_per_faststream_target", TARGET_BUS_PER_FASTSTREAM)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if not faststream_available():
        print(FASTSTREAM_HINT, file=sys.stderr)
    result = asyncio.run(run(args))
    sys.stdout.flush()
    print(json.dumps(result))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
