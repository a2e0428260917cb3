"""The ingress under load from another process (nothing accepted is lost) and abuse (each
answered as it should be, and the server healthy after), on loopback and the real broker.
Bounded: 2000 events, and timeouts of a second or two."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bus.devbroker import DevBroker
from bus.ingress import Ingress, sign_sha256, sign_timestamped
from bus.transports.kafka import KafkaTransport
from tests.conftest import kafka_test_config, unique
from tests.integration.ingress_harness import Hired, Ingested, event, ingress_running
from tests.integration.test_ingress_cli import ROOT

pytestmark = pytest.mark.kafka
SECRET = "whsec-abuse"
LOAD_EVENTS = 2000


def webhooks() -> Ingress:
    ingress = Ingress()

    @ingress.webhook("/hooks/hr", secret_env="IT_ABUSE_SHA", id_header="X-Delivery")
    def hr(payload: dict[str, Any]) -> Hired:
        return Hired(employee_id=payload["id"], name=payload["name"])

    @ingress.webhook("/hooks/crm", secret_env="IT_ABUSE_TS", signature="timestamped")
    def crm(payload: dict[str, Any]) -> Hired:
        return Hired(employee_id=payload["id"], name=payload["name"])

    return ingress


@pytest.fixture
async def ingested(
    kafka_broker: DevBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Ingested]:
    monkeypatch.setenv("IT_ABUSE_SHA", SECRET)
    monkeypatch.setenv("IT_ABUSE_TS", SECRET)
    kafka = KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))
    async with ingress_running(
        kafka,
        tmp_path,
        ingress=webhooks(),
        dedup_store="memory",
        body_timeout_s=1.0,
        http={"http_header_timeout_s": 1.0},
    ) as running:
        yield running


async def healthy(ingested: Ingested) -> None:
    async with ingested.session.get(ingested.url + "/healthz") as answer:
        assert answer.status == 200


async def test_load_from_another_process_loses_nothing_it_was_told_was_accepted(
    ingested: Ingested, tmp_path: Path
) -> None:
    source = unique("bus://load")
    ids_file = tmp_path / "accepted.txt"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.ingress_load", ingested.url, "admin-token",
        source, str(LOAD_EVENTS), "20", "8", str(ids_file),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0
    report = orjson.loads(out.splitlines()[-1])
    print(f"ingress load: {report}")  # events/s and p99 for the record (-s shows it)
    accepted = set(ids_file.read_text().split())
    assert report["accepted"] == len(accepted) == LOAD_EVENTS
    assert report["events_per_s"] > 0
    assert report["p99_ms"] > 0
    records = await ingested.published(source, LOAD_EVENTS, timeout_s=60)
    assert {dict(r.headers)["ce_id"].decode() for r in records} == accepted
    assert len(records) == LOAD_EVENTS  # none twice either
    await healthy(ingested)


async def test_malformed_bodies_and_wrong_content_types_are_refused_and_the_server_stays_up(
    ingested: Ingested,
) -> None:
    cases: list[tuple[bytes, str, int]] = [
        (b"{not json", "application/cloudevents+json", 400),
        (b'{"specversion": "1.0"}', "application/cloudevents-batch+json", 400),
        (b"\xff\xfe\x00", "application/cloudevents+json", 400),
        (b"[]", "application/cloudevents+json", 400),
        (b"hello", "text/plain", 415),
        (b"<event/>", "application/cloudevents+xml", 415),
        (b"{}", "multipart/form-data; boundary=x", 415),
    ]
    for body, content_type, status in cases:
        got, answer, headers = await ingested.post(body, content_type=content_type)
        assert got == status, (body, content_type, answer)
        assert headers["Content-Type"] == "application/problem+json"
    await healthy(ingested)


async def test_huge_headers_are_refused_by_the_http_parser_and_the_server_stays_up(
    ingested: Ingested,
) -> None:
    got, _, _ = await ingested.post(
        orjson.dumps(event("h-1", "bus://huge")), headers={"ce-huge": "x" * 100_000}
    )
    assert got in (400, 431)
    many = {f"x-filler-{n}": "y" * 100 for n in range(300)}
    got, _, _ = await ingested.post(orjson.dumps(event("h-2", "bus://huge")), headers=many)
    assert got in (400, 431)
    await healthy(ingested)


async def raw_connection(ingested: Ingested) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = ingested.url.removeprefix("http://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def test_slow_header_and_slow_body_clients_are_cut_off_by_the_timeouts(
    ingested: Ingested,
) -> None:
    reader, writer = await raw_connection(ingested)
    started = time.monotonic()
    writer.write(b"POST /events HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed without an answer
    assert time.monotonic() - started < 5
    writer.close()

    reader, writer = await raw_connection(ingested)
    started = time.monotonic()
    writer.write(
        b"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token\r\n"
        b'Content-Type: application/cloudevents+json\r\nContent-Length: 1000\r\n\r\n{"spec'
    )  # 6 of 1000 bytes, then nothing
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"did not arrive within 1 s" in answer
    assert time.monotonic() - started < 5
    writer.close()
    assert ingested.server.stats.refused == {408: 1}
    assert ingested.http.connections.stats.header_timeouts == 1
    await healthy(ingested)


async def test_a_batch_with_one_bad_event_is_refused_whole_naming_it(ingested: Ingested) -> None:
    source = unique("bus://abuse/batch")
    batch = [event("g-1", source), event("g-2", source, name=7), event("g-3", source)]
    got, answer, _ = await ingested.post(batch, content_type="application/cloudevents-batch+json")
    assert got == 400
    assert [(e["event"], e["field"]) for e in answer["errors"]] == [(1, "data.name")]
    marker = event("m-1", source + "/marker")
    assert (await ingested.post(marker))[0] == 202
    await ingested.published(source + "/marker", 1)  # published after the refusal...
    assert ingested.server.stats.published == 1  # ...and the batch's events never were
    await healthy(ingested)


async def test_replayed_webhook_signatures_are_refused_or_answered_as_duplicates(
    ingested: Ingested,
) -> None:
    body = orjson.dumps({"id": "e-9", "name": "Replay"})
    secret = SECRET.encode()
    old = sign_timestamped(secret, body, int(time.time()) - 3600)
    sent = {"Webhook-Signature": old}
    got, answer, _ = await ingested.post(body, token=None, headers=sent, path="/hooks/crm")
    assert got == 401
    assert "Webhook-Signature" in answer["title"]
    other = orjson.dumps({"id": "e-9", "name": "Tampered"})
    fresh = sign_timestamped(secret, body, int(time.time()))
    got, _, _ = await ingested.post(
        other, token=None, headers={"Webhook-Signature": fresh}, path="/hooks/crm"
    )
    assert got == 401  # a captured signature does not sign another body
    signed = {"X-Hub-Signature-256": sign_sha256(secret, body), "X-Delivery": "d-1"}
    first = await ingested.post(body, token=None, headers=signed, path="/hooks/hr")
    replay = await ingested.post(body, token=None, headers=signed, path="/hooks/hr")
    assert (first[0], first[1]) == (
        202,
        {"accepted": 1, "duplicates": 0, "ids": ["d-1"], "duplicate_ids": []},
    )
    assert (replay[0], replay[1]) == (
        202,
        {"accepted": 1, "duplicates": 1, "ids": ["d-1"], "duplicate_ids": ["d-1"]},
    )
    await healthy(ingested)
