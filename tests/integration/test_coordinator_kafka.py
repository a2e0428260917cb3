"""The README's onboarding demo on Kafka (the Tansu test broker) and PostgreSQL."""

from __future__ import annotations

import io

import pytest

from bus import WorkerSettings
from bus.devbroker import DevBroker
from bus.transports.kafka import KafkaTransport
from sagas.demo import DEFAULT_SCENARIO, load_scenario, run_demo
from sagas.stores import PostgresSagaStore
from tests.conftest import kafka_test_config, unique

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


async def test_the_demo_runs_the_same_on_kafka_and_postgres(
    kafka_broker: DevBroker, postgres_dsn: str
) -> None:
    transport = KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))
    out = io.StringIO()
    async with PostgresSagaStore(postgres_dsn) as store:
        code = await run_demo(
            load_scenario(DEFAULT_SCENARIO).with_suffix("-" + unique("k")),
            store=store,
            transport=transport,
            settings=WorkerSettings(commit_interval_s=0.05, fetch_timeout_s=0.05),
            partitions=3,
            timeout_s=90,
            out=out,
        )
    text = out.getvalue()
    assert code == 0, text
    assert "9 sagas: 1 compensated, 7 completed, 1 failed" in text.splitlines()[-1]
