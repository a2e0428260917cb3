"""``bus sagas ...``: run the coordinator, inspect sagas, cancel, retry, draw, demo.

bus cannot import sagas (layering), so this module registers its commands through the
``bus.cli`` entry point (pyproject.toml): bus calls :func:`register` with its Typer group
and three helpers: its transport flags, the transport they select, and ``invoke``, which
runs a command body with its arguments and settings.

Every command but ``graph`` talks to the saga store only: ``--store URL`` or
``BUS_SAGA_STORE`` (``sqlite:PATH``, ``postgresql://...``). ``cancel`` and ``retry`` queue a
request row in the store, which the coordinator carries out in the same transaction as the
saga's new state - one mechanism for one or many replicas, and no broker needed to ask.

Example::

    bus sagas list --state needs_attention --since 2h
    bus sagas show onboarding:e-2003 --json
    bus sagas retry onboarding:e-2003 --reason "payroll fixed"
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import re
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer

from bus import (
    BusConfig,
    ConfigError,
    HttpServer,
    Readiness,
    Runner,
    TopicSpec,
    Transport,
    dead_letter_topic,
    new_id,
    tune_gc,
    utc_now,
)
from sagas.config import SagaConfig
from sagas.definition import SagaDefinition
from sagas.state import SagaState, SagaStatus
from sagas.stores.base import SagaQuery, SagaStore, StoredSaga, UnreadableSaga
from sagas.versions import Catalog

__all__ = ["load_definitions", "parse_since", "register"]

log = logging.getLogger("sagas.cli")
T = TypeVar("T")
Command = Callable[..., int]
TransportFactory = Callable[[BusConfig, argparse.Namespace], Transport]
#: bus's ``invoke(body, options=None, **params)``: ``body(args, config)``'s exit code.
Invoke = Callable[..., int]

DEFAULT_DEFINITIONS = "sagas.definitions.shipped"
_STORE_HELP = (
    "saga store: sqlite:PATH, postgresql://..., memory (BUS_SAGA_STORE; default "
    "sqlite:sagas.db in the working directory)"
)
StoreOption = Annotated[str | None, typer.Option(help=_STORE_HELP, show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON instead of text")]
SagaIdArgument = Annotated[str, typer.Argument(metavar="ID")]
VerboseOption = Annotated[
    bool, typer.Option("-v", "--verbose", help="show the ids of messages in timelines")
]
DefinitionsOption = Annotated[
    list[str] | None,
    typer.Option(
        "-d",
        "--definitions",
        metavar="MODULE[:ATTR]",
        help=f"module defining SagaDefinitions (repeatable; default {DEFAULT_DEFINITIONS})",
        show_default=False,
    ),
]


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
            lambda a, c: _run(a, c, make_transport),
            options,
            definitions=definitions,
            store=store,
            group=group,
            http_port=http_port,
            no_http=no_http,
        )

    _store_commands(app, invoke)

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


def _store_commands(app: typer.Typer, invoke: Invoke) -> None:
    """The actions that talk to the saga store only (and ``graph``, to neither)."""

    @app.command(
        "list",
        help="Sagas as a table (newest first).",
        short_help="sagas as a table (newest first)",
    )
    def listing(
        state: Annotated[
            list[SagaStatus] | None,
            typer.Option(help="only sagas in this status (repeatable)", show_default=False),
        ] = None,
        saga: Annotated[str | None, typer.Option(help="only sagas of this definition name")] = None,
        since: Annotated[
            str | None, typer.Option(help="only sagas started since: 90s, 15m, 2h, 3d or ISO time")
        ] = None,
        limit: Annotated[int, typer.Option(help="at most this many")] = 100,
        json: JsonOption = False,
        store: StoreOption = None,
    ) -> int:
        states = None if state is None else [s.value for s in state]
        return invoke(
            _list, state=states, saga=saga, since=since, limit=limit, json=json, store=store
        )

    @app.command(
        "show",
        help="A saga's timeline: steps, commands, replies, times, compensations, why.",
        short_help="a saga's timeline: steps, commands, replies, times, compensations, why",
    )
    def show(
        saga_id: SagaIdArgument,
        json: JsonOption = False,
        verbose: VerboseOption = False,
        definitions: DefinitionsOption = None,
        store: StoreOption = None,
    ) -> int:
        return invoke(
            _show,
            saga_id=saga_id,
            json=json,
            verbose=verbose,
            definitions=definitions,
            store=store,
        )

    for action, what in (
        ("cancel", "cancel a running saga: what completed is compensated"),
        ("retry", "retry a saga in needs_attention: re-send what it awaits"),
    ):
        app.command(
            action,
            help=f"{what[0].upper()}{what[1:]}. Queues a request the coordinator carries out "
            "(it must be running).",
            short_help=what,
        )(_request_command(action, invoke))

    @app.command(
        "purge",
        help="Delete the sagas that ended and were last updated before --older-than. Running, "
        "compensating and needs_attention sagas stay, whatever their age. A trigger delivered "
        "again after its saga was purged starts it anew: keep sagas longer than the trigger "
        "topics keep records. 'bus sagas run' does this by itself with BUS_SAGA_RETENTION_S.",
        short_help="delete sagas that ended (completed, compensated, failed, cancelled) long ago",
    )
    def purge(
        older_than: Annotated[
            str,
            typer.Option(
                metavar="AGE",
                help="ended and last updated before: 90s, 15m, 2h, 30d or an ISO time",
            ),
        ],
        store: StoreOption = None,
    ) -> int:
        return invoke(_purge, older_than=older_than, store=store)

    @app.command(
        "graph",
        help="A saga definition as a Mermaid state diagram.",
        short_help="a saga definition as a Mermaid state diagram",
    )
    def graph(
        name: Annotated[str, typer.Argument(metavar="NAME")],
        version: Annotated[
            int | None, typer.Option(help="definition version (default: the latest)")
        ] = None,
        definitions: DefinitionsOption = None,
    ) -> int:
        return invoke(_graph, name=name, version=version, definitions=definitions)


def _request_command(action: str, invoke: Invoke) -> Callable[..., int]:
    def request(
        saga_id: SagaIdArgument,
        reason: Annotated[str, typer.Option()] = f"{action} requested by operator",
        store: StoreOption = None,
    ) -> int:
        return invoke(
            lambda a, c: _request(a, c, action), saga_id=saga_id, reason=reason, store=store
        )

    return request


# -- helpers ------------------------------------------------------------------------------


def load_definitions(targets: list[str] | None) -> Catalog:
    """Every SagaDefinition in the named modules (or the one ``module:attr`` names)."""
    catalog = Catalog()
    for target in targets or [DEFAULT_DEFINITIONS]:
        module_name, _, attr = target.partition(":")
        if "" not in sys.path:
            sys.path.insert(0, "")  # modules of the current directory, as 'python -m' does
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"cannot import {module_name!r}: {exc}") from exc
        values = [getattr(module, attr, None)] if attr else list(vars(module).values())
        found = [v for v in values if isinstance(v, SagaDefinition)]
        if not found:
            raise ConfigError(f"{target!r} defines no SagaDefinition")
        for d in found:
            catalog.register(d)
    return catalog


_SINCE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, *, now: datetime, flag: str = "--since") -> datetime:
    """``90s``, ``15m``, ``2h``, ``3d`` (before ``now``) or an ISO 8601 time (UTC if naive).

    >>> from datetime import UTC
    >>> parse_since("2h", now=datetime(2026, 1, 1, 12, tzinfo=UTC)).hour
    10
    """
    m = _SINCE.match(text.strip())
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{flag} {text!r}: use a duration like 90s, 15m, 2h, 3d or an ISO time "
            "like 2026-01-04T09:00"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=now.tzinfo)


def _with_store(
    args: argparse.Namespace, config: BusConfig, fn: Callable[[SagaStore], Awaitable[T]]
) -> T:
    from sagas.stores.url import existing_store_from_url

    sagas = SagaConfig.from_env(store=args.store)
    # these commands read, or change sagas that exist: never create a store
    store = existing_store_from_url(
        sagas.store, password=sagas.store_password, timeouts=sagas.store_timeouts()
    )

    async def go() -> T:
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(go())


def _dump(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


# -- commands -----------------------------------------------------------------------------


def _list(args: argparse.Namespace, config: BusConfig) -> int:
    from sagas.timeline import format_table, summary

    query = SagaQuery(
        statuses=tuple(SagaStatus(s) for s in args.state or ()),
        name=args.saga,
        since=parse_since(args.since, now=utc_now()) if args.since else None,
        limit=args.limit,
    )
    states = _with_store(args, config, lambda store: store.list_sagas(query))
    if args.json:
        _dump([s.to_dict(history=False) for s in states])
    else:
        print(format_table(states, now=utc_now()))
        print(summary(states))
    return 0


def _show(args: argparse.Namespace, config: BusConfig) -> int:
    from sagas.console import echo
    from sagas.story import story
    from sagas.timeline import format_quarantine, format_timeline, quarantine_json, to_json

    async def read(store: SagaStore) -> tuple[StoredSaga | UnreadableSaga | None, list[Any]]:
        stored = await store.read(args.saga_id)
        kept = await store.set_aside_inputs(saga_id=args.saga_id, limit=1000)
        return stored, kept

    stored, kept = _with_store(args, config, read)
    if stored is None:
        raise ConfigError(f"no saga {args.saga_id!r} in the store; 'bus sagas list' shows the ids")
    if isinstance(stored, UnreadableSaga):  # the raw row, for the operator to fix
        if args.json:
            _dump(quarantine_json(stored, kept))
        else:
            print(format_quarantine(stored, kept))
        return 0
    if args.json:
        extra: dict[str, Any] = {}
        if stored.quarantine is not None or kept:
            extra = {"quarantine": stored.quarantine, "set_aside": len(kept)}
        _dump(to_json(stored.state) | {"revision": stored.revision} | extra)
    else:
        told = story(_definition_of(args.definitions, stored.state), stored.state)
        echo(format_timeline(stored.state, story=told, verbose=args.verbose), out=sys.stdout)
        if stored.quarantine is not None or kept:
            print(f"  quarantined: {stored.quarantine}; {len(kept)} input(s) set aside")
    return 0


def _definition_of(targets: list[str] | None, state: SagaState) -> SagaDefinition | None:
    """The definition ``state`` runs on, for its story; None when it cannot be loaded
    (the generic story is told then: ``show`` reads the store, whatever the code)."""
    try:
        return load_definitions(targets).get(state.name, state.version)
    except ConfigError:
        return None


def _request(args: argparse.Namespace, config: BusConfig, action: str) -> int:
    from sagas.coordinator import request_action

    request = _with_store(
        args,
        config,
        lambda store: request_action(store, args.saga_id, action, reason=args.reason),  # type: ignore[arg-type]
    )
    print(
        f"{action} of {request.saga_id} requested (request {request.id}); the coordinator "
        "carries it out on its next round: 'bus sagas show' follows it"
    )
    return 0


def _purge(args: argparse.Namespace, config: BusConfig) -> int:
    older_than = parse_since(args.older_than, now=utc_now(), flag="--older-than")
    n = _with_store(args, config, lambda store: store.purge_finished(older_than))
    print(f"purged {n} saga{'s' if n != 1 else ''} that ended before {older_than.isoformat()}")
    return 0


def _graph(args: argparse.Namespace, config: BusConfig) -> int:
    from sagas.render import render_mermaid

    catalog = load_definitions(args.definitions)
    if args.name not in catalog.names():
        raise ConfigError(f"no saga named {args.name!r} (known: {', '.join(catalog.names())})")
    definition = (
        catalog.latest(args.name) if args.version is None else catalog.get(args.name, args.version)
    )
    if definition is None:
        raise ConfigError(f"saga {args.name!r} has no version {args.version}")
    print(render_mermaid(definition))
    return 0


def _run(args: argparse.Namespace, config: BusConfig, make_transport: TransportFactory) -> int:
    """The coordinator's app on a :class:`bus.Runner`: one consume loop (the Worker's),
    graceful shutdown on SIGTERM/SIGINT, lag metrics, ``/metrics``, ``/readyz``."""
    from sagas.coordinator import Coordinator
    from sagas.metrics import default_saga_metrics
    from sagas.stores.url import describe_store, store_from_url

    catalog = load_definitions(args.definitions)
    sagas = SagaConfig.from_env(store=args.store)
    store = store_from_url(
        sagas.store, password=sagas.store_password, timeouts=sagas.store_timeouts()
    )
    transport = make_transport(config, args)
    observer = default_saga_metrics()
    metrics = observer.metrics
    coordinator = Coordinator(
        catalog,
        store,
        transport,
        group=args.group,
        fault_point=sagas.fault_point,
        observer=observer,
        retention_s=sagas.retention_s,
        early_retention_s=sagas.early_retention_s,
        settings=config.worker_settings(),
    )
    # the dead-letter topics too: created on first use, a new topic's leader may not be
    # known yet when the first dead letter and the next commands are sent
    topics = [*coordinator.topics, *(dead_letter_topic(t) for t in coordinator.topics)]
    specs = [TopicSpec(t, partitions=config.partitions) for t in sorted(topics)]
    runner = Runner([coordinator.app], transport, config.worker_settings(), ensure_topics=specs)

    # what this coordinator serves, so a probe or an operator sees it is the right one
    serves = {
        "definitions": ", ".join(f"{d.name} v{d.version}" for d in catalog),
        "store": describe_store(sagas.store),
    }

    async def ready() -> Readiness:
        reachable = await transport.probe(timeout_s=2.0)
        checks = {"transport": "ok" if reachable else "no answer", **serves}
        joined = all(w.running for w in runner.workers)
        if not joined:
            checks[coordinator.app.name] = "not running"
        return Readiness(reachable and joined, checks)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await store.open()
        try:
            log.info(
                "coordinator of %s on %s, store %s",
                serves["definitions"], transport.name, serves["store"],
            )  # fmt: skip
            if args.no_http or not config.http:
                await runner.run(stop)
                return
            port = config.http_port if args.http_port is None else args.http_port
            server = HttpServer(
                host=config.http_host,
                port=port,
                metrics=metrics,
                readiness=ready,
                settings=config.http_settings(),
            )
            async with server:
                log.info("serving /metrics /healthz /readyz on %s", server.url)
                await runner.run(stop)
        finally:
            await store.close()

    tune_gc(config.gc_young)
    asyncio.run(go())
    return 0


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
