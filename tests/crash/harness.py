"""What the crash tests share: sizes, handler processes, the effects database, the checks.

The handler processes are ``python -m bus run tests.crash.effects_app --transport kafka``
configured by environment (see ``effects_app``). The test publishes ``Item(key, seq)``
records itself (built from the wire format, so this process never imports the app with
another run's topics), kills, stops and restarts processes, then compares the effect rows
with what it published: :func:`check_effects` is pure and has its own unit tests.

Sizes: ``BUS_CRASH_SCALE=full`` runs the sizes of the issue (10,000 events and 20 kills;
20,000 events and 24 partitions); the default ``ci`` runs smaller ones that fit the CI
budget on 2 cores (about 3 minutes for both files). The full sizes, about 7 minutes::

    BUS_CRASH_SCALE=full .venv/bin/python -m pytest -s \
        tests/crash/test_kill_storm.py tests/crash/test_rebalance_zombie.py

Each test prints one ``crash-result {json}`` line with its figures (kills, lost,
duplicates, seconds to done after the last kill, the zombie's races).
``BUS_CRASH_LOG_LEVEL=DEBUG`` makes the handler processes log every assignment and
record; their logs are ``handler-N.log`` in the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import orjson

from bus import TopicSpec, decode
from bus.encoding import encode
from bus.envelope import event_envelope
from bus.ids import new_id
from bus.partitioning import partition_for_key
from bus.record import OutgoingRecord
from bus.stamping import utc_now
from bus.transports.base import Delivery
from bus.transports.kafka import KafkaTransport
from tests.markers import read_to_markers
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
ITEM_TYPE = "crash.effects.item.v1"
SOURCE = "bus://crash-test"
SCALE = os.environ.get("BUS_CRASH_SCALE", "ci").lower()
FULL = SCALE == "full"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class StormSize:
    events: int
    keys: int
    partitions: int
    handlers: int
    kills: int


@dataclass(frozen=True)
class RebalanceSize:
    events: int
    keys: int
    partitions: int
    consumers: int
    changes: int


STORM = (
    StormSize(events=10_000, keys=500, partitions=12, handlers=3, kills=20)
    if FULL
    else StormSize(events=2_000, keys=100, partitions=12, handlers=3, kills=6)
)
REBALANCE = (
    RebalanceSize(events=20_000, keys=1_000, partitions=24, consumers=4, changes=10)
    if FULL
    else RebalanceSize(events=4_000, keys=200, partitions=24, consumers=4, changes=4)
)


def topics(run: str) -> tuple[str, str]:
    """The items topic and the Done topic of ``run`` (as effects_app names them)."""
    return f"crash.items.{run}", f"crash.done.{run}"


async def create_topics(transport: KafkaTransport, run: str, partitions: int) -> None:
    """Explicitly: Tansu's auto-creation is not relied on (docs/testing.md, the test broker)."""
    items, done = topics(run)
    await transport.ensure_topics(
        [
            TopicSpec(items, partitions=partitions),
            TopicSpec(done, partitions=partitions),
            TopicSpec(items + ".dlq", partitions=1),
        ]
    )


def handler_env(
    bootstrap: str, run: str, db: str, *, dedup: bool, emit: bool = True
) -> dict[str, str]:
    """The environment of a handler process: Tansu-friendly group timings (as
    ``kafka_test_config``), quick commits, and the app's own settings."""
    return {
        "BUS_TRANSPORT": "kafka",
        "BUS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "BUS_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "BUS_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "BUS_KAFKA_REQUEST_TIMEOUT_MS": "15000",
        "BUS_KAFKA_FETCH_MAX_WAIT_MS": "20",
        "BUS_KAFKA_CONNECT_TIMEOUT_S": "10",
        "BUS_COMMIT_INTERVAL_S": "0.2",
        # BUS_CRASH_LOG_LEVEL=DEBUG logs every assignment and handled record (diagnosis)
        "BUS_LOG_LEVEL": os.environ.get("BUS_CRASH_LOG_LEVEL", "INFO"),
        "BUS_HTTP_PORT": "0",  # several processes: each its own free port
        "EFFECTS_RUN": run,
        "EFFECTS_DB": db,
        "EFFECTS_DEDUP": "1" if dedup else "0",
        "EFFECTS_EMIT": "1" if emit else "0",
    }


def _die_with_parent() -> None:
    """In the child: SIGKILL when the test process dies, so an aborted run leaks nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Fleet:
    """Handler processes of one group; each one's stderr goes to its own log file."""

    env: dict[str, str]
    log_dir: Path
    live: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ended: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: dict[int, Path] = field(default_factory=dict)
    #: Wall-clock time (of this process's wait) each process was seen exiting at stop_all.
    exited_at: dict[int, str] = field(default_factory=dict)

    def spawn(self) -> subprocess.Popen[bytes]:
        n = len(self.live) + len(self.ended)
        log = self.log_dir / f"handler-{n}.log"
        with open(log, "wb") as fh:
            process = subprocess.Popen(
                [sys.executable, "-m", "bus", "run", "tests.crash.effects_app"],
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        self.logs[process.pid] = log
        self.live.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.live.remove(process)
        self.ended.append(process)

    def stop(self, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
        """SIGTERM (graceful: finish in-flight records, commit, leave); the exit code."""
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=timeout_s)
        self.live.remove(process)
        self.ended.append(process)
        return code

    async def wait_started(self, timeout_s: float = 60.0) -> None:
        """Until every live process consumes: SIGTERM before ``bus run`` installed its
        handler would end it by the default action (exit -15), which is not a shutdown."""

        def consuming(process: subprocess.Popen[bytes]) -> bool:
            assert process.poll() is None, self.log_tail(process.pid)
            return self.grep(process.pid, " consuming ") > 0

        await wait_until(
            lambda: [p.pid for p in self.live if not consuming(p)],
            until=lambda waiting: not waiting,
            timeout_s=timeout_s,
            what="every handler process to consume (pids not yet consuming shown)",
        )

    def stop_all(self) -> list[int]:
        for process in self.live:
            process.send_signal(signal.SIGCONT)  # a stopped one cannot see SIGTERM
            process.send_signal(signal.SIGTERM)
        codes = []
        for process in list(self.live):
            try:
                codes.append(process.wait(timeout=30))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
            self.exited_at[process.pid] = time.strftime("%H:%M:%S")
            self.live.remove(process)
            self.ended.append(process)
        return codes

    def failures(self, codes: list[int]) -> list[tuple[int, int, str]]:
        """(pid, exit code, log tail + when it exited) of the last ``stop_all`` whose code
        was not 0."""
        ended = self.ended[-len(codes) :] if codes else []
        return [
            (p.pid, c, self.log_tail(p.pid) + f"(exited at {self.exited_at.get(p.pid)})")
            for p, c in zip(ended, codes, strict=True)
            if c
        ]

    def crashed(self) -> list[tuple[int, int | None, str]]:
        """Live processes that exited by themselves: (pid, code, log tail)."""
        return [
            (p.pid, p.returncode, self.log_tail(p.pid)) for p in self.live if p.poll() is not None
        ]

    def log_tail(self, pid: int, chars: int = 3000) -> str:
        return self.logs[pid].read_text(errors="replace")[-chars:]

    def grep(self, pid: int, text: str) -> int:
        return self.logs[pid].read_text(errors="replace").count(text)


@dataclass(frozen=True)
class Effect:
    id: int
    key: str
    seq: int
    event_id: str
    pid: int
    part: int


_SELECT_EFFECTS = "SELECT id, key, seq, event_id, pid, part FROM crash_effects ORDER BY id"


class EffectsDb:
    """The effects table, in a SQLite file or a PostgreSQL database; created before any
    handler process starts, read by the test while they write."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.postgres = target.startswith("postgresql://")

    async def create(self) -> None:
        if self.postgres:
            conn = await asyncpg.connect(self.target)
            try:
                await conn.execute(
                    "CREATE TABLE crash_effects (id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL,"
                    " seq INTEGER NOT NULL, event_id TEXT NOT NULL, pid INTEGER NOT NULL,"
                    " part INTEGER NOT NULL)"
                )
            finally:
                await conn.close()
            return
        conn = sqlite3.connect(self.target, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE crash_effects (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " key TEXT NOT NULL, seq INTEGER NOT NULL, event_id TEXT NOT NULL,"
                " pid INTEGER NOT NULL, part INTEGER NOT NULL)"
            )
        finally:
            conn.close()

    async def effects(self) -> list[Effect]:
        """Every effect row, in insertion order (serial/autoincrement id)."""
        if self.postgres:
            conn = await asyncpg.connect(self.target)
            try:
                rows = await conn.fetch(_SELECT_EFFECTS)
            finally:
                await conn.close()
            return [Effect(*r) for r in rows]
        return await asyncio.to_thread(self._sqlite_rows)

    def _sqlite_rows(self) -> list[Effect]:
        conn = sqlite3.connect(self.target, timeout=30)
        try:
            return [Effect(*r) for r in conn.execute(_SELECT_EFFECTS)]
        finally:
            conn.close()


class Tail:
    """The effects so far, re-read whole at every poll.

    Not ``WHERE id > last seen``: a PostgreSQL serial is taken at INSERT and becomes
    visible at COMMIT, so a lower id can appear after a higher one was read (an
    incremental read would skip it and report it lost).
    """

    def __init__(self, db: EffectsDb) -> None:
        self.db = db
        self.rows: list[Effect] = []
        self.distinct: set[tuple[str, int]] = set()

    async def poll(self) -> list[Effect]:
        """Re-read every row; the rows not seen before (in id order)."""
        seen = {e.id for e in self.rows}
        self.rows = await self.db.effects()
        self.distinct = {(e.key, e.seq) for e in self.rows}
        return [e for e in self.rows if e.id not in seen]

    async def distinct_count(self) -> int:
        """Re-read every row; how many distinct (key, seq) effects exist (for
        :func:`tests.waiting.wait_until`)."""
        await self.poll()
        return len(self.distinct)


def plan(events: int, keys: int) -> list[tuple[str, int]]:
    """(key, seq) in publishing order: round robin over the keys, seq counting per key."""
    return [(f"k{i % keys:04d}", i // keys) for i in range(events)]


def item_record(run: str, key: str, seq: int) -> OutgoingRecord:
    env = event_envelope(
        new_id(), SOURCE, ITEM_TYPE, orjson.dumps({"key": key, "seq": seq}), utc_now(),
        key, None, None, None,
    )  # fmt: skip
    headers, value = encode(env)
    return OutgoingRecord(topics(run)[0], key.encode(), value, tuple(headers))


class Feed:
    """Publishes ``items`` in order: paced over a duration, plus one burst on demand.

    The burst takes the next items, so the order per key holds; ``hold_back`` items are kept
    for it (the paced publishing waits for the burst before the last ones), so a burst that
    comes late still has records to send.
    """

    def __init__(
        self,
        transport: KafkaTransport,
        run: str,
        items: Sequence[tuple[str, int]],
        *,
        hold_back: int = 0,
    ) -> None:
        self.transport = transport
        self.run = run
        self.items = items
        self.next = 0
        self._held = hold_back
        self._released = asyncio.Event()
        if not hold_back:
            self._released.set()
        self._lock = asyncio.Lock()
        self._acks: list[Delivery] = []

    async def _send(self, count: int) -> list[Delivery]:
        async with self._lock:  # take and queue atomically: a burst cannot interleave
            batch = self.items[self.next : self.next + count]
            self.next += len(batch)
            acks = [await self.transport.send(item_record(self.run, k, s)) for k, s in batch]
        self._acks += acks
        return acks

    async def burst(self, count: int) -> None:
        """Publish the next ``count`` items at once; returns when they are acknowledged."""
        acks = await self._send(count)
        self._released.set()
        for ack in acks:
            await ack

    async def paced(self, duration_s: float) -> float:
        """Publish the rest spread evenly over ``duration_s`` (so the faults hit a busy
        group), the held-back items after the burst; waits for every acknowledgement.
        The seconds it took."""
        started = time.monotonic()
        step_s = 0.1
        paced = len(self.items) - self._held
        per_step = -(-paced // max(1, int(duration_s / step_s)))
        steps = 0
        while self.next < len(self.items):
            if not self._released.is_set():
                if self.next >= paced:
                    await self._released.wait()
                    continue
                await self._send(min(per_step, paced - self.next))
            else:
                await self._send(per_step)
            steps += 1
            delay = started + steps * step_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        for ack in self._acks:
            await ack
        return time.monotonic() - started


async def publish_paced(
    transport: KafkaTransport, run: str, items: Sequence[tuple[str, int]], duration_s: float
) -> float:
    """Publish ``items`` in order over ``duration_s`` (see :meth:`Feed.paced`)."""
    return await Feed(transport, run, items).paced(duration_s)


async def read_done(
    transport: KafkaTransport, run: str, timeout_s: float
) -> dict[tuple[str, int], set[str]]:
    """The Done outputs: CloudEvents ids per (key, seq), every copy on the topic.

    Read to end markers (:func:`tests.markers.read_to_markers`): call it once the handler
    processes are stopped, so that a late copy is counted however late it came.
    """
    ids: dict[tuple[str, int], set[str]] = defaultdict(set)
    for r in await read_to_markers(transport, topics(run)[1], timeout_s=timeout_s):
        env = decode(r.headers, r.value)
        data = orjson.loads(env.data)
        ids[(data["key"], data["seq"])].add(env.id)
    return ids


def lost_by_partition(lost: Sequence[tuple[str, int]], partitions: int) -> dict[int, list[int]]:
    """Lost seqs grouped by the partition their key maps to (a stuck partition shows)."""
    by: dict[int, list[int]] = defaultdict(list)
    for key, seq in lost:
        by[partition_for_key(key.encode(), partitions)].append(seq)
    return dict(by)


@dataclass
class Findings:
    """What the effects say about the run (see :func:`check_effects`)."""

    published: int
    effects: int
    lost: list[tuple[str, int]]
    #: (key, seq) pairs with more than one effect, and how many extra effects in all.
    duplicated: int
    extra_effects: int
    #: Keys whose effect sequence breaks the ordering rule, with the sequence.
    disordered: dict[str, list[int]]
    unknown: list[tuple[str, int]]


def check_effects(
    published: Sequence[tuple[str, int]], effects: Sequence[Effect], *, dedup: bool
) -> Findings:
    """Compare effects (in insertion order) with what was published.

    Ordering: with dedup, each key's effects must have strictly increasing seq. Without
    dedup a redelivery replays a suffix of the partition, in order: each effect of a key
    is the next seq after the previous effect, or a rewind (seq <= previous); and the
    first occurrences are in order (implied: a new seq can only come as previous + 1).
    """
    want = set(published)
    counts = Counter((e.key, e.seq) for e in effects)
    per_key: dict[str, list[int]] = defaultdict(list)
    for e in effects:
        per_key[e.key].append(e.seq)
    firsts: dict[str, int] = {}
    for key, seq in published:
        firsts[key] = min(seq, firsts.get(key, seq))
    disordered = {}
    for key, seqs in per_key.items():
        if dedup:
            ok = all(b > a for a, b in itertools.pairwise(seqs))
        else:
            ok = all(b == a + 1 or b <= a for a, b in itertools.pairwise(seqs))
        ok = ok and (key not in firsts or seqs[0] == firsts[key])
        if not ok:
            disordered[key] = seqs
    dup = {pair: n for pair, n in counts.items() if n > 1}
    return Findings(
        published=len(published),
        effects=len(effects),
        lost=sorted(want - set(counts)),
        duplicated=len(dup),
        extra_effects=sum(n - 1 for n in dup.values()),
        disordered=disordered,
        unknown=sorted(set(counts) - want),
    )
