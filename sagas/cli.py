"""``bus sagas ...``: run the coordinator, inspect sagas, cancel, retry, draw, demo.

bus cannot import sagas (layering), so this module registers its commands through the
``bus.cli`` entry point (pyproject.toml): bus calls :func:`register` with its Typer group
and three helpers: its transport flags, the transport they select, and ``invoke``, which
runs a command body with its arguments and settings.

Every command but ``graph`` talks to the saga store only: ``--store URL`` or
``BUS_SAGA_STORE`` (``sqlite:PATH``, ``postgresql://...``). ``cancel`` and ``retry`` queue a
request row in the store, which the coordinator carries out in the same transaction as the
saga's new state - one mechanism for one or many replicas, and no broker needed to ask.

The command tree is here, with ``demo`` (this module is the one composition root that
wires the demo's handler apps); the other commands live by concept:
``sagas/cli_store.py`` (list, show, cancel, retry, purge, graph), ``sagas/cli_run.py``
(the ``run`` coordinator process), ``sagas/cli_common.py`` (their shared flags,
``load_definitions``, ``parse_since``, re-exported here).

Example::

    bus sagas list --state needs_attention --since 2h
    bus sagas show onboarding:e-2003 --json
    bus sagas retry onboarding:e-2003 --reason "payroll fixed"
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from bus import BusConfig, new_id, tune_gc
from sagas.cli_common import (
    DefinitionsOption,
    Invoke,
    StoreOption,
    TransportFactory,
    VerboseOption,
    load_definitions,
    parse_since,
)
from sagas.cli_run import run_coordinator
from sagas.cli_store import register_store_commands
from sagas.config import SagaConfig

__all__ = ["load_definitions", "parse_since", "register"]

Command = Callable[..., int]


def register(
    app: typer.Typer,
    *,
    transport_options: Callable[[Command], Command],
    make_transport: TransportFactory,
    invoke: Invoke,
) -> None:
    """Add ``bus sagas``'s actions to ``app``, bus's ``sagas`` group (``bus.cli`` entry
    point): bus hands over its transport flags, the transport they select, and ``invoke``,
    which runs a command body below with an ``argparse.Namespace`` and the settings."""
    app.info.help = "Run the saga coordinator and inspect, cancel or retry saga instances."
    app.info.short_help = "saga orchestration: run, list, show, cancel, retry, purge, graph, demo"

    @app.command(
        "run",
        help="Consume the sagas' triggers and replies, store state, publish commands, fire "
        "timers. Several replicas may share one PostgreSQL store.",
        short_help="run the coordinator until SIGTERM/SIGINT",
    )
    @transport_options
    def run(
        definitions: DefinitionsOption = None,
        store: StoreOption = None,
        group: Annotated[str, typer.Option(help="consumer group")] = "sagas",
        http_port: Annotated[
            int | None,
            typer.Option(help="port of /metrics, /healthz, /readyz (BUS_HTTP_PORT)"),
        ] = None,
        no_http: Annotated[bool, typer.Option("--no-http", help="serve no HTTP endpoints")] = False,
        *,
        options: object,
    ) -> int:
        return invoke(
            lambda a, c: run_coordinator(a, c, make_transport),
            options,
            definitions=definitions,
            store=store,
            group=group,
            http_port=http_port,
            no_http=no_http,
        )

    register_store_commands(app, invoke)

    @app.command(
        "demo",
        help="Handler apps + coordinator + HR on one transport. Default: the memory transport "
        "and a fresh SQLite file (no broker, no server); --transport kafka and --store "
        "postgresql://... run the same code on Kafka and PostgreSQL.",
        short_help="onboard several hires end to end in one process and print their timelines",
    )
    @transport_options
    def demo(
        scenario: Annotated[
            Path | None, typer.Option(help="scenario file (default: the bundled one)")
        ] = None,
        store: Annotated[
            str | None, typer.Option(help="saga store (default: a fresh SQLite file)")
        ] = None,
        timeout_s: Annotated[float, typer.Option(help="give up after, seconds")] = 60.0,
        verbose: VerboseOption = False,
        *,
        options: object,
    ) -> int:
        return invoke(
            lambda a, c: _demo(a, c, make_transport),
            options,
            scenario=scenario,
            store=store,
            timeout_s=timeout_s,
            verbose=verbose,
        )


def _demo(args: argparse.Namespace, config: BusConfig, make_transport: TransportFactory) -> int:
    from sagas.demo import DEFAULT_SCENARIO, isolated, load_scenario, run_demo
    from sagas.stores.url import store_from_url

    scenario = load_scenario(args.scenario or DEFAULT_SCENARIO)
    fault_point = SagaConfig.from_env().fault_point
    if args.log_level is None:  # the timelines tell the story; handler logs only on demand
        logging.getLogger("bus").setLevel(logging.WARNING)
        logging.getLogger("sagas").setLevel(logging.WARNING)
    run_id = new_id()[-6:]
    transport = isolated(make_transport(config, args), run_id)

    async def go(url: str) -> int:
        store = store_from_url(url)
        await store.open()
        try:
            return await run_demo(
                scenario.with_suffix("" if args.store is None else f"-{run_id}"),
                store=store,
                transport=transport,
                partitions=config.partitions,
                timeout_s=args.timeout_s,
                fault_point=fault_point,
                verbose=args.verbose,
            )
        finally:
            await store.close()

    tune_gc(config.gc_young)
    if args.store is not None:
        return asyncio.run(go(args.store))
    with tempfile.TemporaryDirectory(prefix="bus-sagas-demo-") as tmp:
        return asyncio.run(go(f"sqlite:{Path(tmp) / 'sagas.db'}"))
