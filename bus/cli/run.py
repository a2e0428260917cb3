"""``bus run``: run apps in this process until SIGTERM/SIGINT (graceful: finish in-flight
records, commit, exit 0), with ``/metrics``, ``/healthz`` and ``/readyz`` served meanwhile.

Example::

    bus run handlers.demo:apps --publish handlers/demo_hires.ndjson --exit-when-idle
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bus.cli.common import TARGET_HELP, load_apps, read_messages
from bus.cli.options import TransportOptions, bus_config, make_transport, transport_options
from bus.cli.output import error
from bus.errors import ConfigError

if TYPE_CHECKING:
    import ssl

    from bus.app import App
    from bus.config import BusConfig, IngressConfig
    from bus.ingest import Inbound
    from bus.ingress.service import IngressSetup
    from bus.runner import Runner

__all__ = ["register"]

log = logging.getLogger("bus.cli")


def register(app: typer.Typer) -> None:
    app.command(
        "run",
        help="Run apps until SIGTERM/SIGINT (graceful: finish in-flight, commit, exit 0).",
        short_help="run one or more apps in this process",
    )(run)


@transport_options(one_shot=False)
def run(
    targets: Annotated[list[str], typer.Argument(metavar="MODULE[:ATTR]", help=TARGET_HELP)],
    publish: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="NDJSON messages to publish once the apps run (same transport)"
        ),
    ] = None,
    exit_when_idle: Annotated[
        bool,
        typer.Option(
            "--exit-when-idle", help="stop once every app has handled and committed everything"
        ),
    ] = False,
    shutdown_deadline_s: Annotated[
        float | None,
        typer.Option(help="longest graceful shutdown, seconds (10)", show_default=False),
    ] = None,
    http_port: Annotated[
        int | None,
        typer.Option(
            help="port of /metrics, /healthz, /readyz (9400; 0 = any free port, printed at start)",
            show_default=False,
        ),
    ] = None,
    no_http: Annotated[bool, typer.Option("--no-http", help="serve no HTTP endpoints")] = False,
    ingress: Annotated[
        bool,
        typer.Option(
            "--ingress",
            help="also accept events over HTTP (POST /events, BUS_INGRESS_*, docs/ingress.md)",
        ),
    ] = False,
    webhooks: Annotated[
        str | None,
        typer.Option(
            metavar="MODULE:ATTR",
            help="with --ingress: an Ingress object whose signed webhooks are served too",
            show_default=False,
        ),
    ] = None,
    *,
    options: TransportOptions,
) -> int:
    from bus.runner import Runner
    from bus.topics import desired_topics
    from bus.transports.kafka import KafkaTransport

    config = bus_config(
        options,
        shutdown_deadline_s=shutdown_deadline_s,
        http=False if no_http else None,
        http_port=http_port,
    )
    apps = [app for target in targets for app in load_apps(target)]
    setup = None
    if ingress or webhooks:
        if no_http:
            raise ConfigError("--ingress is served on the HTTP server: drop --no-http")
        setup = _ingress_setup(apps, webhooks)
    transport = make_transport(config, options)
    inbound = read_messages(publish) if publish else []
    ensure = None
    if isinstance(transport, KafkaTransport) and transport.config.auto_ensure_topics:
        kc = transport.config
        ensure = desired_topics(
            apps, partitions=kc.default_partitions, replication_factor=kc.default_replication_factor
        )
    runner = Runner(
        apps,
        transport,
        config.worker_settings(),
        ensure_topics=ensure,
        dedup_retention_s=config.dedup_retention_s,
    )
    return asyncio.run(
        _serve(runner, inbound, config, exit_when_idle=exit_when_idle, ingress=setup)
    )


def _ingress_setup(
    apps: list[App], webhooks: str | None
) -> tuple[IngressConfig, IngressSetup, ssl.SSLContext | None]:
    """The ingress's settings, checked before anything starts (as ``bus ingress`` does)."""
    from bus.cli.ingress import load_ingress
    from bus.config import IngressConfig
    from bus.ingress.service import ingress_setup, ssl_context_for

    config = IngressConfig.from_env()
    setup = ingress_setup(apps, config, load_ingress(webhooks) if webhooks else None)
    return config, setup, ssl_context_for(config)


async def _serve(
    runner: Runner,
    inbound: list[Inbound],
    config: BusConfig,
    *,
    exit_when_idle: bool,
    ingress: tuple[IngressConfig, IngressSetup, ssl.SSLContext | None] | None = None,
) -> int:
    """:func:`_run`, with the HTTP endpoints up for as long as it lasts (when enabled), the
    ingress's among them with ``--ingress`` (publishing on the apps' own transport)."""
    import contextlib

    from bus.http import HttpServer, runner_readiness
    from bus.ingress.service import ingress_server
    from bus.publisher import Publisher

    def running() -> asyncio.Future[int]:
        # made only once the server listens: a port in use must not leave a coroutine
        # that was never awaited behind ("RuntimeWarning: coroutine '_run' ...")
        return asyncio.ensure_future(
            _run(
                runner,
                inbound,
                exit_when_idle=exit_when_idle,
                deadline_s=config.shutdown_deadline_s,
                gc_young=config.gc_young,
            )
        )

    if not config.http:
        return await running()
    async with contextlib.AsyncExitStack() as stack:
        routes = []
        if ingress is not None:
            # the runner starts and stops the transport; until it has, /events answers 503
            publisher = Publisher(runner.transport, source="bus://ingress")
            accepting = ingress_server(ingress[1], ingress[0], publisher)
            routes.append((await stack.enter_async_context(accepting)).add_routes)
        server = HttpServer(
            host=config.http_host,
            port=config.http_port,
            readiness=runner_readiness(runner),
            liveness=runner.failure,
            settings=config.http_settings(),
            routes=routes,
            ssl_context=ingress[2] if ingress else None,
        )
        await stack.enter_async_context(server)
        # the port actually bound: with --http-port 0 this line is how to find it
        log.info("serving /metrics /healthz /readyz on %s", server.url)
        if ingress is not None:
            log.info("ingress: accepting events on %s/events", server.url)
        return await running()


async def _run(
    runner: Runner,
    inbound: list[Inbound],
    *,
    exit_when_idle: bool,
    deadline_s: float,
    gc_young: int = 50_000,
) -> int:
    from bus.cli.publish import publish_all
    from bus.gc_tuning import tune_gc
    from bus.publisher import Publisher
    from bus.runner import CLOSE_BUDGET_S, install_signal_handlers

    stop = asyncio.Event()
    install_signal_handlers(stop)
    task = asyncio.create_task(runner.run(stop))
    started = asyncio.create_task(runner.started.wait())
    await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        started.cancel()
        await task  # failed to start: raise its error
        return 1
    # Once the workers are up: their clients and apps join the frozen start-up heap. The
    # process is this command's, so the process-wide switch is its to flip, not the
    # library's (a Worker embedded in an application leaves the collector alone).
    tune_gc(gc_young)
    if inbound:
        await publish_all(Publisher(runner.transport, source="bus://cli"), inbound)
    if exit_when_idle:
        idle = asyncio.create_task(runner.wait_idle(timeout_s=float("inf")))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([idle, task, stopped], return_when=asyncio.FIRST_COMPLETED)
        idle.cancel()
        stopped.cancel()
        stop.set()
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
    if not stop.is_set():  # a worker stopped with an error: exit, never linger looking alive
        stopping.cancel()
        error(f"{runner.failure() or task.exception()!r}")
        return 1
    try:
        # the workers' deadline, then the runner's budget to close stores and transport
        async with asyncio.timeout(deadline_s + CLOSE_BUDGET_S + 5):
            await task
    except TimeoutError:
        error("shutdown did not finish within its deadline")
        return 1
    return 0
