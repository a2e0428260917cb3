"""The coordinator part of ``bench/scale.py``: onboardings with 1 and 2 ``bus sagas run``
replicas on one PostgreSQL store, every part a process of its own.

One round: a fresh Tansu broker and a fresh database on the shared throwaway PostgreSQL
(``tests/postgres.py``); every topic of the onboarding (triggers, commands, replies,
dead letters) created with ``partitions`` partitions; one ``bus run`` process with the
five handler apps the onboarding commands (``bench/scale_onboarding.py``: the real
handlers on their simulated systems) and ``replicas`` coordinators (``bus sagas run -d
sagas.definitions.onboarding``, onboarding v1). Once every process is ready, one warm-up
hire goes through (untimed); then ``sagas`` hires are published at once and the window
runs until the coordinators' ``bus_sagas_finished_total`` (scraped from their
``/metrics``) has counted every one of them. Every timed hire takes the 4-step path
(``bench/sagas_rows.py``): create_account, assign_licenses, notify_manager,
create_payroll_record.

Measured in the window: sagas/s, steps/s (``bus_saga_step_duration_seconds_count``), the
CPU of the coordinators, the handlers, the broker and PostgreSQL (the postmaster with its
backends, ``/proc``), PostgreSQL's write transactions (the transaction id counter: every
write transaction takes one) and WAL bytes; after the round, once its processes have
exited and flushed their statistics: rows inserted, updated and deleted per table (the
warm-up saga's included: its share is under 0.1% of a round), all transactions committed,
and each saga's duration from the store.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from sagas_bus import hired
from sagas_rows import Hire, hires, letters
from scale_handlers import KAFKA_ENV, PUBLISH_CHUNK
from scale_procs import Child, Processes, cpu_window, get, metric_sum, wait_for

from bus import MemoryBroker, MemoryTransport, Publisher, TopicSpec, dead_letter_topic
from bus.config import KafkaConfig
from bus.devbroker import DevBroker
from bus.topics import desired_topics
from bus.transports.kafka import KafkaTransport
from sagas.coordinator import Coordinator
from sagas.definitions.onboarding import onboarding
from sagas.stores.memory import MemorySagaStore
from sagas.versions import Catalog
from tests.postgres import PostgresServer

HANDLERS = "bench.scale_onboarding:apps"
DEFINITIONS = "sagas.definitions.onboarding"  # onboarding v1 only
_rounds = itertools.count(1)


@dataclass(frozen=True, slots=True)
class SagaRound:
    replicas: int
    sagas: int
    window_s: float
    steps: float
    cpu_s: dict[str, float]
    write_xacts: int
    wal_bytes: int
    #: After the round (warm-up saga included): rows by table and kind, all commits.
    rows: dict[str, int] = field(default_factory=dict)
    xact_commit: int = 0
    connections: int = 0
    outbox_backlog_max: float = 0.0
    durations_s: list[float] = field(default_factory=list)

    @property
    def sagas_per_s(self) -> float:
        return self.sagas / self.window_s

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.window_s

    def per_saga(self, value: float) -> float:
        return value / self.sagas


def onboarding_topics(partitions: int) -> list[TopicSpec]:
    """Every topic the onboarding's coordinator and handler apps use, with their DLQs."""
    import scale_onboarding

    probe = Coordinator(Catalog([onboarding]), MemorySagaStore(), MemoryTransport(MemoryBroker()))
    names = {*probe.topics, *(dead_letter_topic(t) for t in probe.topics)}
    apps = scale_onboarding.apps
    names |= {s.name for s in desired_topics(apps, partitions=1, replication_factor=1)}
    return [TopicSpec(t, partitions=partitions) for t in sorted(names)]


async def saga_round(
    server: PostgresServer,
    *,
    replicas: int,
    sagas: int,
    partitions: int,
    timeout_s: float,
    log_dir: Path,
) -> SagaRound:
    """One round on a fresh broker and a fresh database (both removed afterwards)."""
    n = next(_rounds)
    dsn = server.create_database("scale_sagas")
    try:
        async with DevBroker(log_path=log_dir / f"saga-broker-{n}.log") as broker:
            transport = KafkaTransport(
                KafkaConfig(bootstrap_servers=broker.bootstrap_servers).validated()
            )
            await transport.start()
            try:
                await transport.ensure_topics(onboarding_topics(partitions))
                env = {
                    **KAFKA_ENV,
                    "BUS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                    "BUS_SAGA_STORE": dsn,
                }
                assert broker.process is not None
                assert server.process is not None
                pids = {"broker": broker.process.pid, "postgres": server.process.pid}
                return await _run(transport, dsn, env, pids, replicas, sagas, timeout_s, log_dir, n)
            finally:
                await transport.stop()
    finally:
        if server.can_restart:
            server.drop_database(dsn)


async def _run(
    transport: KafkaTransport,
    dsn: str,
    env: dict[str, str],
    pids: dict[str, int],
    replicas: int,
    sagas: int,
    timeout_s: float,
    log_dir: Path,
    n: int,
) -> SagaRound:
    people = hires(sagas + 1, f"{letters(n + 26)}")
    publisher = Publisher(transport, source="bus://hr")
    db = await asyncpg.connect(dsn)
    try:
        with Processes(env, log_dir) as procs:
            handlers = procs.start(f"saga-handlers-{n}", ["run", HANDLERS])
            coordinators = [
                procs.start(f"coordinator-{n}-{i}", ["sagas", "run", "-d", DEFINITIONS])
                for i in range(replicas)
            ]
            ready = lambda: all(get(f"{c.url}/readyz")[0] == 200 for c in procs.children)  # noqa: E731
            wait_for("every process ready", ready, timeout_s, procs, every_s=0.1)
            await publisher.publish(hired(people[0]))  # the warm-up saga
            await _finished(procs, coordinators, 1, timeout_s, db)
            cpu_pids = {"handlers": handlers.pid, "broker": pids["broker"], "bench": os.getpid()}
            cpu_pids |= {c.name: c.pid for c in coordinators}
            burst = _Burst(procs, coordinators, db, timeout_s)
            measured = await burst.run(publisher, people[1:], cpu_pids, pids["postgres"])
        # an exited backend has flushed its statistics: read them once every one is gone
        deadline = time.monotonic() + timeout_s
        while await _connections(db) > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return SagaRound(
            replicas=replicas,
            sagas=sagas,
            **measured,
            rows=await _rows(db),
            xact_commit=await db.fetchval(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            ),
            durations_s=await _durations(db),
        )
    finally:
        await db.close()


@dataclass(frozen=True, slots=True)
class _Burst:
    """The timed part of a round: every hire published at once, until all are finished."""

    procs: Processes
    coordinators: list[Child]
    db: asyncpg.Connection
    timeout_s: float

    async def run(
        self, publisher: Publisher, people: list[Hire], pids: dict[str, int], postgres: int
    ) -> dict[str, Any]:
        """The :class:`SagaRound` fields measured while ``people``'s sagas run."""
        xid0, lsn0 = await _counters(self.db)
        with cpu_window(pids, {"postgres": postgres}) as used:
            for start in range(0, len(people), PUBLISH_CHUNK):
                await publisher.publish_many(
                    hired(h) for h in people[start : start + PUBLISH_CHUNK]
                )
            expected = len(people) + 1  # and the warm-up saga
            steps, backlog = await _finished(
                self.procs, self.coordinators, expected, self.timeout_s, self.db
            )
        xid1, lsn1 = await _counters(self.db)
        parts = ("handlers", "broker", "postgres", "bench", "machine")
        return {
            "window_s": used["wall"],
            "steps": steps,
            "cpu_s": {
                "coordinators": sum(used[c.name] for c in self.coordinators),
                **{k: used[k] for k in parts},
            },
            "write_xacts": xid1 - xid0,
            "wal_bytes": lsn1 - lsn0,
            "connections": await _connections(self.db),
            "outbox_backlog_max": backlog,
        }


async def _finished(
    procs: Processes,
    coordinators: list[Child],
    expected: int,
    timeout_s: float,
    db: asyncpg.Connection,
) -> tuple[float, float]:
    """Wait until the coordinators together finished ``expected`` sagas (all completed);
    the steps they finished meanwhile, and the largest outbox backlog seen (counted in the
    table: the ``bus_outbox_backlog`` gauge is sampled every 5 s, longer than a round)."""
    deadline = time.monotonic() + timeout_s
    backlog = 0.0
    while True:
        pages = [get(f"{c.url}/metrics")[1] for c in coordinators]
        done = sum(metric_sum(p, "bus_sagas_finished_total") for p in pages)
        completed = sum(
            metric_sum(p, "bus_sagas_finished_total", status="completed") for p in pages
        )
        backlog = max(backlog, await db.fetchval("SELECT count(*) FROM saga_outbox"))
        if done > completed:
            raise RuntimeError(f"{done - completed:.0f} sagas did not complete")
        if done >= expected:
            steps = sum(metric_sum(p, "bus_saga_step_duration_seconds_count") for p in pages)
            return steps, backlog
        procs.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done:.0f} of {expected} sagas finished in {timeout_s:.0f}s")
        await asyncio.sleep(0.1)


async def _connections(db: asyncpg.Connection) -> int:
    """Sessions on this database but ours."""
    return int(
        await db.fetchval(
            "SELECT count(*) - 1 FROM pg_stat_activity WHERE datname = current_database()"
        )
    )


async def _counters(db: asyncpg.Connection) -> tuple[int, int]:
    """The next transaction id (no id is taken by asking) and the WAL position, in bytes."""
    row = await db.fetchrow(
        "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xid,"
        " pg_current_wal_lsn() - '0/0'::pg_lsn AS lsn"
    )
    return int(row["xid"]), int(row["lsn"])


async def _rows(db: asyncpg.Connection) -> dict[str, int]:
    """Rows inserted, updated and deleted per table (``saga_state.ins`` and so on)."""
    records = await db.fetch(
        "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
    )
    rows: dict[str, int] = {}
    for r in records:
        for kind in ("ins", "upd", "del"):
            if r[f"n_tup_{kind}"]:
                rows[f"{r['relname']}.{kind}"] = int(r[f"n_tup_{kind}"])
    return rows


async def _durations(db: asyncpg.Connection) -> list[float]:
    values = await db.fetch(
        "SELECT (updated_at_ms - started_at_ms) / 1000.0 AS s FROM saga_state"
        " WHERE status = 'completed'"
    )
    return sorted(float(v["s"]) for v in values)


def p(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank); NaN for no values."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
