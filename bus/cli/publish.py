"""``bus publish``: validate messages against their registered models, then publish them.
Nothing is sent if any message is invalid.

With ``--csv``, ``--rejects``, ``--rate`` or ``--via`` it is a bulk publish
(:mod:`bus.cli.bulk_publish`): the valid lines are sent, the invalid ones listed.

Example::

    bus publish --file hires.ndjson -m handlers.hr.contracts --transport kafka
    bus publish --csv hires.csv --type hr.employee.hired.v1 --map emp=employee_id \\
        -m handlers.hr.contracts --via http://ingress:9400 --rejects bad.ndjson
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bus.cli.bulk_publish import BulkRequest, publish_bulk, read_items
from bus.cli.common import import_module, read_messages, with_transport
from bus.cli.options import TransportOptions, bus_config, make_transport, transport_options
from bus.cli.output import progress
from bus.errors import ConfigError

if TYPE_CHECKING:
    from bus.config import BusConfig
    from bus.ingest import Inbound
    from bus.publisher import Publisher
    from bus.transports.base import Transport

__all__ = ["ModulesOption", "publish_all", "register"]

_BULK = "Bulk files and the HTTP ingress"

MEMORY_IS_LOCAL = (
    "the memory transport lives inside one process, so publishing to it from another "
    "process cannot reach any app. Use 'bus run APP --publish FILE' to feed apps running "
    "on the embedded transport, the Publisher API inside the same process, or "
    "'--transport kafka' against a broker"
)

ModulesOption = Annotated[
    list[str] | None,
    typer.Option(
        "-m",
        "--module",
        metavar="MODULE",
        help="module to import first: it defines message types or apps (repeatable)",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    app.command(
        "publish",
        help="Validate messages against their registered models, then publish them. "
        "Nothing is sent if any message is invalid.",
        short_help="validate and publish messages",
    )(publish)


@transport_options(one_shot=True)
def publish(
    type_name: Annotated[
        str | None,
        typer.Argument(metavar="TYPE", help="message type name, e.g. hr.employee.hired.v1"),
    ] = None,
    data: Annotated[
        str | None, typer.Option(metavar="JSON", help="the message data as JSON")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help='NDJSON file: {"type": ..., "data": {...}} per line'),
    ] = None,
    correlation_id: Annotated[
        str | None, typer.Option(help="process id to continue (default: a new one per message)")
    ] = None,
    module: ModulesOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the records that would be sent; send nothing")
    ] = False,
    csv: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="CSV file, one --type message per row", rich_help_panel=_BULK
        ),
    ] = None,
    csv_type: Annotated[
        str | None,
        typer.Option(
            "--type", metavar="TYPE", help="message type of the CSV rows", rich_help_panel=_BULK
        ),
    ] = None,
    mapping: Annotated[
        str | None,
        typer.Option(
            "--map",
            metavar="COL=FIELD,...",
            help="CSV column -> field (dotted for nested; ce_id, ce_source, ce_time, "
            "ce_subject for attributes); default: each column is the field of its name",
            rich_help_panel=_BULK,
        ),
    ] = None,
    mapping_file: Annotated[
        Path | None,
        typer.Option(
            "--map-file",
            metavar="FILE",
            help="the mapping, one COL=FIELD a line",
            rich_help_panel=_BULK,
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(metavar="N", help="at most N events per second", rich_help_panel=_BULK),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="send the valid lines; write each invalid one here (NDJSON: line, reason, raw)",
            rich_help_panel=_BULK,
        ),
    ] = None,
    via: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="send through the HTTP ingress at URL, not Kafka",
            rich_help_panel=_BULK,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="BUS_INGRESS_TOKEN",
            metavar="TOKEN",
            help="bearer token for --via (BUS_INGRESS_TOKEN)",
            show_default=False,
            rich_help_panel=_BULK,
        ),
    ] = None,
    *,
    options: TransportOptions,
) -> int:
    from bus.ingest import Inbound, parse_message
    from bus.registry import default_registry

    config = bus_config(options)
    for name in module or ():
        import_module(name)
    if sum(map(bool, (file, type_name, csv))) != 1:
        raise ConfigError("give one of TYPE --data JSON, --file FILE, or --csv FILE --type TYPE")
    if csv or via or rejects or rate:
        return _bulk(
            BulkRequest(file, csv, csv_type, mapping, mapping_file, rate, rejects, via, token),
            type_name,
            data,
            dry_run=dry_run,
            config=config,
            options=options,
        )
    if len(default_registry) == 0:
        raise ConfigError(
            "no message types are registered: pass -m MODULE, the module that defines "
            "them (e.g. -m handlers.hr.contracts)"
        )
    if file:
        inbound = read_messages(file)
    else:
        assert type_name is not None
        if data is None:
            raise ConfigError("TYPE needs --data JSON (the message data)")
        inbound = [Inbound(parse_message(type_name, data, default_registry), correlation_id)]
    if dry_run:
        _print_records(inbound)
        return 0
    if config.transport == "memory":
        raise ConfigError(MEMORY_IS_LOCAL)

    async def send(transport: Transport) -> None:
        from bus.publisher import Publisher

        with progress("publishing", total=len(inbound)) as update:
            await publish_all(Publisher(transport, source="bus://cli"), inbound, update)

    with_transport(make_transport(config, options), send)
    print(f"published {len(inbound)} message(s)")
    return 0


async def publish_all(
    publisher: Publisher,
    inbound: list[Inbound],
    on_progress: Callable[[int, int], None] | None = None,
) -> None:
    """Publish ``inbound`` in order, each acknowledged before the next is sent."""
    for done, item in enumerate(inbound, start=1):
        await publisher.publish(
            item.message,
            correlationid=item.correlationid,
            subject=item.subject,
            id=item.id,
            source=item.source,
            time=item.time,
        )
        if on_progress is not None:
            on_progress(done, len(inbound))


def _bulk(
    request: BulkRequest,
    type_name: str | None,
    data: str | None,
    *,
    dry_run: bool,
    config: BusConfig,
    options: TransportOptions,
) -> int:
    from bus.bulk import Item, Reject
    from bus.ingest import parse_message
    from bus.registry import default_registry

    if len(default_registry) == 0:
        raise ConfigError("no message types are registered: pass -m MODULE (the contracts)")
    if request.rate_per_s is not None and request.rate_per_s <= 0:
        raise ConfigError("--rate must be positive")
    if type_name is not None:
        if data is None:
            raise ConfigError("TYPE needs --data JSON (the message data)")
        items = [Item(1, parse_message(type_name, data, default_registry))]
        rejected: list[Reject] = []
    else:
        items, rejected = read_items(request)
    if dry_run:
        import orjson

        from bus.ids import new_id
        from bus.stamping import utc_now

        for item in items:
            event = item.cloudevent(request.source, id=new_id(), time=utc_now())
            print(orjson.dumps(event).decode())
        return 0
    if request.via is None and config.transport == "memory":
        raise ConfigError(MEMORY_IS_LOCAL)
    return publish_bulk(request, items, rejected, lambda: make_transport(config, options))


def _print_records(inbound: list[Inbound]) -> None:
    import orjson

    from bus.encoding import encode
    from bus.publisher import Publisher, record_for
    from bus.transports.memory import MemoryTransport

    publisher = Publisher(MemoryTransport(), source="bus://cli")
    for item in inbound:
        env = publisher.envelope(
            item.message,
            correlationid=item.correlationid,
            subject=item.subject,
            id=item.id,
            source=item.source,
            time=item.time,
        )
        record = record_for(item.message, env)
        headers, _ = encode(env)
        doc = {
            "topic": record.topic,
            "key": None if record.key is None else record.key.decode(),
            "headers": {k: v.decode() for k, v in headers},
            "value": orjson.loads(record.value or b"null"),
        }
        print(orjson.dumps(doc).decode())
