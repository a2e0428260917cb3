"""``bus schema export``: the JSON Schema of every registered message type.

Example::

    bus schema export -m handlers.demo --out schemas/
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bus.cli.common import import_module
from bus.cli.options import Group
from bus.cli.publish import ModulesOption
from bus.errors import ConfigError

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    group = typer.Typer(cls=Group, help="Message schemas.", no_args_is_help=True)
    group.command(
        "export",
        help="Import the modules, then write one <type>.json per registered type.",
        short_help="write the JSON Schema of every registered message type",
    )(export)
    app.add_typer(group, name="schema", short_help="message schemas")


def export(
    module: ModulesOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR", help="directory to write into (default: one JSON document on stdout)"
        ),
    ] = None,
) -> int:
    import orjson

    from bus.registry import default_registry

    for name in module or ():
        import_module(name)
    schemas = default_registry.json_schemas()
    if not schemas:
        raise ConfigError(
            "no message types are registered; name the modules that define them with -m MODULE"
        )
    option = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    if out is None:
        print(orjson.dumps(schemas, option=option).decode())
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        (out / f"{name}.json").write_bytes(orjson.dumps(schema, option=option))
    print(f"wrote {len(schemas)} schema(s) to {out}")
    return 0
