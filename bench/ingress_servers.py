"""The two servers of ``bench/ingress.py``, each run in its own process by ``--serve``.

baseline
    aiohttp + one AIOKafkaProducer at aiokafka's defaults: read the body, ``orjson.loads``
    it, ``send`` each event (keyed by its order id), await every acknowledgement, 202.
ingress
    ``bus.ingress.serve_ingress`` with a bearer token, the registry's validation, and
    idempotency on a dedup store (SQLite, PostgreSQL, or none).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from bus.ingress.service import INGRESS_LINGER_MS

TOPIC = "bench.ingress"
TOKEN = "bench-token"
TYPE = "bench.ingress.order.v1"
#: The ingress's producer linger: ``bus ingress``'s own default (BUS_KAFKA_LINGER_MS 0,
#: not bus's 5 ms: an HTTP request waits for its acks). The baseline runs at aiokafka's.
LINGER_MS = INGRESS_LINGER_MS


def serve_baseline(port: int, bootstrap: str) -> None:
    from aiohttp import web
    from aiokafka import AIOKafkaProducer

    async def main() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)  # its own defaults
        await producer.start()

        async def events(request: web.Request) -> web.Response:
            doc = orjson.loads(await request.read())
            docs = doc if isinstance(doc, list) else [doc]
            futures = [
                await producer.send(TOPIC, orjson.dumps(d), key=str(d["data"]["order_id"]).encode())
                for d in docs
            ]
            for future in futures:
                await future
            return web.Response(status=202, body=b'{"accepted":%d}' % len(docs))

        async def alive(request: web.Request) -> web.Response:
            return web.Response(text="ok")

        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/events", events)
        app.router.add_get("/healthz", alive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        await asyncio.Event().wait()

    asyncio.run(main())


def serve_ingress(
    port: int,
    bootstrap: str,
    workdir: Path,
    *,
    dedup: str = "sqlite",
    linger_ms: int = LINGER_MS,
    dedup_linger_ms: float | None = None,
) -> None:
    """The ingress; ``dedup``: "sqlite", "" (none) or a PostgreSQL DSN."""
    from bus import App, BusConfig, Event, Registry
    from bus.config import IngressConfig, KafkaConfig
    from bus.gc_tuning import tune_gc
    from bus.ingress import hash_token
    from bus.ingress import serve_ingress as serve
    from bus.transports.kafka import KafkaTransport

    registry = Registry()

    class OrderPlaced(Event, type=TYPE, topic=TOPIC, key="order_id", registry=registry):
        order_id: str
        customer: str
        amount: float
        items: int
        note: str = ""

    tokens = workdir / "tokens.toml"
    tokens.write_text(f'[[tokens]]\nname = "bench"\nsha256 = "{hash_token(TOKEN)}"\n')
    config = IngressConfig.from_env(
        {},
        tokens_file=str(tokens),
        dedup_store=f"sqlite:{workdir / f'ingress-{port}.db'}" if dedup == "sqlite" else dedup,
        max_body_bytes=8 * 1024 * 1024,
        dedup_linger_ms=dedup_linger_ms,
    )
    bus_config = BusConfig.from_env({}, http_port=port, http_max_connections=1000)
    kafka = KafkaConfig.from_env({}, bootstrap_servers=bootstrap, linger_ms=linger_ms)
    transport = KafkaTransport(kafka)
    asyncio.run(
        serve(
            [App("bench-ingress", registry=registry)],
            config=config,
            bus_config=bus_config,
            transport=transport,
            started=lambda http, server: tune_gc(50_000),
        )
    )
