"""``bus sagas run``: the coordinator process, on the transport bus's flags select.

The coordinator's app on a :class:`bus.Runner` (one consume loop, graceful shutdown on
SIGTERM/SIGINT, lag metrics) with ``/metrics``, ``/healthz`` and ``/readyz``.

Example::

    bus sagas run --store postgresql://sagas@db/sagas --transport kafka
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from bus import (
    BusConfig,
    HttpServer,
    Readiness,
    Runner,
    TopicSpec,
    dead_letter_topic,
    tune_gc,
)
from sagas.cli_common import TransportFactory, load_definitions
from sagas.config import SagaConfig

__all__ = ["run_coordinator"]

log = logging.getLogger("sagas.cli")  # the name its log lines had before the module split


def run_coordinator(
    args: argparse.Namespace, config: BusConfig, make_transport: TransportFactory
) -> int:
    """The coordinator's app on a :class:`bus.Runner`: one consume loop (the Worker's),
    graceful shutdown on SIGTERM/SIGINT, lag metrics, ``/metrics``, ``/readyz``."""
    from sagas.coordinator import Coordinator
    from sagas.metrics import default_saga_metrics
    from sagas.stores.url import describe_store, store_from_url

    catalog = load_definitions(args.definitions)
    sagas = SagaConfig.from_env(store=args.store)
    store = store_from_url(
        sagas.store, password=sagas.store_password, timeouts=sagas.store_timeouts()
    )
    transport = make_transport(config, args)
    observer = default_saga_metrics()
    metrics = observer.metrics
    coordinator = Coordinator(
        catalog,
        store,
        transport,
        group=args.group,
        fault_point=sagas.fault_point,
        observer=observer,
        retention_s=sagas.retention_s,
        early_retention_s=sagas.early_retention_s,
        settings=config.worker_settings(),
    )
    # the dead-letter topics too: created on first use, a new topic's leader may not be
    # known yet when the first dead letter and the next commands are sent
    topics = [*coordinator.topics, *(dead_letter_topic(t) for t in coordinator.topics)]
    specs = [TopicSpec(t, partitions=config.partitions) for t in sorted(topics)]
    runner = Runner([coordinator.app], transport, config.worker_settings(), ensure_topics=specs)

    # what this coordinator serves, so a probe or an operator sees it is the right one
    serves = {
        "definitions": ", ".join(f"{d.name} v{d.version}" for d in catalog),
        "store": describe_store(sagas.store),
    }

    async def ready() -> Readiness:
        reachable = await transport.probe(timeout_s=2.0)
        checks = {"transport": "ok" if reachable else "no answer", **serves}
        joined = all(w.running for w in runner.workers)
        if not joined:
            checks[coordinator.app.name] = "not running"
        return Readiness(reachable and joined, checks)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await store.open()
        try:
            log.info(
                "coordinator of %s on %s, store %s",
                serves["definitions"], transport.name, serves["store"],
            )  # fmt: skip
            if args.no_http or not config.http:
                await runner.run(stop)
                return
            port = config.http_port if args.http_port is None else args.http_port
            server = HttpServer(
                host=config.http_host,
                port=port,
                metrics=metrics,
                readiness=ready,
                settings=config.http_settings(),
            )
            async with server:
                log.info("serving /metrics /healthz /readyz on %s", server.url)
                await runner.run(stop)
        finally:
            await store.close()

    tune_gc(config.gc_young)
    asyncio.run(go())
    return 0
