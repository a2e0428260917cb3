"""``bus console``: the operator console on the saga store, the apps' topics and their
dead letters (registered through the ``bus.cli`` entry point, as ``bus sagas`` is).

Example::

    bus console handlers.demo:apps --tokens-file tokens.toml --port 8081 \\
        --store sqlite:sagas.db --transport kafka
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sagas.config import SagaConfig

if TYPE_CHECKING:
    from bus import BusConfig, Transport

__all__ = ["register"]

log = logging.getLogger("sagas.web")

Command = Callable[..., Any]


def register(
    app: typer.Typer,
    *,
    transport_options: Callable[[Command], Command],
    make_transport: Callable[[BusConfig, argparse.Namespace], Transport],
    invoke: Callable[..., int],
) -> None:
    """Add ``bus console`` (one command: the plugin's group is the command itself)."""

    @app.command(
        "console",
        help="Serve the operator console: sagas (list, a saga's page, retry, cancel, "
        "approve), dead letters (list, replay with a dry run), the event catalog with lag; "
        "/healthz, /readyz (the saga store answers) and /metrics on the same port, without "
        "a login. Binds to 127.0.0.1 unless --host says otherwise.",
        short_help="the operator console (a web page) until Ctrl-C",
    )
    @transport_options
    def console(
        targets: Annotated[
            list[str] | None,
            typer.Argument(
                metavar="[MODULE[:ATTR]]...",
                help="apps whose types, topics and groups the catalog shows",
                show_default=False,
            ),
        ] = None,
        tokens_file: Annotated[
            str, typer.Option(help="who may log in: the ingress's token file (tokens with a role)")
        ] = "tokens.toml",
        definitions: Annotated[
            list[str] | None,
            typer.Option(
                "-d",
                "--definitions",
                metavar="MODULE[:ATTR]",
                help="module defining SagaDefinitions (repeatable; default sagas.definitions.shipped)",
                show_default=False,
            ),
        ] = None,
        store: Annotated[
            str | None,
            typer.Option(help="saga store URL (BUS_SAGA_STORE; default sqlite:sagas.db)"),
        ] = None,
        host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="port (0 = any free port)")] = 8081,
        saga_group: Annotated[str, typer.Option(help="the coordinator's group")] = "sagas",
        *,
        options: object,
    ) -> int:
        return invoke(
            lambda a, c: _serve(a, c, make_transport),
            options,
            targets=targets or [],
            tokens_file=tokens_file,
            definitions=definitions,
            store=store,
            host=host,
            port=port,
            saga_group=saga_group,
        )


def _serve(
    args: argparse.Namespace,
    config: BusConfig,
    make_transport: Callable[[BusConfig, argparse.Namespace], Transport],
) -> int:
    from bus import load_apps
    from sagas.cli import load_definitions
    from sagas.stores.url import describe_store, existing_store_from_url
    from sagas.web.app import serve_console

    apps = [app for target in args.targets for app in load_apps(target)]
    catalog = load_definitions(args.definitions)
    sagas = SagaConfig.from_env(store=args.store)
    store = existing_store_from_url(
        sagas.store, password=sagas.store_password, timeouts=sagas.store_timeouts()
    )
    transport = make_transport(config, args)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_console(
            store,
            definitions=list(catalog),
            apps=apps,
            transport=transport,
            tokens_file=args.tokens_file,
            host=args.host,
            port=args.port,
            saga_group=args.saga_group,
            stop=stop,
            config=config,
            store_name=describe_store(sagas.store),
            started=lambda url: print(
                f"console on {url} (store {describe_store(sagas.store)}); Ctrl-C stops it",
                flush=True,
            ),
        )

    asyncio.run(serve())
    return 0
