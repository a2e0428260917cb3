"""``bus sagas list / show / cancel / retry / purge / graph``: the commands that talk to
the saga store only (``--store URL`` or ``BUS_SAGA_STORE``), and ``graph``, to neither.

``cancel`` and ``retry`` queue a request row in the store, which the coordinator carries
out in the same transaction as the saga's new state.

Example::

    bus sagas list --state needs_attention --since 2h
    bus sagas show onboarding:e-2003 --json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from bus import BusConfig, ConfigError, utc_now
from sagas.cli_common import (
    DefinitionsOption,
    Invoke,
    JsonOption,
    SagaIdArgument,
    StoreOption,
    VerboseOption,
    load_definitions,
    parse_since,
    print_json,
    with_store,
)
from sagas.definition import SagaDefinition
from sagas.state import SagaState, SagaStatus
from sagas.stores.base import SagaQuery, SagaStore, StoredSaga, UnreadableSaga

__all__ = ["register_store_commands"]


def register_store_commands(app: typer.Typer, invoke: Invoke) -> None:
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


def _list(args: argparse.Namespace, config: BusConfig) -> int:
    from sagas.timeline import format_table, summary

    query = SagaQuery(
        statuses=tuple(SagaStatus(s) for s in args.state or ()),
        name=args.saga,
        since=parse_since(args.since, now=utc_now()) if args.since else None,
        limit=args.limit,
    )
    states = with_store(args, lambda store: store.list_sagas(query))
    if args.json:
        print_json([s.to_dict(history=False) for s in states])
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

    stored, kept = with_store(args, read)
    if stored is None:
        raise ConfigError(f"no saga {args.saga_id!r} in the store; 'bus sagas list' shows the ids")
    if isinstance(stored, UnreadableSaga):  # the raw row, for the operator to fix
        if args.json:
            print_json(quarantine_json(stored, kept))
        else:
            print(format_quarantine(stored, kept))
        return 0
    if args.json:
        extra: dict[str, Any] = {}
        if stored.quarantine is not None or kept:
            extra = {"quarantine": stored.quarantine, "set_aside": len(kept)}
        print_json(to_json(stored.state) | {"revision": stored.revision} | extra)
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

    request = with_store(
        args,
        lambda store: request_action(store, args.saga_id, action, reason=args.reason),  # type: ignore[arg-type]
    )
    print(
        f"{action} of {request.saga_id} requested (request {request.id}); the coordinator "
        "carries it out on its next round: 'bus sagas show' follows it"
    )
    return 0


def _purge(args: argparse.Namespace, config: BusConfig) -> int:
    older_than = parse_since(args.older_than, now=utc_now(), flag="--older-than")
    n = with_store(args, lambda store: store.purge_finished(older_than))
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
