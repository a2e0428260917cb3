"""``bus topics ensure``: create the topics apps need; report the ones that differ.

Example::

    bus topics ensure handlers.demo:apps --transport kafka --check
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from bus.cli.common import TARGET_HELP, load_apps, with_transport
from bus.cli.options import Group, TransportOptions, bus_config, make_transport, transport_options
from bus.errors import ConfigError

if TYPE_CHECKING:
    from bus.topics import TopicPlan
    from bus.transports.base import TopicSpec, Transport

__all__ = ["register"]

MEMORY_IS_LOCAL = (
    "memory topics live only inside the process that uses them ('bus run' creates them "
    "itself), so there is nothing to create from another process: provision a broker with "
    "'--transport kafka'"
)


def register(app: typer.Typer) -> None:
    group = typer.Typer(cls=Group, help="Topic provisioning.", no_args_is_help=True)
    group.command(
        "ensure",
        help="Create every topic the apps consume, emit to or dead-letter to that does not "
        "exist (an App's TopicSpec wins over the defaults). Existing topics whose partitions, "
        "replication or configs differ are reported, never changed.",
        short_help="create the topics apps need; report differences",
    )(ensure)
    app.add_typer(group, name="topics", short_help="topic provisioning")


@transport_options(one_shot=True)
def ensure(
    targets: Annotated[list[str], typer.Argument(metavar="MODULE[:ATTR]", help=TARGET_HELP)],
    check: Annotated[
        bool,
        typer.Option("--check", help="create nothing; exit 1 if anything is missing or differs"),
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="one JSON object instead of lines")] = False,
    *,
    options: TransportOptions,
) -> int:
    from bus.topics import desired_topics, plan
    from bus.transports.kafka import KafkaTransport

    config = bus_config(options)
    apps = [app for target in targets for app in load_apps(target)]
    transport = make_transport(config, options)
    if not isinstance(transport, KafkaTransport):
        raise ConfigError(MEMORY_IS_LOCAL)
    kc = transport.config
    partitions, replication = kc.default_partitions, kc.default_replication_factor
    wanted = desired_topics(apps, partitions=partitions, replication_factor=replication)

    async def provision(transport: Transport) -> TopicPlan:
        result = plan(wanted, await transport.describe_topics([t.name for t in wanted]))
        if result.create and not check:
            await transport.ensure_topics(result.create)
        return result

    result = with_transport(transport, provision)
    verb = "missing" if check else "created"
    if json:
        _print_json(verb, result)
    else:
        _print_plan(verb, result.create, result.matching, result.differences)
    if check and (result.create or result.differences):
        return 1
    return 0


def _print_json(verb: str, result: TopicPlan) -> None:
    import orjson

    doc = {
        verb: [
            {
                "name": spec.name,
                "partitions": spec.partitions,
                "replication_factor": spec.replication_factor,
                "config": dict(spec.config),
            }
            for spec in result.create
        ],
        "ok": list(result.matching),
        "differs": list(result.differences),
    }
    print(orjson.dumps(doc).decode())


def _print_plan(
    verb: str,
    create: Sequence[TopicSpec],
    matching: Sequence[str],
    differences: Sequence[str],
) -> None:
    for spec in create:
        print(
            f"{verb:<8} {spec.name} (partitions={spec.partitions}, "
            f"replication={spec.replication_factor})"
        )
    for name in matching:
        print(f"ok       {name}")
    for line in differences:
        print(f"differs  {line}")
