"""The handler part of ``bench/scale.py``: one consumer group of 1, 2 or 4 ``bus run``
processes draining a pre-filled topic.

One round: a fresh Tansu broker; an input topic with ``partitions`` partitions pre-filled
with ``events`` WorkRequested events (untimed, 1,000 distinct keys, so every partition
gets its share); then ``processes`` processes of ``bus run bench.scale_app:app`` in one
group. The timed window runs from the moment every process has joined and owns its
partitions (each one's ``/readyz``: a group that is still rebalancing is not measured)
until the group's lag is 0 (:func:`bus.group_lag`: every record handled, its output
acknowledged and its offset committed). ``ev_per_s`` = records committed in the window /
the window; ``cold_ev_per_s`` = all events / (processes spawned -> lag 0), start-up and
group join included. CPU per event: the handler processes' and the broker's CPU time in
the window (``/proc``) over the events committed in it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path

from scale_app import message_classes
from scale_procs import Processes, cpu_window, get, owned_partitions, wait_for

from bus import Publisher, TopicSpec, group_lag
from bus.config import KafkaConfig
from bus.devbroker import DevBroker
from bus.transports.kafka import KafkaTransport

_rounds = itertools.count(1)
#: Tansu holds a group join for about 2 s with these (as bench/pipeline.py sets them).
KAFKA_ENV = {
    "BUS_TRANSPORT": "kafka",
    # Tansu does not wake a waiting fetch when data arrives (bench/pipeline.py); --fetch-max-wait-ms
    "BUS_KAFKA_FETCH_MAX_WAIT_MS": "10",
    "BUS_KAFKA_SESSION_TIMEOUT_MS": "3000",
    "BUS_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
    "BUS_HTTP_READINESS_INTERVAL_S": "0.1",  # readiness is how the window starts
    "BUS_LOG_LEVEL": "WARNING",  # as bench/sagas.py: no log line per record
}
PUBLISH_CHUNK = 2000


@dataclass(frozen=True, slots=True)
class Workload:
    """What every handler round runs."""

    events: int
    work_rounds: int
    io_ms: float
    timeout_s: float
    #: After lag 0: how long the processes are left idle to measure what they cost then.
    idle_s: float = 3.0


@dataclass(frozen=True, slots=True)
class HandlerRound:
    processes: int
    partitions: int
    events: int
    #: Records committed after the window opened (the rest were handled during the join).
    timed_events: int
    window_s: float
    #: Spawn -> every process ready; spawn -> lag 0.
    ready_s: float
    cold_s: float
    handlers_cpu_s: float
    broker_cpu_s: float
    #: This process (pre-fill done; it polls readiness and the group's lag meanwhile).
    bench_cpu_s: float
    machine_cpu_s: float
    #: Cores the handler processes (all together) and the broker used once lag was 0.
    idle_handler_cores: float = 0.0
    idle_broker_cores: float = 0.0

    @property
    def ev_per_s(self) -> float:
        return self.timed_events / self.window_s

    @property
    def cold_ev_per_s(self) -> float:
        return self.events / self.cold_s

    def cpu_ms_per_event(self, what: str) -> float:
        used = {
            "handlers": self.handlers_cpu_s,
            "broker": self.broker_cpu_s,
            "bench": self.bench_cpu_s,
        }[what]
        return 1000 * used / max(1, self.timed_events)

    @property
    def idle_per_process(self) -> float:
        return self.idle_handler_cores / self.processes

    @property
    def other_cores(self) -> float:
        """Cores busy with everything but the handlers, the broker and this process."""
        rest = self.machine_cpu_s - self.handlers_cpu_s - self.broker_cpu_s - self.bench_cpu_s
        return max(0.0, rest) / self.window_s


async def handler_round(
    workload: Workload, *, processes: int, partitions: int, log_dir: Path
) -> HandlerRound:
    """One round on a fresh broker (started and stopped here)."""
    n = next(_rounds)
    in_topic, out_topic, group = f"scale.in.{n}", f"scale.out.{n}", f"bench-scale-{n}"
    async with DevBroker(log_path=log_dir / f"broker-{n}.log") as broker:
        config = KafkaConfig(bootstrap_servers=broker.bootstrap_servers).validated()
        transport = KafkaTransport(config)
        await transport.start()
        try:
            specs = [TopicSpec(t, partitions=partitions) for t in (in_topic, out_topic)]
            await transport.ensure_topics([*specs, TopicSpec(f"{in_topic}.dlq", partitions=1)])
            await _prefill(transport, in_topic, out_topic, workload.events)
            env = {
                **KAFKA_ENV,
                "BUS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                "SCALE_IN_TOPIC": in_topic,
                "SCALE_OUT_TOPIC": out_topic,
                "SCALE_GROUP": group,
                "SCALE_WORK_ROUNDS": str(workload.work_rounds),
                "SCALE_IO_MS": str(workload.io_ms),
            }
            assert broker.process is not None
            return await _drain(
                transport, env, workload, processes, partitions, broker.process.pid, log_dir, n
            )
        finally:
            await transport.stop()


async def _prefill(transport: KafkaTransport, in_topic: str, out_topic: str, events: int) -> None:
    requested, _, _ = message_classes(in_topic, out_topic)
    payload = "x" * 200  # a ~400-byte CloudEvent, like a small webhook's
    publisher = Publisher(transport, source="bus://bench-scale")
    for start in range(0, events, PUBLISH_CHUNK):
        await publisher.publish_many(
            requested(item_id=f"item-{i % 1000:04d}", seq=i, payload=payload)
            for i in range(start, min(events, start + PUBLISH_CHUNK))
        )


async def _drain(
    transport: KafkaTransport,
    env: dict[str, str],
    workload: Workload,
    processes: int,
    partitions: int,
    broker_pid: int,
    log_dir: Path,
    n: int,
) -> HandlerRound:
    topic, group = env["SCALE_IN_TOPIC"], env["SCALE_GROUP"]
    with Processes(env, log_dir) as procs:
        spawned = time.monotonic()
        for i in range(processes):
            procs.start(f"handler-{n}-{i}", ["run", "bench.scale_app:app"])
        wait_for(
            "group with every process owning partitions",
            lambda: _balanced(procs, partitions),
            workload.timeout_s,
            procs,
            every_s=0.05,
        )
        ready = time.monotonic()
        pids = {c.name: c.pid for c in procs.children}
        with cpu_window({**pids, "broker": broker_pid, "bench": os.getpid()}, {}) as used:
            committed_at_ready = await _committed(transport, group, topic)
            while await _lag(transport, group, topic) > 0:
                procs.check_alive()
                if time.monotonic() - spawned > workload.timeout_s:
                    raise TimeoutError(f"lag not 0 within {workload.timeout_s:.0f}s")
                await asyncio.sleep(0.2)
        done = time.monotonic()
        with cpu_window({**pids, "broker": broker_pid}, {}) as idle:
            await asyncio.sleep(workload.idle_s)
    return HandlerRound(
        processes=processes,
        partitions=partitions,
        events=workload.events,
        timed_events=workload.events - committed_at_ready,
        window_s=done - ready,
        ready_s=ready - spawned,
        cold_s=done - spawned,
        handlers_cpu_s=sum(used[k] for k in pids),
        broker_cpu_s=used["broker"],
        bench_cpu_s=used["bench"],
        machine_cpu_s=used["machine"],
        idle_handler_cores=sum(idle[k] for k in pids) / idle["wall"],
        idle_broker_cores=idle["broker"] / idle["wall"],
    )


def _balanced(procs: Processes, partitions: int) -> bool:
    """Every process ready, each owning a partition (while there are enough), all owned."""
    owned = [owned_partitions(get(f"{c.url}/readyz", timeout_s=1.0)[1]) for c in procs.children]
    if any(o is None for o in owned):
        return False
    counts = [o or 0 for o in owned]
    enough = len(counts) <= partitions
    return sum(counts) == partitions and (not enough or min(counts) > 0)


async def _committed(transport: KafkaTransport, group: str, topic: str) -> int:
    lags = await group_lag(transport, group, [topic]) or []
    return sum(p.committed or 0 for p in lags)


async def _lag(transport: KafkaTransport, group: str, topic: str) -> int:
    lags = await group_lag(transport, group, [topic])
    if not lags:
        return 1  # not known yet: not done
    return sum(p.lag for p in lags)
