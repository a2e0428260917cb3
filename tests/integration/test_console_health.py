"""The console's /healthz, /readyz and /metrics: bus's HTTP server, no login, the saga
store's health and every request counted by its route's pattern."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bus import BusConfig, Metrics, StoreError, hash_token
from sagas.stores.base import StoredSaga
from sagas.stores.sqlite import SqliteSagaStore
from sagas.web import serve_console

TOKEN = "operator-token-123"


class FlakyStore(SqliteSagaStore):
    """A SQLite store whose reads fail while ``down`` is set (a database gone away)."""

    down = False

    async def load(self, saga_id: str) -> StoredSaga | None:
        if self.down:
            raise StoreError("connection refused (test)")
        return await super().load(saga_id)


@dataclass
class Served:
    url: str
    store: FlakyStore
    metrics: Metrics
    http: aiohttp.ClientSession


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        f'[[tokens]]\nname = "alice"\nsha256 = "{hash_token(TOKEN)}"\nrole = "operator"\n'
    )
    store, metrics = FlakyStore(str(tmp_path / "sagas.db")), Metrics()
    stop, listening = asyncio.Event(), asyncio.get_running_loop().create_future()
    serving = asyncio.create_task(
        serve_console(
            store, tokens_file=tokens, port=0, stop=stop, started=listening.set_result,
            metrics=metrics, config=BusConfig(http_readiness_interval_s=0),
        )
    )  # fmt: skip
    url = await asyncio.wait_for(asyncio.shield(listening), timeout=30)
    async with aiohttp.ClientSession(url.rstrip("/")) as http:
        yield Served(url, store, metrics, http)
    stop.set()
    await asyncio.wait_for(serving, timeout=30)


async def _get(served: Served, path: str) -> tuple[int, str]:
    async with served.http.get(path, allow_redirects=False) as response:
        return response.status, await response.text()


async def test_healthz_readyz_and_metrics_answer_without_a_login(served: Served) -> None:
    status, body = await _get(served, "/healthz")
    assert status == 200, body
    assert '"healthy":true' in body
    status, body = await _get(served, "/readyz")
    assert status == 200, body
    assert '"saga_store":"store ok"' in body
    status, body = await _get(served, "/metrics")
    assert status == 200, body
    assert served.metrics.sample("bus_console_store_up") == 1


async def test_readyz_fails_and_the_store_gauge_drops_while_the_store_does_not_answer(
    served: Served,
) -> None:
    served.store.down = True
    status, body = await _get(served, "/readyz")
    assert status == 503, body
    assert "connection refused" in body
    assert served.metrics.sample("bus_console_store_up") == 0
    assert (await _get(served, "/healthz"))[0] == 200  # alive: restarting would not help
    served.store.down = False
    assert (await _get(served, "/readyz"))[0] == 200
    assert served.metrics.sample("bus_console_store_up") == 1


async def test_requests_are_counted_and_timed_by_route_pattern_method_and_status(
    served: Served,
) -> None:
    assert (await _get(served, "/login"))[0] == 200
    assert (await _get(served, "/sagas/some-saga-id"))[0] == 303  # no session: to the login
    assert (await _get(served, "/no/such/page"))[0] == 303
    async with served.http.post("/login", data={"token": TOKEN}, allow_redirects=False) as r:
        assert r.status == 303
    _, text = await _get(served, "/metrics")
    counted = {
        (s.labels["route"], s.labels["method"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "bus_console_requests_total"
    }
    assert counted[("/login", "GET", "200")] == 1
    assert counted[("/sagas/{saga_id}", "GET", "303")] == 1  # the pattern: no id in a label
    assert counted[("unmatched", "GET", "303")] == 1
    assert counted[("/login", "POST", "303")] == 1
    timed = {"route": "/login", "method": "GET", "status": "200"}
    assert served.metrics.sample("bus_console_request_duration_seconds_count", timed) == 1
    assert not [labels for labels in counted if "some-saga-id" in labels[0]]
