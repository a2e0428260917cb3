"""The console's sagas list over 100,000 stored sagas: every kind of keyset page renders,
on SQLite and PostgreSQL (their speed, < 200 ms a page, is bench/console.py's to measure:
no timed tests); and the console's access rules over HTTP (no browser needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from sagas.stores.base import SagaStore
from sagas.stores.postgres import PostgresSagaStore
from sagas.stores.sqlite import SqliteSagaStore
from sagas.web.queries import SagaFilter, encode_cursor, queries_for
from tests.console_client import console_client, log_in, page_text
from tests.console_seed import saga_row, seed

pytestmark = pytest.mark.slow

MANY = 100_000


async def _renders(client: TestClient, path: str) -> None:  # type: ignore[type-arg]
    body = await page_text(client, path)
    assert "saga-rows" in body or "<tr" in body


@pytest.fixture(params=["sqlite", "postgres"])
async def many_sagas(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SagaStore]:
    store: SagaStore
    if request.param == "sqlite":
        store = SqliteSagaStore(str(tmp_path / "many.db"))
    else:
        store = PostgresSagaStore(request.getfixturevalue("postgres_dsn"))
    async with store:  # type: ignore[attr-defined]
        await seed(store, MANY)
        yield store


async def test_every_sagas_list_page_over_100k_sagas_renders(
    many_sagas: SagaStore,
) -> None:
    client = await console_client(many_sagas)
    try:
        await log_in(client, "viewer-token-1234")
        deep = encode_cursor((saga_row(MANY // 3)[4], saga_row(MANY // 3)[0]))
        pages = {
            "first": "/sagas",
            "status": "/sagas?status=needs_attention",
            "definition": "/sagas?name=onboarding",
            "status deep": f"/sagas?status=running&after={deep}",
            "deep": f"/sagas?after={deep}",
            "search by business key": "/sagas?q=k-0001234",
            "search by id prefix": "/sagas?q=console_order:k-00012",
            "age": "/sagas?age=gt1d",
        }
        for path in pages.values():
            await _renders(client, path)
        await _renders(client, f"/sagas/{saga_row(MANY // 2)[0]}")
    finally:
        await client.close()


async def test_keyset_pages_list_every_saga_once_in_start_order(tmp_path: Path) -> None:
    async with SqliteSagaStore(str(tmp_path / "s.db")) as store:
        await seed(store, 237)
        queries = queries_for(store)
        await queries.migrate()
        seen: list[str] = []
        after = None
        while True:
            page = await queries.page(SagaFilter(), after=after, limit=50)
            seen += [s.saga_id for s in page.sagas]
            if page.next is None:
                break
            after = page.next
        assert seen == [saga_row(i)[0] for i in reversed(range(237))]
        attention = await queries.page(SagaFilter(status="needs_attention"), after=None, limit=50)
        assert [s.saga_id for s in attention.sagas] == [
            saga_row(i)[0] for i in (200, 150, 100, 50, 0)
        ]
        found = await queries.page(
            SagaFilter(search="k-0000042", names=("console_order", "onboarding")),
            after=None,
            limit=50,
        )
        assert [s.saga_id for s in found.sagas] == [saga_row(42)[0]]


async def test_a_token_of_the_shared_file_without_a_role_cannot_log_in(tmp_path: Path) -> None:
    async with SqliteSagaStore(str(tmp_path / "s.db")) as store:
        client = await console_client(store)
        try:
            refused = await client.post(
                "/login", data={"token": "ingress-token-123"}, allow_redirects=False
            )
            assert refused.status == 401
            assert "Set-Cookie" not in refused.headers
            still_out = await client.get("/sagas", allow_redirects=False)
            assert still_out.status == 303
        finally:
            await client.close()


async def test_a_viewer_reads_but_may_not_act_and_a_post_without_csrf_is_refused(
    tmp_path: Path,
) -> None:
    async with SqliteSagaStore(str(tmp_path / "s.db")) as store:
        await seed(store, 60)
        client = await console_client(store)
        try:
            anonymous = await client.get("/sagas", allow_redirects=False)
            assert anonymous.status == 303
            assert anonymous.headers["Location"].startswith("/login")
            bad = await client.post("/login", data={"token": "not-a-token"})
            assert bad.status == 401
            saga_id = saga_row(50)[0]
            login = await client.post(
                "/login", data={"token": "viewer-token-1234"}, allow_redirects=False
            )
            set_cookie = login.headers["Set-Cookie"]
            assert "HttpOnly" in set_cookie
            assert "SameSite=Strict" in set_cookie
            csrf = await log_in(client, "viewer-token-1234")
            page = await client.get(f"/sagas/{saga_id}")
            assert page.status == 200
            refused = await client.post(f"/sagas/{saga_id}/retry", data={"csrf": csrf})
            assert refused.status == 403
            assert "only an operator may act" in await refused.text()
            await client.post("/logout", data={"csrf": csrf})
            csrf = await log_in(client, "operator-token-123")
            forged = await client.post(f"/sagas/{saga_id}/retry", data={"csrf": "forged"})
            assert forged.status == 403
            asked = await client.post(f"/sagas/{saga_id}/retry", data={"csrf": csrf})
            assert asked.status == 200
            assert "Confirm: retry" in await asked.text()
            done = await client.post(
                f"/sagas/{saga_id}/retry",
                data={"csrf": csrf, "confirmed": "1", "why": "the stock service is back"},
                allow_redirects=False,
            )
            assert done.status == 303
            audit = await queries_for(store).audit(saga_id)
            assert [(a.subject, a.role, a.action, a.reason) for a in audit] == [
                ("alice", "operator", "retry", "the stock service is back")
            ]
            requests = await store.pending_requests(limit=10)
            assert [(r.saga_id, r.action) for r in requests] == [(saga_id, "retry")]
            assert "alice (operator) via the console" in requests[0].reason
        finally:
            await client.close()
