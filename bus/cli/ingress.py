"""``bus ingress``: accept events over HTTP for the apps' message types until SIGTERM/SIGINT.

The apps are loaded as ``bus run`` loads them (their registries are what is accepted);
``--webhooks MODULE:ATTR`` names an :class:`bus.ingress.Ingress` of signed webhooks.
Settings are ``BUS_INGRESS_*`` (docs/ingress.md), the transport and HTTP port as for
``bus run``.

Example::

    BUS_INGRESS_TOKENS_FILE=tokens.toml bus ingress handlers.hr:app \\
        --webhooks handlers.hr.webhook:ingress --transport kafka --http-port 9401
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

import typer

from bus.cli.common import TARGET_HELP, import_module, load_apps
from bus.cli.options import TransportOptions, bus_config, make_transport, transport_options
from bus.errors import ConfigError

if TYPE_CHECKING:
    from bus.ingress import Ingress

__all__ = ["load_ingress", "register"]

log = logging.getLogger("bus.cli")


def register(app: typer.Typer) -> None:
    app.command(
        "ingress",
        help="Accept CloudEvents and signed webhooks over HTTP for the apps' message types "
        "and publish them, until SIGTERM/SIGINT (settings: BUS_INGRESS_*, docs/ingress.md).",
        short_help="accept events over HTTP (CloudEvents, webhooks) and publish them",
    )(ingress)


@transport_options(one_shot=False)
def ingress(
    targets: Annotated[list[str], typer.Argument(metavar="MODULE[:ATTR]", help=TARGET_HELP)],
    webhooks: Annotated[
        str | None,
        typer.Option(
            metavar="MODULE:ATTR",
            help="an Ingress object whose signed webhooks are served too",
            show_default=False,
        ),
    ] = None,
    http_port: Annotated[
        int | None,
        typer.Option(
            help="port of /events, /metrics, /healthz (9400; 0 = any free port, printed)",
            show_default=False,
        ),
    ] = None,
    *,
    options: TransportOptions,
) -> int:
    import asyncio

    from bus.config import IngressConfig
    from bus.gc_tuning import tune_gc
    from bus.ingress import serve_ingress
    from bus.ingress.service import INGRESS_LINGER_MS

    config = bus_config(options, http_port=http_port, http=True)
    ingress_config = IngressConfig.from_env()
    apps = [app for target in targets for app in load_apps(target)]
    hooks = load_ingress(webhooks) if webhooks else None
    transport = make_transport(config, options, kafka_defaults={"linger_ms": INGRESS_LINGER_MS})

    def started(http: object, server: object) -> None:
        # after the imports and set-up, before serving: the start-up heap is frozen
        tune_gc(config.gc_young)

    return asyncio.run(
        serve_ingress(
            apps,
            config=ingress_config,
            bus_config=config,
            transport=transport,
            ingress=hooks,
            started=started,
        )
    )


def load_ingress(target: str) -> Ingress:
    """The :class:`~bus.ingress.Ingress` named by ``module:attr`` (default ``ingress``)."""
    from bus.ingress import Ingress

    module = import_module(target)
    attr = target.partition(":")[2] or "ingress"
    value = getattr(module, attr, None)
    if not isinstance(value, Ingress):
        raise ConfigError(f"{target!r} names no bus.ingress.Ingress (looked for: {attr})")
    return value
