"""Benchmark: the operator console's pages over 100,000 stored sagas, SQLite and PostgreSQL.

Seeds ``--sagas`` sagas (``tests/console_seed.py``: 1 in 50 needs attention, 1 in 5
running), serves the console in this process (aiohttp's test server on loopback) and
times whole HTTP requests as a logged-in viewer: the sagas list's pages (first, by status,
by definition, deep keyset pages, searches) and a saga's page, ``--requests`` of each kind
spread over the list. Prints a table, then, LAST, one JSON line.

Targets: list page p99 < 200 ms at 100k, a saga's page p99 < 100 ms.

    .venv/bin/python bench/console.py [--sagas 100000] [--requests 200] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
# bench/ last, after the repository root (tests/ holds the seeding and the PostgreSQL server)
sys.path[:] = [x for x in sys.path if Path(x or ".").resolve() != HERE]
sys.path += [str(HERE.parent), str(HERE)]

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from bus import hash_token  # noqa: E402
from sagas.stores.base import SagaStore  # noqa: E402
from sagas.stores.postgres import PostgresSagaStore  # noqa: E402
from sagas.stores.sqlite import SqliteSagaStore  # noqa: E402
from sagas.web import build_console_app, parse_tokens  # noqa: E402
from sagas.web.queries import encode_cursor  # noqa: E402
from tests.console_seed import saga_row, seed  # noqa: E402
from tests.postgres import DSN_VARIABLE, PostgresServer  # noqa: E402

LIST_P99_TARGET_MS = 200.0
SAGA_P99_TARGET_MS = 100.0
TOKEN = "bench-viewer-token"


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def list_paths(n: int, requests: int, rng: random.Random) -> list[str]:
    """A mix of list pages: first pages, filters, deep keyset pages, searches."""
    paths = []
    for k in range(requests):
        i = rng.randrange(n)
        cursor = encode_cursor((saga_row(i)[4], saga_row(i)[0]))
        paths.append(
            [
                "/sagas",
                "/sagas?status=needs_attention",
                "/sagas?name=onboarding",
                f"/sagas?after={cursor}",
                f"/sagas?status=running&after={cursor}",
                f"/sagas?q=k-{i:07d}",
                "/sagas?age=gt1d",
            ][k % 7]
        )
    return paths


async def timed(client: TestClient, paths: Sequence[str]) -> list[float]:  # type: ignore[type-arg]
    out = []
    for path in paths:
        started = time.perf_counter()
        response = await client.get(path)
        await response.read()
        out.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status}")
    return out


async def measure(store: SagaStore, n: int, requests: int) -> dict[str, float]:
    async with store:  # type: ignore[attr-defined]
        started = time.perf_counter()
        await seed(store, n)
        seeded_s = time.perf_counter() - started
        tokens = f'[[tokens]]\nname = "bench"\nsha256 = "{hash_token(TOKEN)}"\nrole = "viewer"\n'
        app = build_console_app(store, tokens=parse_tokens(tokens))
        client = TestClient(TestServer(app))
        await client.start_server()
        try:
            await client.post("/login", data={"token": TOKEN})
            rng = random.Random(7)
            await timed(client, list_paths(n, 14, rng))  # warm-up
            lists = await timed(client, list_paths(n, requests, rng))
            sagas = await timed(
                client, [f"/sagas/{saga_row(rng.randrange(n))[0]}" for _ in range(requests)]
            )
        finally:
            await client.close()
    return {
        "seed_s": round(seeded_s, 1),
        "list_p50_ms": round(quantile(lists, 0.5), 1),
        "list_p99_ms": round(quantile(lists, 0.99), 1),
        "saga_p50_ms": round(quantile(sagas, 0.5), 1),
        "saga_p99_ms": round(quantile(sagas, 0.99), 1),
    }


async def main(args: argparse.Namespace) -> dict[str, object]:
    results: dict[str, dict[str, float]] = {}
    for backend in args.backends.split(","):
        print(f"[{time.strftime('%H:%M:%S')}] {backend}: seeding {args.sagas}", file=sys.stderr)
        if backend == "sqlite":
            with tempfile.TemporaryDirectory(prefix="bus-bench-console-") as tmp:
                results[backend] = await measure(
                    SqliteSagaStore(str(Path(tmp) / "sagas.db")), args.sagas, args.requests
                )
        else:
            external = os.environ.get(DSN_VARIABLE)
            server = PostgresServer.external(external) if external else PostgresServer.create()
            server.start()
            try:
                dsn = server.create_database()
                results[backend] = await measure(PostgresSagaStore(dsn), args.sagas, args.requests)
            finally:
                if external:
                    server.drop_database(dsn)
                else:
                    server.destroy()
    ok = all(
        r["list_p99_ms"] < LIST_P99_TARGET_MS and r["saga_p99_ms"] < SAGA_P99_TARGET_MS
        for r in results.values()
    )
    return {"bench": "console", "sagas": args.sagas, "requests": args.requests, **results,
            "targets_met": ok}  # fmt: skip


def print_table(summary: dict[str, object]) -> None:
    print(f"{'backend':<10} {'list p50':>9} {'list p99':>9} {'saga p50':>9} {'saga p99':>9}  (ms)")
    for backend in ("sqlite", "postgres"):
        r = summary.get(backend)
        if isinstance(r, dict):
            print(
                f"{backend:<10} {r['list_p50_ms']:>9} {r['list_p99_ms']:>9} "
                f"{r['saga_p50_ms']:>9} {r['saga_p99_ms']:>9}"
            )
    print(
        f"targets: list p99 < {LIST_P99_TARGET_MS:.0f} ms, saga page p99 < {SAGA_P99_TARGET_MS:.0f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sagas", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgres")
    summary = asyncio.run(main(parser.parse_args()))
    print_table(summary)
    print(json.dumps(summary))
