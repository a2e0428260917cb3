"""``bus dlq list / show / replay``: inspect and replay dead letters (Kafka only).

Dead letters are read from every ``*.dlq`` topic (or those named with ``--topic``) up to
their end when the command starts, several topics at once, listed in a fixed order. IDs are the CloudEvents id, else
``<dlq-topic>:<partition>:<offset>``. See docs/dlq.md.

Example::

    bus dlq list --reason handler_failed --since 2h --transport kafka
    bus dlq replay --handler reserve_stock --dry-run
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from bus.cli.common import with_transport
from bus.cli.options import Group, TransportOptions, bus_config, make_transport, transport_options
from bus.cli.output import print_table, progress
from bus.errors import ConfigError

if TYPE_CHECKING:
    from bus.config import BusConfig
    from bus.dlq import DeadLetter, DeadLetterFilter, ReplayPlan
    from bus.transports.base import Transport

__all__ = ["register"]

MEMORY_IS_LOCAL = (
    "the memory transport lives inside one process, so another process cannot read its "
    "dead letters. Use '--transport kafka' against a broker, or, in the process that runs "
    "the apps, bus.dlq.read_dead_letters(transport, topics)"
)
_FILTERS = "Filters (all given must match)"

TopicOption = Annotated[
    list[str] | None,
    typer.Option(
        metavar="TOPIC",
        help="dead-letter topic to read, or the topic whose TOPIC.dlq to read (repeatable; "
        "default: every *.dlq topic)",
        show_default=False,
    ),
]
ReadTimeoutOption = Annotated[
    float,
    typer.Option(help="longest wait without progress while reading the topics, seconds"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="a JSON array instead of text")]


def _filter(help: str) -> object:
    return typer.Option(help=help, rich_help_panel=_FILTERS, show_default=False)


TypeFilter = Annotated[str | None, _filter("CloudEvents type, a pattern (hr.*)")]
HandlerFilter = Annotated[str | None, _filter("handler that failed, a pattern")]
ErrorFilter = Annotated[str | None, _filter("text in the error type or message (any case)")]
ReasonFilter = Annotated[
    str | None,
    _filter(
        "why it was dead-lettered: decode, unknown_type, invalid, handler_failed, "
        "permanent_error, output_rejected or undeliverable"
    ),
]
OriginalTopicFilter = Annotated[
    str | None, _filter("topic the record was consumed from, a pattern")
]
SinceFilter = Annotated[str | None, _filter("RFC 3339 time, or a duration back: 30m, 2h, 7d")]


@dataclass(frozen=True, slots=True)
class _Filters:
    """The filter flags as given."""

    type: str | None = None
    handler: str | None = None
    error: str | None = None
    reason: str | None = None
    original_topic: str | None = None
    since: str | None = None

    def to_filter(self, ids: Sequence[str] = ()) -> DeadLetterFilter:
        from bus.dead_letters import REASONS
        from bus.dlq import DeadLetterFilter, parse_since
        from bus.stamping import utc_now

        if self.reason is not None and self.reason not in REASONS:
            raise ConfigError(f"--reason {self.reason!r}: use one of {', '.join(REASONS)}")
        return DeadLetterFilter(
            topic=self.original_topic,
            type=self.type,
            handler=self.handler,
            error=self.error,
            reason=self.reason,
            since=None if self.since is None else parse_since(self.since, utc_now()),
            ids=frozenset(ids),
        )


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        cls=Group,
        help="Inspect and replay dead letters. They are read from every *.dlq topic (or "
        "those named with --topic) up to their end when the command starts. IDs are the "
        "CloudEvents id, else <dlq-topic>:<partition>:<offset>. Kafka only. See docs/dlq.md.",
        no_args_is_help=True,
    )
    group.command(
        "list", help="List dead letters (filters AND).", short_help="a table of dead letters"
    )(list_letters)
    group.command(
        "show",
        help="Show the dead letter with this ID or location; of an ID with several copies "
        "(a replayed event that failed again), the newest, naming the older ones (--json: "
        "every copy, the newest first).",
        short_help="one dead letter: headers, error, payload",
    )(show)
    group.command(
        "replay",
        help="Send the original key, value and headers (bus_dlq_* removed, bus_dlq_replays "
        "incremented) to the original topic or --to. Only the newest copy of each ID is "
        "sent; one replayed --max-replays times already is refused.",
        short_help="send dead letters back to their topic",
    )(replay)
    app.add_typer(group, name="dlq", short_help="inspect and replay dead letters")


@transport_options(one_shot=True)
def list_letters(
    topic: TopicOption = None,
    type: TypeFilter = None,
    handler: HandlerFilter = None,
    error: ErrorFilter = None,
    reason: ReasonFilter = None,
    original_topic: OriginalTopicFilter = None,
    since: SinceFilter = None,
    read_timeout_s: ReadTimeoutOption = 60.0,
    json: Annotated[bool, typer.Option("--json", help="a JSON array instead of a table")] = False,
    *,
    options: TransportOptions,
) -> int:
    import orjson

    from bus.dlq import TABLE_HEADERS, format_summary, table_rows, to_json

    keep = _Filters(type, handler, error, reason, original_topic, since).to_filter()
    letters, _ = _read(options, topic, keep, read_timeout_s)
    if json:
        print(orjson.dumps([to_json(d) for d in letters]).decode())
        return 0
    if letters:
        print_table(TABLE_HEADERS, table_rows(letters))
    print(format_summary(letters), file=sys.stderr)
    return 0


@transport_options(one_shot=True)
def show(
    id: Annotated[
        str, typer.Argument(metavar="ID", help="ce_id, or <dlq-topic>:<partition>:<offset>")
    ],
    topic: TopicOption = None,
    read_timeout_s: ReadTimeoutOption = 60.0,
    json: JsonOption = False,
    *,
    options: TransportOptions,
) -> int:
    import orjson

    from bus.dlq import DeadLetterFilter, format_copies, newest_first, to_json

    letters, topics = _read(options, topic, DeadLetterFilter(ids=frozenset([id])), read_timeout_s)
    if not letters:
        raise ConfigError(
            f"no dead letter has ID {id!r} in {', '.join(topics) or 'any *.dlq topic'} "
            "(IDs are listed by 'bus dlq list')"
        )
    if json:  # every copy, the newest first
        copies = [to_json(d) for d in newest_first(letters)]
        print(orjson.dumps(copies, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(format_copies(letters))
    return 0


@transport_options(one_shot=True)
def replay(
    ids: Annotated[
        list[str] | None, typer.Argument(metavar="ID", help="IDs or locations to replay")
    ] = None,
    topic: TopicOption = None,
    type: TypeFilter = None,
    handler: HandlerFilter = None,
    error: ErrorFilter = None,
    reason: ReasonFilter = None,
    original_topic: OriginalTopicFilter = None,
    since: SinceFilter = None,
    read_timeout_s: ReadTimeoutOption = 60.0,
    all: Annotated[bool, typer.Option("--all", help="replay every dead letter read")] = False,
    to: Annotated[
        str | None, typer.Option(metavar="TOPIC", help="send here instead of the original topic")
    ] = None,
    max_replays: Annotated[
        int | None,
        typer.Option(
            help="refuse records replayed this often already (default 3)", show_default=False
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print what would be replayed; send nothing")
    ] = False,
    *,
    options: TransportOptions,
) -> int:
    from bus.dlq import DEFAULT_MAX_REPLAYS, DeadLetterFilter, format_nothing_matched, plan_replay

    wanted = list(ids or ())
    keep = _Filters(type, handler, error, reason, original_topic, since).to_filter(wanted)
    if keep == DeadLetterFilter() and not all:
        raise ConfigError(
            "replay needs IDs or a filter (--type, --handler, --error, --reason, --since, "
            "--original-topic), or --all to replay every dead letter read"
        )
    limit = DEFAULT_MAX_REPLAYS if max_replays is None else max_replays
    if limit < 1:
        raise ConfigError("--max-replays must be at least 1")
    letters, topics = _read(options, topic, keep, read_timeout_s)
    missing = sorted(set(wanted) - {i for d in letters for i in (d.id, d.location)})
    if missing:
        raise ConfigError(f"no dead letter has ID(s) {', '.join(missing)}; nothing was replayed")
    if not letters:
        print(format_nothing_matched(topics))
        return 1
    todo = plan_replay(letters, max_replays=limit, to=to)
    for d, why in todo.refused:
        print(f"refused  {d.id}: {why}")
    if dry_run:
        for d, record in todo.send:
            print(f"would replay  {d.id} ({d.location}) -> {record.topic} (replay {d.replays + 1})")
        print(f"dry run: {len(todo.send)} to replay, {len(todo.refused)} refused")
        return 1 if todo.refused else 0
    sent = _send(options, todo)
    print(f"replayed {sent} dead letter(s); refused {len(todo.refused)}")
    return 1 if todo.refused else 0


def _config(options: TransportOptions) -> BusConfig:
    config = bus_config(options)
    if config.transport == "memory":
        raise ConfigError(MEMORY_IS_LOCAL)
    return config


def _read(
    options: TransportOptions,
    topics: list[str] | None,
    keep: DeadLetterFilter,
    read_timeout_s: float,
) -> tuple[list[DeadLetter], list[str]]:
    """(matching dead letters, topics read)."""
    from bus.dlq import READ_CONCURRENCY, list_dead_letter_topics, read_dead_letters

    async def read(transport: Transport) -> tuple[list[DeadLetter], list[str]]:
        names = await list_dead_letter_topics(transport, topics or [])
        if len(names) > READ_CONCURRENCY:  # a while on a broker with many: say why
            print(
                f"reading {len(names)} dead-letter topics, {READ_CONCURRENCY} at a time",
                file=sys.stderr,
                flush=True,
            )
        with progress("reading", total=len(names)) as update:
            letters = await read_dead_letters(
                transport, names, keep=keep.matches, timeout_s=read_timeout_s, on_progress=update
            )
        return letters, names

    config = _config(options)
    return with_transport(make_transport(config, options), read)


def _send(options: TransportOptions, todo: ReplayPlan) -> int:
    from bus.dlq import replay_dead_letters

    async def send(transport: Transport) -> int:
        with progress("replaying", total=len(todo.send)) as update:
            return await replay_dead_letters(transport, todo, on_progress=update)

    return with_transport(make_transport(_config(options), options), send)
