"""The HTTP ingress on a real broker: content modes, every answer, tokens, TLS."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from bus import MemoryBroker, MemoryTransport
from bus.devbroker import DevBroker
from bus.errors import ConfigError
from bus.ingress import encode_value
from bus.record import OutgoingRecord, RecordMetadata
from bus.transports.kafka import KafkaTransport
from tests.conftest import kafka_test_config, unique
from tests.integration.ingress_harness import (
    CONSOLE_TOKEN,
    TOPIC,
    Ingested,
    event,
    ingress_running,
    token_file,
)
from tests.integration.test_security_faults import self_signed
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka


@pytest.fixture
def kafka(kafka_broker: DevBroker) -> KafkaTransport:
    return KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))


@pytest.fixture
async def ingested(kafka: KafkaTransport, tmp_path: Path) -> AsyncIterator[Ingested]:
    async with ingress_running(
        kafka, tmp_path, max_body_bytes=20_000, max_batch_events=50
    ) as running:
        yield running


def headers_of(record: Any) -> dict[str, bytes]:
    return dict(record.headers)


async def test_binary_mode_is_published_with_its_attributes_decoded(ingested: Ingested) -> None:
    source = unique("bus://hr/binary")
    status, answer, _ = await ingested.post(
        {"employee_id": "e-1", "name": "Zoë"},
        content_type="application/json; charset=utf-8",
        headers={
            "ce-specversion": "1.0",
            "ce-id": "b-1",
            "ce-source": encode_value(source),
            "ce-type": "it.ingress.hired.v1",
            "ce-subject": encode_value("Employee Zoë"),
            "ce-tenant": '"acme corp"',
        },
    )
    assert (status, answer) == (
        202,
        {"accepted": 1, "duplicates": 0, "ids": ["b-1"], "duplicate_ids": []},
    )
    [record] = await ingested.published(source, 1)
    headers = headers_of(record)
    assert record.topic == TOPIC
    assert record.key == b"e-1"
    assert orjson.loads(record.value) == {"employee_id": "e-1", "name": "Zoë"}
    assert headers["ce_id"] == b"b-1"
    assert headers["ce_subject"] == "Employee Zoë".encode()
    assert headers["ce_tenant"] == b"acme corp"
    assert headers["ce_correlationid"] == b"b-1"  # the event starts its own process
    assert b"ce_time" in {k.encode() for k in headers}


async def test_structured_and_batched_events_are_published_with_ids_kept(
    ingested: Ingested,
) -> None:
    source = unique("bus://hr/modes")
    status, _, _ = await ingested.post(event("s-1", source))
    assert status == 202
    batch = [event(f"m-{n}", source, employee=f"e-{n}") for n in range(3)]
    status, answer, _ = await ingested.post(
        batch, content_type="application/cloudevents-batch+json"
    )
    assert (status, answer) == (
        202,
        {"accepted": 3, "duplicates": 0, "ids": ["m-0", "m-1", "m-2"], "duplicate_ids": []},
    )
    records = await ingested.published(source, 4)
    assert sorted(headers_of(r)["ce_id"] for r in records) == [b"m-0", b"m-1", b"m-2", b"s-1"]
    assert {r.key for r in records} == {b"e-0", b"e-1", b"e-2"}


async def test_without_a_dedup_store_an_event_given_twice_is_published_twice_and_listed_twice(
    ingested: Ingested,
) -> None:
    source = unique("bus://hr/twice")
    batch = [event("t-1", source), event("t-1", source)]
    status, answer, _ = await ingested.post(
        batch, content_type="application/cloudevents-batch+json"
    )
    assert (status, answer) == (
        202,
        {"accepted": 2, "duplicates": 0, "ids": ["t-1", "t-1"], "duplicate_ids": []},
    )
    records = await ingested.published(source, 2)
    assert [headers_of(r)["ce_id"] for r in records] == [b"t-1", b"t-1"]


async def test_a_batch_with_one_invalid_event_is_400_listing_it_and_publishes_nothing(
    ingested: Ingested,
) -> None:
    source = unique("bus://hr/invalid")
    batch = [event("i-0", source), event("i-1", source, name=7), event("i-2", source)]
    del batch[2]["id"]
    status, answer, headers = await ingested.post(
        batch, content_type="application/cloudevents-batch+json"
    )
    assert status == 400
    assert headers["Content-Type"].startswith("application/problem+json")
    assert sorted((e["event"], e["field"]) for e in answer["errors"]) == [
        (1, "data.name"),
        (2, "id"),
    ]
    published = ingested.server.stats.published
    status, _, _ = await ingested.post(event("marker", source))  # same key: same partition
    assert status == 202
    records = await ingested.published(source, 1)
    assert [headers_of(r)["ce_id"] for r in records] == [b"marker"]
    assert ingested.server.stats.published == published + 1


async def test_an_unknown_type_is_422_and_a_non_cloudevent_415(ingested: Ingested) -> None:
    source = unique("bus://hr/unknown")
    status, answer, _ = await ingested.post(event("u-1", source, type_="it.ingress.fired.v1"))
    assert status == 422
    assert answer["errors"] == [
        {
            "field": "type",
            "message": "no message type 'it.ingress.fired.v1' is registered",
            "event": 0,
        }
    ]
    status, _, _ = await ingested.post(b"hello", content_type="text/plain")
    assert status == 415
    status, _, _ = await ingested.post(b"\x00", content_type="application/cloudevents+protobuf")
    assert status == 415


async def test_a_body_or_batch_too_large_is_413(ingested: Ingested) -> None:
    source = unique("bus://hr/large")
    status, _, _ = await ingested.post(event("l-1", source, name="x" * 30_000))
    assert status == 413
    batch = [event(f"l-{n}", source) for n in range(51)]
    status, answer, _ = await ingested.post(
        batch, content_type="application/cloudevents-batch+json"
    )
    assert status == 413
    assert "50" in answer["title"]


async def test_tokens_decide_who_publishes_what_and_how_fast(ingested: Ingested) -> None:
    source = unique("bus://hr/tokens")
    assert (await ingested.post(event("t-1", source), token=None))[0] == 401
    status, _, headers = await ingested.post(event("t-1", source), token="guess")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert (await ingested.post(event("t-1", source), token="hr-token"))[0] == 202
    status, answer, _ = await ingested.post(
        event("t-2", source, type_="it.ingress.left.v1"), token="hr-token"
    )
    assert status == 403
    assert answer["errors"][0]["field"] == "type"
    other = unique("bus://crm")
    assert (await ingested.post(event("t-3", other), token="hr-token"))[0] == 403
    # slow: 1 event/s, burst 2
    assert (await ingested.post(event("t-4", source), token="slow-token"))[0] == 202
    assert (await ingested.post(event("t-5", source), token="slow-token"))[0] == 202
    status, _, headers = await ingested.post(event("t-6", source), token="slow-token")
    assert status == 429
    assert int(headers["Retry-After"]) >= 1
    await ingested.published(source, 3)


async def test_a_console_token_of_the_shared_file_may_not_publish(ingested: Ingested) -> None:
    source = unique("bus://hr/console")
    status, answer, _ = await ingested.post(event("c-1", source), token=CONSOLE_TOKEN)
    assert status == 403
    assert answer["errors"][0]["field"] == "type"
    assert (await ingested.post(event("c-2", source), token="admin-token"))[0] == 202
    await ingested.published(source, 1)


async def test_a_rotated_token_file_is_used_without_a_restart(
    kafka: KafkaTransport, tmp_path: Path
) -> None:
    path = token_file(tmp_path / "tokens.json.toml")
    async with ingress_running(kafka, tmp_path, tokens_file=str(path)) as ingested:
        source = unique("bus://hr/rotation")
        assert (await ingested.post(event("r-1", source), token="admin-token"))[0] == 202
        token_file(path, {"hr": "hr-token", "admin": "admin-token-2", "slow": "slow-token"})

        async def old_token_status() -> int:
            return (await ingested.post(event("r-2", source), token="admin-token"))[0]

        await wait_until(
            old_token_status, timeout_s=10, what="the old token refused", until=lambda s: s == 401
        )
        assert (await ingested.post(event("r-3", source), token="admin-token-2"))[0] == 202
        path.write_text("[[tokens")  # a broken file keeps the last good tokens
        loads = ingested.server.access.tokens.loads if ingested.server.access.tokens else 0
        assert (await ingested.post(event("r-4", source), token="admin-token-2"))[0] == 202
        assert ingested.server.access.tokens is not None
        assert ingested.server.access.tokens.loads == loads


async def test_tls_serves_https_with_the_configured_certificate(
    kafka: KafkaTransport, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    client = ssl.create_default_context(cafile=str(cert))
    async with ingress_running(
        kafka, tmp_path, tls_certfile=str(cert), tls_keyfile=str(key), client_ssl=client
    ) as ingested:
        assert ingested.url.startswith("https://")
        source = unique("bus://hr/tls")
        assert (await ingested.post(event("tls-1", source)))[0] == 202
        plain = ingested.url.replace("https://", "http://")
        with pytest.raises(aiohttp.ClientError):
            async with ingested.session.post(plain + "/events", data=b"{}") as answer:
                await answer.read()
        await ingested.published(source, 1)


async def test_a_bad_tls_setting_fails_at_start_naming_it(
    kafka: KafkaTransport, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="TLS certificate"):
        async with ingress_running(
            kafka, tmp_path, tls_certfile=str(tmp_path / "no.pem"), tls_keyfile="k"
        ):
            pass


async def test_a_broker_that_went_away_is_503_with_retry_after(tmp_path: Path) -> None:
    async with DevBroker(log_path=tmp_path / "tansu.log") as broker:
        transport = KafkaTransport(
            kafka_test_config(broker.bootstrap_servers, publish_timeout_s=2.0)
        )
        async with ingress_running(transport, tmp_path, retry_after_s=3) as ingested:
            source = unique("bus://hr/down")
            assert (await ingested.post(event("d-1", source)))[0] == 202
            broker.kill()
            await wait_until(lambda: not transport.ready, timeout_s=15, what="the probe noticing")
            status, answer, headers = await ingested.post(event("d-2", source))
            assert status == 503
            assert headers["Retry-After"] == "3"
            assert "broker" in answer["title"]


class GatedTransport:
    """A Kafka transport whose publishing waits for ``gate``: a producer that is stuck."""

    def __init__(self, inner: KafkaTransport) -> None:
        self._inner = inner
        self.gate = asyncio.Event()
        self.waiting = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def publish_many(self, records: Sequence[OutgoingRecord]) -> list[RecordMetadata]:
        self.waiting += len(records)
        await self.gate.wait()
        return await self._inner.publish_many(records)


async def test_a_full_producer_queue_is_503_until_it_drains(
    kafka: KafkaTransport, tmp_path: Path
) -> None:
    gated = GatedTransport(kafka)
    async with ingress_running(gated, tmp_path, max_pending_events=3) as ingested:  # type: ignore[arg-type]
        source = unique("bus://hr/full")
        batch = [event(f"f-{n}", source) for n in range(3)]
        first = asyncio.create_task(
            ingested.post(batch, content_type="application/cloudevents-batch+json")
        )
        await wait_until(lambda: gated.waiting == 3, timeout_s=10, what="the batch being published")
        status, _, headers = await ingested.post(event("f-3", source))
        assert status == 503
        assert headers["Retry-After"] == "1"
        gated.gate.set()
        assert (await first)[0] == 202
        assert (await ingested.post(event("f-3", source)))[0] == 202
        await ingested.published(source, 4)


async def test_the_openapi_document_names_every_registered_type(ingested: Ingested) -> None:
    async with ingested.session.get(ingested.url + "/openapi.json") as answer:
        assert answer.status == 200
        doc = await answer.json()
    schemas = doc["components"]["schemas"]
    assert {"it.ingress.hired.v1", "it.ingress.left.v1"} <= set(schemas)
    assert schemas["it.ingress.hired.v1"]["required"] == ["employee_id", "name"]


async def test_published_events_and_answers_are_counted_on_metrics(ingested: Ingested) -> None:
    source = unique("bus://hr/metrics")
    assert (await ingested.post(event("mt-1", source)))[0] == 202
    assert (await ingested.post(event("mt-2", source), token="nope"))[0] == 401
    async with ingested.session.get(ingested.url + "/metrics") as answer:
        text = await answer.text()
    published = re.search(r'bus_ingress_events_total\{outcome="published"\} ([\d.]+)', text)
    refused = re.search(r'bus_ingress_requests_total\{status="401"\} ([\d.]+)', text)
    assert published is not None
    assert float(published[1]) >= 1
    assert refused is not None
    assert float(refused[1]) >= 1
    assert 'bus_ingress_requests_total{status="503"}' in text  # zero series exported


async def test_the_ingress_refuses_the_memory_transport(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BUS_TRANSPORT=kafka"):
        async with ingress_running(MemoryTransport(MemoryBroker()), tmp_path):
            pass
