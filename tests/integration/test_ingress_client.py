"""``bus.client`` against a live ingress on the real broker: batching, idempotent retries,
refusals with their field errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from bus.client import AsyncClient, Client
from bus.devbroker import DevBroker
from bus.errors import PublishRefusedError, TransportError
from bus.transports.kafka import KafkaTransport
from tests.conftest import kafka_test_config, unique
from tests.integration.ingress_harness import Hired, Ingested, ingress_running

pytestmark = pytest.mark.kafka


@pytest.fixture
async def ingested(kafka_broker: DevBroker, tmp_path: Path) -> AsyncIterator[Ingested]:
    kafka = KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))
    async with ingress_running(kafka, tmp_path, dedup_store="memory") as running:
        yield running


async def test_async_client_batches_concurrent_publishes_and_every_one_lands(
    ingested: Ingested,
) -> None:
    source = unique("bus://client/async")
    async with AsyncClient(ingested.url, "admin-token", source=source, batch_size=10) as bus:
        ids = await asyncio.gather(
            *(bus.publish(Hired(employee_id=f"e-{n}", name="Ada")) for n in range(25))
        )
    assert len(set(ids)) == 25
    assert bus.accepted == 25
    records = await ingested.published(source, 25)
    assert {dict(r.headers)["ce_id"].decode() for r in records} == set(ids)
    # batched: 25 events in fewer requests than events
    assert ingested.server.stats.published >= 25


async def test_sync_client_flushes_on_size_and_on_leaving_its_block(ingested: Ingested) -> None:
    source = unique("bus://client/sync")

    def send() -> Client:
        with Client(ingested.url, "admin-token", source=source, batch_size=4, linger_s=60) as bus:
            for n in range(6):
                bus.publish(Hired(employee_id=f"e-{n}", name="Bo"))
            assert bus.accepted == 4  # one full batch sent, two waiting
        return bus

    bus = await asyncio.to_thread(send)
    assert bus.accepted == 6
    records = await ingested.published(source, 6)
    assert sorted(orjson.loads(r.value or b"")["employee_id"] for r in records) == [
        f"e-{n}" for n in range(6)
    ]


async def test_a_resent_event_keeps_its_id_and_is_answered_as_a_duplicate(
    ingested: Ingested,
) -> None:
    source = unique("bus://client/dup")
    async with AsyncClient(ingested.url, "admin-token", source=source) as bus:
        [first] = await bus.publish_many([Hired(employee_id="e-1", name="Cy")])
        await bus.publish(Hired(employee_id="e-1", name="Cy"), id=first)
    assert (bus.accepted, bus.duplicates) == (2, 1)
    assert len(await ingested.published(source, 1)) == 1


async def test_a_refused_batch_raises_with_the_problems_field_errors(ingested: Ingested) -> None:
    source = unique("bus://client/bad")
    good = {"specversion": "1.0", "id": "g-1", "source": source,
            "type": "it.ingress.hired.v1", "data": {"employee_id": "e-1", "name": "A"}}  # fmt: skip
    bad = {**good, "id": "b-1", "data": {"employee_id": "e-2"}}
    async with AsyncClient(ingested.url, "admin-token", source=source) as bus:
        with pytest.raises(PublishRefusedError) as refused:
            await bus.publish_many([good, bad])
    assert refused.value.status == 400
    assert refused.value.errors == [{"field": "data.name", "message": "Field required", "event": 1}]
    assert "data.name" in str(refused.value)


async def test_a_token_without_the_grant_is_refused_not_retried(ingested: Ingested) -> None:
    def send() -> None:
        with Client(ingested.url, "wrong-token") as bus:
            bus.publish_many([Hired(employee_id="e-1", name="A")])

    with pytest.raises(PublishRefusedError) as refused:
        await asyncio.to_thread(send)
    assert refused.value.status == 401
    assert ingested.server.stats.refused == {401: 1}


async def test_rate_limited_publishes_wait_for_retry_after_and_get_through(
    ingested: Ingested,
) -> None:
    source = unique("bus://client/slow")
    async with AsyncClient(ingested.url, "slow-token", source=source, batch_size=1) as bus:
        for n in range(4):  # burst 2 at 1/s: the later ones are refused 429 at first
            await bus.publish(Hired(employee_id=f"e-{n}", name="Di"))
    assert bus.accepted == 4
    assert (ingested.server.stats.refused or {}).get(429, 0) >= 1
    assert len(await ingested.published(source, 4)) == 4


def test_an_unreachable_ingress_gives_up_with_a_transport_error() -> None:
    from bus.devbroker import free_port

    client = Client(f"http://127.0.0.1:{free_port()}", "t", attempts=2, max_wait_s=0.05)
    with pytest.raises(TransportError, match="after retries"), client:
        client.publish_many([Hired(employee_id="e-1", name="A")])
