"""The console over HTTP (no browser, no broker): the apps' AsyncAPI document at
``/asyncapi.json`` and on the catalog page; and a replay of a selection and of every match
of a filter, which says how many of how many were sent, letter by letter."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bus import (
    App,
    Command,
    Event,
    MemoryBroker,
    MemoryTransport,
    OutgoingRecord,
    Record,
    Registry,
    hash_token,
)
from bus.dead_letters import dead_letter
from sagas.stores import SqliteSagaStore
from sagas.web import build_console_app, parse_tokens

REG = Registry()
BROKERS: dict[MemoryTransport, MemoryBroker] = {}
TOKENS = parse_tokens(
    f"""
[[tokens]]
name = "alice"
sha256 = "{hash_token("operator-token-123")}"
role = "operator"

[[tokens]]
name = "bob"
sha256 = "{hash_token("viewer-token-1234")}"
role = "viewer"
"""
)


class Reserve(
    Command, type="test.ccat.reserve.v1", topic="ccat.commands", key="order_id", registry=REG
):
    order_id: str


class Reserved(
    Event, type="test.ccat.reserved.v1", topic="ccat.events", key="order_id", registry=REG
):
    order_id: str


def _shop() -> App:
    app = App("ccat-shop")

    @app.handler
    async def reserve(command: Reserve) -> Reserved:
        return Reserved(order_id=command.order_id)

    return app


async def _poison(transport: MemoryTransport, ids: list[str], handler: str) -> None:
    for i, letter_id in enumerate(ids):
        consumed = Record("ccat.commands", 0, i, b"k", b"{}", (("ce_id", letter_id.encode()),))
        out = dead_letter(
            consumed, topic="ccat.commands.dlq", reason="invalid", error=ValueError("bad"),
            app="ccat-shop", handler=handler, attempts=3, now=datetime.now(UTC),
        )  # fmt: skip
        await transport.publish(OutgoingRecord(out.topic, out.key, out.value, out.headers))


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[TestClient, MemoryTransport]]:  # type: ignore[type-arg]
    broker = MemoryBroker(default_partitions=1)
    transport = MemoryTransport(broker)
    BROKERS[transport] = broker
    await transport.start()
    async with SqliteSagaStore(str(tmp_path / "console.db")) as store:
        app = build_console_app(store, apps=[_shop()], transport=transport, tokens=TOKENS)
        c = TestClient(TestServer(app))
        await c.start_server()
        try:
            yield c, transport
        finally:
            await c.close()
    await transport.stop()


async def _login(client: TestClient, token: str) -> str:  # type: ignore[type-arg]
    response = await client.post("/login", data={"token": token, "next": "/sagas"})
    assert response.status == 200, await response.text()
    found = re.search(r'name="csrf" value="([^"]+)"', await response.text())
    assert found is not None
    return found.group(1)


async def test_the_asyncapi_document_is_served_and_listed_on_the_catalog(
    client: tuple[TestClient, MemoryTransport],  # type: ignore[type-arg]
) -> None:
    c, _ = client
    assert (await c.get("/asyncapi.json", allow_redirects=False)).status == 303
    await _login(c, "viewer-token-1234")
    response = await c.get("/asyncapi.json")
    assert response.status == 200
    doc = await response.json()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["channels"]["ccat_commands"]["address"] == "ccat.commands"
    assert doc["operations"]["ccat-shop__reserve__receive"]["action"] == "receive"
    page = await (await c.get("/catalog")).text()
    assert 'href="/asyncapi.json"' in page
    row = re.search(r'<tr id="channel-ccat_commands">(.*?)</tr>', page, re.S)
    assert row is not None
    assert "test.ccat.reserve.v1" in row.group(1)
    assert "receive" in row.group(1)
    assert "ccat-shop__reserve__receive" in row.group(1)
    assert "group ccat-shop" in row.group(1)
    assert "topic ccat.commands" in row.group(1)
    sent = re.search(r'<tr id="channel-ccat_events">(.*?)</tr>', page, re.S)
    assert sent is not None
    assert "send" in sent.group(1)


async def test_a_selection_is_replayed_with_a_result_per_letter(
    client: tuple[TestClient, MemoryTransport],  # type: ignore[type-arg]
) -> None:
    c, transport = client
    await _poison(transport, ["d-1", "d-2", "d-3"], "reserve")
    csrf = await _login(c, "operator-token-123")
    form = {"csrf": csrf, "id": ["d-1", "d-3"]}
    dry = await (await c.post("/dlq/replay", data=form)).text()
    assert "2 to send, 0 refused" in dry
    response = await c.post("/dlq/replay", data={**form, "confirmed": "1", "why": "fixed"})
    page = await response.text()
    assert response.status == 200, page
    assert "Replayed 2 of 2." in page
    results = re.findall(r'<tr class="sent"><td>([^<]+)</td>', page)
    assert sorted(results) == ["d-1", "d-3"]
    assert [r.headers[0][1] for r in BROKERS[transport].records("ccat.commands")] == [
        b"d-1",
        b"d-3",
    ]


async def test_every_match_of_a_filter_is_replayed_and_counted(
    client: tuple[TestClient, MemoryTransport],  # type: ignore[type-arg]
) -> None:
    c, transport = client
    await _poison(transport, ["a-1", "a-2"], "reserve")
    await _poison(transport, ["b-1"], "other")
    csrf = await _login(c, "operator-token-123")
    form = {"csrf": csrf, "handler": "reserve", "confirmed": "1", "why": "bug fixed"}
    page = await (await c.post("/dlq/replay", data=form)).text()
    assert "Replayed 2 of 2." in page
    assert sorted(re.findall(r'<tr class="sent"><td>([^<]+)</td>', page)) == ["a-1", "a-2"]


async def test_a_replay_the_broker_refuses_says_how_far_it_got(
    client: tuple[TestClient, MemoryTransport],  # type: ignore[type-arg]
) -> None:
    c, transport = client
    await _poison(transport, ["f-1", "f-2"], "reserve")
    csrf = await _login(c, "operator-token-123")
    BROKERS[transport].fail_deliveries()
    form = {"csrf": csrf, "id": ["f-1", "f-2"], "confirmed": "1", "why": "try"}
    response = await c.post("/dlq/replay", data=form)
    page = await response.text()
    assert response.status == 502, page
    assert 'id="replay-failure"' in page
    assert "sent" not in re.findall(r'<tr class="([^"]+)">', page)
