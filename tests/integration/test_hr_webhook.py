"""The demo's HR system publishes hires over HTTP: ``bus ingress`` with its signed webhook."""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp
import orjson
import pytest

from bus.devbroker import DevBroker
from bus.ingress import sign_sha256
from bus.transports.kafka import KafkaTransport
from tests.conftest import kafka_test_config, unique
from tests.integration.test_ingress_cli import start_ingress
from tests.unit.test_hr_webhook import hired
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka
SECRET = "hr-demo-secret"


async def test_a_signed_hr_hire_is_published_as_employee_hired_once(
    kafka_broker: DevBroker, tmp_path: Path
) -> None:
    proc, url = start_ingress(
        kafka_broker,
        "hr",
        tmp_path,
        "--webhooks",
        "handlers.hr.webhook:ingress",
        target="handlers.hr.webhook",
        env={"HR_WEBHOOK_SECRET": SECRET, "BUS_INGRESS_DEDUP_STORE": "memory"},
    )
    transport = KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))
    await transport.start()
    delivery = unique("hr-delivery")
    body = orjson.dumps(hired(id=delivery))
    try:
        async with aiohttp.ClientSession() as session:
            headers = {"X-HR-Delivery": delivery, "Content-Type": "application/json"}
            async with session.post(url + "/hooks/hr", data=body, headers=headers) as r:
                assert r.status == 401  # unsigned
            headers["X-Hub-Signature-256"] = sign_sha256(SECRET.encode(), body)
            for duplicate_ids in ([], [delivery]):  # the HR system re-delivers: one event
                async with session.post(url + "/hooks/hr", data=body, headers=headers) as r:
                    assert (r.status, await r.json()) == (
                        202,
                        {
                            "accepted": 1,
                            "duplicates": len(duplicate_ids),
                            "ids": [delivery],  # the event's id: the delivery's
                            "duplicate_ids": duplicate_ids,
                        },
                    )

        async def mine() -> list[dict[str, bytes]]:
            consumer = transport.consumer(["hr.events"], group=None)
            await consumer.start()
            found = []
            try:
                while batch := await consumer.fetch(max_records=5000, timeout_s=0.5):
                    for records in batch.values():
                        found += [
                            {**dict(r.headers), "value": r.value or b""}
                            for r in records
                            if dict(r.headers).get("ce_id") == delivery.encode()
                        ]
            finally:
                await consumer.stop()
            return found

        [record] = await wait_until(mine, timeout_s=20, what="the hire", until=len)
        assert record["ce_type"] == b"hr.employee.hired.v1"
        assert record["ce_source"] == b"bus://hr"
        assert orjson.loads(record["value"])["full_name"] == "Ada Lovelace"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        await transport.stop()
