"""What the ``bus sagas`` and ``bus tasks`` commands share: their flags, the definitions
they load, times, the saga store they open, JSON output.

Example::

    catalog = load_definitions(["sagas.definitions.shipped"])
    since = parse_since("2h", now=utc_now())
    states = with_store(args, lambda store: store.list_sagas(SagaQuery()))
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import orjson
import typer

from bus import BusConfig, ConfigError, Transport
from sagas.config import SagaConfig
from sagas.definition import SagaDefinition
from sagas.versions import Catalog

if TYPE_CHECKING:
    from sagas.stores.base import SagaStore

__all__ = [
    "DEFAULT_DEFINITIONS",
    "DefinitionsOption",
    "Invoke",
    "JsonOption",
    "SagaIdArgument",
    "StoreOption",
    "TransportFactory",
    "VerboseOption",
    "load_definitions",
    "parse_since",
    "print_json",
    "with_store",
]

T = TypeVar("T")

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


def with_store(args: argparse.Namespace, fn: Callable[[SagaStore], Awaitable[T]]) -> T:
    """``fn(store)`` on the saga store ``args.store`` (or ``BUS_SAGA_STORE``) names, opened
    for the call and closed after it."""
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


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout (the commands' ``--json`` output)."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
