"""``bus trace``: the causal tree of one process's messages.

Example::

    bus trace 0195b6f0-8c1e-7d2a handlers.demo:apps --transport kafka
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from bus.cli.common import load_apps, with_transport
from bus.cli.options import TransportOptions, bus_config, make_transport, transport_options
from bus.errors import ConfigError

if TYPE_CHECKING:
    from bus.trace import Hop
    from bus.transports.base import Transport

__all__ = ["register"]

MEMORY_IS_LOCAL = (
    "the memory transport lives inside one process, so another process cannot read "
    "its topics: trace a process on Kafka with '--transport kafka', or call "
    "bus.trace.read_hops inside the process that runs the apps"
)


def register(app: typer.Typer) -> None:
    app.command(
        "trace",
        help="Read the topics of the given apps (and --topic) from the beginning, keep the "
        "messages of CORRELATION_ID and print them as a tree by causation, with each hop's "
        "type, source, position and time after its cause. Needs a shared log "
        "(--transport kafka).",
        short_help="print the causal tree of one process's messages",
    )(trace)


@transport_options(one_shot=True)
def trace(
    correlation_id: Annotated[str, typer.Argument(metavar="CORRELATION_ID")],
    targets: Annotated[
        list[str] | None,
        typer.Argument(metavar="MODULE[:ATTR]", help="apps whose topics to read"),
    ] = None,
    topic: Annotated[
        list[str] | None,
        typer.Option(metavar="TOPIC", help="another topic to read (repeatable)"),
    ] = None,
    json: Annotated[
        bool, typer.Option("--json", help="the hops as a JSON array instead of a tree")
    ] = False,
    *,
    options: TransportOptions,
) -> int:
    from bus.topics import desired_topics
    from bus.trace import build_tree, read_hops, render

    config = bus_config(options)
    apps = [app for target in targets or () for app in load_apps(target)]
    names = {spec.name for spec in desired_topics(apps, partitions=1, replication_factor=1)}
    names.update(topic or ())
    if not names:
        raise ConfigError("name the apps (MODULE[:ATTR]) or --topic to read the process from")
    if config.transport == "memory":
        raise ConfigError(MEMORY_IS_LOCAL)

    async def read(transport: Transport) -> list[Hop]:
        existing = await transport.describe_topics(sorted(names))
        if not existing:
            raise ConfigError(f"none of the topics exists: {', '.join(sorted(names))}")
        return await read_hops(transport, sorted(existing), correlation_id)

    hops = with_transport(make_transport(config, options), read)
    if not hops:
        print(f"no message with correlation id {correlation_id}", file=sys.stderr)
        return 1
    if json:
        import orjson

        print(orjson.dumps(hops).decode())  # dataclasses and datetimes, as orjson writes them
        return 0
    for line in render(build_tree(hops)):
        print(line)
    return 0
