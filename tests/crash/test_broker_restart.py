"""The broker SIGKILLed mid-run and restarted 5 s later, on durable ``s3://`` storage.

A handler process (``bus run tests.crash.restart_app --transport kafka``) handles 5,000
events; the broker dies while most are in flight and comes back on the same port and
bucket. Nothing is lost, the handler process logs the loss and the recovery once each,
readiness is false meanwhile, and a publish while the broker is down fails clearly after
its timeout instead of hanging. Effects are at-least-once (duplicates counted) or, in the
dedup variant, written in the dedup store's transaction (no duplicate allowed).
"""

from __future__ import annotations

import asyncio
import calendar
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from bus import OutgoingRecord, Publisher, TopicSpec, TransportError, record_for
from bus.devbroker import DevBroker
from bus.transports.kafka import KafkaTransport
from tests.conftest import kafka_test_config, unique
from tests.waiting import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.crash]
ROOT = Path(__file__).resolve().parents[2]
TOTAL = 5_000
BEFORE_KILL = 4_000  # published before the kill; the rest once the broker is back
DOWN_S = 5.0


@dataclass(frozen=True)
class Effects:
    """How the handler process records effects, and how many duplicates that allows."""

    name: str
    #: Effects in a SQLite table written in the dedup store's transaction (else a file).
    dedup: bool = False
    #: None: at-least-once, duplicates are counted and reported, not bounded.
    max_duplicates: int | None = None

    def path(self, directory: Path) -> Path:
        return directory / ("effects.db" if self.dedup else "effects.txt")


MODES = [Effects("at-least-once"), Effects("dedup", dedup=True, max_duplicates=0)]


def _app_env(broker: DevBroker, run: str, effects: Path, mode: Effects) -> dict[str, str]:
    return {
        "RESTART_RUN": run,
        ("RESTART_DEDUP" if mode.dedup else "RESTART_EFFECTS"): str(effects),
        "BUS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "BUS_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "BUS_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        # below the outage: the handler's in-flight sends fail and are sent again, so
        # the worker's re-send path crosses the restart too (above the 3 s session)
        "BUS_KAFKA_REQUEST_TIMEOUT_MS": "4000",
        "BUS_KAFKA_FETCH_MAX_WAIT_MS": "20",
        "BUS_COMMIT_INTERVAL_S": "0.2",
    }


def _spawn(env: dict[str, str], stderr: Path) -> subprocess.Popen[bytes]:
    """``bus run`` of the restart app, its log lines going to ``stderr``."""
    with stderr.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "bus", "run", "tests.crash.restart_app", "--transport", "kafka"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def _handled(effects: Path) -> Counter[int]:
    """How often each event ``n`` was handled (one effect per handling)."""
    if not effects.exists():
        return Counter()
    if effects.suffix == ".db":  # the dedup variant's table
        with closing(sqlite3.connect(f"file:{effects}?mode=ro", uri=True, timeout=5)) as db:
            try:
                return Counter(n for (n,) in db.execute("SELECT n FROM effects"))
            except sqlite3.OperationalError:  # the app has not created the table yet
                return Counter()
    # the last line may be half written: only lines ended by a newline count
    return Counter(int(line.split()[1]) for line in effects.read_text().split("\n")[:-1])


async def _publish_batch(transport: KafkaTransport, records: list[OutgoingRecord]) -> None:
    """Queue every record, then wait for every acknowledgement (one request per batch)."""
    deliveries = [await transport.send(r) for r in records]
    for delivery in deliveries:
        await delivery


class Timeline:
    """Effects counted every 0.1 s from the kill: when handling stalls and resumes."""

    def __init__(self, effects: Path) -> None:
        self.effects = effects
        self.start = time.monotonic()
        self.samples: list[tuple[float, int]] = []

    async def run(self) -> None:
        while True:
            self.samples.append((time.monotonic() - self.start, _handled(self.effects).total()))
            await asyncio.sleep(0.1)

    def resumed_after(self, restart_s: float) -> tuple[int, float | None]:
        """Effects reached before ``restart_s``, and when after it handling went on."""
        stalled = max(count for t, count in self.samples if t <= restart_s)
        later = (t for t, count in self.samples if t > restart_s and count > stalled)
        return stalled, next((t - restart_s for t in later), None)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
async def test_a_broker_killed_mid_run_and_restarted_loses_no_event(
    s3_broker: DevBroker, tmp_path: Path, mode: Effects, record_property: pytest.RecordProperty
) -> None:
    # the module's topics are named once, at import: each test has a broker of its own
    os.environ.setdefault("RESTART_RUN", unique("restart"))
    from tests.crash import restart_app

    run = restart_app.RUN

    effects, stderr = mode.path(tmp_path), tmp_path / "app.stderr"
    config = kafka_test_config(s3_broker.bootstrap_servers, publish_timeout_s=2.0)
    transport = KafkaTransport(config)
    await transport.start()
    ticks = restart_app.Tick.bus_topic
    await transport.ensure_topics(
        [
            TopicSpec(ticks, partitions=3),
            TopicSpec(restart_app.Tock.bus_topic, partitions=3),
            TopicSpec(ticks + ".dlq", partitions=1),
        ]
    )
    publisher = Publisher(transport, source="bus://crash-test")

    def tick(n: int) -> OutgoingRecord:
        message = restart_app.Tick(key=f"k{n % 97}", n=n)
        return record_for(message, publisher.envelope(message))

    figures: dict[str, float | int | None] = {}  # seconds after the restart unless named
    app = _spawn(_app_env(s3_broker, run, effects, mode), stderr)
    try:
        async with asyncio.TaskGroup() as tg:
            for start in range(0, BEFORE_KILL, 500):
                await _publish_batch(transport, [tick(n) for n in range(start, start + 500)])
            await wait_until(
                lambda: len(_handled(effects)),
                until=lambda n: n >= 500,
                timeout_s=60,
                what="500 effects first",
            )

            s3_broker.kill()
            timeline = Timeline(effects)
            sampler = tg.create_task(timeline.run())
            figures["handled_at_kill"] = _handled(effects).total()
            assert figures["handled_at_kill"] < BEFORE_KILL, "the kill came after the last event"

            # while it is down: not ready, and a publish fails clearly after its timeout
            figures["probe_false_after_kill_s"] = await _probe_until(transport, False, DOWN_S - 1)
            assert transport.ready is False
            started = time.monotonic()
            with pytest.raises(TransportError, match=r"not acknowledged within 2s: is the broker"):
                await publisher.publish(restart_app.Tick(key="k-down", n=-1))
            figures["publish_failed_after_s"] = time.monotonic() - started
            assert figures["publish_failed_after_s"] < 4
            assert await transport.probe(timeout_s=0.5) is False

            await asyncio.sleep(max(0.0, DOWN_S - (time.monotonic() - timeline.start)))
            await asyncio.to_thread(s3_broker.start)
            restarted_at, restarted_wall = time.monotonic(), time.time()

            # the producer recovers by itself: the rest goes out on the same transport
            figures["probe_true"] = await _probe_until(transport, True, timeout_s=30)
            for start in range(BEFORE_KILL, TOTAL, 500):
                await _publish_batch(transport, [tick(n) for n in range(start, start + 500)])
            figures["rest_published"] = time.monotonic() - restarted_at
            await wait_until(
                lambda: any(n >= BEFORE_KILL for n in _handled(effects)),
                timeout_s=60,
                what="a new event",
            )
            figures["new_event_handled"] = time.monotonic() - restarted_at
            await wait_until(
                lambda: set(range(TOTAL)) - set(_handled(effects)),
                until=lambda missing: not missing,
                timeout_s=90,
                what="every event handled (missing shown)",
            )
            figures["all_handled"] = time.monotonic() - restarted_at
            # the app's probe logs the recovery on its own schedule, possibly after every
            # event was handled: stopping the app before that line would lose it
            await wait_until(
                lambda: _lines_with(stderr, "reachable again"),
                timeout_s=30,
                what="the app to log that the broker is reachable again",
            )
            sampler.cancel()
    finally:
        if app.poll() is None:
            app.send_signal(signal.SIGTERM)
            app.wait(timeout=30)
        await transport.stop()

    handled = _handled(effects)
    lines = stderr.read_text().splitlines()
    lost_lines = [line for line in lines if "unreachable (" in line]
    back_lines = [line for line in lines if "reachable again" in line]
    stalled, figures["handling_resumed"] = timeline.resumed_after(restarted_at - timeline.start)
    figures["handled_while_down"] = stalled - int(figures["handled_at_kill"] or 0)
    figures["app_logged_recovery"] = _seconds_after(back_lines, restarted_wall)
    figures["duplicates"] = sum(c - 1 for n, c in handled.items() if n >= 0 and c > 1)
    figures["stderr_lines"] = len(lines)
    figures = {k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}
    for name, value in figures.items():
        record_property(name, value)
    print(f"\n[{mode.name}] {figures}\n" + "\n".join(lost_lines + back_lines))

    assert app.returncode == 0, stderr.read_text()[-3000:]
    assert set(range(TOTAL)) <= set(handled), "lost events"
    if mode.max_duplicates is not None:
        assert figures["duplicates"] <= mode.max_duplicates
    assert len(lost_lines) == 1, lines
    assert len(back_lines) == 1, lines
    # aiokafka's line per failed try (about a hundred a second) stays out of the log
    assert len(lines) < 20, lines


def _seconds_after(lines: list[str], wall: float) -> float | None:
    """Seconds from ``wall`` (epoch) to the first line's ``HH:MM:SS.mmm`` UTC stamp."""
    if not lines:
        return None
    stamp = time.strftime("%Y-%m-%d ", time.gmtime(wall)) + lines[0].split()[0]
    logged = calendar.timegm(time.strptime(stamp[:-4], "%Y-%m-%d %H:%M:%S")) + float(stamp[-4:])
    return round(logged - wall, 2)


async def _probe_until(transport: KafkaTransport, answer: bool, timeout_s: float) -> float:
    """Probe until ``probe()`` says ``answer``; the seconds it took."""
    started = time.monotonic()
    await wait_until(
        lambda: transport.probe(timeout_s=0.5),
        until=lambda got: got is answer,
        timeout_s=timeout_s,
        what=f"probe() to answer {answer}",
        interval_s=0.1,
    )
    return time.monotonic() - started


def _lines_with(log: Path, text: str) -> list[str]:
    """The lines of ``log`` (written by another process) that contain ``text``."""
    return [line for line in log.read_text(errors="replace").splitlines() if text in line]


async def test_publish_while_the_broker_is_down_fails_clearly_after_its_timeout() -> None:
    broker = DevBroker()  # memory storage is enough: nothing needs to survive here
    broker.start()
    # aiokafka alone would retry the unacknowledged records until request_timeout_ms (30 s
    # here) before stop() returned; the transport's stop gives them publish_timeout_s
    config = kafka_test_config(
        broker.bootstrap_servers, publish_timeout_s=1.5, request_timeout_ms=30_000
    )
    transport = KafkaTransport(config)
    try:
        await transport.start()
        topic = unique("crash.down")
        await transport.ensure_topics([TopicSpec(topic, partitions=1)])
        await transport.publish(OutgoingRecord(topic, b"k", b"before"))
        broker.kill()
        started = time.monotonic()
        with pytest.raises(TransportError, match=r"not acknowledged within 1.5s") as err:
            await transport.publish(OutgoingRecord(topic, b"k", b"while down"))
        assert time.monotonic() - started < 3.5
        assert broker.bootstrap_servers in str(err.value)
        assert "BUS_KAFKA_PUBLISH_TIMEOUT_S" in str(err.value)
        started = time.monotonic()
        many = [OutgoingRecord(topic, b"k", f"many {i}".encode()) for i in range(3)]
        with pytest.raises(TransportError, match=r"3 of 3 records not acknowledged within 1.5s"):
            await transport.publish_many(many)
        assert time.monotonic() - started < 3.5
        started = time.monotonic()
        await transport.stop()
        assert time.monotonic() - started < 4.0, "stop() waited for a broker that is gone"
    finally:
        await transport.stop()
        broker.stop()
