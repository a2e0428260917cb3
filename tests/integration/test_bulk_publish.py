"""``bus publish`` of bulk files: CSV through a mapping, rejects with reasons, through the
HTTP ingress (``--via``, a re-sent file deduplicated) and straight to Kafka."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bus import TopicSpec
from bus.devbroker import DevBroker
from bus.transports.kafka import KafkaTransport
from tests.conftest import kafka_test_config, unique
from tests.integration.test_ingress_cli import ROOT, start_ingress
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka

CSV = """emp,full_name,event_id
e-1,Ada,csv-1
e-2,,csv-2
e-3,Bo,csv-3
e-4,Cy,
"""


def bus_publish(run: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bus", "publish", "-m", "tests.integration.ingress_app", *args],
        cwd=ROOT,
        env={**os.environ, "INGRESS_RUN": run, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def topic_records(
    transport: KafkaTransport, topic: str, count: int
) -> list[dict[str, bytes]]:
    """The headers and value of the records on ``topic``, once there are ``count``."""

    async def read() -> list[dict[str, bytes]]:
        consumer = transport.consumer([topic], group=None)
        await consumer.start()
        found: list[dict[str, bytes]] = []
        try:
            while batch := await consumer.fetch(max_records=1000, timeout_s=0.5):
                for records in batch.values():
                    found += [{**dict(r.headers), "value": r.value or b""} for r in records]
        finally:
            await consumer.stop()
        return found

    return await wait_until(
        read, timeout_s=20, what=f"{count} records", until=lambda rs: len(rs) >= count
    )


@pytest.fixture
async def kafka(kafka_broker: DevBroker) -> KafkaTransport:
    return KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))


async def test_a_csv_file_via_the_ingress_sends_valid_rows_lists_rejects_and_dedups_a_resend(
    kafka_broker: DevBroker, kafka: KafkaTransport, tmp_path: Path
) -> None:
    run = unique("bulk")
    topic = f"it.ingress.cli.{run}"
    await kafka.start()
    await kafka.ensure_topics([TopicSpec(topic, partitions=1, replication_factor=1)])
    proc, url = start_ingress(
        kafka_broker, run, tmp_path, env={"BUS_INGRESS_DEDUP_STORE": "memory"}
    )
    try:
        csv = tmp_path / "hires.csv"
        csv.write_text(CSV)
        args = ["--csv", str(csv), "--type", "it.ingress.joined.v1",
                "--map", "emp=employee_id,full_name=name,event_id=ce_id",
                "--via", url, "--rate", "500", "--rejects", str(tmp_path / "rejects.ndjson")]  # fmt: skip
        out = bus_publish(run, *args, env={"BUS_INGRESS_TOKEN": "cli-token"})
        assert out.returncode == 1, out.stderr  # a line was rejected
        assert "accepted 3, rejected 1 (0 duplicate(s)" in out.stdout
        [reject] = [
            orjson.loads(x) for x in (tmp_path / "rejects.ndjson").read_bytes().splitlines()
        ]
        assert reject["line"] == 3
        assert "name" in reject["reason"]
        assert reject["raw"] == "e-2,,csv-2"

        again = bus_publish(run, *args, env={"BUS_INGRESS_TOKEN": "cli-token"})
        assert "accepted 3, rejected 1 (2 duplicate(s)" in again.stdout  # e-4 had no id
        records = await topic_records(kafka, topic, 4)
        ids = [r["ce_id"].decode() for r in records]
        assert ids.count("csv-1") == ids.count("csv-3") == 1
        assert len(records) == 4  # 3 + the id-less row sent again
        assert {orjson.loads(r["value"])["employee_id"] for r in records} == {"e-1", "e-3", "e-4"}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        await kafka.stop()


async def test_an_ndjson_file_to_kafka_keeps_each_lines_id_source_and_time(
    kafka_broker: DevBroker, kafka: KafkaTransport, tmp_path: Path
) -> None:
    run = unique("bulk-kafka")
    topic = f"it.ingress.cli.{run}"
    await kafka.start()
    await kafka.ensure_topics([TopicSpec(topic, partitions=1, replication_factor=1)])
    lines = [
        {"type": "it.ingress.joined.v1", "id": "n-1", "source": "bus://hr/import",
         "time": "2026-01-02T03:04:05Z", "data": {"employee_id": "e-1", "name": "Ada"}},
        {"type": "it.ingress.joined.v1", "data": {"employee_id": "e-2"}},
        {"type": "no.such.type.v1", "data": {}},
    ]  # fmt: skip
    ndjson = tmp_path / "hires.ndjson"
    ndjson.write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n")
    env = {"BUS_TRANSPORT": "kafka", "BUS_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers}
    refused = bus_publish(run, "--file", str(ndjson), "--rate", "100", env=env)
    assert refused.returncode == 2  # without --rejects: all or nothing
    assert "2 invalid line(s), nothing was sent" in refused.stderr
    rejects = tmp_path / "rejects.ndjson"
    out = bus_publish(run, "--file", str(ndjson), "--rejects", str(rejects), env=env)
    assert out.returncode == 1, out.stderr
    assert "accepted 1, rejected 2" in out.stdout
    assert [orjson.loads(x)["line"] for x in rejects.read_bytes().splitlines()] == [2, 3]
    [record] = await topic_records(kafka, topic, 1)
    assert record["ce_id"] == b"n-1"
    assert record["ce_source"] == b"bus://hr/import"
    assert record["ce_time"].startswith(b"2026-01-02T03:04:05")
    await kafka.stop()
