"""Signed webhooks and idempotent ingestion through the HTTP ingress, on a real broker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from bus.devbroker import DevBroker
from bus.errors import ConfigError
from bus.ingress import Ingress, sign_sha256, sign_timestamped
from bus.transports.kafka import KafkaTransport
from tests.conftest import kafka_test_config, unique
from tests.integration.ingress_harness import Hired, Ingested, event, ingress_running
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka
SECRET = "whsec-test"


def hr_webhooks(source: str) -> Ingress:
    ingress = Ingress()

    @ingress.webhook(
        "/hooks/hr",
        secret_env="IT_HR_SECRET",
        signature="sha256",
        source=source,
        id_header="X-Delivery",
    )
    def hr(payload: dict[str, Any]) -> list[Hired]:
        return [Hired(employee_id=p["id"], name=p["name"]) for p in payload["hires"]]

    @ingress.webhook(
        "/hooks/crm", secret_env="IT_CRM_SECRET", signature="timestamped", source=source + "/crm"
    )
    def crm(payload: dict[str, Any]) -> Hired:
        return Hired(employee_id=payload["contact"], name=payload["full_name"])

    return ingress


@pytest.fixture
def kafka(kafka_broker: DevBroker) -> KafkaTransport:
    return KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))


async def post_hook(
    ingested: Ingested, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    status, answer, _ = await ingested.post(
        body, token=None, content_type="application/json", headers=headers, path=path
    )
    return status, answer


async def test_signed_webhooks_are_mapped_published_and_refused_when_unsigned_or_unmappable(
    kafka: KafkaTransport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IT_HR_SECRET", SECRET)
    monkeypatch.setenv("IT_CRM_SECRET", SECRET + "-crm")
    source = unique("bus://hr-system")
    async with ingress_running(
        kafka, tmp_path, ingress=hr_webhooks(source), dedup_store="memory"
    ) as ingested:
        body = orjson.dumps({"hires": [{"id": "w-1", "name": "Ada"}, {"id": "w-2", "name": "Bo"}]})
        signed = {"X-Hub-Signature-256": sign_sha256(SECRET.encode(), body), "X-Delivery": "dlv-1"}
        # the ids the caller could not know otherwise: made from the delivery header
        assert await post_hook(ingested, "/hooks/hr", body, signed) == (
            202,
            {"accepted": 2, "duplicates": 0, "ids": ["dlv-1", "dlv-1.1"], "duplicate_ids": []},
        )
        records = await ingested.published(source, 2)
        assert sorted(dict(r.headers)["ce_id"] for r in records) == [b"dlv-1", b"dlv-1.1"]
        # the system re-delivers the same delivery: recognised, nothing published again
        assert await post_hook(ingested, "/hooks/hr", body, signed) == (
            202,
            {
                "accepted": 2,
                "duplicates": 2,
                "ids": ["dlv-1", "dlv-1.1"],
                "duplicate_ids": ["dlv-1", "dlv-1.1"],
            },
        )

        tampered = body.replace(b"Ada", b"Eve")
        assert (await post_hook(ingested, "/hooks/hr", tampered, signed))[0] == 401
        assert (await post_hook(ingested, "/hooks/hr", body, {"X-Delivery": "dlv-2"}))[0] == 401
        not_json = b"hires=1"
        status, _ = await post_hook(
            ingested,
            "/hooks/hr",
            not_json,
            {"X-Hub-Signature-256": sign_sha256(SECRET.encode(), not_json)},
        )
        assert status == 400
        unmappable = orjson.dumps({"hires": [{"id": "w-3"}]})
        status, answer = await post_hook(
            ingested,
            "/hooks/hr",
            unmappable,
            {"X-Hub-Signature-256": sign_sha256(SECRET.encode(), unmappable)},
        )
        assert status == 422
        assert answer["errors"][0]["message"].startswith("KeyError")
        invalid = orjson.dumps({"hires": [{"id": "w-3", "name": 5}]})
        status, answer = await post_hook(
            ingested,
            "/hooks/hr",
            invalid,
            {"X-Hub-Signature-256": sign_sha256(SECRET.encode(), invalid)},
        )
        assert (status, answer["errors"][0]["field"]) == (422, "data.name")

        crm = orjson.dumps({"contact": "c-1", "full_name": "Cy"})
        now = int(time.time())
        fresh = {"Webhook-Signature": sign_timestamped((SECRET + "-crm").encode(), crm, now)}
        status, answer = await post_hook(ingested, "/hooks/crm", crm, fresh)
        # no delivery header: the ingress made the id, and the answer is how the caller learns it
        assert (status, answer["accepted"], answer["duplicates"]) == (202, 1, 0)
        [made_id] = answer["ids"]
        assert answer["duplicate_ids"] == []
        replayed = {
            "Webhook-Signature": sign_timestamped((SECRET + "-crm").encode(), crm, now - 301)
        }
        status, answer = await post_hook(ingested, "/hooks/crm", crm, replayed)
        assert status == 401
        assert "timestamp" in answer["title"]
        [record] = await ingested.published(source + "/crm", 1)
        assert record.key == b"c-1"
        assert dict(record.headers)["ce_id"] == made_id.encode()


async def test_a_missing_webhook_secret_fails_at_start_naming_the_variable(
    kafka: KafkaTransport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IT_HR_SECRET", raising=False)
    monkeypatch.setenv("IT_CRM_SECRET", "x")
    with pytest.raises(ConfigError, match="IT_HR_SECRET"):
        async with ingress_running(kafka, tmp_path, ingress=hr_webhooks("bus://x")):
            pass


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def dedup_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'ingress.db'}"
    return str(request.getfixturevalue("postgres_dsn"))


async def test_a_re_posted_event_is_accepted_once_and_published_once(
    kafka: KafkaTransport, tmp_path: Path, dedup_store: str
) -> None:
    source = unique("bus://hr/idempotent")
    async with ingress_running(kafka, tmp_path, dedup_store=dedup_store) as ingested:
        first = await ingested.post(event("same-1", source))
        again = await ingested.post(event("same-1", source))
        batch = [event("same-1", source), event("new-2", source)]
        mixed = await ingested.post(batch, content_type="application/cloudevents-batch+json")
        assert [first[:2], again[:2], mixed[:2]] == [
            (202, {"accepted": 1, "duplicates": 0, "ids": ["same-1"], "duplicate_ids": []}),
            (
                202,
                {"accepted": 1, "duplicates": 1, "ids": ["same-1"], "duplicate_ids": ["same-1"]},
            ),
            (
                202,
                {
                    "accepted": 2,
                    "duplicates": 1,
                    "ids": ["same-1", "new-2"],
                    "duplicate_ids": ["same-1"],
                },
            ),
        ]
        assert (await ingested.post(event("marker", source)))[0] == 202  # same key, same partition
        records = await ingested.published(source, 3)
        assert [dict(r.headers)["ce_id"] for r in records] == [b"same-1", b"new-2", b"marker"]


async def test_an_event_given_twice_in_one_batch_is_published_once_and_its_copy_a_duplicate(
    kafka: KafkaTransport, tmp_path: Path, dedup_store: str
) -> None:
    source = unique("bus://hr/twice")
    async with ingress_running(kafka, tmp_path, dedup_store=dedup_store) as ingested:
        batch = [event("twice-1", source), event("once-2", source), event("twice-1", source)]
        status, answer, _ = await ingested.post(
            batch, content_type="application/cloudevents-batch+json"
        )
        assert (status, answer) == (
            202,
            {
                "accepted": 3,
                "duplicates": 1,
                "ids": ["twice-1", "once-2", "twice-1"],
                "duplicate_ids": ["twice-1"],  # the copy: the first one is published
            },
        )
        assert (await ingested.post(event("marker", source)))[0] == 202  # same key, same partition
        records = await ingested.published(source, 3)
        assert [dict(r.headers)["ce_id"] for r in records] == [b"twice-1", b"once-2", b"marker"]


async def test_replicas_sharing_a_store_publish_an_event_once_and_group_concurrent_writes(
    kafka: KafkaTransport, kafka_broker: DevBroker, tmp_path: Path, dedup_store: str
) -> None:
    source = unique("bus://hr/replicas")
    other = KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))
    (tmp_path / "b").mkdir()
    async with (
        ingress_running(kafka, tmp_path, dedup_store=dedup_store) as a,
        ingress_running(other, tmp_path / "b", dedup_store=dedup_store) as b,
    ):
        events = [event(f"r-{n}", source, employee="e-same") for n in range(60)]

        async def post_until_taken(replica: Ingested, body: dict[str, Any]) -> dict[str, Any]:
            # 503 while the other replica publishes the same event: a client retries
            status, answer, _ = await wait_until(
                lambda: replica.post(body),
                timeout_s=20,
                what="an answer other than 503",
                until=lambda found: found[0] != 503,
            )
            assert status == 202
            return answer

        answers = await asyncio.gather(*(post_until_taken(r, e) for e in events for r in (a, b)))
        duplicates = sum(answer["duplicates"] for answer in answers)
        assert duplicates == 60  # each event: one replica published it, the other saw it
        posted = [e["id"] for e in events for _ in (a, b)]
        assert [answer["ids"] for answer in answers] == [[i] for i in posted]
        assert [answer["duplicate_ids"] for answer in answers] == [
            [i] if answer["duplicates"] else [] for i, answer in zip(posted, answers, strict=True)
        ]
        assert a.server.stats.published + b.server.stats.published == 60
        for replica in (a, b):
            idempotency = replica.server.idempotency
            assert idempotency is not None
            assert idempotency.groups < idempotency.claims  # requests shared transactions
        assert (await a.post(event("marker", source, employee="e-same")))[0] == 202
        records = await a.published(source, 61)
        ids = [dict(r.headers)["ce_id"] for r in records]
        assert len(ids) == len(set(ids)) == 61
