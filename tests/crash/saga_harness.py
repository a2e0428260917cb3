"""Shared pieces of the saga crash tests: processes, hires, effects, store snapshots.

The coordinator (``bus sagas run``) and the simulated systems
(``bus run tests.crash.saga_handlers``) run as separate processes on one Tansu broker of
the test's own (fixed topic names, so no other test's hires reach it). Effects are rows of
a SQLite file the systems write in their dedup transaction (tests/crash/saga_handlers.py).

Sizes: ``BUS_CRASH_SCALE=full`` runs the issue's sizes; without it the CI sizes (see each
test module's constants).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaTopicPartition

from bus import (
    MemoryTransport,
    OutgoingRecord,
    Publisher,
    Record,
    TopicPartition,
    decode,
    encode,
)
from bus.devbroker import DevBroker
from bus.transports.kafka import KafkaTransport, client_options
from handlers.hr.contracts import EmployeeHired
from handlers.identity.contracts import CreateAccount, DeprovisionAccount
from handlers.licensing.contracts import AssignLicenses, RevokeLicenses
from handlers.notifications.contracts import NotifyCancellation, NotifyManager
from handlers.payroll.contracts import CreatePayrollRecord
from handlers.repositories.contracts import GrantRepositoryAccess, RevokeRepositoryAccess
from sagas.state import SagaState, StepStatus
from sagas.stores.base import SagaQuery
from sagas.stores.url import store_from_url
from tests.conftest import kafka_test_config
from tests.crash import saga_definitions
from tests.crash.harness import FULL, _die_with_parent
from tests.crash.saga_ledger import ledger_findings
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = "tests.crash.saga_definitions"


def scaled(full: int, ci: int) -> int:
    return full if FULL else ci


def kafka_env(broker: DevBroker) -> dict[str, str]:
    """Tansu-friendly settings (quick group joins) for the processes the tests start."""
    return {
        "BUS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "BUS_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "BUS_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "BUS_KAFKA_REQUEST_TIMEOUT_MS": "15000",
        "BUS_KAFKA_FETCH_MAX_WAIT_MS": "20",
        "BUS_COMMIT_INTERVAL_S": "0.2",
        "BUS_HTTP": "false",
    }


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m bus ARGS`` in the repository, its stderr appended to ``log``."""
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "bus", *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=_die_with_parent,  # no orphan if the test process is killed
        )


def coordinator_args(store_url: str, definitions: str = DEFINITIONS) -> list[str]:
    return ["sagas", "run", "-d", definitions, "--store", store_url, "--transport", "kafka"]


def spawn_systems(env: dict[str, str], effects: Path, log: Path) -> subprocess.Popen[bytes]:
    """The simulated systems (every onboarding command), effects into ``effects``."""
    return spawn(
        ["run", "tests.crash.saga_handlers", "--transport", "kafka"],
        {**env, "SAGA_CRASH_EFFECTS": str(effects)},
        log,
    )


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill(process)


@dataclass(frozen=True)
class Hire:
    """One hire and what its saga must end as."""

    message: EmployeeHired
    #: ok: completes; fail: its licenses are refused (step 3); wait: its approval never
    #: comes (the 5 s deadline fires).
    kind: str

    @property
    def saga_id(self) -> str:
        return f"onboarding:{self.message.employee_id}"

    def expected_effects(self) -> Counter[tuple[str, bool]]:
        """(command type, succeeded) -> how many effects the systems must record."""
        m = self.message
        engineer = m.department == "engineering"
        out: Counter[tuple[str, bool]] = Counter({(CreateAccount.bus_type, True): 1})
        if self.kind == "wait":
            out[(DeprovisionAccount.bus_type, True)] += 1
            return out
        if engineer:
            out[(GrantRepositoryAccess.bus_type, True)] += 1
        if self.kind == "fail":
            out[(AssignLicenses.bus_type, False)] += 1
            out[(DeprovisionAccount.bus_type, True)] += 1
            if engineer:
                out[(RevokeRepositoryAccess.bus_type, True)] += 1
            return out
        out[(AssignLicenses.bus_type, True)] += 1
        out[(NotifyManager.bus_type, True)] += 1
        if m.employment_type == "employee":
            out[(CreatePayrollRecord.bus_type, True)] += 1
        return out

    @property
    def expected_status(self) -> str:
        return "completed" if self.kind == "ok" else "compensated"


def hires(run: str, count: int, *, mixed: bool = True) -> list[Hire]:
    """``count`` hires: 1 in 5 fails at step 3, 1 in 5 waits on its deadline, 3 complete
    (``mixed=False``: all complete)."""
    out = []
    for n in range(count):
        kind = {1: "fail", 3: "wait"}.get(n % 5, "ok") if mixed else "ok"
        employee_id = f"{run}-{n:04d}" + ("-fail" if kind == "fail" else "")
        message = EmployeeHired(
            employee_id=employee_id,
            # tests/crash/real_systems.py's license manager refuses a login with "fail"
            full_name=f"Crash Test {n}" + (" Fail" if kind == "fail" else ""),
            department="engineering" if n % 2 == 0 else "sales",
            manager_email="boss@example.com",
            employment_type="employee" if n % 3 else "contractor",
            role="admin" if kind == "wait" else "member",
            start_date=date(2026, 12, 1),
        )
        out.append(Hire(message, kind))
    return out


async def publish(broker: DevBroker, messages: Iterable[EmployeeHired]) -> None:
    transport = KafkaTransport(kafka_test_config(broker.bootstrap_servers))
    await transport.start()
    try:
        publisher = Publisher(transport, source="bus://crash/hr")
        for m in messages:
            await publisher.publish(m)
    finally:
        await transport.stop()


def malformed_hires(tag: str) -> list[OutgoingRecord]:
    """Two hires the coordinator cannot read: bytes that are no CloudEvent (value
    ``tag:undecodable``), and a hire CloudEvent (id ``tag:invalid``) whose data misses
    every required field."""
    publisher = Publisher(MemoryTransport(), source="bus://crash/hr")
    env = publisher.envelope(
        EmployeeHired(
            employee_id=f"{tag}-x", full_name="X", department="x", manager_email="m@x.io",
            start_date=date(2026, 3, 2),
        )
    )  # fmt: skip
    headers, value = encode(env._replace(id=f"{tag}:invalid", data=b'{"employee_id": 42}'))
    topic = EmployeeHired.bus_topic
    return [
        OutgoingRecord(topic, b"x", f"{tag}:undecodable".encode(), ()),
        OutgoingRecord(topic, b"x", value, tuple(headers)),
    ]


async def publish_records(broker: DevBroker, records: Iterable[OutgoingRecord]) -> None:
    transport = KafkaTransport(kafka_test_config(broker.bootstrap_servers))
    await transport.start()
    try:
        for r in records:
            await transport.publish(r)
    finally:
        await transport.stop()


async def dead_letters(broker: DevBroker, topic: str) -> list[Record]:
    """Every record of ``topic``'s dead-letter topic up to its end offsets at the call."""
    return await records_to_end(broker, [f"{topic}.dlq"])


def effects(path: Path) -> list[tuple[str, str, str, int]]:
    """Every effect row: (command id, command type, employee id, ok); ``path`` a ledger
    file, or a folder of them (one per app, tests/crash/real_systems.py)."""
    if path.is_dir():
        return [row for file in sorted(path.glob("*.db")) for row in effects(file)]
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        try:
            return list(db.execute("SELECT id, type, employee_id, ok FROM effects"))
        except sqlite3.OperationalError:  # not created yet
            return []


async def sagas(store_url: str) -> dict[str, SagaState]:
    """Every saga in the store by id (a fresh connection: the coordinator owns its own)."""
    store = store_from_url(store_url)
    await store.open()
    try:
        return {s.saga_id: s for s in await store.list_sagas(SagaQuery(limit=100_000))}
    finally:
        await store.close()


#: The group of tests/crash/saga_handlers.py's app (the App's name), and what it consumes.
SYSTEMS_GROUP = "saga-crash-systems"
COMMAND_TYPES = (
    CreateAccount,
    DeprovisionAccount,
    AssignLicenses,
    RevokeLicenses,
    GrantRepositoryAccess,
    RevokeRepositoryAccess,
    NotifyManager,
    NotifyCancellation,
    CreatePayrollRecord,
)


#: The coordinator's consumer group (``bus sagas run``'s default).
COORDINATOR_GROUP = "sagas"


@dataclass(frozen=True)
class Activity:
    """What could still change a saga run's outcome, at one moment."""

    #: End offset per (topic, partition) of the command topics and the coordinator's topics.
    ends: dict[tuple[str, int], int]
    #: Records on the command topics the handlers' groups have not committed yet.
    systems_behind: int
    #: Records on its topics the coordinator's group has not committed yet.
    coordinator_behind: int
    #: Outbox rows not yet published.
    outbox_backlog: int

    @property
    def idle(self) -> bool:
        return not (self.systems_behind or self.coordinator_behind or self.outbox_backlog)

    def __repr__(self) -> str:  # what a timeout shows: the counts, not every partition
        return (
            f"Activity(records={sum(self.ends.values())}, systems_behind="
            f"{self.systems_behind}, coordinator_behind={self.coordinator_behind}, "
            f"outbox_backlog={self.outbox_backlog})"
        )


async def end_offsets(broker: DevBroker, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """The end offset (high watermark) of every partition of ``topics`` that exists, as
    fetch responses give it: this broker's ListOffsets answers an offset inside the last
    batch, below what a consumer of the whole partition commits."""
    transport = KafkaTransport(kafka_test_config(broker.bootstrap_servers))
    await transport.start()
    try:
        wanted = sorted(set(topics) & set(await transport.list_topics()))
        tps = [
            TopicPartition(topic, p)
            for topic in wanted
            for p in range(await transport.partitions_for(topic))
        ]
        if not tps:
            return {}
        consumer = transport.consumer(wanted, group=None)
        await consumer.start()
        try:

            async def known() -> dict[TopicPartition, int | None]:
                await consumer.fetch(max_records=10_000, timeout_s=0.2)
                return {tp: consumer.highwater(tp) for tp in tps}

            ends = await wait_until(
                known,
                until=lambda got: None not in got.values(),
                timeout_s=30,
                what="every partition's high watermark",
                interval_s=0,
            )
        finally:
            await consumer.stop()
    finally:
        await transport.stop()
    return {(tp.topic, tp.partition): end for tp, end in ends.items() if end is not None}


async def committed_offsets(
    broker: DevBroker, group: str, partitions: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """``group``'s committed offset of each partition (0: none). Asked by a consumer that
    never subscribes, so it does not join the group (the admin's OffsetFetch is one this
    broker answers in a form aiokafka cannot decode)."""
    config = kafka_test_config(broker.bootstrap_servers)
    client = AIOKafkaConsumer(**client_options(config), group_id=group, enable_auto_commit=False)
    await client.start()
    try:
        return {
            (topic, p): max(0, await client.committed(KafkaTopicPartition(topic, p)) or 0)
            for topic, p in partitions
        }
    finally:
        await client.stop()


#: The simulated systems' group and the command topics it consumes (every one).
SYSTEMS_GROUPS = {SYSTEMS_GROUP: frozenset(t.bus_topic for t in COMMAND_TYPES)}


async def activity(
    broker: DevBroker, store_url: str, handler_groups: dict[str, frozenset[str]] | None = None
) -> Activity:
    """A snapshot of :class:`Activity` (committed offsets, end offsets, the outbox);
    ``handler_groups``: the consumer groups serving the commands and each one's topics
    (default: the simulated systems' one group, :data:`SYSTEMS_GROUPS`)."""
    groups = SYSTEMS_GROUPS if handler_groups is None else handler_groups
    command_topics = {t.bus_topic for t in COMMAND_TYPES}
    coordinator_topics = {t.bus_topic for t in saga_definitions.onboarding.consumed_types()}
    ends = await end_offsets(broker, command_topics | coordinator_topics)

    async def behind(group: str, topics: Iterable[str]) -> int:
        wanted = set(topics)
        mine = {tp: end for tp, end in ends.items() if tp[0] in wanted}
        committed = await committed_offsets(broker, group, mine)
        return sum(end - committed[tp] for tp, end in mine.items())

    store = store_from_url(store_url)
    await store.open()
    try:
        backlog = (await store.gauges()).outbox_backlog
    finally:
        await store.close()
    return Activity(
        ends=ends,
        systems_behind=sum([await behind(g, topics) for g, topics in groups.items()]),
        coordinator_behind=await behind(COORDINATOR_GROUP, coordinator_topics),
        outbox_backlog=backlog,
    )


async def wait_until_idle(
    broker: DevBroker,
    store_url: str,
    timeout_s: float,
    handler_groups: dict[str, frozenset[str]] | None = None,
) -> None:
    """Until two snapshots in a row find nothing in flight and no record added between them:
    every command handled, every reply consumed, the outbox empty. What a test waits for
    instead of sleeping before it asserts that no late duplicate changed anything."""
    snapshots: list[Activity] = []

    async def last_two() -> tuple[Activity | None, Activity]:
        snapshots.append(await activity(broker, store_url, handler_groups))
        return (snapshots[-2] if len(snapshots) > 1 else None), snapshots[-1]

    def settled(pair: tuple[Activity | None, Activity]) -> bool:
        before, now = pair
        return before is not None and before.idle and now.idle and before.ends == now.ends

    await wait_until(
        last_two,
        until=settled,
        timeout_s=timeout_s,
        what="no command, reply or outbox row in flight (the last two snapshots shown)",
        interval_s=0.5,
    )


async def published_commands(broker: DevBroker, timeout_s: float = 60.0) -> Counter[str]:
    """How many records each command id has on the commands topics: every record up to
    the end offsets at the call (read from the start, no group), not "until a quiet
    while", so a late copy written before the call is always counted."""
    topics = sorted(
        {
            m.bus_topic
            for m in (
                CreateAccount,
                AssignLicenses,
                GrantRepositoryAccess,
                NotifyManager,
                CreatePayrollRecord,
            )
        }
    )
    records = await records_to_end(broker, topics, timeout_s)
    return Counter(decode(r.headers, r.value).id for r in records)


async def records_to_end(
    broker: DevBroker, topics: list[str], timeout_s: float = 60.0
) -> list[Record]:
    """Every record of ``topics`` up to their end offsets at the call (from the start,
    no group)."""
    ends = {tp: end for tp, end in (await end_offsets(broker, topics)).items() if end > 0}
    transport = KafkaTransport(kafka_test_config(broker.bootstrap_servers))
    await transport.start()
    consumer = transport.consumer(topics, group=None)
    await consumer.start()
    out: list[Record] = []
    read_to: dict[tuple[str, int], int] = {}

    async def partitions_left() -> int:
        for tp, records in (await consumer.fetch(max_records=1000, timeout_s=0.2)).items():
            out.extend(records)
            if records:
                read_to[(tp.topic, tp.partition)] = records[-1].offset + 1
        return sum(1 for tp, end in ends.items() if read_to.get(tp, 0) < end)

    try:
        await wait_until(
            partitions_left,
            until=lambda left: left == 0,
            timeout_s=timeout_s,
            what=f"every record of {topics} up to the end offsets (partitions left shown)",
            interval_s=0,
        )
    finally:
        await consumer.stop()
        await transport.stop()
    return out


def check_outcome(
    plan: list[Hire],
    states: dict[str, SagaState],
    rows: list[tuple[str, str, str, int]],
    *,
    resends: bool = False,
) -> None:
    """Every saga ended as its hire calls for, with the effects its hire calls for; every
    chain of sends the store recorded took effect exactly once and nothing else did
    (:func:`tests.crash.saga_ledger.ledger_findings`: a step's attempts may exceed its
    effects, by its re-sends after reply timeouts that the systems' dedup absorbed).

    ``resends``: a step may also have been asked anew (a new chain: its own idempotency
    key, a second effect of its type): the hire's expected effect types must show, each at
    least once.
    """
    by_id = {p.saga_id: p for p in plan}
    missing = sorted(set(by_id) - set(states))
    assert not missing, f"{len(missing)} sagas never started: {missing[:5]}"
    wrong = {
        sid: s.status.value
        for sid, s in states.items()
        if sid in by_id and s.status.value != by_id[sid].expected_status
    }
    assert not wrong, f"{len(wrong)} sagas ended wrongly: {dict(list(wrong.items())[:5])}"
    for s in states.values():  # a completed saga undid nothing
        undone = [n for n, st in s.steps.items() if st.status == StepStatus.COMPENSATED]
        assert s.status != "completed" or not undone, (s.saga_id, undone)

    # the store's sends against the ledger: each chain of sends (attempt 1 and its
    # re-sends after reply timeouts, one idempotency key) took effect exactly once
    findings = ledger_findings(states, rows)
    assert not findings, (
        f"{len(findings)} store-vs-effects findings: {[str(f) for f in findings[:5]]}"
    )
    by_saga: dict[str, Counter[tuple[str, bool]]] = {}
    for _, type_, employee, ok in rows:
        by_saga.setdefault(f"onboarding:{employee}", Counter())[(type_, bool(ok))] += 1

    def matches(sid: str) -> bool:
        got, want = by_saga.get(sid, Counter()), by_id[sid].expected_effects()
        return set(got) == set(want) if resends else got == want

    mismatched = [sid for sid in by_id if not matches(sid)]
    assert not mismatched, [
        (sid, by_saga.get(sid), by_id[sid].expected_effects()) for sid in mismatched[:3]
    ]
