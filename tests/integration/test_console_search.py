"""The sagas list finds a saga by the correlation id of the trigger that started it (kept
in the state from the trigger's CloudEvents ``correlationid``), on SQLite and PostgreSQL,
alongside the saga id, business key and id prefix searches; a row whose state is not JSON
breaks neither the console's migration nor the search."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel

from bus import Command, Event, Registry, hash_token
from sagas import SagaDefinition, Step
from sagas.stores.base import SagaStore
from sagas.stores.postgres import PostgresSagaStore
from sagas.stores.sqlite import SqliteSagaStore
from sagas.testing import SagaTestKit
from sagas.web import build_console_app, parse_tokens
from sagas.web.queries import SagaFilter, queries_for

REG = Registry()
TOKENS = parse_tokens(
    f"""
[[tokens]]
name = "bob"
sha256 = "{hash_token("viewer-token-1234")}"
role = "viewer"
"""
)


class Ordered(Event, type="test.csearch.ordered.v1", topic="csearch.events", key="order_id",
              registry=REG):  # fmt: skip
    order_id: str


class Ship(Command, type="test.csearch.ship.v1", topic="csearch.commands", key="order_id",
           registry=REG):  # fmt: skip
    order_id: str


class Shipped(Event, type="test.csearch.shipped.v1", topic="csearch.events", registry=REG):
    pass


class Order(BaseModel):
    order_id: str


FLOW = SagaDefinition(
    name="csearch",
    version=1,
    trigger=Ordered,
    correlation_key="order_id",
    data=Order,
    start=lambda e: Order(order_id=e.order_id),
    stages=[Step("ship", command=Ship, success=Shipped)],
)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SagaStore]:
    s: SagaStore
    if request.param == "sqlite":
        s = SqliteSagaStore(str(tmp_path / "search.db"))
    else:
        s = PostgresSagaStore(request.getfixturevalue("postgres_dsn"))
    kit = SagaTestKit(FLOW, store=s)
    async with kit:
        await kit.publish(Ordered(order_id="o-1"), correlationid="checkout-7f3a")
        await kit.publish(Ordered(order_id="o-2"), correlationid="checkout-other")
        await kit.drain()
        await _bad_row(s)
        yield s


async def _bad_row(store: SagaStore) -> None:
    """A saga row whose state is not JSON at all (the store quarantines such rows)."""
    sql = (
        "INSERT INTO saga_state (saga_id, name, status, revision, started_at_ms,"
        " updated_at_ms, state) VALUES ('csearch:bad', 'csearch', 'running', 1, 0, 0, 'not{json')"
    )
    if isinstance(store, SqliteSagaStore):
        await store.database.write(lambda c: c.execute(sql))
    elif isinstance(store, PostgresSagaStore):
        async with store.database.connection() as conn:
            await conn.execute(sql)


async def test_a_saga_is_found_by_its_triggers_correlation_id(store: SagaStore) -> None:
    state = (await store.load("csearch:o-1")).state  # type: ignore[union-attr]
    assert state.correlation_id == "checkout-7f3a"
    queries = queries_for(store)
    await queries.migrate()  # the index builds over the unreadable row too
    page = await queries.page(SagaFilter(search="checkout-7f3a"), after=None, limit=10)
    assert [s.saga_id for s in page.sagas] == ["csearch:o-1"]
    names = ("csearch",)
    by_key = await queries.page(SagaFilter(search="o-2", names=names), after=None, limit=10)
    assert [s.saga_id for s in by_key.sagas] == ["csearch:o-2"]
    prefix = await queries.page(SagaFilter(search="csearch:o-"), after=None, limit=10)
    assert sorted(s.saga_id for s in prefix.sagas) == ["csearch:o-1", "csearch:o-2"]

    client = TestClient(TestServer(build_console_app(store, definitions=[FLOW], tokens=TOKENS)))
    await client.start_server()
    try:
        await client.post("/login", data={"token": "viewer-token-1234", "next": "/sagas"})
        body = await (await client.get("/sagas?q=checkout-7f3a")).text()
        assert "csearch:o-1" in body
        assert "csearch:o-2" not in body
    finally:
        await client.close()
