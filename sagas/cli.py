"""``bus sagas ...``: run the coordinator, inspect sagas, cancel, retry, draw, demo.

bus cannot import sagas (layering), so this module registers its commands through the
``bus.cli`` entry point (pyproject.toml): bus calls :func:`register` with its Typer group
and three helpers: its transport flags, the transport they select, and ``invoke``, which
runs a command body with its arguments and settings.

Every command but ``graph`` talks to the saga store only: ``--store URL`` or
``BUS_SAGA_STORE`` (``sqlite:PATH``, ``postgresql://...``). ``cancel`` and ``retry`` queue a
request row in the store, which the coordinator carries out in the same transaction as the
saga's new state - one mechanism for one or many replicas, and no broker needed to ask.

The command tree is here; the commands live by concept: ``sagas/cli_store.py`` (list,
show, cancel, retry, purge, graph), ``sagas/cli_run.py`` (the ``run`` and ``demo``
processes), ``sagas/cli_common.py`` (their shared flags, ``load_definitions``,
``parse_since``, re-exported here).

Example::

    bus sagas list --state needs_attention --since 2h
    bus sagas show onboarding:e-2003 --json
    bus sagas retry onboarding:e-2003 --reason "payroll fixed"
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from sagas.cli_common import (
    DefinitionsOption,
    Invoke,
    StoreOption,
    TransportFactory,
    VerboseOption,
    load_definitions,
    parse_since,
)
from sagas.cli_run import run_coordinator, run_demo_process
from sagas.cli_store import register_store_commands

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
            lambda a, c: run_demo_process(a, c, make_transport),
            options,
            scenario=scenario,
            store=store,
            timeout_s=timeout_s,
            verbose=verbose,
        )
